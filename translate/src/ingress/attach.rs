//! One Ingress's rules as routes on its Gateway's listeners: admission (refused annotations,
//! the Gateway, listeners that allow the namespace), the certificates it offers, its
//! routes (app-root, from-to-www-redirect, paths in nginx's regex mode or not, canaries,
//! the defaultBackend), placed on every listener with the HTTPS redirect where it applies.
//!
//! The annotations' policy is compiled by `policy::compile`, the function HTTPRoute's
//! TrafficPolicies go through, so an Ingress and its converted HTTPRoute carry the same
//! model fields.

use super::canary::{Canaries, canary_routes};
use super::classes::{ClassDefaults, IngressPlan, ServedIngress, served};
use super::hosts::HostFacts;
use super::service_backend::service_ref;
use crate::backends::Backends;
use crate::gateways::PlannedGateway;
use crate::hostnames::intersect;
use crate::httproute::normalise_prefix;
use crate::meta::age;
use crate::nginx;
use crate::policy::{self, RulePolicy};
use crate::route_tables::{Contribution, Entry, Order};
use crate::status::{Condition, ObjectStatus, reason};
use crate::store::{ObjectKey, Store};
use crate::tls_material::certificate_material;
use gatehouse_model::ir::{
    BackendTarget, Filter, HostMatch, PathMatch, PathModifier, Protocol, Redirect, Route,
    RouteMatch, RouteSource, SniCertificate, SourceAccess, WeightedBackend,
};
use k8s_openapi::api::networking::v1::{HTTPIngressPath, IngressBackend};
use std::collections::BTreeMap;

/// Translates every Ingress of our classes at once (hosts, canaries and regex mode are
/// shared across Ingresses): entries, certificates, statuses and clusters go into `out`.
pub fn attach_all(
    store: &Store,
    plan: &IngressPlan,
    gateways: &BTreeMap<ObjectKey, PlannedGateway>,
    backends: &mut Backends<'_>,
    out: &mut Contribution,
) {
    let ours = served(store, plan);
    let hosts = HostFacts::of(&ours);
    let mut canaries = Canaries::collect(&ours, backends);
    for o in &ours {
        if canaries.is_canary(o.ingress) {
            continue; // Joins its primary's routes below; no routes of its own.
        }
        let class = plan.defaults(o.ingress);
        let Some((gw, listeners)) = admit(store, o, &class, gateways, out) else {
            continue;
        };
        IngressRoutes {
            served: o,
            class,
            hosts: &hosts,
            gateway: gw,
            listeners,
            key: ObjectKey::of(o.ingress),
            problems: Vec::new(),
        }
        .attach(store, &mut canaries, backends, out);
    }
    canaries.report(&mut out.status);
}

/// The status entry of an Ingress in `out`.
fn status_of<'o>(out: &'o mut Contribution, o: &ServedIngress) -> &'o mut ObjectStatus {
    let key = ObjectKey::of(o.ingress);
    out.status.entry(
        "Ingress",
        &key.namespace,
        &key.name,
        o.ingress.metadata.generation.unwrap_or(0),
    )
}

