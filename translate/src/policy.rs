//! TrafficPolicy (gatehouse.dev): the policies Gateway API has no field for, attached to
//! HTTPRoutes or to one named rule by targetRefs. `compile` turns a policy spec into model
//! fields for both front-ends: ingress-nginx annotations are read into the same spec
//! (`nginx::parse`), so an Ingress moved to an HTTPRoute keeps them.
//!
//! Several policies on one rule merge field by field: a rule policy's field over a route
//! policy's, and between two on the same target the oldest (then namespace/name).

use crate::backends::{BackendRef, Backends, ClusterVariant, PortRef};
use crate::gateways::PlannedGateway;
use crate::settings::GATEWAY_GROUP;
use crate::status::{Condition, ParentRef, ParentStatus, StatusReport, reason};
use crate::store::{ObjectKey, Store};
use gatehouse_api::{BackendProtocol, RedirectPolicy, TrafficPolicy, TrafficPolicySpec};
use gatehouse_model::ir::{
    Balance, CookieAffinity, ExternalAuth, Filter, Hsts, NginxCors, PathMatch, PathModifier,
    RateLimit, Redirect, Rewrite, Route, SourceAccess, UpstreamProtocol, UpstreamTls,
    UpstreamTrust,
};
use std::collections::{BTreeMap, BTreeSet};

pub const KIND: &str = "TrafficPolicy";

/// What a policy applies to: a route, or one rule of it by name.
type Target = (ObjectKey, Option<String>);

