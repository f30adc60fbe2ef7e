//! Moving Ingresses to Gateway API, proven: `gatehouse convert --verify` translates the
//! store twice, once as it is and once with the converted Ingresses replaced by the
//! HTTPRoutes and TrafficPolicies `convert` wrote (read back from their YAML), compiles both
//! models with the data plane's own route tables, and sends every distinguishing request
//! through both lookups: each host the Ingresses name (and a deeper and an unknown one),
//! each path with its boundary neighbours, each canary header and cookie. For each it
//! compares what would happen: the answer Gatehouse gives itself (a redirect and its
//! Location), or the backends with their weights, the path after rewrites, the other
//! filters and every policy. Pure: no sockets.

pub mod convert;
pub mod setup;

use convert::{CONVERTED_FROM, Conversion};
use gatehouse_dataplane::policies::filters::{expand_template, modify_path, redirect_location};
use gatehouse_dataplane::runtime::{Bind, CompiledRoute, PathRule, RequestView, Runtime};
use gatehouse_model::ir::{
    BackendTarget, Config, Filter, PathMatch, PathModifier, Protocol, Route, WeightedBackend,
};
use gatehouse_translate::store::{Object, ObjectKey, Store};
use gatehouse_translate::{Settings, translate};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// One request the check sends through both lookups.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Probe {
    pub port: u16,
    pub tls: bool,
    pub host: String,
    /// Path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(
            f,
            "curl '{scheme}://{}:{}{}'",
            self.host, self.port, self.target
        )?;
        for (k, v) in &self.headers {
            write!(f, " -H '{k}: {v}'")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct Difference {
    pub probe: Probe,
    pub ingress: String,
    pub converted: String,
}

#[derive(Debug, Default)]
pub struct Verdict {
    pub probes: usize,
    pub differences: Vec<Difference>,
}

impl Verdict {
    /// The differences, each with the request that shows it; "" when there are none.
    /// The first differences (each with the request that shows it), and how many more.
    pub fn describe(&self) -> String {
        const SHOWN: usize = 20;
        let mut s = String::new();
        if self.differences.len() > SHOWN {
            let _ = writeln!(
                s,
                "({} more differences not shown)",
                self.differences.len() - SHOWN
            );
        }
        for d in self.differences.iter().take(SHOWN) {
            let _ = writeln!(
                s,
                "difference: {}\n  Ingress:   {}\n  converted: {}",
                d.probe, d.ingress, d.converted
            );
        }
        s
    }
}

/// The store with the converted Ingresses replaced by the converted objects, read back
/// from `yaml` as a user would apply them. Each object takes its Ingress's creation time,
/// so age-ordered ties come out as they did.
pub fn converted_store(
    store: &Store,
    conversion: &Conversion,
    yaml: &str,
) -> Result<Store, String> {
    let (objects, errors) =
        gatehouse_translate::yaml::parse_file(std::path::Path::new("converted.yaml"), yaml);
    if let Some(e) = errors.first() {
        return Err(format!("the converted YAML does not load: {e}"));
    }
    let mut out = store.clone();
    for key in &conversion.replaced {
        out.ingresses.remove(key);
    }
    for mut object in objects {
        let from = match &object {
            Object::HttpRoute(o) => o.metadata.annotations.clone(),
            Object::TrafficPolicy(o) => o.metadata.annotations.clone(),
            _ => None,
        }
        .and_then(|a| a.get(CONVERTED_FROM).cloned());
        let created = from
            .and_then(|f| {
                let (ns, name) = f.split_once('/')?;
                store.ingresses.get(&ObjectKey::new(ns, name))
            })
            .and_then(|i| i.metadata.creation_timestamp.clone());
        object.meta_mut().creation_timestamp = created;
        out.insert(object);
    }
    Ok(out)
}

/// The converted objects as one YAML stream, as `gatehouse convert` prints them.
pub fn to_yaml(conversion: &Conversion) -> Result<String, String> {
    let mut out = String::new();
    for o in &conversion.objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(o).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// Compares the Ingresses of `store` with `converted` over every distinguishing request.
pub fn verify(store: &Store, converted: &Store, settings: &Settings) -> Result<Verdict, String> {
    let before = translate(store, settings).config;
    let after = translate(converted, settings).config;
    let rt_before = compile(&before).map_err(|e| format!("the Ingresses do not compile: {e}"))?;
    let rt_after =
        compile(&after).map_err(|e| format!("the converted routes do not compile: {e}"))?;
    let mut verdict = Verdict::default();
    for probe in probes(store, &before) {
        verdict.probes += 1;
        let a = outcome(&rt_before, &probe);
        let b = outcome(&rt_after, &probe);
        if a != b {
            verdict.differences.push(Difference {
                probe,
                ingress: a,
                converted: b,
            });
        }
    }
    Ok(verdict)
}

fn compile(config: &Config) -> Result<Runtime, String> {
    gatehouse_dataplane::runtime::compile(config, 1)
}

/// The requests that tell routing configurations apart, from the Ingresses' own hosts,
/// paths, canary headers and cookies, on every listener port of the model.
pub fn probes(store: &Store, config: &Config) -> BTreeSet<Probe> {
    let mut hosts: BTreeSet<String> = BTreeSet::from(["unknown.invalid".to_string()]);
    let mut paths: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // Canary headers and cookies, tried on the canary's hosts.
    let mut headers: BTreeMap<String, BTreeSet<Vec<(String, String)>>> = BTreeMap::new();
    let generic = ["/", "/zz-none", "/.well-known/acme-challenge/t"];
    let mut all_paths: BTreeSet<String> = generic.iter().map(|p| p.to_string()).collect();
    for ingress in store.ingresses.values() {
        let annotations = ingress.metadata.annotations.clone().unwrap_or_default();
        let get = |k: &str| annotations.get(&format!("nginx.ingress.kubernetes.io/{k}"));
        let mut variants: Vec<Vec<(String, String)>> = vec![];
        if let Some(h) = get("canary-by-header") {
            for v in ["always", "never", "other"]
                .into_iter()
                .map(str::to_string)
                .chain(get("canary-by-header-value").cloned())
            {
                variants.push(vec![(h.clone(), v)]);
            }
        }
        if let Some(c) = get("canary-by-cookie") {
            for v in ["always", "never"] {
                variants.push(vec![("cookie".into(), format!("a=1; {c}={v}"))]);
            }
        }
        for rule in ingress.spec.iter().flat_map(|s| s.rules.iter().flatten()) {
            let host = rule.host.clone().unwrap_or_default().to_ascii_lowercase();
            headers
                .entry(host.clone())
                .or_default()
                .extend(variants.iter().cloned());
            let mut names = vec![];
            match host.strip_prefix("*.") {
                Some(suffix) => {
                    names.push(format!("one.{suffix}"));
                    names.push(format!("two.deep.{suffix}"));
                }
                None if host.is_empty() => {}
                None => {
                    names.push(host.clone());
                    names.push(gatehouse_translate::nginx::www_twin(&host));
                }
            }
            let mut own = BTreeSet::new();
            for p in rule.http.iter().flat_map(|h| &h.paths) {
                let v = p.path.clone().unwrap_or_else(|| "/".into());
                let trimmed = v.trim_end_matches('/');
                for candidate in [
                    v.clone(),
                    format!("{trimmed}/"),
                    format!("{trimmed}/x"),
                    format!("{trimmed}x"),
                    format!("{v}?q=1"),
                    v.to_ascii_uppercase(),
                    trimmed
                        .get(..trimmed.len().saturating_sub(1))
                        .unwrap_or("/")
                        .to_string(),
                ] {
                    if candidate.starts_with('/') {
                        own.insert(candidate);
                    }
                }
            }
            all_paths.extend(own.iter().cloned());
            for name in names {
                hosts.insert(name.clone());
                paths.entry(name).or_default().extend(own.iter().cloned());
            }
        }
    }
    let ports: BTreeSet<(u16, bool)> = config
        .listeners
        .iter()
        .map(|l| (l.port, l.protocol == Protocol::Https))
        .collect();
    let mut out = BTreeSet::new();
    for host in &hosts {
        let host_paths = paths
            .get(host)
            .map(|own| {
                own.iter()
                    .cloned()
                    .chain(generic.iter().map(|g| g.to_string()))
                    .collect::<BTreeSet<_>>()
            })
            .unwrap_or_else(|| all_paths.clone());
        for &(port, tls) in &ports {
            let none = vec![];
            let variants = headers.get(host).into_iter().flatten().chain([&none]);
            let variants: Vec<&Vec<(String, String)>> = variants.collect();
            for target in &host_paths {
                for h in &variants {
                    out.insert(Probe {
                        port,
                        tls,
                        host: host.clone(),
                        target: target.clone(),
                        headers: (*h).clone(),
                    });
                }
            }
        }
    }
    out
}

/// What happens to a request, as text: the route's decision with every policy, and no
/// names that differ only because the objects do (sources, rate limit zones).
fn outcome(runtime: &Runtime, probe: &Probe) -> String {
    let Some(bind) = runtime.binds.values().find(|b| b.addr.port() == probe.port) else {
        return "no listener on the port".into();
    };
    let mut headers = http::HeaderMap::new();
    for (k, v) in &probe.headers {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            headers.append(k, v);
        }
    }
    let (path, query) = match probe.target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (probe.target.as_str(), None),
    };
    let method = http::Method::GET;
    let req = RequestView {
        host: &probe.host,
        path,
        query,
        method: &method,
        headers: gatehouse_dataplane::runtime::Headers::Map(&headers),
    };
    let Some((route, compiled)) = model_route(bind, &req) else {
        return "404 no route".into();
    };
    describe(route, compiled, probe, path, query)
}

