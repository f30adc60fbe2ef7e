//! Ingress v1: classes, the Gateway that serves each class, and rules attached to that
//! Gateway's listeners beside HTTPRoutes.
//!
//! Choices where Ingress leaves room (documented in docs/ingress.md):
//! - `ImplementationSpecific` paths match as `Prefix` (element-wise), never as a string
//!   prefix: `/foo` matches `/foo/bar` but not `/foobar`.
//! - Two Ingresses with the same host and path: the older one wins (then namespace/name),
//!   the same rule HTTPRoutes follow.
//! - Ingresses respect the serving listener's `allowedRoutes.namespaces`, so the platform
//!   team's Gateway decides which namespaces may attach, whatever the API.

use super::backends::{BackendRef, Backends, PortRef, certificate_material};
use super::gateways::PlannedGateway;
use super::httproute::normalise_prefix;
use super::nginx;
use super::tables::{Contribution, Entry, Order};
use super::{GATEWAY_GROUP, Settings, age, intersect};
use crate::gwapi::gateways::{
    Gateway, GatewayListeners, GatewayListenersAllowedRoutes,
    GatewayListenersAllowedRoutesNamespaces, GatewayListenersAllowedRoutesNamespacesFrom,
    GatewaySpec,
};
use crate::status::{Condition, StatusReport, reason};
use crate::store::{ObjectKey, Store};
use gatehouse_model::ir::{
    BackendTarget, ExternalAuth, Filter, HostMatch, PathMatch, PathModifier, Protocol, RateLimit,
    Redirect, Rewrite, Route, RouteMatch, RouteSource, SniCertificate, SourceAccess, StringMatch,
    Timeouts, ValueMatch, WeightedBackend,
};
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressServiceBackend};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::{BTreeMap, BTreeSet};

pub mod convert;

pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// Namespace of the Gateways made for IngressClasses without parameters.
pub const DEFAULT_GATEWAY_NAMESPACE: &str = "gatehouse-system";

#[derive(Debug, Default)]
pub struct IngressPlan {
    /// Our IngressClasses and the Gateway serving each.
    classes: BTreeMap<String, ObjectKey>,
    /// Classes whose IngressClassParameters turn the HTTPS redirect off by default.
    no_ssl_redirect: BTreeSet<String>,
    /// Classes whose IngressClassParameters set HSTS (others get nginx's defaults).
    hsts: BTreeMap<String, gatehouse_api::Hsts>,
    /// Classes whose Gateway serves them on some listeners only (by name).
    sections: BTreeMap<String, Vec<String>>,
    default_class: Option<String>,
    /// Gateways made for classes without parameters.
    pub default_gateways: Vec<Gateway>,
}

