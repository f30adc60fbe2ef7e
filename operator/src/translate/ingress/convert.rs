//! `gatehouse convert`: Ingresses and their ingress-nginx annotations as Gateway API
//! HTTPRoutes plus TrafficPolicies, with a note for every semantic difference and how the
//! output keeps the behaviour. Pure: store in, objects and notes out.
//!
//! The output attaches to the Gateway the Ingress's class names (IngressClassParameters
//! `gatewayRef`), so the converted routes can be served beside the Ingresses and checked
//! with `gatehouse convert --verify` before the Ingresses are deleted. Gateways are never
//! written: the platform team owns them.

use super::*;
use gatehouse_model::ir::Balance;
use serde_json::{Value, json};

/// Annotation on every converted object naming the Ingress it came from.
pub const CONVERTED_FROM: &str = "gatehouse.dev/converted-from";

#[derive(Debug, Default)]
pub struct Conversion {
    pub objects: Vec<Value>,
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
struct Canary {
    ingress: ObjectKey,
    settings: nginx::Canary,
    backend: Result<Value, String>,
}

pub fn convert(store: &Store, settings: &Settings) -> Conversion {
    let mut status = StatusReport::default();
    let plan = plan_classes(store, settings, &mut status);
    let ours = ours(store, &plan);
    let hosts = HostFacts::of(&ours);
    let canaries: BTreeMap<CanaryKey, Canary> = canary_paths(&ours)
        .into_iter()
        .map(|(rule_key, (o, settings, svc))| {
            let key = ObjectKey::of(o.ingress);
            let backend = service_ref(store, &key.namespace, svc);
            let canary = Canary {
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
            hosts: &hosts,
            canaries: &canaries,
            out: &mut out,
        }
        .run();
    }
    out
}

struct Converter<'a, 'b> {
    store: &'a Store,
    /// What the Ingress's class decides (HTTPS redirect, HSTS, listeners).
    defaults: ClassDefaults,
    o: &'a Ours<'a>,
    hosts: &'a HostFacts,
    canaries: &'a BTreeMap<CanaryKey, Canary>,
    out: &'b mut Conversion,
}

impl Converter<'_, '_> {
    fn note(&mut self, severity: Severity, text: impl Into<String>) {
        self.out.notes.push(Note {
            ingress: ObjectKey::of(self.o.ingress),
            severity,
            text: text.into(),
        });
    }

    fn run(mut self) {
        let ingress = self.o.ingress;
        let key = ObjectKey::of(ingress);
        let n = &self.o.annotations.settings;
        if n.canary.is_some() {
            self.note(
                Severity::Kept,
                "canary: its rules become header, cookie and weighted rules of the primary Ingress's HTTPRoute, in nginx's order (header, cookie, weight)",
            );
            self.out.replaced.push(key);
            return;
        }
        if let Some(why) = &self.o.annotations.refused {
            let why = why.clone();
            self.note(Severity::NotConverted, why);
            return;
        }
        if let Some(why) = &n.denied {
            let why = why.clone();
            self.note(
                Severity::NotConverted,
                format!("{why}; mend the annotation first"),
            );
            return;
        }
        let gw = self.o.gateway.clone();
        if !self.store.gateways.contains_key(&gw) {
            self.note(
                Severity::NotConverted,
                format!("its IngressClass serves it on a Gateway made for the class ({gw}); name an existing Gateway with IngressClassParameters gatewayRef first, so the HTTPRoutes have a parent"),
            );
            return;
        }
        for w in self.o.annotations.warnings.clone() {
            self.note(Severity::Kept, format!("{w} (not carried over either)"));
        }
        let spec = ingress.spec.clone().unwrap_or_default();
        for (k, tls) in spec.tls.iter().flatten().enumerate() {
            if let Some(secret) = &tls.secret_name {
                self.note(
                    Severity::Manual,
                    format!(
                        "spec.tls[{k}]: Secret {secret} for {:?} is offered by Gatehouse while the Ingress exists; before deleting the Ingress, add it to the certificateRefs of Gateway {gw}'s HTTPS listeners (a ReferenceGrant if namespaces differ)",
                        tls.hosts.clone().unwrap_or_default()
                    ),
                );
            }
        }

        let ns = key.namespace.clone();
        // Rules grouped by host, in order of first appearance.
        let mut groups: Vec<(
            String,
            Vec<&k8s_openapi::api::networking::v1::HTTPIngressPath>,
        )> = Vec::new();
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
        let base = key.name.clone();
        let route_name = |g: usize, suffix: &str| {
            let mut name = if groups.len() == 1 {
                base.clone()
            } else {
                format!("{base}-{g}")
            };
            name.push_str(suffix);
            name
        };
        // Routes taking the Ingress-wide policy, and routes with their own.
        let mut common_targets = Vec::new();
        let mut own_policies: Vec<(String, Value)> = Vec::new();
        let mut emitted_twins: Vec<String> = Vec::new();
        for (g, (host, paths)) in groups.iter().enumerate() {
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
            // app-root: its own route, as translation gives its redirect no policies.
            if let Some(root) = &n.app_root {
                let name = route_name(g, "-app-root");
                let rule = json!({
                    "matches": [{"path": {"type": "Exact", "value": "/"}}],
                    "filters": [{"type": "RequestRedirect", "requestRedirect": {
                        "path": {"type": "ReplaceFullPath", "replaceFullPath": root},
                        "statusCode": 302,
                    }}],
                });
                self.push_route(&name, std::slice::from_ref(host), vec![rule]);
                own_policies.push((
                    name,
                    json!({"redirect": {"dropQuery": true, "stripTrailingSlash": false}}),
                ));
                self.note(Severity::Kept, "app-root: an Exact / rule redirecting 302; a TrafficPolicy redirect.dropQuery drops the query as nginx does");
            }
            // from-to-www-redirect: the twin host redirects 308 to this one.
            if n.from_to_www_redirect && !host.is_empty() && !host.starts_with('*') {
                let twin = nginx::www_twin(host);
                if !self.hosts.named(&gw, &twin.to_ascii_lowercase())
                    && !emitted_twins.contains(&twin)
                {
                    emitted_twins.push(twin.clone());
                    let name = route_name(g, "-www");
                    let rule = json!({
                        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                        "filters": [{"type": "RequestRedirect", "requestRedirect": {
                            "hostname": host,
                            "statusCode": 308,
                        }}],
                    });
                    self.push_route(&name, &[twin], vec![rule]);
                    own_policies.push((
                        name,
                        json!({"redirect": {"dropQuery": false, "stripTrailingSlash": true}}),
                    ));
                }
            }
            // Each path's rules (its canary variants with it) stay in one HTTPRoute; a
            // host with more than 16 rules (the Gateway API limit) gets several.
            let mut chunks: Vec<Vec<Value>> = vec![];
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
                vec![host.clone()]
            };
            let to_https = self.defaults.to_https(n, tls);
            let mut own = serde_json::Map::new();
            if to_https {
                own.insert("httpsRedirect".into(), json!(true));
            }
            if let (true, Some(h)) = (tls, &self.defaults.hsts) {
                own.insert(
                    "hsts".into(),
                    json!({"enabled": true, "maxAge": h.max_age, "includeSubDomains": h.include_sub_domains, "preload": h.preload}),
                );
            }
            if chunks.len() > 1 {
                self.note(Severity::Kept, format!("host {host:?}: more rules than the 16 an HTTPRoute may have, so {} HTTPRoutes; each path keeps its rules together", chunks.len()));
            }
            for (k, rules) in chunks.into_iter().enumerate() {
                let name = match k {
                    0 => route_name(g, ""),
                    _ => route_name(g, &format!("-{}", k + 1)),
                };
                self.push_route(&name, &hostnames, rules);
                common_targets.push(name.clone());
                if !own.is_empty() {
                    own_policies.push((format!("{name}-https"), Value::Object(own.clone())));
                }
            }
        }
        // defaultBackend: what no rule of the Ingress's hosts matched.
        if let Some(default) = &spec.default_backend {
            match backend_ref(self.store, &ns, default) {
                Ok(backend) => {
                    let mut rule = json!({
                        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                        "backendRefs": [backend],
                    });
                    if let Some(f) = self.fixed_redirect() {
                        rule["filters"] = json!([f]);
                    }
                    let named: Vec<String> = groups
                        .iter()
                        .map(|(h, _)| h.clone())
                        .filter(|h| !h.is_empty())
                        .collect();
                    if !named.is_empty() {
                        let name = format!("{base}-default-hosts");
                        self.push_route(&name, &named, vec![rule.clone()]);
                        common_targets.push(name);
                    }
                    let name = format!("{base}-default");
                    self.push_route(&name, &[], vec![rule]);
                    common_targets.push(name);
                    self.note(Severity::Kept, "spec.defaultBackend: a PathPrefix / rule for the Ingress's hosts and one for any host; the Ingress ranks it behind every route of a host, an HTTPRoute / rule ties with other / rules by age");
                }
                Err(e) => self.note(Severity::NotConverted, format!("spec.defaultBackend: {e}")),
            }
        }
        // The Ingress-wide policy, and the per-route ones (the route name is the target,
        // with "-https" and the like dropped).
        let common = self.common_policy();
        if !common.as_object().is_none_or(|m| m.is_empty()) && !common_targets.is_empty() {
            self.push_policy(&base, &common_targets, common);
        }
        for (name, body) in own_policies {
            let target = name.strip_suffix("-https").unwrap_or(&name).to_string();
            self.push_policy(&name, &[target], body);
        }
        self.out.replaced.push(key);
    }

    /// The HTTPRoute rules of one Ingress path: canary variants first, then the path's own.
    fn path_rules(
        &mut self,
        gw: &ObjectKey,
        host: &str,
        regex_mode: bool,
        p: &k8s_openapi::api::networking::v1::HTTPIngressPath,
    ) -> Option<Vec<Value>> {
        let ns = ObjectKey::of(self.o.ingress).namespace;
        let value = p.path.clone().unwrap_or_else(|| "/".into());
        if !value.starts_with('/') {
            self.note(
                Severity::NotConverted,
                format!("path {value:?} does not start with / (not served either)"),
            );
            return None;
        }
        let path = if regex_mode {
            json!({"type": "RegularExpression", "value": format!("(?i){value}.*")})
        } else {
            match p.path_type.as_str() {
                "Exact" => json!({"type": "Exact", "value": value}),
                "Prefix" => json!({"type": "PathPrefix", "value": normalise_prefix(&value)}),
                "ImplementationSpecific" => {
                    self.note(Severity::Kept, format!("path {value:?} ImplementationSpecific: Gatehouse (like nginx without regex) matches it as a prefix, so it becomes PathPrefix"));
                    json!({"type": "PathPrefix", "value": normalise_prefix(&value)})
                }
                other => {
                    self.note(
                        Severity::NotConverted,
                        format!("path {value:?}: pathType {other:?} is not served either"),
                    );
                    return None;
                }
            }
        };
        let backend = match backend_ref(self.store, &ns, &p.backend) {
            Ok(b) => b,
            Err(e) => {
                self.note(Severity::NotConverted, format!("path {value:?}: {e}"));
                return None;
            }
        };
        let fixed = self.fixed_redirect();
        let rule = |headers: Option<Value>, backends: Vec<Value>| {
            let mut m = json!({"path": path});
            if let Some(h) = headers {
                m["headers"] = json!([h]);
            }
            let mut r = json!({"matches": [m], "backendRefs": backends});
            if let Some(f) = &fixed {
                r["filters"] = json!([f]);
            }
            r
        };
        let canary_key = (
            gw.clone(),
            host.to_string(),
            value.clone(),
            p.path_type.clone(),
        );
        let Some(canary) = self
            .canaries
            .get(&canary_key)
            .filter(|c| c.ingress != ObjectKey::of(self.o.ingress))
        else {
            return Some(vec![rule(None, vec![backend])]);
        };
        let to_canary = match &canary.backend {
            Ok(b) => b.clone(),
            Err(e) => {
                let e = format!("canary Ingress {}: {e}", canary.ingress);
                self.note(Severity::NotConverted, e);
                return None;
            }
        };
        let c = canary.settings.clone();
        let mut rules = Vec::new();
        let exact = |name: &str, v: &str| json!({"name": name, "value": v});
        let regex =
            |name: &str, v: String| json!({"type": "RegularExpression", "name": name, "value": v});
        if let Some(h) = &c.by_header {
            if let Some(v) = &c.by_header_value {
                rules.push(rule(Some(exact(h, v)), vec![to_canary.clone()]));
            } else if let Some(pat) = &c.by_header_pattern {
                rules.push(rule(
                    Some(regex(h, format!(".*(?:{pat}).*"))),
                    vec![to_canary.clone()],
                ));
            } else {
                rules.push(rule(Some(exact(h, "always")), vec![to_canary.clone()]));
                rules.push(rule(Some(exact(h, "never")), vec![backend.clone()]));
            }
        }
        if let Some(cookie) = &c.by_cookie {
            let is = |v: &str| format!("(?:.*;\\s*)?{}={v}(?:;.*)?", regex::escape(cookie));
            rules.push(rule(
                Some(regex("cookie", is("always"))),
                vec![to_canary.clone()],
            ));
            rules.push(rule(
                Some(regex("cookie", is("never"))),
                vec![backend.clone()],
            ));
        }
        let total = c.weight_total.max(100);
        let canary_weight = c.weight.min(total);
        let mut weighted = Vec::new();
        if total > canary_weight {
            let mut b = backend.clone();
            b["weight"] = json!(total - canary_weight);
            weighted.push(b);
        }
        if canary_weight > 0 {
            let mut b = to_canary;
            b["weight"] = json!(canary_weight);
            weighted.push(b);
        }
        rules.push(rule(None, weighted));
        Some(rules)
    }

    /// permanent-/temporal-redirect as a RequestRedirect (with the policy's dropQuery).
    fn fixed_redirect(&mut self) -> Option<Value> {
        let r = self.o.annotations.settings.redirect.clone()?;
        let parsed = (|| {
            let (scheme, rest) = r.location.split_once("://")?;
            if rest.contains('?') || !matches!(r.status, 301 | 302 | 303 | 307 | 308) {
                return None;
            }
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p.parse::<u16>().ok()?)),
                None => (authority, None),
            };
            let mut v = json!({
                "scheme": scheme,
                "hostname": host,
                "path": {"type": "ReplaceFullPath", "replaceFullPath": path},
                "statusCode": r.status,
            });
            if let Some(p) = port {
                v["port"] = json!(p);
            }
            Some(json!({"type": "RequestRedirect", "requestRedirect": v}))
        })();
        if parsed.is_none() {
            self.note(Severity::NotConverted, format!("redirect to {:?} with code {}: no RequestRedirect says the same (a query in the URL, or a code other than 301, 302, 303, 307, 308)", r.location, r.status));
        }
        parsed
    }

    /// The TrafficPolicy body every route of the Ingress shares.
    fn common_policy(&self) -> Value {
        let n = &self.o.annotations.settings;
        let mut p = serde_json::Map::new();
        let l = &n.limits;
        if l.any() {
            let mut r = json!({"burstMultiplier": l.burst_multiplier});
            if let Some(v) = l.rps {
                r["requestsPerSecond"] = json!(v);
            }
            if let Some(v) = l.rpm {
                r["requestsPerMinute"] = json!(v);
            }
            if let Some(v) = l.connections {
                r["connections"] = json!(v);
            }
            if !l.exempt.is_empty() {
                r["exempt"] = json!(l.exempt);
            }
            p.insert("rateLimit".into(), r);
        }
        if !n.allow_sources.is_empty() || !n.deny_sources.is_empty() {
            p.insert(
                "sourceAccess".into(),
                json!({"allow": n.allow_sources, "deny": n.deny_sources}),
            );
        }
        if let Some(b) = n.body_size.filter(|&b| b > 0) {
            p.insert("maxRequestBodyBytes".into(), json!(b));
        }
        match &n.balance {
            Some(Balance::Cookie(c)) => {
                p.insert(
                    "sessionAffinity".into(),
                    json!({"cookie": {
                        "name": c.name, "path": c.path, "maxAge": c.max_age, "expires": c.expires,
                        "sameSite": c.same_site, "domain": c.domain, "secure": c.secure,
                        "persistent": c.persistent,
                    }}),
                );
            }
            Some(Balance::Hash(_)) => {
                let raw = self
                    .o
                    .ingress
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(&format!("{}upstream-hash-by", nginx::PREFIX)))
                    .map(|v| v.trim().to_string());
                p.insert("sessionAffinity".into(), json!({"hashBy": raw}));
            }
            None => {}
        }
        if let Some(a) = &n.external_auth {
            p.insert(
                "externalAuth".into(),
                json!({"url": a.url, "method": a.method, "responseHeaders": a.response_headers, "signin": a.signin}),
            );
        }
        let t = &n.timeouts;
        if t.connect_s.is_some() || t.send_s.is_some() || t.read_s.is_some() {
            p.insert(
                "proxyTimeouts".into(),
                json!({"connectSeconds": t.connect_s, "sendSeconds": t.send_s, "readSeconds": t.read_s}),
            );
        }
        if n.backend_protocol != nginx::BackendProtocol::Http {
            p.insert("backendProtocol".into(), json!(n.backend_protocol));
        }
        if let Some(t) = &n.rewrite_target {
            p.insert("rewriteTarget".into(), json!(t));
        }
        if n.redirect.is_some() {
            p.insert(
                "redirect".into(),
                json!({"dropQuery": true, "stripTrailingSlash": false}),
            );
        }
        if let Some(c) = &n.cors {
            p.insert(
                "cors".into(),
                json!({"allowOrigins": c.allow_origins, "allowMethods": c.allow_methods,
                    "allowHeaders": c.allow_headers, "exposeHeaders": c.expose_headers,
                    "allowCredentials": c.allow_credentials, "maxAge": c.max_age}),
            );
        }
        strip_nulls(Value::Object(p))
    }

    fn metadata(&self, name: &str) -> Value {
        let key = ObjectKey::of(self.o.ingress);
        json!({
            "name": name,
            "namespace": key.namespace,
            "annotations": {CONVERTED_FROM: key.to_string()},
        })
    }

    fn push_route(&mut self, name: &str, hostnames: &[String], rules: Vec<Value>) {
        let gw = self.o.gateway;
        let ns = ObjectKey::of(self.o.ingress).namespace;
        let mut parent = json!({"name": gw.name});
        if gw.namespace != ns {
            parent["namespace"] = json!(gw.namespace);
        }
        // The listeners the class's Ingresses use, and no others.
        let parents: Vec<Value> = if self.defaults.sections.is_empty() {
            vec![parent]
        } else {
            self.defaults
                .sections
                .iter()
                .map(|s| {
                    let mut p = parent.clone();
                    p["sectionName"] = json!(s);
                    p
                })
                .collect()
        };
        let mut spec = json!({"parentRefs": parents, "rules": rules});
        if !hostnames.is_empty() {
            spec["hostnames"] = json!(hostnames);
        }
        let route = json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": self.metadata(name),
            "spec": spec,
        });
        self.out.objects.push(route);
    }

    fn push_policy(&mut self, name: &str, targets: &[String], body: Value) {
        let mut spec = json!({
            "targetRefs": targets
                .iter()
                .map(|t| json!({"group": GATEWAY_GROUP_NAME, "kind": "HTTPRoute", "name": t}))
                .collect::<Vec<_>>(),
        });
        if let (Some(s), Value::Object(b)) = (spec.as_object_mut(), body) {
            s.extend(b);
        }
        let policy = json!({
            "apiVersion": "gatehouse.dev/v1alpha1",
            "kind": "TrafficPolicy",
            "metadata": self.metadata(name),
            "spec": spec,
        });
        self.out.objects.push(policy);
    }
}