/// The model route the data plane's lookup picks, with its compiled form.
fn model_route<'b>(
    bind: &'b Bind,
    req: &RequestView<'_>,
) -> Option<(&'b Route, &'b CompiledRoute)> {
    let (_, chosen) = bind.route(req).ok()?;
    Some((&*chosen.model, &**chosen))
}

fn describe(
    route: &Route,
    compiled: &CompiledRoute,
    probe: &Probe,
    path: &str,
    query: Option<&str>,
) -> String {
    let prefix = match &route.matcher.path {
        PathMatch::Prefix(p) => Some(p.as_str()),
        _ => None,
    };
    let mut out = String::new();
    let mut sent_path = path.to_string();
    let mut sent_host = probe.host.clone();
    for f in &route.filters {
        match f {
            Filter::Redirect(r) => {
                return format!(
                    "{} to {}",
                    r.status,
                    redirect_location(r, probe.tls, &probe.host, probe.port, path, query, prefix)
                );
            }
            Filter::RedirectTo(r) => return format!("{} to {}", r.status, r.location),
            Filter::Rewrite(rw) => {
                if let Some(h) = &rw.hostname {
                    sent_host.clone_from(h);
                }
                // The regex the data plane compiled, not a second copy of it.
                sent_path = match (&rw.path, &compiled.path) {
                    (Some(PathModifier::RegexTemplate(t)), PathRule::Regex(re)) => {
                        expand_template(t, re, path)
                    }
                    (Some(m), _) => modify_path(m, path, prefix),
                    (None, _) => sent_path,
                };
            }
            other => {
                let _ = write!(out, "filter {other:?}; ");
            }
        }
    }
    let _ = write!(
        out,
        "to {} as {sent_host}{sent_path}",
        backends(&route.backends)
    );
    let mut limit = route.rate_limit.clone();
    if let Some(l) = &mut limit {
        l.zone.clear();
    }
    // Only what is set, so a difference stands out.
    let policies: [(&str, Option<String>); 8] = [
        (
            "timeouts",
            (!route.timeouts.is_default()).then(|| format!("{:?}", route.timeouts)),
        ),
        ("retry", route.retry.as_ref().map(|r| format!("{r:?}"))),
        ("body", route.max_request_body.map(|b| b.to_string())),
        ("access", route.access.as_ref().map(|a| format!("{a:?}"))),
        ("rate", limit.map(|l| format!("{l:?}"))),
        ("balance", route.balance.as_ref().map(|b| format!("{b:?}"))),
        (
            "auth",
            route.external_auth.as_ref().map(|a| format!("{a:?}")),
        ),
        ("hsts", route.hsts.as_ref().map(|h| h.header_value())),
    ];
    for (name, value) in policies {
        if let Some(v) = value {
            let _ = write!(out, "; {name} {v}");
        }
    }
    out
}