pub fn plan_classes(store: &Store, settings: &Settings, status: &mut StatusReport) -> IngressPlan {
    let mut plan = IngressPlan::default();
    let ours: Vec<_> = store
        .ingress_classes
        .values()
        .filter(|c| {
            c.spec.as_ref().and_then(|s| s.controller.as_deref())
                == Some(settings.ingress_controller.as_str())
        })
        .collect();
    // Several default classes: the oldest wins, deterministically.
    plan.default_class = ours
        .iter()
        .filter(|c| {
            c.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true")
        })
        .min_by_key(|c| age(&c.metadata))
        .and_then(|c| c.metadata.name.clone());

    for class in ours {
        let spec = class.spec.as_ref();
        let name = class.metadata.name.clone().unwrap_or_default();
        let st = status.entry(
            "IngressClass",
            "",
            &name,
            class.metadata.generation.unwrap_or(0),
        );
        let wants_tls = || {
            store.ingresses.values().any(|i| {
                class_name(i, plan.default_class.as_deref()) == Some(name.as_str())
                    && i.spec
                        .as_ref()
                        .and_then(|s| s.tls.as_ref())
                        .is_some_and(|t| !t.is_empty())
            })
        };
        let mut made = None;
        let gateway = match spec.and_then(|s| s.parameters.as_ref()) {
            Some(p) if p.api_group.as_deref() == Some(GATEWAY_GROUP) && p.kind == "Gateway" => {
                match p.namespace.as_deref() {
                    Some(ns) => ObjectKey::new(ns, p.name.as_str()),
                    None => {
                        st.set(Condition::new(
                            reason::ACCEPTED,
                            false,
                            reason::INVALID_PARAMETERS,
                            "spec.parameters: a Gateway needs scope Namespace and a namespace",
                        ));
                        continue;
                    }
                }
            }
            Some(p)
                if p.api_group.as_deref() == Some(gatehouse_api::GROUP)
                    && p.kind == "IngressClassParameters" =>
            {
                match store
                    .ingress_class_parameters
                    .get(&ObjectKey::new("", p.name.as_str()))
                {
                    Some(params) => {
                        if params.spec.ssl_redirect == Some(false) {
                            plan.no_ssl_redirect.insert(name.clone());
                        }
                        if let Some(h) = &params.spec.hsts {
                            plan.hsts.insert(name.clone(), h.clone());
                        }
                        match &params.spec.gateway_ref {
                            Some(g) => {
                                if !g.section_names.is_empty() {
                                    plan.sections.insert(name.clone(), g.section_names.clone());
                                }
                                ObjectKey::new(g.namespace.as_str(), g.name.as_str())
                            }
                            None => {
                                let gw = default_gateway(&name, wants_tls(), settings);
                                let key = ObjectKey::of(&gw);
                                made = Some(gw);
                                key
                            }
                        }
                    }
                    None => {
                        st.set(Condition::new(
                            reason::ACCEPTED,
                            false,
                            reason::INVALID_PARAMETERS,
                            format!(
                                "spec.parameters: IngressClassParameters {} not found",
                                p.name
                            ),
                        ));
                        continue;
                    }
                }
            }
            Some(p) => {
                st.set(Condition::new(
                    reason::ACCEPTED,
                    false,
                    reason::INVALID_PARAMETERS,
                    format!(
                        "spec.parameters: {}/{} is not supported; name a {}/IngressClassParameters or a {GATEWAY_GROUP}/Gateway",
                        p.api_group.as_deref().unwrap_or(""),
                        p.kind,
                        gatehouse_api::GROUP,
                    ),
                ));
                continue;
            }
            None => {
                let gw = default_gateway(&name, wants_tls(), settings);
                let key = ObjectKey::of(&gw);
                made = Some(gw);
                key
            }
        };
        plan.default_gateways.extend(made);
        st.set(Condition::new(
            reason::ACCEPTED,
            true,
            reason::ACCEPTED,
            format!("Ingresses of this class are served by Gateway {gateway}"),
        ));
        plan.classes.insert(name, gateway);
    }
    plan
}