const GATEWAY_GROUP_NAME: &str = "gateway.networking.k8s.io";

/// Rules an HTTPRoute may have (the Gateway API CRD's maxItems).
const MAX_RULES: usize = 16;

/// An Ingress backend as an HTTPRoute backendRef (a named port looked up on the Service).
fn backend_ref(store: &Store, ns: &str, b: &IngressBackend) -> Result<Value, String> {
    match &b.service {
        Some(svc) => service_ref(store, ns, svc),
        None => Err("a resource backend has no HTTPRoute equivalent (not served either)".into()),
    }
}

/// A Service backend as an HTTPRoute backendRef.
fn service_ref(store: &Store, ns: &str, svc: &IngressServiceBackend) -> Result<Value, String> {
    let port = svc.port.as_ref().ok_or("the backend names no port")?;
    let number = match (&port.name, port.number) {
        (Some(name), _) if !name.is_empty() => store
            .services
            .get(&ObjectKey::new(ns, svc.name.as_str()))
            .and_then(|s| s.spec.as_ref())
            .and_then(|s| s.ports.as_ref())
            .and_then(|ports| ports.iter().find(|p| p.name.as_deref() == Some(name)))
            .map(|p| p.port)
            .ok_or(format!(
                "port {name:?} of Service {ns}/{}: the Service or its port is not known, and an HTTPRoute needs the number",
                svc.name
            ))?,
        (_, Some(n)) => n,
        _ => return Err("the backend names no port".into()),
    };
    Ok(json!({"name": svc.name, "port": number}))
}

/// Drops null fields (unset options) so the YAML shows only what is set.
fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}
