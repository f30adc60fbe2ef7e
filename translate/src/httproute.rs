//! HTTPRoute: rules into model routes, parentRefs into listener attachments, with per-parent
//! status.

use crate::backends::{BackendRef, Backends, PortRef};
use crate::gateways::{Owner, PlannedGateway, PlannedListener};
use crate::gwapi::httproutes::*;
use crate::hostnames::intersect;
use crate::meta::age;
use crate::policy::{RulePolicy, TrafficPolicies, https_redirect};
use crate::route_tables::{Contribution, Entry, Order};
use crate::settings::GATEWAY_GROUP;
use crate::status::{Condition, ParentRef, ParentStatus, reason};
use crate::store::{ObjectKey, Store};
use gatehouse_model::ir::{
    BackendTarget, Cors, Filter, HeaderModifier, HostMatch, Mirror, PathMatch, PathModifier,
    Protocol, Redirect, Retry, Rewrite, Route, RouteMatch, RouteSource, StringMatch, Timeouts,
    ValueMatch, WeightedBackend,
};
use gatehouse_model::validate::{MAX_WEIGHT, anchored_regex, check_filter};
use std::collections::BTreeMap;

/// The generated types repeat one header-modifier shape per filter position (rule or
/// backendRef, request or response); read them all the same way.
macro_rules! header_modifier {
    ($m:expr) => {
        HeaderModifier {
            set: $m
                .set
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
            add: $m
                .add
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
            remove: $m.remove.clone().unwrap_or_default(),
        }
    };
}

/// A rule turned into model routes (one per match), or why it cannot be served.
struct CompiledRule {
    routes: Vec<Route>,
    /// On plain-HTTP listeners the routes answer with a redirect to HTTPS (TrafficPolicy).
    https_redirect: bool,
}

/// Problems found while compiling a route's rules.
#[derive(Default)]
struct RouteProblems {
    /// Rules dropped as invalid: (index, message).
    invalid_rules: Vec<(usize, String)>,
    /// The first unresolved backend reference (reason, message).
    unresolved: Option<(&'static str, String)>,
}

/// Translates one HTTPRoute: its entries on the listeners it attaches to, its status and
/// the clusters it resolves go into `out`.
pub fn attach(
    store: &Store,
    policies: &TrafficPolicies,
    route: &HttpRoute,
    gateways: &BTreeMap<ObjectKey, PlannedGateway>,
    backends: &mut Backends<'_>,
    out: &mut Contribution,
) {
    let key = ObjectKey::of(route);
    let ns = key.namespace.as_str();
    let generation = route.metadata.generation.unwrap_or(0);
    let parents: Vec<(&HttpRouteParentRefs, ObjectKey, Owner)> = route
        .spec
        .parent_refs
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|p| {
            let (gateway, owner) = crate::gateways::parent(
                gateways,
                p.group.as_deref(),
                p.kind.as_deref(),
                p.namespace.as_deref().unwrap_or(ns),
                &p.name,
            )?;
            Some((p, gateway, owner))
        })
        .collect();
    if parents.is_empty() {
        return; // Not attached to any Gateway of ours: not ours to report on.
    }

    // Compile the rules once; every parent serves the same routes.
    let mut problems = RouteProblems::default();
    let mut rules = Vec::new();
    for (i, rule) in route
        .spec
        .rules
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let policy = policies.for_rule(&key, rule.name.as_deref(), backends);
        match compile_rule(&key, i, rule, policy.as_ref(), backends, &mut problems) {
            Ok(r) => rules.push(r),
            Err(msg) => problems.invalid_rules.push((i, msg)),
        }
    }
    let route_hosts: Vec<HostMatch> = route
        .spec
        .hostnames
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|h| HostMatch::gateway(h))
        .collect();
    let compiled = CompiledRoute {
        route,
        namespace: ns,
        ns_labels: store.namespace_labels(ns),
        rules,
        problems,
        route_hosts,
    };
    let mut parent_statuses = Vec::new();
    for (p, gw_key, owner) in parents {
        let Some(gw) = gateways.get(&gw_key) else {
            continue;
        };
        let mut parent = compiled.attach_to(p, gw, &owner, out);
        for c in &mut parent.conditions {
            c.observed_generation = generation;
        }
        parent_statuses.push(parent);
    }
    let st = out.status.entry("HTTPRoute", ns, &key.name, generation);
    st.parents = parent_statuses;
}

