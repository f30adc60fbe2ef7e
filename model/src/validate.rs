//! Validation of a model `Config`: what the data plane refuses (NACKs) and the operator
//! checks before it publishes. Both sides share these functions so they agree exactly.

use crate::ir::{BackendTarget, Config, Filter, PathMatch, PathModifier, StringMatch, VirtualHost};
use crate::seen::SeenHosts;
use std::collections::HashSet;

/// Regexes in routes must match the whole path or value. Size limits keep a hostile pattern
/// from costing the data plane memory.
/// The path modifiers of a route's rewrite and redirect filters.
fn path_modifiers(route: &crate::ir::Route) -> impl Iterator<Item = &PathModifier> {
    route.filters.iter().filter_map(|f| match f {
        Filter::Rewrite(r) => r.path.as_ref(),
        Filter::Redirect(r) => r.path.as_ref(),
        _ => None,
    })
}

/// `pattern` matching whole strings only. Compiled once per process and pattern: the
/// operator validates, the data plane validates and compiles, on every config version,
/// and compiling is most of what a version with hundreds of regexes costs. (A compiled
/// `Regex` is shared by clones; the memo is emptied when it holds too many patterns.)
pub fn anchored_regex(pattern: &str) -> Result<regex::Regex, String> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    const MAX_REMEMBERED: usize = 16_384;
    static MEMO: OnceLock<Mutex<HashMap<String, Result<regex::Regex, String>>>> = OnceLock::new();
    let memo = MEMO.get_or_init(Mutex::default);
    if let Some(known) = memo.lock().ok().and_then(|m| m.get(pattern).cloned()) {
        return known;
    }
    let compiled = compile_anchored(pattern);
    if let Ok(mut m) = memo.lock() {
        if m.len() >= MAX_REMEMBERED {
            m.clear();
        }
        m.insert(pattern.to_string(), compiled.clone());
    }
    compiled
}

fn compile_anchored(pattern: &str) -> Result<regex::Regex, String> {
    // Check the user's own text first, so errors point into what they wrote.
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| one_line(&e))?;
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map_err(|e| one_line(&e))
}

fn one_line(e: &regex::Error) -> String {
    // regex's messages draw the pattern over several lines; keep the last one, the reason.
    e.to_string()
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The spec's bound for a backendRef weight.
pub const MAX_WEIGHT: u32 = 1_000_000;

/// An HTTP header name (RFC 9110 token).
pub fn header_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header value we can send: visible ASCII, spaces and tabs.
pub fn header_value_ok(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// A path we can put in a request line or Location: starts with '/', visible ASCII, no
/// space, query or fragment.
pub fn path_ok(path: &str) -> bool {
    path.starts_with('/')
        && path
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) && b != b'?' && b != b'#')
}

/// A DNS hostname (for redirects and rewrites).
pub fn hostname_ok(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Why a filter cannot be served, naming the field.
pub fn check_filter(filter: &Filter) -> Result<(), String> {
    let headers = |m: &crate::ir::HeaderModifier| -> Result<(), String> {
        for (n, v) in m.set.iter().chain(&m.add) {
            if !header_name_ok(n) {
                return Err(format!("header name {n:?} is not a valid HTTP header name"));
            }
            if !header_value_ok(v) {
                return Err(format!(
                    "header {n:?}: value {v:?} is not a valid HTTP header value"
                ));
            }
        }
        match m.remove.iter().find(|n| !header_name_ok(n)) {
            Some(n) => Err(format!("header name {n:?} is not a valid HTTP header name")),
            None => Ok(()),
        }
    };
    let path = |p: &Option<PathModifier>| match p {
        Some(PathModifier::ReplaceFullPath(v) | PathModifier::ReplacePrefixMatch(v))
            if !path_ok(v) =>
        {
            Err(format!("path {v:?} is not a valid absolute path"))
        }
        _ => Ok(()),
    };
    let host = |h: &Option<String>| match h {
        Some(h) if !hostname_ok(h) => Err(format!("hostname {h:?} is not a valid hostname")),
        _ => Ok(()),
    };
    match filter {
        Filter::RequestHeaders(m) | Filter::ResponseHeaders(m) => headers(m),
        Filter::Redirect(r) => {
            if !matches!(r.status, 301 | 302 | 303 | 307 | 308) {
                return Err(format!(
                    "redirect status {} is not 301, 302, 303, 307 or 308",
                    r.status
                ));
            }
            if let Some(s) = &r.scheme
                && s != "http"
                && s != "https"
            {
                return Err(format!("redirect scheme {s:?} is not http or https"));
            }
            host(&r.hostname)?;
            path(&r.path)
        }
        Filter::Rewrite(r) => {
            host(&r.hostname)?;
            path(&r.path)
        }
        Filter::NginxCors(c) => {
            for v in [&c.allow_methods, &c.allow_headers, &c.expose_headers] {
                if !v.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
                    return Err(format!("CORS header value {v:?} is not printable ASCII"));
                }
            }
            Ok(())
        }
        Filter::RedirectTo(r) => {
            if !(300..=308).contains(&r.status) {
                return Err(format!("redirect status {} is not 3xx", r.status));
            }
            if r.location.is_empty() || !r.location.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!("redirect location {:?} is not a URL", r.location));
            }
            Ok(())
        }
        Filter::Mirror(m) => {
            if m.denominator == 0 || m.numerator > m.denominator {
                return Err(format!(
                    "mirror fraction {}/{} is not within 0..=1",
                    m.numerator, m.denominator
                ));
            }
            Ok(())
        }
        Filter::Cors(c) => {
            let token_or_star = |v: &String| v == "*" || header_name_ok(v);
            if let Some(m) = c.allow_methods.iter().find(|m| !token_or_star(m)) {
                return Err(format!("cors allowMethods: {m:?} is not a method"));
            }
            let names = c.allow_headers.iter().chain(&c.expose_headers);
            if let Some(h) = names.into_iter().find(|h| !token_or_star(h)) {
                return Err(format!("cors: {h:?} is not a header name"));
            }
            if let Some(o) = c.allow_origins.iter().find(|o| !header_value_ok(o)) {
                return Err(format!("cors allowOrigins: {o:?} is not an origin"));
            }
            Ok(())
        }
    }
}