/// The Gateway a class without parameters gets: HTTP on 80 (and HTTPS on 443 when any of
/// its Ingresses asks for TLS), open to every namespace.
fn default_gateway(class: &str, wants_tls: bool, settings: &Settings) -> Gateway {
    let listener = |name: &str, port: i32, protocol: &str| GatewayListeners {
        name: name.into(),
        port,
        protocol: protocol.into(),
        allowed_routes: Some(GatewayListenersAllowedRoutes {
            kinds: None,
            namespaces: Some(GatewayListenersAllowedRoutesNamespaces {
                from: Some(GatewayListenersAllowedRoutesNamespacesFrom::All),
                selector: None,
            }),
        }),
        ..Default::default()
    };
    let mut listeners = vec![listener("http", settings.ingress_ports.0.into(), "HTTP")];
    if wants_tls {
        listeners.push(listener("https", settings.ingress_ports.1.into(), "HTTPS"));
    }
    Gateway {
        metadata: ObjectMeta {
            name: Some(format!("ingress-{class}")),
            namespace: Some(DEFAULT_GATEWAY_NAMESPACE.into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: GatewaySpec {
            gateway_class_name: String::new(),
            listeners,
            ..Default::default()
        },
        status: None,
    }
}

/// The class an Ingress asks for: spec.ingressClassName, else the legacy annotation,
/// else the default class.
fn class_name<'a>(ingress: &'a Ingress, default_class: Option<&'a str>) -> Option<&'a str> {
    ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
        .or_else(|| {
            ingress
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
                .map(String::as_str)
        })
        .or(default_class)
}

/// Translates every Ingress of our classes at once (hosts, canaries and regex mode are
/// shared across Ingresses): entries, certificates, statuses and clusters go into `out`.
pub fn attach_all(
    store: &Store,
    plan: &IngressPlan,
    gateways: &BTreeMap<ObjectKey, PlannedGateway>,
    backends: &mut Backends<'_>,
    out: &mut Contribution,
) {
    let ours = ours(store, plan);
    let hosts = HostFacts::of(&ours);
    let mut canaries = Canaries::collect(&ours, backends);
    for o in &ours {
        if canaries.is_canary(o.ingress) {
            continue; // Joins its primary's routes below; no routes of its own.
        }
        attach(
            store,
            o,
            plan.defaults(o.ingress),
            &hosts,
            &mut canaries,
            gateways,
            backends,
            out,
        );
    }
    canaries.report(&mut out.status);
}

/// The Ingresses of our classes with their Gateways. Ingresses of classes that are not
/// ours are not ours to touch, status included. Annotations are read once here; host
/// facts, canaries and attachment share them.
fn ours<'a>(store: &'a Store, plan: &'a IngressPlan) -> Vec<Ours<'a>> {
    store
        .ingresses
        .values()
        .filter_map(|i| {
            let class = class_name(i, plan.default_class.as_deref())?;
            Some(Ours {
                ingress: i,
                gateway: plan.classes.get(class)?,
                annotations: nginx::parse(
                    i.metadata.annotations.as_ref().unwrap_or(&BTreeMap::new()),
                ),
            })
        })
        .collect()
}

impl IngressPlan {
    /// The class defaults of an Ingress: ssl-redirect on unless its IngressClassParameters
    /// turn it off; HSTS as they say, or nginx's default (on).
    fn defaults(&self, i: &Ingress) -> ClassDefaults {
        let class = class_name(i, self.default_class.as_deref());
        let h = class
            .and_then(|c| self.hsts.get(c))
            .cloned()
            .unwrap_or_default();
        ClassDefaults {
            hsts: super::policy::hsts(&h),
            sections: class
                .and_then(|c| self.sections.get(c))
                .cloned()
                .unwrap_or_default(),
            ssl_redirect: class.is_none_or(|c| !self.no_ssl_redirect.contains(c)),
        }
    }
}

/// What an Ingress's class decides when its annotations do not.
struct ClassDefaults {
    /// The Gateway's listeners serving the class; all when empty.
    sections: Vec<String>,
    ssl_redirect: bool,
    hsts: Option<gatehouse_model::ir::Hsts>,
}

impl ClassDefaults {
    /// Whether plain HTTP to a host is redirected to HTTPS: force-ssl-redirect, or
    /// ssl-redirect (the class's default when unset) for a host with TLS.
    fn to_https(&self, n: &nginx::Settings, host_has_tls: bool) -> bool {
        n.force_ssl_redirect || (n.ssl_redirect.unwrap_or(self.ssl_redirect) && host_has_tls)
    }
}

/// An Ingress of one of our classes, the Gateway serving it, and its annotations read.
struct Ours<'a> {
    ingress: &'a Ingress,
    gateway: &'a ObjectKey,
    annotations: nginx::Parsed,
}

/// Where a canary Ingress applies: (Gateway, host, path as written, pathType).
type CanaryKey = (ObjectKey, String, String, String);

/// The Service path of the canary Ingress that joins each (Gateway, host, path, pathType):
/// the first in store order, as ingress-nginx uses one. Paths without a Service join
/// nothing. Translation and `convert` both read canaries from here.
fn canary_paths<'a>(
    ingresses: &'a [Ours<'a>],
) -> BTreeMap<CanaryKey, (&'a Ours<'a>, &'a nginx::Canary, &'a IngressServiceBackend)> {
    let mut out = BTreeMap::new();
    for o in ingresses {
        let Some(settings) = &o.annotations.settings.canary else {
            continue;
        };
        for rule in o.ingress.spec.iter().flat_map(|s| s.rules.iter().flatten()) {
            let host = rule.host.clone().unwrap_or_default().to_ascii_lowercase();
            for p in rule.http.iter().flat_map(|h| &h.paths) {
                let Some(svc) = &p.backend.service else {
                    continue;
                };
                let path = p.path.clone().unwrap_or_else(|| "/".into());
                out.entry((o.gateway.clone(), host.clone(), path, p.path_type.clone()))
                    .or_insert((o, settings, svc));
            }
        }
    }
    out
}