/// An HTTPRoute's rules compiled once, for every parent it attaches to.
struct CompiledRoute<'a> {
    route: &'a HttpRoute,
    namespace: &'a str,
    ns_labels: BTreeMap<String, String>,
    rules: Vec<CompiledRule>,
    problems: RouteProblems,
    route_hosts: Vec<HostMatch>,
}

impl CompiledRoute<'_> {
    /// Attaches the route to the listeners of one parent (a Gateway's, or a ListenerSet's:
    /// a parentRef sees only its own object's listeners, GEP-1713) that its sectionName,
    /// port, allowedRoutes and hostnames admit; returns the parent's status.
    fn attach_to(
        &self,
        p: &HttpRouteParentRefs,
        gw: &PlannedGateway,
        owner: &Owner,
        out: &mut Contribution,
    ) -> ParentStatus {
        let ns = self.namespace;
        let mut parent = ParentStatus {
            parent_ref: parent_ref(p, ns),
            conditions: vec![],
        };
        let what = format!("{} {}", owner.kind(), owner.key());
        let candidates: Vec<usize> = gw
            .listeners
            .iter()
            .enumerate()
            .filter(|(_, l)| l.owner == *owner)
            .filter(|(_, l)| p.section_name.as_deref().is_none_or(|s| s == l.name))
            .filter(|(_, l)| p.port.is_none_or(|port| i32::from(l.port) == port))
            .map(|(i, _)| i)
            .collect();
        let allowed: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| {
                let l = &gw.listeners[i];
                l.allows_http_routes && l.admits(ns, &self.ns_labels)
            })
            .collect();
        let attached: Vec<(usize, Vec<HostMatch>)> = allowed
            .iter()
            .map(|&i| (i, intersect(&gw.listeners[i].hostname, &self.route_hosts)))
            .filter(|(_, hosts)| !hosts.is_empty())
            .collect();

        let accepted = if candidates.is_empty() {
            Err((
                reason::NO_MATCHING_PARENT,
                format!(
                    "{what} has no listener matching sectionName {} port {}",
                    p.section_name.as_deref().unwrap_or("*"),
                    p.port.map(|p| p.to_string()).unwrap_or_else(|| "*".into())
                ),
            ))
        } else if allowed.is_empty() {
            Err((
                reason::NOT_ALLOWED_BY_LISTENERS,
                format!("no listener of {what} allows HTTPRoutes from namespace {ns}"),
            ))
        } else if attached.is_empty() {
            Err((
                reason::NO_MATCHING_LISTENER_HOSTNAME,
                "no listener hostname intersects the route's hostnames".to_string(),
            ))
        } else if self.rules.is_empty() && !self.problems.invalid_rules.is_empty() {
            Err((reason::UNSUPPORTED_VALUE, describe_invalid(&self.problems)))
        } else {
            Ok(())
        };
        match accepted {
            Err((r, msg)) => {
                parent
                    .conditions
                    .push(Condition::new(reason::ACCEPTED, false, r, msg))
            }
            Ok(()) => {
                parent.conditions.push(Condition::new(
                    reason::ACCEPTED,
                    true,
                    reason::ACCEPTED,
                    format!("attached to {} listener(s) of {what}", attached.len()),
                ));
                if !self.problems.invalid_rules.is_empty() {
                    parent.conditions.push(Condition::new(
                        reason::PARTIALLY_INVALID,
                        true,
                        reason::UNSUPPORTED_VALUE,
                        describe_invalid(&self.problems),
                    ));
                }
                for (i, hosts) in attached {
                    self.place(&gw.listeners[i], hosts, out);
                }
            }
        }
        parent.conditions.push(match &self.problems.unresolved {
            None => Condition::new(
                reason::RESOLVED_REFS,
                true,
                reason::RESOLVED_REFS,
                "all references resolved",
            ),
            Some((r, msg)) => Condition::new(reason::RESOLVED_REFS, false, r, msg.clone()),
        });
        parent
    }

    /// Every route of every rule, for each hostname the listener and the route share; on
    /// plain HTTP, a TrafficPolicy's HTTPS redirect instead.
    fn place(&self, l: &PlannedListener, hosts: Vec<HostMatch>, out: &mut Contribution) {
        out.attach(&l.key);
        if !l.served {
            return;
        }
        for hostname in hosts {
            for rule in &self.rules {
                for (m, r) in rule.routes.iter().enumerate() {
                    let mut r = r.clone();
                    if rule.https_redirect && l.protocol == Protocol::Http {
                        https_redirect(&mut r);
                    }
                    out.push(
                        &l.key,
                        Entry {
                            hostname: hostname.clone(),
                            order: Order {
                                fallback: false,
                                age: age(&self.route.metadata),
                                kind_rank: 0,
                                rule: r.source.rule,
                                match_index: m,
                            },
                            route: std::sync::Arc::new(r),
                        },
                    );
                }
            }
        }
    }
}

