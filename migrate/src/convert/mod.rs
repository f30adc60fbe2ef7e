//! `gatehouse convert`: Ingresses and their ingress-nginx annotations as Gateway API
//! HTTPRoutes plus TrafficPolicies, with a note for every semantic difference and how the
//! output keeps the behaviour. Pure: store in, typed objects and notes out.
//!
//! It reads the Ingresses as translation does (`gatehouse_translate::ingress`: the same
//! classes, host facts, canaries and annotations), and an Ingress's annotations become the
//! TrafficPolicy spec translation compiles for it (`nginx::parse`), so what the converted
//! routes carry is what the Ingress carried.
//!
//! The output attaches to the Gateway the Ingress's class names (IngressClassParameters
//! `gatewayRef`), so the converted routes can be served beside the Ingresses and checked
//! with `gatehouse convert --verify` before the Ingresses are deleted. Gateways are never
//! written: the platform team owns them.

mod objects;
mod paths;

pub use objects::{CONVERTED_FROM, Converted};

use gatehouse_api::{Hsts, RedirectPolicy, TrafficPolicySpec};
use gatehouse_translate::Settings;
use gatehouse_translate::gwapi::httproutes::{
    HttpRouteParentRefs, HttpRouteRules, HttpRouteRulesBackendRefs,
    HttpRouteRulesFiltersRequestRedirect,
};
use gatehouse_translate::ingress::{
    CanaryKey, ClassDefaults, HostFacts, ServedIngress, canary_paths, plan_classes, served,
};
use gatehouse_translate::nginx::{self, Canary};
use gatehouse_translate::status::StatusReport;
use gatehouse_translate::store::{ObjectKey, Store};
use k8s_openapi::api::networking::v1::{HTTPIngressPath, IngressBackend, IngressServiceBackend};
use objects::{MAX_RULES, PathKind};
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct Conversion {
    pub objects: Vec<Converted>,
    pub notes: Vec<Note>,
    /// Ingresses the objects replace (canaries included); the others stay as they are.
    pub replaced: Vec<ObjectKey>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// A semantic difference between the APIs, and how the output keeps nginx's behaviour.
    Kept,
    /// Something to do by hand.
    Manual,
    /// Not converted; the Ingress stays.
    NotConverted,
}

#[derive(Debug, Clone)]
pub struct Note {
    pub ingress: ObjectKey,
    pub severity: Severity,
    pub text: String,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.severity {
            Severity::Kept => "kept",
            Severity::Manual => "manual",
            Severity::NotConverted => "not converted",
        };
        write!(f, "Ingress {}: {what}: {}", self.ingress, self.text)
    }
}

/// A canary Ingress's rule, by the (Gateway, host, path, pathType) it joins.
struct CanaryRule {
    ingress: ObjectKey,
    settings: Canary,
    backend: Result<HttpRouteRulesBackendRefs, String>,
}

pub fn convert(store: &Store, settings: &Settings) -> Conversion {
    let mut status = StatusReport::default();
    let plan = plan_classes(store, settings, &mut status);
    let ours = served(store, &plan);
    let hosts = HostFacts::of(&ours);
    let canaries: BTreeMap<CanaryKey, CanaryRule> = canary_paths(&ours)
        .into_iter()
        .map(|(rule_key, (o, settings, svc))| {
            let key = ObjectKey::of(o.ingress);
            let backend = service_ref(store, &key.namespace, svc);
            let canary = CanaryRule {
                ingress: key,
                settings: settings.clone(),
                backend,
            };
            (rule_key, canary)
        })
        .collect();
    let mut out = Conversion::default();
    for o in &ours {
        Converter {
            store,
            defaults: plan.defaults(o.ingress),
            o,
            key: ObjectKey::of(o.ingress),
            hosts: &hosts,
            canaries: &canaries,
            out: &mut out,
        }
        .run();
    }
    out
}

/// One Ingress being converted.
struct Converter<'a, 'b> {
    store: &'a Store,
    /// What the Ingress's class decides (HTTPS redirect, HSTS, listeners).
    defaults: ClassDefaults,
    o: &'a ServedIngress<'a>,
    key: ObjectKey,
    hosts: &'a HostFacts,
    canaries: &'a BTreeMap<CanaryKey, CanaryRule>,
    out: &'b mut Conversion,
}

/// What converting an Ingress's hosts produced: the routes that take the Ingress-wide
/// policy, and the policies of routes of their own (by policy name).
#[derive(Default)]
struct Emitted {
    common_targets: Vec<String>,
    own_policies: Vec<(String, TrafficPolicySpec)>,
    twins: Vec<String>,
}