/// Problems that make a config unservable, each naming the resource and field.
pub fn validate(config: &Config) -> Result<(), Vec<String>> {
    ValidationMemo::default().validate(config)
}

/// Validation across versions: a virtual host that a version shares with the last valid
/// one (the same `Arc`, or equal) is not checked again while every cluster it may name is
/// still there, so a version that changes one hostname of thousands checks one.
#[derive(Default)]
pub struct ValidationMemo {
    /// Virtual hosts of the last valid version.
    hosts: SeenHosts,
    clusters: HashSet<String>,
}

impl ValidationMemo {
    pub fn validate(&mut self, config: &Config) -> Result<(), Vec<String>> {
        let mut errors = validate_frame(config).err().unwrap_or_default();
        let clusters: HashSet<&str> = config.clusters.iter().map(|c| c.key.as_str()).collect();
        // A cluster gone since the last version may be named by an unchanged virtual host.
        let cluster_gone = self.clusters.iter().any(|k| !clusters.contains(k.as_str()));
        let changes = self.hosts.changes(config, cluster_gone);
        for (listener, vh) in &changes.changed {
            validate_virtual_host(listener, vh, &|k| clusters.contains(k), &mut errors);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        self.hosts.record(&changes);
        if self.clusters.len() != clusters.len() || cluster_gone {
            self.clusters = clusters.into_iter().map(str::to_string).collect();
        } else {
            for k in clusters {
                if !self.clusters.contains(k) {
                    self.clusters.insert(k.to_string());
                }
            }
        }
        Ok(())
    }
}

/// Problems of a config outside its virtual hosts: references from listeners to
/// certificates and from route tables to listeners.
pub fn validate_frame(config: &Config) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    let listeners: HashSet<&str> = config.listeners.iter().map(|l| l.key.as_str()).collect();
    let certificates: HashSet<&str> = config.certificates.iter().map(|c| c.key.as_str()).collect();
    for l in &config.listeners {
        if let Some(Err(e)) = l.forwarding.tracing.as_ref().map(|t| t.check()) {
            errors.push(format!("Listener {}: forwarding.tracing.{e}", l.key));
        }
        for c in &l.certificates {
            if !certificates.contains(c.certificate.as_str()) {
                errors.push(format!(
                    "Listener {}: certificates: unknown Certificate {:?}",
                    l.key, c.certificate
                ));
            }
        }
    }
    for t in &config.route_tables {
        if !listeners.contains(t.listener.as_str()) {
            errors.push(format!("RouteTable {}: unknown listener", t.listener));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Problems of one virtual host of `listener`'s table, given the clusters of its version.
pub fn validate_virtual_host(
    listener: &str,
    vh: &VirtualHost,
    cluster_exists: &dyn Fn(&str) -> bool,
    errors: &mut Vec<String>,
) {
    for (i, route) in vh.routes.iter().enumerate() {
        // Only formatted when there is something to say.
        let at = || {
            format!(
                "RouteTable {} host {} route {i} ({} {}/{} rule {})",
                listener,
                vh.hostname,
                route.source.kind,
                route.source.namespace,
                route.source.name,
                route.source.rule
            )
        };
        if let PathMatch::Regex(p) = &route.matcher.path
            && let Err(e) = anchored_regex(p)
        {
            errors.push(format!("{}: match.path: invalid regex {p:?}: {e}", at()));
        }
        let values = route.matcher.headers.iter().chain(&route.matcher.query);
        for v in values {
            if let StringMatch::Regex(p) = &v.value
                && let Err(e) = anchored_regex(p)
            {
                errors.push(format!(
                    "{}: match {:?}: invalid regex {p:?}: {e}",
                    at(),
                    v.name
                ));
            }
        }
        let prefix_rewrites =
            path_modifiers(route).any(|m| matches!(m, PathModifier::ReplacePrefixMatch(_)));
        if prefix_rewrites && !matches!(route.matcher.path, PathMatch::Prefix(_)) {
            errors.push(format!(
                "{}: filters: ReplacePrefixMatch needs a PathPrefix match",
                at()
            ));
        }
        if let Some(a) = &route.access {
            for n in a.deny.iter().chain(&a.allow) {
                if let Err(e) = crate::ir::parse_network(n) {
                    errors.push(format!("{}: access: {e}", at()));
                }
            }
            if !(400..=599).contains(&a.status) {
                errors.push(format!(
                    "{}: access: status {} is not an error",
                    at(),
                    a.status
                ));
            }
        }
        if let Some(l) = &route.rate_limit {
            for n in &l.exempt {
                if let Err(e) = crate::ir::parse_network(n) {
                    errors.push(format!("{}: rate limit: {e}", at()));
                }
            }
            if l.per_second == Some(0)
                || l.per_minute == Some(0)
                || l.connections == Some(0)
                || l.burst_multiplier == 0
                || !(400..=599).contains(&l.status)
            {
                errors.push(format!("{}: rate limit: zero rate or bad status", at()));
            }
        }
        let template_rewrites =
            path_modifiers(route).any(|m| matches!(m, PathModifier::RegexTemplate(_)));
        if template_rewrites && !matches!(route.matcher.path, PathMatch::Regex(_)) {
            errors.push(format!(
                "{}: filters: a capture-group rewrite needs a regular expression path match",
                at()
            ));
        }
        for f in route
            .filters
            .iter()
            .chain(route.backends.iter().flat_map(|b| &b.filters))
        {
            if let Err(e) = check_filter(f) {
                errors.push(format!("{}: filters: {e}", at()));
            }
        }
        for b in &route.backends {
            if b.weight > MAX_WEIGHT {
                errors.push(format!(
                    "{}: backends: weight {} is over {MAX_WEIGHT}",
                    at(),
                    b.weight
                ));
            }
            if let BackendTarget::Cluster(key) = &b.target
                && !cluster_exists(key)
            {
                errors.push(format!("{}: backends: unknown Cluster {key:?}", at()));
            }
        }
        for f in &route.filters {
            if let Filter::Mirror(crate::ir::Mirror {
                target: BackendTarget::Cluster(key),
                ..
            }) = f
                && !cluster_exists(key)
            {
                errors.push(format!("{}: mirror: unknown Cluster {key:?}", at()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_with_unsendable_text_are_refused() {
        use crate::ir::{HeaderModifier, Rewrite};
        let set = |n: &str, v: &str| {
            Filter::RequestHeaders(HeaderModifier {
                set: vec![(n.into(), v.into())],
                ..Default::default()
            })
        };
        assert!(check_filter(&set("x-ok", "fine value")).is_ok());
        assert!(check_filter(&set("bad name", "v")).is_err());
        assert!(check_filter(&set("x", "line\nbreak")).is_err());
        let rewrite = |p: &str| {
            Filter::Rewrite(Rewrite {
                hostname: None,
                path: Some(PathModifier::ReplaceFullPath(p.into())),
            })
        };
        assert!(check_filter(&rewrite("/a/b")).is_ok());
        assert!(check_filter(&rewrite("/a b")).is_err());
        assert!(check_filter(&rewrite("relative")).is_err());
        assert!(!hostname_ok("bad_host.example.com"));
        assert!(hostname_ok("good-host.example.com"));
    }

    #[test]
    fn anchored_regex_matches_whole_string_only() {
        let re = anchored_regex("/v[0-9]+").unwrap();
        assert!(re.is_match("/v12"));
        assert!(!re.is_match("/v12/x"));
        assert!(!re.is_match("x/v1"));
        assert!(anchored_regex("(").is_err());
    }
}