/// Backends with weights reduced to lowest terms, in a fixed order.
fn backends(list: &[WeightedBackend]) -> String {
    let g = list.iter().map(|b| b.weight).fold(0, gcd).max(1);
    let mut parts: Vec<String> = list
        .iter()
        .filter(|b| b.weight > 0)
        .map(|b| {
            let target = match &b.target {
                BackendTarget::Cluster(c) => c.clone(),
                // Behaviour, not the message: every invalid backend is answered 500, and
                // the same missing Service is named at `spec.rules[0].http.paths[0]` on one
                // side and at `spec.rules[0].backendRefs[0]` on the other.
                BackendTarget::Invalid(_) => "invalid (answered 500)".to_string(),
            };
            format!("{target}x{} {:?}", b.weight / g, b.filters)
        })
        .collect();
    parts.sort();
    format!("[{}]", parts.join(", "))
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The migration example's YAML files, loaded as the file source would.
    fn examples() -> Store {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/migration");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("examples/migration")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        let texts: Vec<_> = files
            .into_iter()
            .map(|f| (f.clone(), std::fs::read_to_string(f).expect("readable")))
            .collect();
        let (store, errors) = gatehouse_translate::yaml::store_of(&texts);
        assert!(errors.is_empty(), "{errors:?}");
        store
    }

    /// Converts, then verifies `edit` applied to the converted YAML.
    fn check(store: &Store, edit: impl Fn(String) -> String) -> (Conversion, Verdict) {
        let settings = Settings::default();
        let conversion = convert::convert(store, &settings);
        let yaml = edit(to_yaml(&conversion).unwrap());
        let converted = converted_store(store, &conversion, &yaml).unwrap();
        let verdict = verify(store, &converted, &settings).unwrap();
        (conversion, verdict)
    }

    #[test]
    fn examples_convert_with_no_difference() {
        let store = examples();
        let (conversion, verdict) = check(&store, |y| y);
        assert!(store.ingresses.len() >= 30);
        assert_eq!(conversion.replaced.len(), store.ingresses.len());
        assert!(verdict.probes > 1000, "{} probes", verdict.probes);
        assert!(verdict.differences.is_empty(), "{}", verdict.describe());
    }

    #[test]
    fn a_wrong_conversion_shows_the_request_that_differs() {
        let store = examples();
        // A canary weight mistyped: the weighted request to the canary's host differs.
        let (_, verdict) = check(&store, |y| y.replace("weight: 20", "weight: 30"));
        assert!(
            verdict
                .differences
                .iter()
                .any(|d| d.probe.host == "cw.example.com" && d.probe.target == "/"),
            "{}",
            verdict.describe()
        );
        assert!(
            verdict
                .differences
                .iter()
                .all(|d| d.probe.host == "cw.example.com")
        );
        // A policy left out: the rate limit is gone, and the report says so.
        let (_, verdict) = check(&store, |y| {
            y.split("---\n")
                .filter(|d| !(d.contains("kind: TrafficPolicy") && d.contains("name: rate-rps\n")))
                .collect::<Vec<_>>()
                .join("---\n")
        });
        let d = verdict
            .differences
            .iter()
            .find(|d| d.probe.host == "rps.example.com")
            .expect("a difference on rps.example.com");
        assert!(
            d.ingress.contains("rate") && !d.converted.contains("rate"),
            "{d:?}"
        );
    }

    #[test]
    fn wildcard_hosts_widen_and_the_check_says_where() {
        let mut store = examples();
        let yaml = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: wild, namespace: apps}
spec:
  ingressClassName: nginx
  rules:
  - host: '*.wild.example.com'
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
";
        let (objects, errors) =
            gatehouse_translate::yaml::parse_file(std::path::Path::new("w.yaml"), yaml);
        assert!(errors.is_empty());
        for o in objects {
            store.insert(o);
        }
        let (conversion, verdict) = check(&store, |y| y);
        assert!(
            conversion
                .notes
                .iter()
                .any(|n| n.text.contains("one label"))
        );
        assert!(!verdict.differences.is_empty());
        assert!(
            verdict
                .differences
                .iter()
                .all(|d| d.probe.host == "two.deep.wild.example.com"),
            "{}",
            verdict.describe()
        );
    }
}