impl Converter<'_, '_> {
    fn note(&mut self, severity: Severity, text: impl Into<String>) {
        self.out.notes.push(Note {
            ingress: self.key.clone(),
            severity,
            text: text.into(),
        });
    }

    fn run(mut self) {
        if !self.convertible() {
            return;
        }
        let spec = self.o.ingress.spec.clone().unwrap_or_default();
        for (k, tls) in spec.tls.iter().flatten().enumerate() {
            if let Some(secret) = &tls.secret_name {
                let gw = self.o.gateway;
                self.note(
                    Severity::Manual,
                    format!(
                        "spec.tls[{k}]: Secret {secret} for {:?} is offered by Gatehouse while the Ingress exists; before deleting the Ingress, add it to the certificateRefs of Gateway {gw}'s HTTPS listeners (a ReferenceGrant if namespaces differ)",
                        tls.hosts.clone().unwrap_or_default()
                    ),
                );
            }
        }
        // Rules grouped by host, in order of first appearance.
        let mut groups: Vec<(String, Vec<&HTTPIngressPath>)> = Vec::new();
        for rule in spec.rules.iter().flatten() {
            let host = rule.host.clone().unwrap_or_default();
            let paths = rule.http.iter().flat_map(|h| &h.paths);
            match groups
                .iter_mut()
                .find(|(h, _)| h.eq_ignore_ascii_case(&host))
            {
                Some((_, ps)) => ps.extend(paths),
                None => groups.push((host, paths.collect())),
            }
        }
        let mut emitted = Emitted::default();
        for (g, (host, paths)) in groups.iter().enumerate() {
            let name = |suffix: &str| self.route_name(groups.len(), g, suffix);
            let names = (name(""), name("-app-root"), name("-www"));
            self.host(host, paths, names, &mut emitted);
        }
        if let Some(default) = &spec.default_backend {
            let named: Vec<String> = groups
                .iter()
                .map(|(h, _)| h.clone())
                .filter(|h| !h.is_empty())
                .collect();
            self.default_backend(default, &named, &mut emitted);
        }
        // The Ingress-wide policy, and the per-route ones (the route name is the target,
        // with "-https" and the like dropped).
        let base = self.key.name.clone();
        let common = self.common_policy();
        if common != TrafficPolicySpec::default() && !emitted.common_targets.is_empty() {
            self.push_policy(&base, &emitted.common_targets, common);
        }
        for (name, spec) in emitted.own_policies {
            let target = name.strip_suffix("-https").unwrap_or(&name).to_string();
            self.push_policy(&name, &[target], spec);
        }
        self.out.replaced.push(self.key.clone());
    }

    /// Whether the Ingress can be converted; if not, a note says why (a canary is
    /// converted with its primary).
    fn convertible(&mut self) -> bool {
        let parsed = &self.o.annotations;
        if parsed.ingress.canary.is_some() {
            self.note(
                Severity::Kept,
                "canary: its rules become header, cookie and weighted rules of the primary Ingress's HTTPRoute, in nginx's order (header, cookie, weight)",
            );
            self.out.replaced.push(self.key.clone());
            return false;
        }
        if let Some(why) = parsed.refused.clone() {
            self.note(Severity::NotConverted, why);
            return false;
        }
        if let Some(why) = parsed.ingress.denied.clone() {
            self.note(
                Severity::NotConverted,
                format!("{why}; mend the annotation first"),
            );
            return false;
        }
        let gw = self.o.gateway.clone();
        if !self.store.gateways.contains_key(&gw) {
            self.note(
                Severity::NotConverted,
                format!("its IngressClass serves it on a Gateway made for the class ({gw}); name an existing Gateway with IngressClassParameters gatewayRef first, so the HTTPRoutes have a parent"),
            );
            return false;
        }
        for w in parsed.warnings.clone() {
            self.note(Severity::Kept, format!("{w} (not carried over either)"));
        }
        true
    }

    /// The name of host group `g`'s route: the Ingress's, numbered when it has several
    /// host groups, with a suffix.
    fn route_name(&self, groups: usize, g: usize, suffix: &str) -> String {
        let mut name = if groups == 1 {
            self.key.name.clone()
        } else {
            format!("{}-{g}", self.key.name)
        };
        name.push_str(suffix);
        name
    }