/// A valid policy's settings, by target, oldest first.
#[derive(Debug, Default)]
pub struct TrafficPolicies {
    by_target: BTreeMap<Target, Vec<(ObjectKey, TrafficPolicySpec)>>,
    /// Why each policy is not in force: (reason, message).
    refused: BTreeMap<ObjectKey, (&'static str, String)>,
}

/// The merged policy of one rule, compiled.
#[derive(Debug, Clone, Default)]
pub struct RulePolicy {
    pub rate_limit: Option<RateLimit>,
    pub access: Option<SourceAccess>,
    pub max_request_body: Option<u64>,
    pub hsts: Option<Hsts>,
    pub balance: Option<Balance>,
    pub external_auth: Option<ExternalAuth>,
    pub connect_ms: Option<u64>,
    pub read_idle_ms: Option<u64>,
    pub write_idle_ms: Option<u64>,
    pub variant: Option<ClusterVariant>,
    pub https_redirect: bool,
    pub rewrite_target: Option<String>,
    pub redirect: Option<RedirectPolicy>,
    pub cors: Option<NginxCors>,
}

impl RulePolicy {
    /// Sets the policy's fields on a route compiled from an HTTPRoute rule.
    pub fn apply(&self, r: &mut Route) {
        r.rate_limit = self.rate_limit.clone().map(Box::new);
        r.access = self.access.clone().map(Box::new);
        r.max_request_body = self.max_request_body;
        r.hsts.clone_from(&self.hsts);
        r.balance = self.balance.clone().map(Box::new);
        r.external_auth = self.external_auth.clone().map(Box::new);
        r.timeouts.connect_ms = self.connect_ms.or(r.timeouts.connect_ms);
        r.timeouts.read_idle_ms = self.read_idle_ms.or(r.timeouts.read_idle_ms);
        r.timeouts.write_idle_ms = self.write_idle_ms.or(r.timeouts.write_idle_ms);
        if let Some(c) = &self.cors {
            r.filters.insert(0, Filter::NginxCors(c.clone()));
        }
        if let Some(style) = &self.redirect {
            for f in &mut r.filters {
                if let Filter::Redirect(redirect) = f {
                    redirect.drop_query = style.drop_query;
                    redirect.strip_trailing_slash = style.strip_trailing_slash;
                }
            }
        }
        if let (Some(t), PathMatch::Regex(_)) = (&self.rewrite_target, &r.matcher.path) {
            r.filters.push(Filter::Rewrite(Rewrite {
                hostname: None,
                path: Some(PathModifier::RegexTemplate(t.clone())),
            }));
        }
    }
}

/// On a plain-HTTP listener, a route answers 308 with the https:// URL (ingress-nginx's
/// ssl-redirect: trailing slash dropped), unless it redirects already or serves an ACME
/// HTTP-01 challenge.
pub fn https_redirect(r: &mut Route) {
    let path = match &r.matcher.path {
        PathMatch::Exact(p) | PathMatch::Prefix(p) => p.as_str(),
        PathMatch::Regex(p) => p.strip_prefix("(?i)").unwrap_or(p),
    };
    let redirects = r
        .filters
        .iter()
        .any(|f| matches!(f, Filter::Redirect(_) | Filter::RedirectTo(_)));
    if redirects || path.starts_with("/.well-known/acme-challenge") {
        return;
    }
    r.filters = vec![Filter::Redirect(Redirect {
        scheme: Some("https".into()),
        hostname: None,
        path: None,
        port: None,
        status: 308,
        drop_query: false,
        strip_trailing_slash: true,
    })];
}

/// HSTS as the model carries it; None when turned off.
pub fn hsts(h: &gatehouse_api::Hsts) -> Option<Hsts> {
    h.enabled.then_some(Hsts {
        max_age: h.max_age,
        include_sub_domains: h.include_sub_domains,
        preload: h.preload,
    })
}

/// How a backend-protocol is spoken: HTTPS and GRPCS are TLS without verification and
/// without SNI (nginx's `proxy_ssl_verify off`); GRPC is cleartext HTTP/2.
pub fn backend_variant(protocol: BackendProtocol) -> Option<ClusterVariant> {
    let insecure = || {
        Some(UpstreamTls {
            hostname: String::new(),
            trust: UpstreamTrust::Insecure,
            subject_alt_names: vec![],
        })
    };
    match protocol {
        BackendProtocol::Http => None,
        BackendProtocol::Https => Some(ClusterVariant {
            name: "https",
            protocol: UpstreamProtocol::Http1,
            tls: insecure(),
        }),
        BackendProtocol::Grpc => Some(ClusterVariant {
            name: "grpc",
            protocol: UpstreamProtocol::H2c,
            tls: None,
        }),
        BackendProtocol::Grpcs => Some(ClusterVariant {
            name: "grpcs",
            protocol: UpstreamProtocol::H2c,
            tls: insecure(),
        }),
    }
}

impl TrafficPolicies {
    pub fn plan(store: &Store) -> Self {
        let mut policies: Vec<&TrafficPolicy> =
            store.traffic_policies.values().map(|p| &**p).collect();
        policies.sort_by_key(|p| crate::meta::age(&p.metadata));
        let mut out = TrafficPolicies::default();
        for policy in policies {
            let key = ObjectKey::of(policy);
            if let Err(e) = validate(&policy.spec) {
                out.refused.insert(key, (reason::INVALID, e));
                continue;
            }
            let mut missing = Vec::new();
            for (i, t) in policy.spec.target_refs.iter().enumerate() {
                if t.group != GATEWAY_GROUP || t.kind != "HTTPRoute" {
                    missing.push(format!(
                        "spec.targetRefs[{i}]: {}/{} is not an HTTPRoute",
                        t.group, t.kind
                    ));
                    continue;
                }
                let route_key = ObjectKey::new(key.namespace.as_str(), t.name.as_str());
                let Some(route) = store.http_routes.get(&route_key) else {
                    missing.push(format!(
                        "spec.targetRefs[{i}]: HTTPRoute {route_key} not found"
                    ));
                    continue;
                };
                if let Some(rule) = &t.section_name {
                    let named = route
                        .spec
                        .rules
                        .iter()
                        .flatten()
                        .any(|r| r.name.as_deref() == Some(rule.as_str()));
                    if !named {
                        missing.push(format!(
                            "spec.targetRefs[{i}]: HTTPRoute {route_key} has no rule named {rule:?}"
                        ));
                        continue;
                    }
                }
                out.by_target
                    .entry((route_key, t.section_name.clone()))
                    .or_default()
                    .push((key.clone(), policy.spec.clone()));
            }
            if !missing.is_empty() && missing.len() == policy.spec.target_refs.len() {
                out.refused
                    .insert(key, (reason::TARGET_NOT_FOUND, missing.join("; ")));
            }
        }
        out
    }