/// A canary Ingress's rule: its settings and its backend, resolved.
struct CanaryRule {
    ingress: ObjectKey,
    settings: nginx::Canary,
    backends: Vec<WeightedBackend>,
}

/// Canary Ingresses (ingress-nginx `canary: "true"`): each rule joins the route of the
/// Ingress with the same host, path and pathType on the same Gateway.
#[derive(Default)]
struct Canaries {
    rules: BTreeMap<CanaryKey, CanaryRule>,
    all: BTreeSet<ObjectKey>,
    /// Canary Ingress -> the Ingresses it joined.
    joined: BTreeMap<ObjectKey, BTreeSet<ObjectKey>>,
    generations: BTreeMap<ObjectKey, i64>,
}

impl Canaries {
    fn collect(ingresses: &[Ours], backends: &mut Backends<'_>) -> Canaries {
        let mut c = Canaries::default();
        for o in ingresses
            .iter()
            .filter(|o| o.annotations.settings.canary.is_some())
        {
            let key = ObjectKey::of(o.ingress);
            c.generations
                .insert(key.clone(), o.ingress.metadata.generation.unwrap_or(0));
            c.all.insert(key);
        }
        for (rule_key, (o, settings, svc)) in canary_paths(ingresses) {
            let ns = o.ingress.metadata.namespace.as_deref().unwrap_or_default();
            let target = match backends
                .resolve(("networking.k8s.io", "Ingress", ns), service_ref(ns, svc))
            {
                Ok(cluster) => BackendTarget::Cluster(cluster),
                Err((_, m)) => BackendTarget::Invalid(m),
            };
            c.rules.insert(
                rule_key,
                CanaryRule {
                    ingress: ObjectKey::of(o.ingress),
                    settings: settings.clone(),
                    backends: vec![WeightedBackend {
                        weight: 1,
                        target,
                        filters: vec![],
                    }],
                },
            );
        }
        c
    }

    fn is_canary(&self, ingress: &Ingress) -> bool {
        self.all.contains(&ObjectKey::of(ingress))
    }

    /// The canary rule joining a primary's (host, path, pathType), noted as used.
    fn take(&mut self, key: &CanaryKey, primary: &ObjectKey) -> Option<&CanaryRule> {
        let rule = self.rules.get(key)?;
        if rule.ingress == *primary {
            return None;
        }
        self.joined
            .entry(rule.ingress.clone())
            .or_default()
            .insert(primary.clone());
        Some(rule)
    }