    /// One host's routes: app-root and www twin redirects, then its paths (several
    /// HTTPRoutes when they have more than 16 rules), with its HTTPS redirect and HSTS.
    fn host(
        &mut self,
        host: &str,
        paths: &[&HTTPIngressPath],
        (name, app_root_name, www_name): (String, String, String),
        emitted: &mut Emitted,
    ) {
        let gw = self.o.gateway.clone();
        let lower = host.to_ascii_lowercase();
        let regex_mode = self.hosts.regex_mode(&gw, &lower);
        let tls = self.hosts.has_tls(&gw, &lower);
        if let Some(suffix) = host.strip_prefix('*') {
            self.note(Severity::Manual, format!(
                "host {host:?}: an Ingress wildcard matches one label, an HTTPRoute wildcard any number; requests for deeper names (a.b{suffix}) would now be served. No Gateway API field keeps this: list the hosts instead, or accept it (convert --verify reports it)"
            ));
        }
        if regex_mode {
            self.note(Severity::Kept, format!(
                "host {host:?} is in nginx's regex mode (use-regex or rewrite-target on some Ingress of the host): every path is a RegularExpression match \"(?i)<path>.*\" (case-insensitive, from the start of the path), Rust regex syntax"
            ));
        }
        self.app_root(host, app_root_name, emitted);
        self.www_twin(host, www_name, emitted);
        // Each path's rules (its canary variants with it) stay in one HTTPRoute; a host
        // with more than 16 rules (the Gateway API limit) gets several.
        let mut chunks: Vec<Vec<HttpRouteRules>> = vec![];
        for p in paths {
            let Some(r) = self.path_rules(&gw, &lower, regex_mode, p) else {
                continue;
            };
            match chunks.last_mut() {
                Some(c) if c.len() + r.len() <= MAX_RULES => c.extend(r),
                _ => chunks.push(r),
            }
        }
        let hostnames: Vec<String> = if host.is_empty() {
            vec![]
        } else {
            vec![host.to_string()]
        };
        let mut own = TrafficPolicySpec::default();
        if self.defaults.to_https(&self.o.annotations.ingress, tls) {
            own.https_redirect = Some(true);
        }
        if let (true, Some(h)) = (tls, &self.defaults.hsts) {
            own.hsts = Some(Hsts {
                enabled: true,
                max_age: h.max_age,
                include_sub_domains: h.include_sub_domains,
                preload: h.preload,
            });
        }
        if chunks.len() > 1 {
            self.note(Severity::Kept, format!("host {host:?}: more rules than the 16 an HTTPRoute may have, so {} HTTPRoutes; each path keeps its rules together", chunks.len()));
        }
        for (k, rules) in chunks.into_iter().enumerate() {
            let name = match k {
                0 => name.clone(),
                _ => format!("{name}-{}", k + 1),
            };
            self.push_route(&name, &hostnames, rules);
            emitted.common_targets.push(name.clone());
            if own != TrafficPolicySpec::default() {
                emitted
                    .own_policies
                    .push((format!("{name}-https"), own.clone()));
            }
        }
    }

    /// app-root: its own route, as translation gives its redirect no policies.
    fn app_root(&mut self, host: &str, name: String, emitted: &mut Emitted) {
        let Some(root) = self.o.annotations.ingress.app_root.clone() else {
            return;
        };
        let redirect = objects::redirect(HttpRouteRulesFiltersRequestRedirect {
            path: Some(objects::full_path(&root)),
            status_code: Some(302),
            ..Default::default()
        });
        let rule = objects::rule(
            objects::path_match(&PathKind::Exact, "/", None),
            vec![redirect],
            vec![],
        );
        self.push_route(&name, &[host.to_string()], vec![rule]);
        emitted
            .own_policies
            .push((name, redirect_style(true, false)));
        self.note(Severity::Kept, "app-root: an Exact / rule redirecting 302; a TrafficPolicy redirect.dropQuery drops the query as nginx does");
    }

    /// from-to-www-redirect: the twin host redirects 308 to this one.
    fn www_twin(&mut self, host: &str, name: String, emitted: &mut Emitted) {
        let wanted = self.o.annotations.ingress.from_to_www_redirect;
        if !wanted || host.is_empty() || host.starts_with('*') {
            return;
        }
        let twin = nginx::www_twin(host);
        if self.hosts.named(self.o.gateway, &twin.to_ascii_lowercase())
            || emitted.twins.contains(&twin)
        {
            return;
        }
        emitted.twins.push(twin.clone());
        let redirect = objects::redirect(HttpRouteRulesFiltersRequestRedirect {
            hostname: Some(host.to_string()),
            status_code: Some(308),
            ..Default::default()
        });
        let rule = objects::rule(
            objects::path_match(&PathKind::Prefix, "/", None),
            vec![redirect],
            vec![],
        );
        self.push_route(&name, &[twin], vec![rule]);
        emitted
            .own_policies
            .push((name, redirect_style(false, true)));
    }