/// Whether an Ingress is served, with its Gateway and the listeners (by index) that take
/// it; otherwise its status says why not. Ignored annotations are reported either way.
fn admit<'g>(
    store: &Store,
    o: &ServedIngress,
    class: &ClassDefaults,
    gateways: &'g BTreeMap<ObjectKey, PlannedGateway>,
    out: &mut Contribution,
) -> Option<(&'g PlannedGateway, Vec<usize>)> {
    let (gateway_key, annotations) = (o.gateway, &o.annotations);
    let ns = o.ingress.metadata.namespace.clone().unwrap_or_default();
    let st = status_of(out, o);
    if let Some(why) = &annotations.refused {
        st.set(Condition::new(
            reason::ACCEPTED,
            false,
            reason::UNSUPPORTED_VALUE,
            why.clone(),
        ));
        return None;
    }
    if !annotations.warnings.is_empty() {
        st.set(Condition::new(
            reason::ANNOTATIONS,
            false,
            reason::IGNORED,
            annotations.warnings.join("; "),
        ));
    }
    let Some(gw) = gateways.get(gateway_key) else {
        st.set(Condition::new(
            reason::ACCEPTED,
            false,
            reason::NO_MATCHING_PARENT,
            format!("Gateway {gateway_key} named by the IngressClass does not exist or is not of a Gatehouse GatewayClass"),
        ));
        return None;
    };
    let ns_labels = store.namespace_labels(&ns);
    let listeners: Vec<usize> = gw
        .listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| l.admits(&ns, &ns_labels))
        .filter(|(_, l)| class.sections.is_empty() || class.sections.contains(&l.name))
        .map(|(i, _)| i)
        .collect();
    if listeners.is_empty() {
        st.set(Condition::new(
            reason::ACCEPTED,
            false,
            reason::NOT_ALLOWED_BY_LISTENERS,
            format!("no listener of Gateway {gateway_key} allows namespace {ns}"),
        ));
        return None;
    }
    st.addresses = gw.published.clone();
    Some((gw, listeners))
}

/// A route of the Ingress for one host, with its place among the routes of its path and
/// whether plain HTTP to it is redirected to HTTPS.
struct HostRoute {
    host: HostMatch,
    route: Route,
    match_index: usize,
    to_https: bool,
}

/// One admitted Ingress being turned into routes.
struct IngressRoutes<'a> {
    served: &'a ServedIngress<'a>,
    class: ClassDefaults,
    hosts: &'a HostFacts,
    gateway: &'a PlannedGateway,
    /// The Gateway's listeners that take this Ingress, by index.
    listeners: Vec<usize>,
    key: ObjectKey,
    /// References that did not resolve: (reason, message), for ResolvedRefs.
    problems: Vec<(&'static str, String)>,
}