fn describe_invalid(p: &RouteProblems) -> String {
    p.invalid_rules
        .iter()
        .map(|(i, m)| format!("spec.rules[{i}]: {m}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn parent_ref(p: &HttpRouteParentRefs, route_ns: &str) -> ParentRef {
    ParentRef {
        group: p.group.clone().unwrap_or_else(|| GATEWAY_GROUP.into()),
        kind: p.kind.clone().unwrap_or_else(|| "Gateway".into()),
        namespace: p.namespace.clone().unwrap_or_else(|| route_ns.into()),
        name: p.name.clone(),
        section_name: p.section_name.clone(),
        port: p.port,
    }
}

fn compile_rule(
    route: &ObjectKey,
    index: usize,
    rule: &HttpRouteRules,
    policy: Option<&RulePolicy>,
    backends: &mut Backends<'_>,
    problems: &mut RouteProblems,
) -> Result<CompiledRule, String> {
    let source = RouteSource {
        kind: "HTTPRoute".into(),
        namespace: route.namespace.clone(),
        name: route.name.clone(),
        rule: index,
    };
    let matches: Vec<RouteMatch> = match rule.matches.as_deref() {
        None | Some([]) => vec![RouteMatch::path_only(PathMatch::Prefix("/".into()))],
        Some(ms) => ms
            .iter()
            .enumerate()
            .map(|(i, m)| compile_match(m).map_err(|e| format!("matches[{i}].{e}")))
            .collect::<Result<_, _>>()?,
    };

    let mut filters = Vec::new();
    for (i, f) in rule
        .filters
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let filter = compile_filter(f).map_err(|e| format!("filters[{i}]: {e}"))?;
        let filter = match filter {
            Compiled::Filter(f) => f,
            Compiled::Mirror(m, fraction) => {
                let target = resolve(
                    backends,
                    route,
                    None,
                    &m,
                    &format!("spec.rules[{index}].filters[{i}].requestMirror.backendRef"),
                    problems,
                );
                Filter::Mirror(Mirror {
                    target,
                    numerator: fraction.0,
                    denominator: fraction.1,
                })
            }
        };
        check_filter(&filter).map_err(|e| format!("filters[{i}]: {e}"))?;
        filters.push(filter);
    }
    let timeouts = compile_timeouts(rule.timeouts.as_ref())?;
    let retry = rule.retry.as_ref().map(compile_retry).transpose()?;
    let redirects = filters.iter().any(|f| matches!(f, Filter::Redirect(_)));
    let rewrites = filters.iter().any(|f| matches!(f, Filter::Rewrite(_)));
    if redirects && rewrites {
        return Err("filters: RequestRedirect and URLRewrite cannot be used together".into());
    }
    let prefix_modifier = filters.iter().any(|f| {
        matches!(
            f,
            Filter::Redirect(Redirect {
                path: Some(PathModifier::ReplacePrefixMatch(_)),
                ..
            }) | Filter::Rewrite(Rewrite {
                path: Some(PathModifier::ReplacePrefixMatch(_)),
                ..
            })
        )
    });
    if prefix_modifier
        && matches
            .iter()
            .any(|m| !matches!(m.path, PathMatch::Prefix(_)))
    {
        return Err("filters: ReplacePrefixMatch needs every match to be a PathPrefix".into());
    }

    let mut weighted = Vec::new();
    for (i, b) in rule
        .backend_refs
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let weight = match u32::try_from(b.weight.unwrap_or(1)) {
            Ok(w) if w <= MAX_WEIGHT => w,
            _ => {
                return Err(format!(
                    "backendRefs[{i}].weight: {} is not within 0..={MAX_WEIGHT}",
                    b.weight.unwrap_or(1)
                ));
            }
        };
        let mut backend_filters = Vec::new();
        for (j, f) in b.filters.as_deref().unwrap_or_default().iter().enumerate() {
            let filter = compile_backend_filter(f)
                .and_then(|f| check_filter(&f).map(|()| f))
                .map_err(|e| format!("backendRefs[{i}].filters[{j}]: {e}"))?;
            backend_filters.push(filter);
        }
        let target = resolve(
            backends,
            route,
            policy.and_then(|p| p.variant.as_ref()),
            &Ref {
                group: b.group.clone(),
                kind: b.kind.clone(),
                namespace: b.namespace.clone(),
                name: b.name.clone(),
                port: b.port,
            },
            &format!("spec.rules[{index}].backendRefs[{i}]"),
            problems,
        );
        weighted.push(WeightedBackend {
            weight,
            target,
            filters: backend_filters,
        });
    }

    let mut routes: Vec<Route> = matches
        .into_iter()
        .map(|matcher| Route {
            filters: filters.clone(),
            backends: weighted.clone(),
            timeouts,
            retry: retry.clone().map(Box::new),
            ..Route::new(source.clone(), matcher)
        })
        .collect();
    if let Some(p) = policy {
        for r in &mut routes {
            p.apply(r);
        }
    }
    Ok(CompiledRule {
        routes,
        https_redirect: policy.is_some_and(|p| p.https_redirect),
    })
}