    /// defaultBackend: what no rule of the Ingress's hosts matched, as a PathPrefix /
    /// rule for the Ingress's hosts and one for any host.
    fn default_backend(
        &mut self,
        default: &IngressBackend,
        named: &[String],
        emitted: &mut Emitted,
    ) {
        let ns = self.key.namespace.clone();
        let backend = match backend_ref(self.store, &ns, default) {
            Ok(b) => b,
            Err(e) => {
                self.note(Severity::NotConverted, format!("spec.defaultBackend: {e}"));
                return;
            }
        };
        let filters = self.fixed_redirect().into_iter().collect();
        let rule = objects::rule(
            objects::path_match(&PathKind::Prefix, "/", None),
            filters,
            vec![backend],
        );
        let base = self.key.name.clone();
        if !named.is_empty() {
            let name = format!("{base}-default-hosts");
            self.push_route(&name, named, vec![rule.clone()]);
            emitted.common_targets.push(name);
        }
        let name = format!("{base}-default");
        self.push_route(&name, &[], vec![rule]);
        emitted.common_targets.push(name);
        self.note(Severity::Kept, "spec.defaultBackend: a PathPrefix / rule for the Ingress's hosts and one for any host; the Ingress ranks it behind every route of a host, an HTTPRoute / rule ties with other / rules by age");
    }

    /// The TrafficPolicy every route of the Ingress shares: what its annotations say (the
    /// spec translation compiles), with the redirect style of its fixed redirect.
    fn common_policy(&self) -> TrafficPolicySpec {
        let mut spec = self.o.annotations.policy.clone();
        if self.o.annotations.ingress.redirect.is_some() {
            spec.redirect = Some(RedirectPolicy {
                drop_query: true,
                strip_trailing_slash: false,
            });
        }
        spec
    }

    fn push_route(&mut self, name: &str, hostnames: &[String], rules: Vec<HttpRouteRules>) {
        let gw = self.o.gateway;
        let ns = self.key.namespace.clone();
        let namespace = (gw.namespace != ns).then_some(gw.namespace.as_str());
        // The listeners the class's Ingresses use, and no others.
        let parents: Vec<HttpRouteParentRefs> = if self.defaults.sections.is_empty() {
            vec![objects::parent(&gw.name, namespace, None)]
        } else {
            self.defaults
                .sections
                .iter()
                .map(|s| objects::parent(&gw.name, namespace, Some(s)))
                .collect()
        };
        let metadata = objects::metadata(name, &ns, &self.key.to_string());
        let route = objects::route(metadata, parents, hostnames, rules);
        self.out.objects.push(Converted::Route(Box::new(route)));
    }

    fn push_policy(&mut self, name: &str, targets: &[String], spec: TrafficPolicySpec) {
        let metadata = objects::metadata(name, &self.key.namespace, &self.key.to_string());
        let policy = objects::policy(metadata, targets, spec);
        self.out.objects.push(Converted::Policy(Box::new(policy)));
    }
}

/// A policy saying how the rules' RequestRedirect filters treat the query and a trailing
/// slash.
fn redirect_style(drop_query: bool, strip_trailing_slash: bool) -> TrafficPolicySpec {
    TrafficPolicySpec {
        redirect: Some(RedirectPolicy {
            drop_query,
            strip_trailing_slash,
        }),
        ..Default::default()
    }
}

/// An Ingress backend as an HTTPRoute backendRef (a named port looked up on the Service).
fn backend_ref(
    store: &Store,
    ns: &str,
    b: &IngressBackend,
) -> Result<HttpRouteRulesBackendRefs, String> {
    match &b.service {
        Some(svc) => service_ref(store, ns, svc),
        None => Err("a resource backend has no HTTPRoute equivalent (not served either)".into()),
    }
}

/// A Service backend as an HTTPRoute backendRef.
fn service_ref(
    store: &Store,
    ns: &str,
    svc: &IngressServiceBackend,
) -> Result<HttpRouteRulesBackendRefs, String> {
    let port = svc.port.as_ref().ok_or("the backend names no port")?;
    let number = match (&port.name, port.number) {
        (Some(name), _) if !name.is_empty() => {
            let Some(service) = store.services.get(&ObjectKey::new(ns, svc.name.as_str())) else {
                return Err(format!(
                    "port {name:?} of Service {ns}/{}: the Service is not in the files, and an HTTPRoute needs the port's number; add the Service's YAML, or convert with --cluster",
                    svc.name
                ));
            };
            service
                .spec
                .as_ref()
                .and_then(|s| s.ports.as_ref())
                .and_then(|ports| ports.iter().find(|p| p.name.as_deref() == Some(name)))
                .map(|p| p.port)
                .ok_or(format!(
                    "port {name:?} of Service {ns}/{}: the Service has no port of that name, and an HTTPRoute needs the number",
                    svc.name
                ))?
        }
        (_, Some(n)) => n,
        _ => return Err("the backend names no port".into()),
    };
    Ok(objects::backend(&svc.name, number))
}