impl IngressRoutes<'_> {
    fn attach(
        mut self,
        store: &Store,
        canaries: &mut Canaries,
        backends: &mut Backends<'_>,
        out: &mut Contribution,
    ) {
        self.offer_certificates(store, out);
        let policies = self.policies(backends);
        let spec = self.served.ingress.spec.clone().unwrap_or_default();
        let key = self.key.clone();
        let source = |rule: usize| RouteSource {
            kind: "Ingress".into(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            rule,
        };
        // permanent-/temporal-redirect: every path answers with it (nginx returns it first).
        let fixed: Vec<Filter> = self
            .served
            .annotations
            .ingress
            .redirect
            .iter()
            .map(|r| Filter::RedirectTo(r.clone()))
            .collect();
        let mut routes: Vec<HostRoute> = Vec::new();
        let mut hosts_seen: Vec<HostMatch> = Vec::new();
        for (i, rule) in spec.rules.as_deref().unwrap_or_default().iter().enumerate() {
            let host = rule
                .host
                .as_deref()
                .filter(|h| !h.is_empty())
                .map(HostMatch::ingress)
                .unwrap_or(HostMatch::Any);
            if !hosts_seen.contains(&host) {
                hosts_seen.push(host.clone());
                routes.extend(self.app_root(&host, source(i)));
            }
            let raw_host = rule.host.as_deref().unwrap_or_default();
            routes.extend(self.www_twin(raw_host, source(i), &routes));
            let paths = rule
                .http
                .as_ref()
                .map(|h| h.paths.as_slice())
                .unwrap_or_default();
            for (j, p) in paths.iter().enumerate() {
                let field = format!("spec.rules[{i}].http.paths[{j}]");
                let Some(path) = self.path_match(p, raw_host, &field) else {
                    continue;
                };
                let field = format!("{field}.backend");
                let targets = self.resolve(&p.backend, field, &policies, backends);
                let mut route = Route {
                    filters: fixed.clone(),
                    backends: targets,
                    ..Route::new(source(i), RouteMatch::path_only(path))
                };
                let value = p.path.clone().unwrap_or_else(|| "/".into());
                policies.for_path(&value).apply(&mut route);
                if self.hosts.has_tls(self.served.gateway, raw_host) {
                    route.hsts = self.class.hsts.clone();
                }
                let to_https = self.class.to_https(
                    &self.served.annotations.ingress,
                    self.hosts.has_tls(self.served.gateway, raw_host),
                );
                let canary_key = (
                    self.served.gateway.clone(),
                    raw_host.to_ascii_lowercase(),
                    value,
                    p.path_type.clone(),
                );
                // Places among routes of one path: canary variants first (see canary_routes).
                match canaries.take(&canary_key, &self.key) {
                    Some(canary) => {
                        for (route, k) in canary_routes(&route, canary) {
                            routes.push(HostRoute {
                                host: host.clone(),
                                route,
                                match_index: j * 8 + k,
                                to_https,
                            });
                        }
                    }
                    None => routes.push(HostRoute {
                        host: host.clone(),
                        route,
                        match_index: j * 8 + 4,
                        to_https,
                    }),
                }
            }
        }
        let fallback = spec.default_backend.as_ref().map(|default| {
            let field = "spec.defaultBackend".to_string();
            let targets = self.resolve(default, field, &policies, backends);
            let mut route = Route {
                filters: fixed.clone(),
                backends: targets,
                // Numbered after the last rule: it is what no rule matched.
                ..Route::new(
                    source(spec.rules.as_ref().map_or(0, Vec::len)),
                    RouteMatch::path_only(PathMatch::Prefix("/".into())),
                )
            };
            policies.all_paths.apply(&mut route);
            if !hosts_seen.contains(&HostMatch::Any) {
                hosts_seen.push(HostMatch::Any);
            }
            route
        });
        self.place(&routes, fallback.as_ref(), &hosts_seen, out);
        self.report(out);
    }

    /// Each TLS Secret offered on the HTTPS listeners for its hosts.
    fn offer_certificates(&mut self, store: &Store, out: &mut Contribution) {
        let ns = self.key.namespace.as_str();
        let spec = self.served.ingress.spec.as_ref();
        let tls = spec.and_then(|s| s.tls.as_deref()).unwrap_or_default();
        for (i, tls) in tls.iter().enumerate() {
            let Some(secret) = tls.secret_name.as_deref() else {
                continue;
            };
            match certificate_material(store, ns, secret) {
                Ok(cert) => {
                    let server_names: Vec<HostMatch> = tls
                        .hosts
                        .as_deref()
                        .unwrap_or_default()
                        .iter()
                        .map(|h| HostMatch::ingress(h))
                        .collect();
                    for &li in &self.listeners {
                        let l = &self.gateway.listeners[li];
                        if l.protocol == Protocol::Https {
                            out.certificates.push((
                                l.key.clone(),
                                SniCertificate {
                                    server_names: server_names.clone(),
                                    certificate: cert.key.clone(),
                                },
                            ));
                        }
                    }
                }
                Err(e) => self.problems.push((
                    reason::INVALID_CERTIFICATE_REF,
                    format!("spec.tls[{i}].secretName: {e}; served without this certificate"),
                )),
            }
        }
    }

    /// The annotations' policy, compiled: one rate-limit zone per Ingress, shared by all its
    /// paths (as nginx); everything refused with 503 when a source range or auth setting
    /// was invalid.
    fn policies(&self, backends: &mut Backends<'_>) -> PathPolicies {
        let annotations = &self.served.annotations;
        let zone = format!("Ingress {}/{}", self.key.namespace, self.key.name);
        let mut all_paths = policy::compile(&annotations.policy, zone, backends);
        if annotations.ingress.denied.is_some() {
            all_paths.access = Some(SourceAccess {
                deny: vec!["0.0.0.0/0".into(), "::/0".into()],
                allow: vec![],
                status: 503,
            });
        }
        PathPolicies {
            target_as_path: all_paths.rewrite_target.as_ref().map(|_| RulePolicy {
                rewrite_target: None,
                ..all_paths.clone()
            }),
            all_paths,
        }
    }

    /// app-root: "/" of the host answers 302 to the application's root.
    fn app_root(&self, host: &HostMatch, source: RouteSource) -> Option<HostRoute> {
        let root = self.served.annotations.ingress.app_root.as_ref()?;
        Some(HostRoute {
            host: host.clone(),
            route: redirect_route(
                source,
                PathMatch::Exact("/".into()),
                Redirect {
                    scheme: None,
                    hostname: None,
                    path: Some(PathModifier::ReplaceFullPath(root.clone())),
                    port: None,
                    status: 302,
                    drop_query: true,
                    strip_trailing_slash: false,
                },
            ),
            match_index: 0,
            to_https: false,
        })
    }

    /// from-to-www-redirect: the www. twin of the host (or the host without www.) answers
    /// 308 to this host, unless some Ingress names the twin itself.
    fn www_twin(
        &self,
        raw_host: &str,
        source: RouteSource,
        routes: &[HostRoute],
    ) -> Option<HostRoute> {
        let wanted = self.served.annotations.ingress.from_to_www_redirect;
        if !wanted || raw_host.is_empty() || raw_host.starts_with('*') {
            return None;
        }
        let twin = nginx::www_twin(raw_host);
        if self.hosts.named(self.served.gateway, &twin)
            || routes.iter().any(|r| r.host == HostMatch::ingress(&twin))
        {
            return None;
        }
        Some(HostRoute {
            host: HostMatch::ingress(&twin),
            route: redirect_route(
                source,
                PathMatch::Prefix("/".into()),
                Redirect {
                    scheme: None,
                    hostname: Some(raw_host.to_string()),
                    path: None,
                    port: None,
                    status: 308,
                    drop_query: false,
                    strip_trailing_slash: true,
                },
            ),
            match_index: 0,
            to_https: false,
        })
    }

    /// How a path of the Ingress matches; None (and a problem) when it cannot be served.
    fn path_match(
        &mut self,
        p: &HTTPIngressPath,
        raw_host: &str,
        field: &str,
    ) -> Option<PathMatch> {
        let value = p.path.clone().unwrap_or_else(|| "/".into());
        let regex_mode = self.hosts.regex_mode(self.served.gateway, raw_host);
        let path = match p.path_type.as_str() {
            _ if !value.starts_with('/') => {
                self.problems.push((
                    reason::UNSUPPORTED_VALUE,
                    format!("{field}.path: {value:?} must start with /"),
                ));
                return None;
            }
            // nginx: `location ~* "^<path>"` for every path type.
            _ if regex_mode => {
                let pattern = format!("(?i){value}.*");
                if let Err(e) = gatehouse_model::validate::anchored_regex(&pattern) {
                    self.problems.push((
                        reason::UNSUPPORTED_VALUE,
                        format!("{field}.path: {value:?} is not a regular expression (the host is in regex mode): {e}"),
                    ));
                    return None;
                }
                PathMatch::Regex(pattern)
            }
            "Exact" => PathMatch::Exact(value),
            "Prefix" | "ImplementationSpecific" => PathMatch::Prefix(normalise_prefix(&value)),
            other => {
                self.problems.push((
                    reason::UNSUPPORTED_VALUE,
                    format!(
                        "{field}.pathType: {other:?} is not Exact, Prefix or ImplementationSpecific"
                    ),
                ));
                return None;
            }
        };
        Some(path)
    }

    /// An Ingress backend as the route's backends: its Service's cluster, or an invalid
    /// target (500) with a problem for ResolvedRefs.
    fn resolve(
        &mut self,
        backend: &IngressBackend,
        field: String,
        policies: &PathPolicies,
        backends: &mut Backends<'_>,
    ) -> Vec<WeightedBackend> {
        let ns = self.key.namespace.as_str();
        let variant = &policies.all_paths.variant;
        let target = match (&backend.service, &backend.resource) {
            (Some(svc), _) => backends
                .resolve_as(
                    ("networking.k8s.io", "Ingress", ns),
                    service_ref(ns, svc),
                    variant.as_ref(),
                )
                .map_err(|(r, m)| (r, format!("{field}: {m}"))),
            (None, Some(r)) => Err((
                reason::INVALID_KIND,
                format!(
                    "{field}: resource backend {} {} is not supported; use a Service",
                    r.kind, r.name
                ),
            )),
            (None, None) => Err((reason::BACKEND_NOT_FOUND, format!("{field}: no service"))),
        };
        let target = match target {
            Ok(c) => BackendTarget::Cluster(c),
            Err((r, m)) => {
                self.problems.push((r, m.clone()));
                BackendTarget::Invalid(m)
            }
        };
        vec![WeightedBackend {
            weight: 1,
            target,
            filters: vec![],
        }]
    }

    /// Every route on every listener that takes the Ingress, for the hosts the listener's
    /// hostname allows; the defaultBackend behind every rule of the Ingress's hosts.
    fn place(
        &self,
        routes: &[HostRoute],
        fallback: Option<&Route>,
        hosts_seen: &[HostMatch],
        out: &mut Contribution,
    ) {
        let order = |fallback: bool, rule: usize, m: usize| Order {
            fallback,
            age: age(&self.served.ingress.metadata),
            kind_rank: 1,
            rule,
            match_index: m,
        };
        for &li in &self.listeners {
            let l = &self.gateway.listeners[li];
            out.attached.push(l.key.clone());
            if !l.served {
                continue;
            }
            for r in routes {
                let mut route = r.route.clone();
                // ssl-redirect: on plain HTTP, a fixed redirect (nginx returns it first) or
                // 308 to HTTPS; ACME challenge paths are left alone (https_redirect).
                if r.to_https && l.protocol == Protocol::Http {
                    policy::https_redirect(&mut route);
                }
                for h in intersect(&l.hostname, std::slice::from_ref(&r.host)) {
                    out.entries.push((
                        l.key.clone(),
                        Entry {
                            hostname: h,
                            route: std::sync::Arc::new(route.clone()),
                            order: order(false, route.source.rule, r.match_index),
                        },
                    ));
                }
            }
            // defaultBackend catches what no rule of any host matched.
            if let Some(route) = fallback {
                for host in hosts_seen {
                    for h in intersect(&l.hostname, std::slice::from_ref(host)) {
                        out.entries.push((
                            l.key.clone(),
                            Entry {
                                hostname: h,
                                route: std::sync::Arc::new(route.clone()),
                                order: order(true, 0, 0),
                            },
                        ));
                    }
                }
            }
        }
    }

    /// Accepted, and ResolvedRefs with every reference that did not resolve.
    fn report(&self, out: &mut Contribution) {
        let st = status_of(out, self.served);
        st.set(Condition::new(
            reason::ACCEPTED,
            true,
            reason::ACCEPTED,
            format!("served by Gateway {}", self.served.gateway),
        ));
        st.set(match self.problems.first() {
            None => Condition::new(
                reason::RESOLVED_REFS,
                true,
                reason::RESOLVED_REFS,
                "all references resolved",
            ),
            Some((r, _)) => Condition::new(
                reason::RESOLVED_REFS,
                false,
                r,
                self.problems
                    .iter()
                    .map(|(_, m)| m.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        });
    }
}

/// The annotations' compiled policy for the Ingress's paths. nginx does not rewrite a
/// location whose path is the rewrite target itself, so such a path gets the policy
/// without it.
struct PathPolicies {
    all_paths: RulePolicy,
    /// The policy without its rewrite, when it has one.
    target_as_path: Option<RulePolicy>,
}

impl PathPolicies {
    fn for_path(&self, value: &str) -> &RulePolicy {
        match &self.target_as_path {
            Some(without) if self.all_paths.rewrite_target.as_deref() == Some(value) => without,
            _ => &self.all_paths,
        }
    }
}

/// A route that only redirects (app-root, from-to-www-redirect).
fn redirect_route(source: RouteSource, path: PathMatch, redirect: Redirect) -> Route {
    Route {
        filters: vec![Filter::Redirect(redirect)],
        ..Route::new(source, RouteMatch::path_only(path))
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::{HTTP_ALL, condition, gateway_with, is, routes, translated};
    use gatehouse_model::ir::{BackendTarget, Filter, PathMatch};

    /// An IngressClass of ours served by the test Gateway, and an Ingress of it.
    fn ingress(annotations: &str, paths: &str) -> String {
        gateway_with(HTTP_ALL)
            + &format!(
                "---
apiVersion: gatehouse.dev/v1alpha1
kind: IngressClassParameters
metadata: {{name: p}}
spec: {{gatewayRef: {{namespace: infra, name: gw}}}}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {{name: nginx}}
spec:
  controller: gatehouse.dev/ingress-controller
  parameters: {{apiGroup: gatehouse.dev, kind: IngressClassParameters, name: p}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: app
  namespace: apps
  annotations: {{{annotations}}}
spec:
  ingressClassName: nginx
  rules:
  - host: app.example
    http:
      paths: {paths}
"
            )
    }

    fn path(p: &str) -> String {
        format!(
            "{{path: {p}, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}"
        )
    }

    #[test]
    fn nginx_does_not_rewrite_the_location_that_is_the_target() {
        let paths = format!("[{}, {}]", path("/"), path("/blue"));
        let out = translated(&ingress(
            "nginx.ingress.kubernetes.io/rewrite-target: /",
            &paths,
        ));
        let rewrites = |prefix: &str| {
            routes(&out)
                .into_iter()
                .find(|(_, r)| matches!(&r.matcher.path, PathMatch::Regex(p) if p.starts_with(prefix)))
                .map(|(_, r)| r.filters.iter().any(|f| matches!(f, Filter::Rewrite(_))))
                .expect("the path's route")
        };
        assert!(rewrites("(?i)/blue"), "/blue is rewritten to /");
        assert!(!rewrites("(?i)/."), "/ is the target itself");
    }

    #[test]
    fn a_snippet_refuses_the_ingress() {
        let out = translated(&ingress(
            "nginx.ingress.kubernetes.io/server-snippet: 'return 200;'",
            &format!("[{}]", path("/")),
        ));
        assert_eq!(
            condition(&out, "Ingress apps/app", "Accepted"),
            is("False", "UnsupportedValue")
        );
        assert!(routes(&out).is_empty());
    }

    #[test]
    fn a_bad_source_range_closes_every_path_with_503() {
        let out = translated(&ingress(
            "nginx.ingress.kubernetes.io/whitelist-source-range: 10.0.0.0/33",
            &format!("[{}]", path("/")),
        ));
        let (_, r) = &routes(&out)[0];
        let access = r.access.as_ref().expect("access list");
        assert_eq!(access.status, 503);
        assert_eq!(access.deny, ["0.0.0.0/0", "::/0"]);
    }

    #[test]
    fn a_missing_service_answers_500_and_says_so() {
        let paths =
            "[{path: /, pathType: Prefix, backend: {service: {name: gone, port: {number: 80}}}}]";
        let out = translated(&ingress("", paths));
        assert_eq!(
            condition(&out, "Ingress apps/app", "ResolvedRefs"),
            is("False", "BackendNotFound")
        );
        let (host, r) = &routes(&out)[0];
        assert_eq!(host, "app.example");
        assert!(matches!(r.backends[0].target, BackendTarget::Invalid(_)));
    }
}