/// A backend reference, from a backendRef or a mirror's backendRef.
struct Ref {
    group: Option<String>,
    kind: Option<String>,
    namespace: Option<String>,
    name: String,
    port: Option<i32>,
}

/// Resolves a reference to a cluster, recording the first unresolved one for ResolvedRefs.
fn resolve(
    backends: &mut Backends<'_>,
    route: &ObjectKey,
    variant: Option<&crate::backends::ClusterVariant>,
    r: &Ref,
    at: &str,
    problems: &mut RouteProblems,
) -> BackendTarget {
    match backends.resolve_as(
        (GATEWAY_GROUP, "HTTPRoute", &route.namespace),
        BackendRef {
            group: r.group.as_deref().unwrap_or(""),
            kind: r.kind.as_deref().unwrap_or("Service"),
            namespace: r.namespace.as_deref().unwrap_or(&route.namespace),
            name: &r.name,
            port: r.port.map(PortRef::Number),
        },
        variant,
    ) {
        Ok(cluster) => BackendTarget::Cluster(cluster),
        Err((reason, msg)) => {
            let msg = format!("{at}: {msg}");
            if problems.unresolved.is_none() {
                problems.unresolved = Some((reason, msg.clone()));
            }
            BackendTarget::Invalid(msg)
        }
    }
}