    fn report(&self, status: &mut StatusReport) {
        for key in &self.all {
            let generation = self.generations.get(key).copied().unwrap_or(0);
            let st = status.entry("Ingress", &key.namespace, &key.name, generation);
            match self.joined.get(key) {
                Some(primaries) => st.set(Condition::new(
                    reason::ACCEPTED,
                    true,
                    reason::ACCEPTED,
                    format!(
                        "canary of {}",
                        primaries
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )),
                None => st.set(Condition::new(
                    reason::ACCEPTED,
                    false,
                    reason::NO_MATCHING_PARENT,
                    "canary: no other Ingress of the class has a rule with the same host, path and pathType",
                )),
            }
        }
    }
}

/// The routes of a primary rule joined by a canary, most specific first (ingress-nginx's
/// order: header, then cookie, then weight), each with its place among them.
fn canary_routes(primary: &Route, canary: &CanaryRule) -> Vec<(Route, usize)> {
    let c = &canary.settings;
    let with = |name: &str, value: StringMatch, backends: Vec<WeightedBackend>| Route {
        matcher: RouteMatch {
            headers: vec![ValueMatch {
                name: name.into(),
                value,
            }],
            ..primary.matcher.clone()
        },
        backends,
        ..primary.clone()
    };
    let to_canary = canary.backends.clone();
    let to_primary = primary.backends.clone();
    let mut out = Vec::new();
    if let Some(header) = &c.by_header {
        if let Some(v) = &c.by_header_value {
            out.push((
                with(header, StringMatch::Exact(v.clone()), to_canary.clone()),
                0,
            ));
        } else if let Some(p) = &c.by_header_pattern {
            // nginx matches the pattern anywhere in the value.
            out.push((
                with(
                    header,
                    StringMatch::Regex(format!(".*(?:{p}).*")),
                    to_canary.clone(),
                ),
                0,
            ));
        } else {
            out.push((
                with(
                    header,
                    StringMatch::Exact("always".into()),
                    to_canary.clone(),
                ),
                0,
            ));
            out.push((
                with(
                    header,
                    StringMatch::Exact("never".into()),
                    to_primary.clone(),
                ),
                1,
            ));
        }
    }
    if let Some(cookie) = &c.by_cookie {
        let is = |v: &str| {
            StringMatch::Regex(format!("(?:.*;\\s*)?{}={v}(?:;.*)?", regex::escape(cookie)))
        };
        out.push((with("cookie", is("always"), to_canary.clone()), 2));
        out.push((with("cookie", is("never"), to_primary.clone()), 3));
    }
    // Weight: canary weight out of the total (at least 100).
    let total = c.weight_total.max(100);
    let canary_weight = c.weight.min(total);
    let mut weighted = primary.clone();
    weighted.backends = primary
        .backends
        .iter()
        .map(|b| WeightedBackend {
            weight: b.weight * (total - canary_weight),
            ..b.clone()
        })
        .filter(|b| b.weight > 0)
        .chain(
            canary
                .backends
                .iter()
                .map(|b| WeightedBackend {
                    weight: canary_weight,
                    ..b.clone()
                })
                .filter(|b| b.weight > 0),
        )
        .collect();
    out.push((weighted, 4));
    out
}

/// (Service, namespace) of a cluster DNS name: `svc.ns`, `svc.ns.svc` or
/// `svc.ns.svc.cluster.local`.
pub(super) fn service_host(host: &str) -> Option<(&str, &str)> {
    let labels: Vec<&str> = host.split('.').collect();
    match labels.as_slice() {
        [svc, ns] | [svc, ns, "svc"] | [svc, ns, "svc", "cluster", "local"] => Some((svc, ns)),
        _ => None,
    }
}

/// A route that only redirects (app-root, from-to-www-redirect).
fn redirect_route(source: RouteSource, path: PathMatch, redirect: Redirect) -> Route {
    Route {
        filters: vec![Filter::Redirect(redirect)],
        ..Route::new(source, RouteMatch::path_only(path))
    }
}

/// What ingress-nginx decides per host from all Ingresses together.
#[derive(Debug, Default)]
struct HostFacts {
    /// Hosts (lowercase) with a certificate: some Ingress naming the host has a non-empty
    /// spec.tls. Plain HTTP to them is redirected to HTTPS (ssl-redirect).
    tls: BTreeSet<(ObjectKey, String)>,
    /// Hosts in regex mode: some Ingress for the host uses use-regex or rewrite-target, so
    /// every path of the host, whatever its Ingress, matches as a case-insensitive
    /// regular expression from the start of the path (nginx `location ~*`).
    regex: BTreeSet<(ObjectKey, String)>,
    /// Every host some Ingress names (from-to-www-redirect leaves those alone).
    named: BTreeSet<(ObjectKey, String)>,
}

impl HostFacts {
    fn of(ingresses: &[Ours]) -> HostFacts {
        let mut facts = HostFacts::default();
        for o in ingresses {
            let (ingress, gateway) = (o.ingress, o.gateway);
            let Some(spec) = &ingress.spec else { continue };
            let n = &o.annotations.settings;
            if n.canary.is_none() {
                for rule in spec.rules.iter().flatten() {
                    let host = rule.host.clone().unwrap_or_default().to_ascii_lowercase();
                    facts.named.insert((gateway.clone(), host));
                    let rewrites = n.rewrite_target.as_ref().is_some_and(|t| {
                        rule.http
                            .iter()
                            .flat_map(|h| &h.paths)
                            .any(|p| p.path.as_deref().unwrap_or("/") != t)
                    });
                    if n.use_regex || rewrites {
                        let host = rule.host.clone().unwrap_or_default().to_ascii_lowercase();
                        facts.regex.insert((gateway.clone(), host));
                    }
                }
            }
            if spec.tls.as_ref().is_none_or(Vec::is_empty) {
                continue;
            }
            for rule in spec.rules.iter().flatten() {
                if let Some(host) = rule.host.as_deref().filter(|h| !h.is_empty()) {
                    facts
                        .tls
                        .insert((gateway.clone(), host.to_ascii_lowercase()));
                }
            }
        }
        facts
    }