    /// The policy in force for one rule of a route, compiled; None when none applies.
    pub fn for_rule(
        &self,
        route: &ObjectKey,
        rule_name: Option<&str>,
        backends: &mut Backends<'_>,
    ) -> Option<RulePolicy> {
        let rule_level = rule_name
            .and_then(|n| self.by_target.get(&(route.clone(), Some(n.to_string()))))
            .into_iter()
            .flatten();
        let route_level = self
            .by_target
            .get(&(route.clone(), None))
            .into_iter()
            .flatten();
        let mut merged = TrafficPolicySpec::default();
        let mut zone = None;
        let mut any = false;
        for (key, p) in rule_level.chain(route_level) {
            any = true;
            if merged.rate_limit.is_none() && p.rate_limit.is_some() {
                zone = Some(format!("{KIND} {key}"));
            }
            merge(&mut merged, p);
        }
        any.then(|| compile(&merged, zone.unwrap_or_default(), backends))
    }

    /// Status per policy: Accepted for each Gateway of its target routes, or why not.
    pub fn report(
        &self,
        store: &Store,
        gateways: &BTreeMap<ObjectKey, PlannedGateway>,
        status: &mut StatusReport,
    ) {
        let mut ancestors: BTreeMap<ObjectKey, BTreeSet<ObjectKey>> = BTreeMap::new();
        for ((route_key, _), policies) in &self.by_target {
            let Some(route) = store.http_routes.get(route_key) else {
                continue;
            };
            for p in route.spec.parent_refs.iter().flatten() {
                if let Some((gw, _)) = crate::gateways::parent(
                    gateways,
                    p.group.as_deref(),
                    p.kind.as_deref(),
                    p.namespace.as_deref().unwrap_or(&route_key.namespace),
                    &p.name,
                ) {
                    for (key, _) in policies {
                        ancestors.entry(key.clone()).or_default().insert(gw.clone());
                    }
                }
            }
        }
        for policy in store.traffic_policies.values() {
            let key = ObjectKey::of(&**policy);
            let generation = policy.metadata.generation.unwrap_or(0);
            let condition = match self.refused.get(&key) {
                Some((r, msg)) => Condition::new(reason::ACCEPTED, false, r, msg.clone()),
                None => Condition::new(
                    reason::ACCEPTED,
                    true,
                    reason::ACCEPTED,
                    "in force on its target routes",
                ),
            };
            let gws = ancestors.remove(&key).unwrap_or_default();
            // A refused policy is reported against the Gateways of Gatehouse's class.
            let gws: Vec<ObjectKey> = if gws.is_empty() && self.refused.contains_key(&key) {
                gateways
                    .values()
                    .filter(|g| !g.synthetic)
                    .map(|g| g.key.clone())
                    .take(1)
                    .collect()
            } else {
                gws.into_iter().collect()
            };
            if gws.is_empty() {
                continue; // Its routes are not on our Gateways: not ours to report.
            }
            let st = status.entry(KIND, &key.namespace, &key.name, generation);
            for gw in gws {
                let mut c = condition.clone();
                c.observed_generation = generation;
                st.parents.push(ParentStatus {
                    parent_ref: ParentRef {
                        group: GATEWAY_GROUP.into(),
                        kind: "Gateway".into(),
                        namespace: gw.namespace.clone(),
                        name: gw.name.clone(),
                        section_name: None,
                        port: None,
                    },
                    conditions: vec![c],
                });
            }
        }
    }
}

/// Fields `over` sets that `into` does not yet.
fn merge(into: &mut TrafficPolicySpec, over: &TrafficPolicySpec) {
    macro_rules! fill {
        ($($f:ident),*) => {
            $(if into.$f.is_none() {
                into.$f = over.$f.clone();
            })*
        };
    }
    fill!(
        rate_limit,
        source_access,
        max_request_body_bytes,
        hsts,
        session_affinity,
        external_auth,
        proxy_timeouts,
        backend_protocol,
        https_redirect,
        rewrite_target,
        redirect,
        cors
    );
}

/// Checks what the schema cannot: networks, names, URLs. The message names the field.
pub fn validate(p: &TrafficPolicySpec) -> Result<(), String> {
    let networks = |field: &str, list: &[String]| -> Result<(), String> {
        for (i, n) in list.iter().enumerate() {
            gatehouse_model::ir::parse_network(n)
                .map_err(|e| format!("spec.{field}[{i}]: {n:?}: {e}"))?;
        }
        Ok(())
    };
    if let Some(r) = &p.rate_limit {
        if r.requests_per_second.is_none()
            && r.requests_per_minute.is_none()
            && r.connections.is_none()
        {
            return Err("spec.rateLimit: sets no limit".into());
        }
        if [r.requests_per_second, r.requests_per_minute, r.connections].contains(&Some(0))
            || r.burst_multiplier == Some(0)
        {
            return Err("spec.rateLimit: limits and burstMultiplier must be positive".into());
        }
        networks("rateLimit.exempt", &r.exempt)?;
    }
    if let Some(a) = &p.source_access {
        networks("sourceAccess.allow", &a.allow)?;
        networks("sourceAccess.deny", &a.deny)?;
    }
    if let Some(s) = &p.session_affinity {
        if let Some(c) = &s.cookie {
            if c.name.is_empty() || !crate::nginx::values::valid_chars(&c.name, "-_.") {
                return Err(format!(
                    "spec.sessionAffinity.cookie.name: {:?} is not a cookie name",
                    c.name
                ));
            }
            if let Some(ss) = &c.same_site
                && !["none", "lax", "strict"].contains(&ss.to_ascii_lowercase().as_str())
            {
                return Err(format!(
                    "spec.sessionAffinity.cookie.sameSite: {ss:?} is not None, Lax or Strict"
                ));
            }
        }
        if let Some(h) = &s.hash_by {
            crate::nginx::values::hash_key(h)
                .map_err(|e| format!("spec.sessionAffinity.hashBy: {e}"))?;
        }
    }
    if let Some(a) = &p.external_auth {
        crate::nginx::values::auth_url(&a.url)
            .map_err(|e| format!("spec.externalAuth.url: {:?} {e}", a.url))?;
        if let Some(m) = &a.method
            && !crate::nginx::values::HTTP_METHODS.contains(&m.as_str())
        {
            return Err(format!(
                "spec.externalAuth.method: {m:?} is not an HTTP method"
            ));
        }
        if let Some(s) = &a.signin
            && !(s.starts_with("http://") || s.starts_with("https://"))
        {
            return Err(format!(
                "spec.externalAuth.signin: {s:?} is not an http(s) URL"
            ));
        }
    }
    if let Some(t) = &p.rewrite_target
        && !(t.starts_with('/') || t.starts_with('$'))
    {
        return Err(format!("spec.rewriteTarget: {t:?} is not a path"));
    }
    if let Some(c) = &p.cors
        && c.allow_origins.is_empty()
    {
        return Err("spec.cors.allowOrigins: is empty".into());
    }
    Ok(())
}

/// Compiles a policy spec into the model fields a route carries: the one path from
/// TrafficPolicy fields (an HTTPRoute's merged policies) and ingress-nginx annotations
/// (read into the same spec by `nginx::parse`) to the model, with one set of defaults.
/// `zone` names the rate-limit zone (one per policy, or per Ingress).
pub fn compile(p: &TrafficPolicySpec, zone: String, backends: &mut Backends<'_>) -> RulePolicy {
    let timeouts = p.proxy_timeouts.clone().unwrap_or_default();
    RulePolicy {
        rate_limit: p.rate_limit.as_ref().map(|r| RateLimit {
            zone,
            per_second: r.requests_per_second,
            per_minute: r.requests_per_minute,
            burst_multiplier: r.burst_multiplier.unwrap_or(5),
            connections: r.connections,
            exempt: r.exempt.clone(),
            status: 503,
            ipv6_prefix: r.ipv6_prefix,
        }),
        access: p.source_access.as_ref().map(|a| SourceAccess {
            deny: a.deny.clone(),
            allow: a.allow.clone(),
            status: 403,
        }),
        max_request_body: p.max_request_body_bytes.filter(|&n| n > 0),
        hsts: p.hsts.as_ref().and_then(hsts),
        balance: p
            .session_affinity
            .as_ref()
            .and_then(|s| match (&s.cookie, &s.hash_by) {
                (Some(c), _) => Some(Balance::Cookie(CookieAffinity {
                    name: c.name.clone(),
                    path: c.path.clone(),
                    max_age: c.max_age,
                    expires: c.expires,
                    same_site: c.same_site.clone(),
                    domain: c.domain.clone(),
                    secure: c.secure,
                    persistent: c.persistent,
                })),
                (None, Some(h)) => crate::nginx::values::hash_key(h).ok().map(Balance::Hash),
                (None, None) => None,
            }),
        external_auth: p.external_auth.as_ref().and_then(|a| {
            let (host, port) = crate::nginx::values::auth_url(&a.url).ok()?;
            Some(ExternalAuth {
                url: a.url.clone(),
                cluster: service_cluster(&host, port, backends),
                method: a.method.clone().unwrap_or_else(|| "GET".into()),
                response_headers: a.response_headers.clone(),
                signin: a.signin.clone(),
            })
        }),
        connect_ms: timeouts.connect_seconds.map(|s| s * 1000),
        read_idle_ms: timeouts.read_seconds.map(|s| s * 1000),
        write_idle_ms: timeouts.send_seconds.map(|s| s * 1000),
        variant: p.backend_protocol.and_then(backend_variant),
        https_redirect: p.https_redirect.unwrap_or(false),
        rewrite_target: p.rewrite_target.clone(),
        redirect: p.redirect.clone(),
        cors: p.cors.as_ref().map(|c| NginxCors {
            allow_origins: c.allow_origins.clone(),
            allow_methods: c.allow_methods.clone(),
            allow_headers: c.allow_headers.clone(),
            expose_headers: c.expose_headers.clone(),
            allow_credentials: c.allow_credentials,
            max_age: c.max_age,
        }),
    }
}

/// The cluster of an external auth URL naming a Service of the cluster (`svc.ns`,
/// `svc.ns.svc[.cluster.local]`), reached as the URL would be through cluster DNS.
pub fn service_cluster(host: &str, port: u16, backends: &mut Backends<'_>) -> Option<String> {
    let (svc, svc_ns) = crate::backends::service_host(host)?;
    backends
        .resolve(
            ("", "Service", svc_ns),
            BackendRef {
                group: "",
                kind: "Service",
                namespace: svc_ns,
                name: svc,
                port: Some(PortRef::Number(i32::from(port))),
            },
        )
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{HTTP_ALL, condition, gateway_with, is, routes, translated};

    /// A route `apps/r` with one named rule, and policies (YAML documents) on it.
    fn with_policies(policies: &str) -> String {
        gateway_with(HTTP_ALL)
            + "---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: apps}
spec:
  parentRefs: [{name: gw, namespace: infra}]
  hostnames: [app.example]
  rules: [{name: main, backendRefs: [{name: web, port: 80}]}]
" + policies
    }

    fn policy(name: &str, target: &str, spec: &str) -> String {
        format!(
            "---
apiVersion: gatehouse.dev/v1alpha1
kind: TrafficPolicy
metadata: {{name: {name}, namespace: apps}}
spec:
  targetRefs: [{target}]
{spec}"
        )
    }

    #[test]
    fn a_rule_policy_wins_field_by_field_over_a_route_policy() {
        let route_wide = policy(
            "wide",
            "{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}",
            "  maxRequestBodyBytes: 100\n  proxyTimeouts: {connectSeconds: 3}\n",
        );
        let rule = policy(
            "rule",
            "{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r, sectionName: main}",
            "  maxRequestBodyBytes: 200\n",
        );
        let out = translated(&with_policies(&(route_wide + &rule)));
        let (_, r) = &routes(&out)[0];
        assert_eq!(r.max_request_body, Some(200), "the rule's");
        assert_eq!(
            r.timeouts.connect_ms,
            Some(3000),
            "the route's, unset on the rule"
        );
        assert_eq!(
            condition(&out, "TrafficPolicy apps/wide", "Accepted"),
            is("True", "Accepted")
        );
    }

    #[test]
    fn a_policy_on_a_missing_route_is_target_not_found() {
        let p = policy(
            "lost",
            "{group: gateway.networking.k8s.io, kind: HTTPRoute, name: nope}",
            "  maxRequestBodyBytes: 1\n",
        );
        let out = translated(&with_policies(&p));
        assert_eq!(
            condition(&out, "TrafficPolicy apps/lost", "Accepted"),
            is("False", "TargetNotFound")
        );
    }

    #[test]
    fn validation_names_the_field() {
        let mut p = TrafficPolicySpec {
            source_access: Some(gatehouse_api::SourceAccessPolicy {
                allow: vec!["10.0.0.0/8".into(), "nope".into()],
                deny: vec![],
            }),
            ..Default::default()
        };
        let e = validate(&p).expect_err("a bad network");
        assert!(e.starts_with("spec.sourceAccess.allow[1]"), "{e}");
        p.source_access = None;
        p.rewrite_target = Some("relative".into());
        assert!(validate(&p).is_err());
    }

    /// One shape: ingress-nginx annotations read into the spec, and the same fields
    /// written as a TrafficPolicy on an HTTPRoute, compile to the same route fields.
    #[test]
    fn annotations_and_a_traffic_policy_compile_alike() {
        let annotations: std::collections::BTreeMap<String, String> = [
            ("limit-rps", "5"),
            ("whitelist-source-range", "10.0.0.0/8"),
            ("proxy-body-size", "1m"),
            ("proxy-read-timeout", "30"),
            ("affinity", "cookie"),
            ("enable-cors", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (format!("{}{k}", crate::nginx::PREFIX), v.to_string()))
        .collect();
        let parsed = crate::nginx::parse(&annotations).policy;
        let written = policy(
            "p",
            "{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}",
            "  rateLimit: {requestsPerSecond: 5, burstMultiplier: 5}
  sourceAccess: {allow: [10.0.0.0/8]}
  maxRequestBodyBytes: 1048576
  proxyTimeouts: {readSeconds: 30}
  sessionAffinity: {cookie: {name: INGRESSCOOKIE}}
  cors:
    allowOrigins: ['*']
    allowMethods: 'GET, PUT, POST, DELETE, PATCH, OPTIONS'
    allowHeaders: 'DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization'
    allowCredentials: true
    maxAge: 1728000
",
        );
        let store = crate::test_support::store_from(&with_policies(&written));
        let from_crd = &store.traffic_policies.values().next().expect("policy").spec;
        assert_eq!(
            TrafficPolicySpec {
                target_refs: vec![],
                ..from_crd.clone()
            },
            parsed
        );
        let mut backends = Backends::new(&store);
        let a = compile(&parsed, "zone".into(), &mut backends);
        let b = compile(from_crd, "zone".into(), &mut backends);
        let (mut ra, mut rb) = (route(), route());
        a.apply(&mut ra);
        b.apply(&mut rb);
        assert_eq!(ra, rb);
        assert!(ra.rate_limit.is_some() && ra.access.is_some() && ra.balance.is_some());
    }

    fn route() -> Route {
        Route::new(
            gatehouse_model::ir::RouteSource {
                kind: "HTTPRoute".into(),
                namespace: "apps".into(),
                name: "r".into(),
                rule: 0,
            },
            gatehouse_model::ir::RouteMatch::path_only(PathMatch::Prefix("/".into())),
        )
    }
}