/// A Gateway API duration ("1h", "500ms", "1m30s", "0s") in milliseconds.
pub(crate) fn duration_ms(value: &str) -> Result<u64, String> {
    let bad = || format!("{value:?} is not a duration like 10s, 500ms or 1m30s");
    let mut total: u64 = 0;
    let mut rest = value;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 5 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('s') {
            (1_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else {
            return Err(bad());
        };
        total += n * unit;
        rest = &rest[len..];
    }
    Ok(total)
}

fn compile_timeouts(t: Option<&HttpRouteRulesTimeouts>) -> Result<Timeouts, String> {
    let Some(t) = t else {
        return Ok(Timeouts::default());
    };
    let parse = |field: &str, v: &Option<String>| {
        v.as_deref()
            .map(duration_ms)
            .transpose()
            .map_err(|e| format!("timeouts.{field}: {e}"))
    };
    let timeouts = Timeouts {
        request_ms: parse("request", &t.request)?,
        backend_request_ms: parse("backendRequest", &t.backend_request)?,
        ..Default::default()
    };
    if let (Some(req), Some(backend)) = (timeouts.request_ms, timeouts.backend_request_ms)
        && req > 0
        && (backend > req || backend == 0)
    {
        return Err(format!(
            "timeouts.backendRequest ({backend} ms) must not be longer than timeouts.request ({req} ms)"
        ));
    }
    Ok(timeouts)
}

fn compile_retry(r: &HttpRouteRulesRetry) -> Result<Retry, String> {
    let codes = r
        .codes
        .iter()
        .flatten()
        .map(|&c| match u16::try_from(c) {
            Ok(c) if (400..600).contains(&c) => Ok(c),
            _ => Err(format!(
                "retry.codes: {c} is not an HTTP error status (400-599)"
            )),
        })
        .collect::<Result<_, _>>()?;
    // Without attempts, one retry.
    let attempts = match r.attempts {
        None => 1,
        Some(a) => u32::try_from(a).map_err(|_| format!("retry.attempts: {a} is negative"))?,
    };
    let backoff_ms = r
        .backoff
        .as_deref()
        .map(duration_ms)
        .transpose()
        .map_err(|e| format!("retry.backoff: {e}"))?;
    Ok(Retry {
        codes,
        attempts,
        backoff_ms,
    })
}

fn compile_match(m: &HttpRouteRulesMatches) -> Result<RouteMatch, String> {
    let path = match &m.path {
        None => PathMatch::Prefix("/".into()),
        Some(p) => {
            let value = p.value.clone().unwrap_or_else(|| "/".into());
            match p
                .r#type
                .as_ref()
                .unwrap_or(&HttpRouteRulesMatchesPathType::PathPrefix)
            {
                HttpRouteRulesMatchesPathType::Exact => {
                    if !value.starts_with('/') {
                        return Err(format!("path.value: {value:?} must start with /"));
                    }
                    PathMatch::Exact(value)
                }
                HttpRouteRulesMatchesPathType::PathPrefix => {
                    if !value.starts_with('/') {
                        return Err(format!("path.value: {value:?} must start with /"));
                    }
                    PathMatch::Prefix(normalise_prefix(&value))
                }
                HttpRouteRulesMatchesPathType::RegularExpression => {
                    anchored_regex(&value).map_err(|e| {
                        format!("path.value: invalid regular expression {value:?}: {e}")
                    })?;
                    PathMatch::Regex(value)
                }
            }
        }
    };
    let mut headers = Vec::new();
    for (i, h) in m.headers.as_deref().unwrap_or_default().iter().enumerate() {
        let regex = matches!(
            h.r#type,
            Some(HttpRouteRulesMatchesHeadersType::RegularExpression)
        );
        let name = h.name.to_ascii_lowercase();
        // The spec: with several matches on one header name, only the first counts.
        if headers.iter().any(|v: &ValueMatch| v.name == name) {
            continue;
        }
        headers.push(ValueMatch {
            name,
            value: string_match(regex, &h.value).map_err(|e| format!("headers[{i}].value: {e}"))?,
        });
    }
    let mut query = Vec::new();
    for (i, q) in m
        .query_params
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let regex = matches!(
            q.r#type,
            Some(HttpRouteRulesMatchesQueryParamsType::RegularExpression)
        );
        if query.iter().any(|v: &ValueMatch| v.name == q.name) {
            continue;
        }
        query.push(ValueMatch {
            name: q.name.clone(),
            value: string_match(regex, &q.value)
                .map_err(|e| format!("queryParams[{i}].value: {e}"))?,
        });
    }
    let method = m.method.as_ref().map(|m| {
        use HttpRouteRulesMatchesMethod::*;
        match m {
            Get => "GET",
            Head => "HEAD",
            Post => "POST",
            Put => "PUT",
            Delete => "DELETE",
            Connect => "CONNECT",
            Options => "OPTIONS",
            Trace => "TRACE",
            Patch => "PATCH",
        }
        .to_string()
    });
    Ok(RouteMatch {
        path,
        method,
        headers,
        query,
    })
}

/// PathPrefix compares path elements, so a trailing slash means nothing.
pub fn normalise_prefix(value: &str) -> String {
    let trimmed = value.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.into()
    }
}

fn string_match(regex: bool, value: &str) -> Result<StringMatch, String> {
    if regex {
        anchored_regex(value).map_err(|e| format!("invalid regular expression {value:?}: {e}"))?;
        Ok(StringMatch::Regex(value.into()))
    } else {
        Ok(StringMatch::Exact(value.into()))
    }
}

fn path_modifier(
    full: &Option<String>,
    prefix: &Option<String>,
    is_full: bool,
) -> Result<PathModifier, String> {
    if is_full {
        full.clone()
            .map(PathModifier::ReplaceFullPath)
            .ok_or_else(|| "path.replaceFullPath is required for type ReplaceFullPath".into())
    } else {
        prefix
            .clone()
            .map(PathModifier::ReplacePrefixMatch)
            .ok_or_else(|| "path.replacePrefixMatch is required for type ReplacePrefixMatch".into())
    }
}