    fn named(&self, gateway: &ObjectKey, host: &str) -> bool {
        self.named
            .contains(&(gateway.clone(), host.to_ascii_lowercase()))
    }

    fn regex_mode(&self, gateway: &ObjectKey, host: &str) -> bool {
        self.regex
            .contains(&(gateway.clone(), host.to_ascii_lowercase()))
    }

    fn has_tls(&self, gateway: &ObjectKey, host: &str) -> bool {
        self.tls
            .contains(&(gateway.clone(), host.to_ascii_lowercase()))
    }
}

#[allow(clippy::too_many_arguments)]
fn attach(
    store: &Store,
    ours: &Ours,
    class: ClassDefaults,
    hosts: &HostFacts,
    canaries: &mut Canaries,
    gateways: &BTreeMap<ObjectKey, PlannedGateway>,
    backends: &mut Backends<'_>,
    out: &mut Contribution,
) {
    let (ingress, gateway_key, annotations) = (ours.ingress, ours.gateway, &ours.annotations);
    let key = ObjectKey::of(ingress);
    let ns = key.namespace.as_str();
    let st = out.status.entry(
        "Ingress",
        ns,
        &key.name,
        ingress.metadata.generation.unwrap_or(0),
    );
    if let Some(why) = &annotations.refused {
        st.set(Condition::new(
            reason::ACCEPTED,
            false,
            reason::UNSUPPORTED_VALUE,
            why.clone(),
        ));
        return;
    }
    if !annotations.warnings.is_empty() {
        st.set(Condition::new(
            reason::ANNOTATIONS,
            false,
            reason::IGNORED,
            annotations.warnings.join("; "),
        ));
    }
    let nginx = &annotations.settings;
    let Some(gw) = gateways.get(gateway_key) else {
        st.set(Condition::new(
            reason::ACCEPTED,
            false,
            reason::NO_MATCHING_PARENT,
            format!("Gateway {gateway_key} named by the IngressClass does not exist or is not of a Gatehouse GatewayClass"),
        ));
        return;
    };
    let ns_labels = store.namespace_labels(ns);
    let listeners: Vec<usize> = gw
        .listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| l.admits(ns, &ns_labels))
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
        return;
    }
    st.addresses = gw.published.clone();

    let mut problems: Vec<(&'static str, String)> = Vec::new();
    let spec = ingress.spec.clone().unwrap_or_default();

    // TLS: each secret offered on the HTTPS listeners for its hosts.
    for (i, tls) in spec.tls.as_deref().unwrap_or_default().iter().enumerate() {
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
                for &li in &listeners {
                    let l = &gw.listeners[li];
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
            Err(e) => problems.push((
                reason::INVALID_CERTIFICATE_REF,
                format!("spec.tls[{i}].secretName: {e}; served without this certificate"),
            )),
        }
    }

    let variant = super::policy::backend_variant(nginx.backend_protocol);
    // Source ranges (403), or everything refused with 503 when a range was invalid.
    let access = match (&nginx.denied, &nginx.allow_sources, &nginx.deny_sources) {
        (Some(_), ..) => Some(SourceAccess {
            deny: vec!["0.0.0.0/0".into(), "::/0".into()],
            allow: vec![],
            status: 503,
        }),
        (None, allow, deny) if !allow.is_empty() || !deny.is_empty() => Some(SourceAccess {
            deny: deny.clone(),
            allow: allow.clone(),
            status: 403,
        }),
        _ => None,
    };
    let balance = nginx.balance.clone();
    // auth-url naming a Service of the cluster goes to its endpoints (as the URL would,
    // through cluster DNS, with no ReferenceGrant either); another host is resolved by
    // the data plane.
    let external_auth = nginx.external_auth.as_ref().map(|a| ExternalAuth {
        url: a.url.clone(),
        cluster: super::policy::service_cluster(&a.host, a.port, backends),
        method: a.method.clone(),
        response_headers: a.response_headers.clone(),
        signin: a.signin.clone(),
    });
    // One zone per Ingress, shared by all its paths (as nginx).
    let rate_limit = nginx.limits.any().then(|| RateLimit {
        zone: format!("Ingress {ns}/{}", key.name),
        per_second: nginx.limits.rps,
        per_minute: nginx.limits.rpm,
        burst_multiplier: nginx.limits.burst_multiplier,
        connections: nginx.limits.connections,
        exempt: nginx.limits.exempt.clone(),
        status: 503,
    });
    let timeouts = Timeouts {
        connect_ms: nginx.timeouts.connect_s.map(|s| s * 1000),
        read_idle_ms: nginx.timeouts.read_s.map(|s| s * 1000),
        write_idle_ms: nginx.timeouts.send_s.map(|s| s * 1000),
        ..Default::default()
    };
    let mut resolve = |backend: &IngressBackend, field: String, problems: &mut Vec<_>| {
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
                problems.push((r, m.clone()));
                BackendTarget::Invalid(m)
            }
        };
        vec![WeightedBackend {
            weight: 1,
            target,
            filters: vec![],
        }]
    };

    // A route of the Ingress with the policies its annotations give every path.
    let annotated = |source: RouteSource,
                     path: PathMatch,
                     filters: Vec<Filter>,
                     backends: Vec<WeightedBackend>| Route {
        source,
        matcher: RouteMatch::path_only(path),
        filters,
        backends,
        timeouts,
        retry: None,
        max_request_body: nginx.body_size,
        access: access.clone().map(Box::new),
        rate_limit: rate_limit.clone().map(Box::new),
        balance: balance.clone().map(Box::new),
        external_auth: external_auth.clone().map(Box::new),
        hsts: None,
    };
    let source = |rule: usize| RouteSource {
        kind: "Ingress".into(),
        namespace: ns.into(),
        name: key.name.clone(),
        rule,
    };
    // (host, route, match index, whether plain HTTP is redirected to HTTPS)
    let mut routes: Vec<(HostMatch, Route, usize, bool)> = Vec::new();
    let filters: Vec<Filter> = nginx
        .cors
        .iter()
        .map(|c| Filter::NginxCors(c.clone()))
        .chain(nginx.redirect.iter().map(|r| Filter::RedirectTo(r.clone())))
        .collect();
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
            // app-root: "/" of the host answers 302 to the application's root.
            if let Some(root) = &nginx.app_root {
                routes.push((
                    host.clone(),
                    redirect_route(
                        source(i),
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
                    0,
                    false,
                ));
            }
        }
        let raw_host = rule.host.as_deref().unwrap_or_default();
        // from-to-www-redirect: the www. twin of the host (or the host without www.)
        // answers 308 to this host, unless some Ingress names the twin itself.
        if nginx.from_to_www_redirect && !raw_host.is_empty() && !raw_host.starts_with('*') {
            let twin = nginx::www_twin(raw_host);
            if !hosts.named(gateway_key, &twin)
                && !routes.iter().any(|(h, ..)| *h == HostMatch::ingress(&twin))
            {
                routes.push((
                    HostMatch::ingress(&twin),
                    redirect_route(
                        source(i),
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
                    0,
                    false,
                ));
            }
        }
        let to_https = class.to_https(nginx, hosts.has_tls(gateway_key, raw_host));
        let paths = rule
            .http
            .as_ref()
            .map(|h| h.paths.as_slice())
            .unwrap_or_default();
        for (j, p) in paths.iter().enumerate() {
            let field = format!("spec.rules[{i}].http.paths[{j}]");
            let value = p.path.clone().unwrap_or_else(|| "/".into());
            let regex_mode = hosts.regex_mode(gateway_key, raw_host);
            let path = match p.path_type.as_str() {
                _ if !value.starts_with('/') => {
                    problems.push((
                        reason::UNSUPPORTED_VALUE,
                        format!("{field}.path: {value:?} must start with /"),
                    ));
                    continue;
                }
                // nginx: `location ~* "^<path>"` for every path type.
                _ if regex_mode => {
                    let pattern = format!("(?i){value}.*");
                    if let Err(e) = gatehouse_model::validate::anchored_regex(&pattern) {
                        problems.push((
                            reason::UNSUPPORTED_VALUE,
                            format!("{field}.path: {value:?} is not a regular expression (the host is in regex mode): {e}"),
                        ));
                        continue;
                    }
                    PathMatch::Regex(pattern)
                }
                "Exact" => PathMatch::Exact(value.clone()),
                "Prefix" | "ImplementationSpecific" => PathMatch::Prefix(normalise_prefix(&value)),
                other => {
                    problems.push((
                        reason::UNSUPPORTED_VALUE,
                        format!("{field}.pathType: {other:?} is not Exact, Prefix or ImplementationSpecific"),
                    ));
                    continue;
                }
            };
            let backends = resolve(&p.backend, format!("{field}.backend"), &mut problems);
            let mut filters = filters.clone();
            if let Some(target) = nginx.rewrite_target.as_ref().filter(|t| **t != value)
                && regex_mode
            {
                filters.push(Filter::Rewrite(Rewrite {
                    hostname: None,
                    path: Some(PathModifier::RegexTemplate(target.clone())),
                }));
            }
            let mut route = annotated(source(i), path, filters, backends);
            if hosts.has_tls(gateway_key, raw_host) {
                route.hsts = class.hsts.clone();
            }
            let canary_key = (
                gateway_key.clone(),
                raw_host.to_ascii_lowercase(),
                value.clone(),
                p.path_type.clone(),
            );
            // Places among routes of one path: canary variants first (see canary_routes).
            match canaries.take(&canary_key, &key) {
                Some(canary) => {
                    for (r, k) in canary_routes(&route, canary) {
                        routes.push((host.clone(), r, j * 8 + k, to_https));
                    }
                }
                None => routes.push((host.clone(), route, j * 8 + 4, to_https)),
            }
        }
    }
    let mut fallback = None;
    if let Some(default) = &spec.default_backend {
        let backends = resolve(default, "spec.defaultBackend".into(), &mut problems);
        fallback = Some(annotated(
            // Numbered after the last rule: it is what no rule matched.
            source(spec.rules.as_ref().map_or(0, Vec::len)),
            PathMatch::Prefix("/".into()),
            filters.clone(),
            backends,
        ));
        if !hosts_seen.contains(&HostMatch::Any) {
            hosts_seen.push(HostMatch::Any);
        }
    }

    for &li in &listeners {
        let l = &gw.listeners[li];
        out.attached.push(l.key.clone());
        if !l.served {
            continue;
        }
        let order = |fallback: bool, rule: usize, m: usize| Order {
            fallback,
            age: age(&ingress.metadata),
            kind_rank: 1,
            rule,
            match_index: m,
        };
        for (host, route, m, to_https) in &routes {
            let mut route = route.clone();
            // ssl-redirect: on plain HTTP, a fixed redirect (nginx returns it first) or
            // 308 to HTTPS; ACME challenge paths are left alone (https_redirect).
            if *to_https && l.protocol == Protocol::Http {
                super::policy::https_redirect(&mut route);
            }
            for h in intersect(&l.hostname, std::slice::from_ref(host)) {
                out.entries.push((
                    l.key.clone(),
                    Entry {
                        hostname: h,
                        route: std::sync::Arc::new(route.clone()),
                        order: order(false, route.source.rule, *m),
                    },
                ));
            }
        }
        // defaultBackend catches what no rule of any host matched.
        if let Some(route) = &fallback {
            for host in &hosts_seen {
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

    st.set(Condition::new(
        reason::ACCEPTED,
        true,
        reason::ACCEPTED,
        format!("served by Gateway {gateway_key}"),
    ));
    st.set(match problems.first() {
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
            problems
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
    });
}

/// An Ingress's Service backend as a reference to resolve: its port by name when named,
/// else by number.
fn service_ref<'a>(namespace: &'a str, svc: &'a IngressServiceBackend) -> BackendRef<'a> {
    let port = svc.port.as_ref().and_then(|p| match (&p.name, p.number) {
        (Some(name), _) if !name.is_empty() => Some(PortRef::Name(name.as_str())),
        (_, Some(n)) => Some(PortRef::Number(n)),
        _ => None,
    });
    BackendRef {
        group: "",
        kind: "Service",
        namespace,
        name: &svc.name,
        port,
    }
}