fn redirect_status(code: Option<i64>) -> Result<u16, String> {
    match code.unwrap_or(302) {
        c @ (301 | 302 | 303 | 307 | 308) => Ok(c as u16),
        c => Err(format!(
            "requestRedirect.statusCode {c} is not one of 301, 302, 303, 307, 308"
        )),
    }
}

fn port(p: Option<i32>) -> Result<Option<u16>, String> {
    p.map(|p| u16::try_from(p).map_err(|_| format!("port {p} is out of range")))
        .transpose()
}

/// A rule filter; a mirror still needs its backend resolved.
enum Compiled {
    Filter(Filter),
    /// The backend and the mirrored fraction (numerator, denominator).
    Mirror(Ref, (u32, u32)),
}

fn compile_filter(f: &HttpRouteRulesFilters) -> Result<Compiled, String> {
    use HttpRouteRulesFiltersType as T;
    let missing = |what: &str| format!("type {what} needs its {what} field");
    let filter = match f.r#type {
        T::RequestHeaderModifier => {
            let m = f
                .request_header_modifier
                .as_ref()
                .ok_or_else(|| missing("requestHeaderModifier"))?;
            Filter::RequestHeaders(header_modifier!(m))
        }
        T::ResponseHeaderModifier => {
            let m = f
                .response_header_modifier
                .as_ref()
                .ok_or_else(|| missing("responseHeaderModifier"))?;
            Filter::ResponseHeaders(header_modifier!(m))
        }
        T::RequestRedirect => {
            let r = f
                .request_redirect
                .as_ref()
                .ok_or_else(|| missing("requestRedirect"))?;
            Filter::Redirect(Redirect {
                scheme: r.scheme.as_ref().map(|s| match s {
                    HttpRouteRulesFiltersRequestRedirectScheme::Http => "http".into(),
                    HttpRouteRulesFiltersRequestRedirectScheme::Https => "https".into(),
                }),
                hostname: r.hostname.clone(),
                path: r
                    .path
                    .as_ref()
                    .map(|p| {
                        path_modifier(
                            &p.replace_full_path,
                            &p.replace_prefix_match,
                            matches!(
                                p.r#type,
                                HttpRouteRulesFiltersRequestRedirectPathType::ReplaceFullPath
                            ),
                        )
                    })
                    .transpose()?,
                port: port(r.port)?,
                status: redirect_status(r.status_code)?,
                drop_query: false,
                strip_trailing_slash: false,
            })
        }
        T::UrlRewrite => {
            let r = f
                .url_rewrite
                .as_ref()
                .ok_or_else(|| missing("urlRewrite"))?;
            Filter::Rewrite(Rewrite {
                hostname: r.hostname.clone(),
                path: r
                    .path
                    .as_ref()
                    .map(|p| {
                        path_modifier(
                            &p.replace_full_path,
                            &p.replace_prefix_match,
                            matches!(
                                p.r#type,
                                HttpRouteRulesFiltersUrlRewritePathType::ReplaceFullPath
                            ),
                        )
                    })
                    .transpose()?,
            })
        }
        T::RequestMirror => {
            let m = f
                .request_mirror
                .as_ref()
                .ok_or_else(|| missing("requestMirror"))?;
            let fraction = match (&m.fraction, m.percent) {
                (Some(_), Some(_)) => {
                    return Err("requestMirror: set fraction or percent, not both".into());
                }
                (Some(fr), None) => (fr.numerator, fr.denominator.unwrap_or(100)),
                (None, Some(p)) => (p, 100),
                (None, None) => (1, 1),
            };
            let fraction = match (u32::try_from(fraction.0), u32::try_from(fraction.1)) {
                (Ok(n), Ok(d)) if d > 0 && n <= d => (n, d),
                _ => {
                    return Err(format!(
                        "requestMirror: {}/{} is not a fraction within 0..=1",
                        fraction.0, fraction.1
                    ));
                }
            };
            let b = &m.backend_ref;
            return Ok(Compiled::Mirror(
                Ref {
                    group: b.group.clone(),
                    kind: b.kind.clone(),
                    namespace: b.namespace.clone(),
                    name: b.name.clone(),
                    port: b.port,
                },
                fraction,
            ));
        }
        T::Cors => {
            let c = f.cors.as_ref().ok_or_else(|| missing("cors"))?;
            Filter::Cors(Cors {
                allow_origins: c.allow_origins.clone().unwrap_or_default(),
                allow_methods: c.allow_methods.clone().unwrap_or_default(),
                allow_headers: c.allow_headers.clone().unwrap_or_default(),
                expose_headers: c.expose_headers.clone().unwrap_or_default(),
                allow_credentials: c.allow_credentials.unwrap_or(false),
                max_age: c
                    .max_age
                    .map(|a| u32::try_from(a).map_err(|_| format!("cors.maxAge: {a} is negative")))
                    .transpose()?,
            })
        }
        T::ExtensionRef | T::ExternalAuth => {
            return Err(format!(
                "filter type {} is not supported",
                serde_json::to_value(&f.r#type)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            ));
        }
    };
    Ok(Compiled::Filter(filter))
}

fn compile_backend_filter(f: &HttpRouteRulesBackendRefsFilters) -> Result<Filter, String> {
    use HttpRouteRulesBackendRefsFiltersType as T;
    match f.r#type {
        T::RequestHeaderModifier => {
            let m = f
                .request_header_modifier
                .as_ref()
                .ok_or("type RequestHeaderModifier needs requestHeaderModifier")?;
            Ok(Filter::RequestHeaders(header_modifier!(m)))
        }
        T::ResponseHeaderModifier => {
            let m = f
                .response_header_modifier
                .as_ref()
                .ok_or("type ResponseHeaderModifier needs responseHeaderModifier")?;
            Ok(Filter::ResponseHeaders(header_modifier!(m)))
        }
        _ => Err(format!(
            "backendRef filter type {} is not supported yet",
            serde_json::to_value(&f.r#type)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default()
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::{HTTP_ALL, condition, gateway_with, is, routes, translated};
    use gatehouse_model::ir::BackendTarget;

    fn route(parent: &str, spec: &str) -> String {
        gateway_with(HTTP_ALL)
            + &format!(
                "---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: apps}}
spec:
  parentRefs: [{parent}]
{spec}"
            )
    }

    const TO_WEB: &str = "  rules: [{backendRefs: [{name: web, port: 80}]}]\n";

    #[test]
    fn a_section_the_gateway_lacks_is_no_matching_parent() {
        let out = translated(&route(
            "{name: gw, namespace: infra, sectionName: nope}",
            TO_WEB,
        ));
        assert_eq!(
            condition(&out, "HTTPRoute apps/r", "Accepted"),
            is("False", "NoMatchingParent")
        );
        assert!(routes(&out).is_empty());
    }

    #[test]
    fn hostnames_the_listener_does_not_serve_are_not_attached() {
        let yaml = route("{name: gw, namespace: infra}", TO_WEB)
            .replace("from: All}}}]", "from: All}}, hostname: a.example}]")
            + "  hostnames: [b.example]\n";
        let out = translated(&yaml);
        assert_eq!(
            condition(&out, "HTTPRoute apps/r", "Accepted"),
            is("False", "NoMatchingListenerHostname")
        );
    }

    #[test]
    fn a_backend_in_another_namespace_needs_a_reference_grant() {
        let spec = "  rules: [{backendRefs: [{name: web, namespace: other, port: 80}]}]\n";
        let out = translated(&route("{name: gw, namespace: infra}", spec));
        assert_eq!(
            condition(&out, "HTTPRoute apps/r", "ResolvedRefs"),
            is("False", "RefNotPermitted")
        );
        // Accepted all the same, and the rule answers 500 (an invalid backend).
        assert_eq!(
            condition(&out, "HTTPRoute apps/r", "Accepted"),
            is("True", "Accepted")
        );
        let (_, r) = &routes(&out)[0];
        assert!(matches!(r.backends[0].target, BackendTarget::Invalid(_)));
    }

    #[test]
    fn a_resolved_backend_is_a_cluster_of_the_service_port() {
        let out = translated(&route("{name: gw, namespace: infra}", TO_WEB));
        let (host, r) = &routes(&out)[0];
        assert_eq!(host, "*");
        let BackendTarget::Cluster(key) = &r.backends[0].target else {
            panic!("{:?}", r.backends)
        };
        let cluster = out
            .config
            .clusters
            .iter()
            .find(|c| &c.key == key)
            .expect("cluster");
        assert_eq!(cluster.endpoints.len(), 1);
        assert_eq!(cluster.endpoints[0].to_string(), "10.0.0.1:8080");
    }
}
