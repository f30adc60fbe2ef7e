//! ingress-nginx annotations (`nginx.ingress.kubernetes.io/*`), read into typed settings
//! that translation turns into the same model filters and policies HTTPRoute uses. Never
//! into configuration text: a value is parsed, checked and kept as data, or refused.
//!
//! What an invalid value does follows ingress-nginx v1.15 (docs/ingress.md): most are
//! ignored with a warning and the default applies; a few refuse the whole Ingress (the
//! redirect group, and every `*-snippet`, which Gatehouse never runs); a bad source range
//! denies the Ingress's paths (503), so a typo never opens what was meant to be closed.

use gatehouse_model::ir::{Balance, CookieAffinity, FixedRedirect, HashPart, NginxCors};
use std::collections::BTreeMap;

pub const PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// The upstream protocol a backend-protocol annotation asks for (the TrafficPolicy field
/// of the same name).
pub use gatehouse_api::BackendProtocol;

/// Proxy timeouts in seconds, when given (nginx's defaults are 5, 60 and 60; without the
/// annotations Gatehouse's own apply: 5 s to connect, no idle limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProxyTimeouts {
    pub connect_s: Option<u64>,
    pub send_s: Option<u64>,
    pub read_s: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Canary {
    pub by_header: Option<String>,
    pub by_header_value: Option<String>,
    pub by_header_pattern: Option<String>,
    pub by_cookie: Option<String>,
    pub weight: u32,
    pub weight_total: u32,
}

/// Every annotation Gatehouse reads, with ingress-nginx's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub rewrite_target: Option<String>,
    pub use_regex: bool,
    pub app_root: Option<String>,
    pub redirect: Option<FixedRedirect>,
    /// None: the IngressClass's default (true unless its parameters say otherwise).
    pub ssl_redirect: Option<bool>,
    pub force_ssl_redirect: bool,
    pub from_to_www_redirect: bool,
    pub canary: Option<Canary>,
    pub timeouts: ProxyTimeouts,
    /// Largest request body in bytes, when given ("0" is unlimited, as no annotation:
    /// Gatehouse has no default limit, nginx's is 1m).
    pub body_size: Option<u64>,
    pub backend_protocol: BackendProtocol,
    pub cors: Option<NginxCors>,
    /// allowlist-source-range (or whitelist-source-range) and denylist-source-range.
    pub allow_sources: Vec<String>,
    pub deny_sources: Vec<String>,
    /// Why every path of the Ingress answers 503 (an invalid source range: a typo never
    /// opens what was meant to be closed).
    pub denied: Option<String>,
    pub limits: Limits,
    /// affinity: cookie (wins), or upstream-hash-by.
    pub balance: Option<Balance>,
    pub external_auth: Option<Auth>,
}

/// auth-url and its companions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// http://host[:port]/path?query
    pub url: String,
    pub host: String,
    pub port: u16,
    pub method: String,
    pub response_headers: Vec<String>,
    pub signin: Option<String>,
}

/// limit-rps, limit-rpm, limit-connections, limit-burst-multiplier, limit-allowlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub rps: Option<u32>,
    pub rpm: Option<u32>,
    pub connections: Option<u32>,
    pub burst_multiplier: u32,
    pub exempt: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rps: None,
            rpm: None,
            connections: None,
            burst_multiplier: 5,
            exempt: vec![],
        }
    }
}

impl Limits {
    pub fn any(&self) -> bool {
        self.rps.is_some() || self.rpm.is_some() || self.connections.is_some()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            rewrite_target: None,
            use_regex: false,
            app_root: None,
            redirect: None,
            ssl_redirect: None,
            force_ssl_redirect: false,
            from_to_www_redirect: false,
            canary: None,
            timeouts: ProxyTimeouts::default(),
            body_size: None,
            backend_protocol: BackendProtocol::Http,
            cors: None,
            allow_sources: vec![],
            deny_sources: vec![],
            denied: None,
            limits: Limits::default(),
            balance: None,
            external_auth: None,
        }
    }
}

/// The outcome of reading an Ingress's annotations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    pub settings: Settings,
    /// Values ignored (their default applies) and annotations not supported: each names
    /// the annotation and why.
    pub warnings: Vec<String>,
    /// Why the whole Ingress is refused (nginx would not load it either).
    pub refused: Option<String>,
}

const CORS_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
const CORS_HEADERS: &str = "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";

/// The annotations translation applies to traffic; any other under the prefix gets a
/// warning (an Event in Kubernetes) saying it is ignored.
const APPLIED: &[&str] = &[
    "app-root",
    "temporal-redirect",
    "temporal-redirect-code",
    "permanent-redirect",
    "permanent-redirect-code",
    "ssl-redirect",
    "force-ssl-redirect",
    "proxy-connect-timeout",
    "proxy-send-timeout",
    "proxy-read-timeout",
    "proxy-body-size",
    "backend-protocol",
    "canary",
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
    "canary-by-cookie",
    "canary-weight",
    "canary-weight-total",
    "rewrite-target",
    "use-regex",
    "enable-cors",
    "cors-allow-origin",
    "cors-allow-methods",
    "cors-allow-headers",
    "cors-allow-credentials",
    "cors-expose-headers",
    "cors-max-age",
    "from-to-www-redirect",
    "allowlist-source-range",
    "whitelist-source-range",
    "denylist-source-range",
    "limit-rps",
    "limit-rpm",
    "limit-connections",
    "limit-burst-multiplier",
    "limit-allowlist",
    "limit-whitelist",
    "upstream-hash-by",
    "affinity",
    "affinity-mode",
    "session-cookie-name",
    "session-cookie-path",
    "session-cookie-max-age",
    "session-cookie-expires",
    "session-cookie-samesite",
    "session-cookie-domain",
    "session-cookie-secure",
    "auth-url",
    "auth-method",
    "auth-response-headers",
    "auth-signin",
];

/// The methods an external auth check may use (auth-method, TrafficPolicy externalAuth).
pub(crate) const HTTP_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE",
];

/// The host from-to-www-redirect sends to `host`: its www. twin, or the host without www.
pub fn www_twin(host: &str) -> String {
    match host.strip_prefix("www.") {
        Some(bare) => bare.to_string(),
        None => format!("www.{host}"),
    }
}

fn warn(warnings: &mut Vec<String>, name: &str, value: &str, why: &str) {
    warnings.push(format!(
        "annotation {PREFIX}{name}: {value:?} {why}; ignored"
    ));
}

pub fn parse(annotations: &BTreeMap<String, String>) -> Parsed {
    let mut p = Parsed::default();
    let get = |name: &str| -> Option<&str> {
        annotations
            .get(&format!("{PREFIX}{name}"))
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    };

    // Snippets are configuration text: never run, and the Ingress is refused so nobody
    // believes it is in effect.
    for key in annotations.keys() {
        if let Some(name) = key.strip_prefix(PREFIX)
            && name.ends_with("-snippet")
        {
            p.refused.get_or_insert(format!(
                "annotation {key}: snippets are configuration text, which Gatehouse never runs; the Ingress is not served"
            ));
        }
    }

    // Paths and rewrites.
    if let Some(v) = get("rewrite-target") {
        if valid_chars(v, "-._~/:$") && (v.is_empty() || v.starts_with('/') || v.starts_with('$')) {
            p.settings.rewrite_target = Some(v.to_string());
        } else {
            warn(&mut p.warnings, "rewrite-target", v, "is not a path");
        }
    }
    if let Some(v) = get("use-regex") {
        match parse_bool(v) {
            Some(b) => p.settings.use_regex = b,
            None => warn(&mut p.warnings, "use-regex", v, "is not a boolean"),
        }
    }
    if let Some(v) = get("app-root") {
        if v.starts_with('/') && valid_chars(v, "-._~/:%") {
            p.settings.app_root = Some(v.to_string());
        } else {
            warn(&mut p.warnings, "app-root", v, "is not a relative path");
        }
    }

    // Redirects: an invalid value refuses the Ingress (ingress-nginx rejects it).
    let temporal = get("temporal-redirect");
    let temporal_code = get("temporal-redirect-code");
    let permanent = get("permanent-redirect");
    let permanent_code = get("permanent-redirect-code");
    let code = |v: Option<&str>, range: std::ops::RangeInclusive<u16>, default: u16| {
        v.and_then(|c| c.parse::<u16>().ok())
            .filter(|c| range.contains(c))
            .unwrap_or(default)
    };
    let redirect_url = |name: &str, v: &str| -> Result<String, String> {
        if valid_chars(v, "-._~/:,?&=") {
            Ok(v.to_string())
        } else {
            Err(format!(
                "annotation {PREFIX}{name}: {v:?} has characters a redirect URL cannot have; the Ingress is not served"
            ))
        }
    };
    if let Some(v) = temporal {
        match redirect_url("temporal-redirect", v) {
            Ok(url) if url.starts_with("http://") || url.starts_with("https://") => {
                p.settings.redirect = Some(FixedRedirect {
                    location: url,
                    status: code(temporal_code, 300..=307, 302),
                })
            }
            Ok(_) => warn(
                &mut p.warnings,
                "temporal-redirect",
                v,
                "is not an http or https URL",
            ),
            Err(e) => {
                p.refused.get_or_insert(e);
            }
        }
    }
    if let (None, Some(v)) = (&p.settings.redirect, permanent) {
        match redirect_url("permanent-redirect", v) {
            Ok(url) => {
                p.settings.redirect = Some(FixedRedirect {
                    location: url,
                    status: code(permanent_code, 300..=308, 301),
                })
            }
            Err(e) => {
                p.refused.get_or_insert(e);
            }
        }
    }
    if let Some(v) = get("ssl-redirect") {
        match parse_bool(v) {
            Some(b) => p.settings.ssl_redirect = Some(b),
            None => warn(&mut p.warnings, "ssl-redirect", v, "is not a boolean"),
        }
    }
    for (name, field) in [
        ("force-ssl-redirect", &mut p.settings.force_ssl_redirect),
        ("from-to-www-redirect", &mut p.settings.from_to_www_redirect),
    ] {
        if let Some(v) = get(name) {
            match parse_bool(v) {
                Some(b) => *field = b,
                None => p.warnings.push(format!(
                    "annotation {PREFIX}{name}: {v:?} is not a boolean; ignored"
                )),
            }
        }
    }

    // Canary: only with canary: "true"; otherwise the canary-* annotations are ignored.
    match get("canary").map(parse_bool) {
        Some(Some(true)) => {
            let mut c = Canary {
                weight_total: 100,
                ..Default::default()
            };
            let token = |name: &str, v: &str, warnings: &mut Vec<String>| {
                let v: String = v.chars().filter(|c| !c.is_whitespace()).collect();
                if valid_chars(&v, "/-._~:") {
                    Some(v)
                } else {
                    warnings.push(format!(
                        "annotation {PREFIX}{name}: {v:?} has characters a header or cookie name cannot have; ignored"
                    ));
                    None
                }
            };
            c.by_header =
                get("canary-by-header").and_then(|v| token("canary-by-header", v, &mut p.warnings));
            c.by_header_value = get("canary-by-header-value")
                .and_then(|v| token("canary-by-header-value", v, &mut p.warnings));
            c.by_cookie =
                get("canary-by-cookie").and_then(|v| token("canary-by-cookie", v, &mut p.warnings));
            if let Some(v) = get("canary-by-header-pattern") {
                match regex::Regex::new(v) {
                    Ok(_) => c.by_header_pattern = Some(v.to_string()),
                    Err(e) => p.warnings.push(format!(
                        "annotation {PREFIX}canary-by-header-pattern: {v:?} is not a regular expression ({e}); ignored"
                    )),
                }
            }
            for (name, field) in [
                ("canary-weight", &mut c.weight),
                ("canary-weight-total", &mut c.weight_total),
            ] {
                if let Some(v) = get(name) {
                    match v.parse::<u32>() {
                        Ok(n) => *field = n,
                        Err(_) => p.warnings.push(format!(
                            "annotation {PREFIX}{name}: {v:?} is not a whole number; ignored"
                        )),
                    }
                }
            }
            p.settings.canary = Some(c);
        }
        Some(Some(false)) | None => {}
        Some(None) => p.warnings.push(format!(
            "annotation {PREFIX}canary: {:?} is not a boolean; ignored",
            get("canary").unwrap_or_default()
        )),
    }

    // Proxy settings.
    for (name, field) in [
        ("proxy-connect-timeout", &mut p.settings.timeouts.connect_s),
        ("proxy-send-timeout", &mut p.settings.timeouts.send_s),
        ("proxy-read-timeout", &mut p.settings.timeouts.read_s),
    ] {
        if let Some(v) = get(name) {
            match v.parse::<u64>() {
                Ok(n) if n > 0 => *field = Some(n),
                _ => p.warnings.push(format!(
                    "annotation {PREFIX}{name}: {v:?} is not a number of seconds; ignored"
                )),
            }
        }
    }
    if let Some(v) = get("proxy-body-size") {
        match body_size(v) {
            Some(0) => p.settings.body_size = None,
            Some(n) => p.settings.body_size = Some(n),
            None => warn(
                &mut p.warnings,
                "proxy-body-size",
                v,
                "is not a size (for example 8m)",
            ),
        }
    }
    if let Some(v) = get("backend-protocol") {
        p.settings.backend_protocol = match v.to_ascii_uppercase().as_str() {
            "HTTP" => BackendProtocol::Http,
            "HTTPS" => BackendProtocol::Https,
            "GRPC" => BackendProtocol::Grpc,
            "GRPCS" => BackendProtocol::Grpcs,
            _ => {
                warn(
                    &mut p.warnings,
                    "backend-protocol",
                    v,
                    "is not HTTP, HTTPS, GRPC or GRPCS",
                );
                BackendProtocol::Http
            }
        };
    }

    // CORS.
    match get("enable-cors").map(parse_bool) {
        Some(Some(true)) => {
            let origins: Vec<String> = get("cors-allow-origin")
                .unwrap_or("*")
                .split(',')
                .map(str::trim)
                .filter(|o| {
                    let ok = cors_origin_ok(o);
                    if !ok {
                        p.warnings.push(format!(
                            "annotation {PREFIX}cors-allow-origin: entry {o:?} is not an origin; skipped"
                        ));
                    }
                    ok
                })
                .map(str::to_string)
                .collect();
            let origins = if origins.iter().any(|o| o == "*") {
                vec!["*".to_string()]
            } else {
                origins
            };
            let credentials = match get("cors-allow-credentials").map(parse_bool) {
                Some(Some(b)) => b,
                None => true,
                Some(None) => {
                    p.warnings.push(format!(
                        "annotation {PREFIX}cors-allow-credentials: not a boolean; ignored"
                    ));
                    true
                }
            };
            let list = |name: &str, default: &str, warnings: &mut Vec<String>| match get(name) {
                None => default.to_string(),
                Some(v) if valid_chars(v, ", -_*") => v.to_string(),
                Some(v) => {
                    warnings.push(format!(
                        "annotation {PREFIX}{name}: {v:?} is not a list of names; ignored"
                    ));
                    default.to_string()
                }
            };
            let max_age = match get("cors-max-age").map(str::parse::<u32>) {
                None => 1_728_000,
                Some(Ok(n)) => n,
                Some(Err(_)) => {
                    p.warnings.push(format!(
                        "annotation {PREFIX}cors-max-age: not a number of seconds; ignored"
                    ));
                    1_728_000
                }
            };
            p.settings.cors = Some(NginxCors {
                allow_origins: origins,
                allow_methods: list("cors-allow-methods", CORS_METHODS, &mut p.warnings),
                allow_headers: list("cors-allow-headers", CORS_HEADERS, &mut p.warnings),
                expose_headers: list("cors-expose-headers", "", &mut p.warnings),
                allow_credentials: credentials,
                max_age,
            });
        }
        Some(Some(false)) | None => {}
        Some(None) => p.warnings.push(format!(
            "annotation {PREFIX}enable-cors: not a boolean; ignored"
        )),
    }

    // Source ranges: an invalid list denies every path (503), as nginx does.
    let networks = |v: &str| -> Result<Vec<String>, String> {
        v.split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| gatehouse_model::ir::parse_network(n).map(|_| n.to_string()))
            .collect()
    };
    for (names, field) in [
        (
            ["allowlist-source-range", "whitelist-source-range"],
            &mut p.settings.allow_sources,
        ),
        (
            ["denylist-source-range", "denylist-source-range"],
            &mut p.settings.deny_sources,
        ),
    ] {
        let Some((name, v)) = names.iter().find_map(|n| get(n).map(|v| (*n, v))) else {
            continue;
        };
        match networks(v) {
            Ok(list) => *field = list,
            Err(e) => {
                p.settings.denied.get_or_insert(format!(
                    "annotation {PREFIX}{name}: {e}; every path of the Ingress answers 503"
                ));
            }
        }
    }

    // Rate limits: an invalid rate or exempt list refuses the Ingress, as nginx does.
    for (name, field) in [
        ("limit-rps", &mut p.settings.limits.rps),
        ("limit-rpm", &mut p.settings.limits.rpm),
        ("limit-connections", &mut p.settings.limits.connections),
    ] {
        if let Some(v) = get(name) {
            match v.parse::<u32>() {
                Ok(0) => {}
                Ok(n) => *field = Some(n),
                Err(_) => {
                    p.refused.get_or_insert(format!(
                        "annotation {PREFIX}{name}: {v:?} is not a whole number; the Ingress is not served"
                    ));
                }
            }
        }
    }
    if let Some(v) = get("limit-burst-multiplier") {
        match v.parse::<u32>() {
            Ok(n) if n > 0 => p.settings.limits.burst_multiplier = n,
            _ => warn(
                &mut p.warnings,
                "limit-burst-multiplier",
                v,
                "is not a positive whole number",
            ),
        }
    }
    if let Some((name, v)) = ["limit-allowlist", "limit-whitelist"]
        .iter()
        .find_map(|n| get(n).map(|v| (*n, v)))
    {
        match networks(v) {
            Ok(list) => p.settings.limits.exempt = list,
            Err(e) => {
                p.refused.get_or_insert(format!(
                    "annotation {PREFIX}{name}: {e}; the Ingress is not served"
                ));
            }
        }
    }

    // External auth: what cannot be honoured closes the paths (503), never opens them.
    if let Some(v) = get("auth-url") {
        match auth_url(v) {
            Ok((host, port)) => {
                let mut auth = Auth {
                    url: v.to_string(),
                    host,
                    port,
                    method: "GET".into(),
                    response_headers: vec![],
                    signin: None,
                };
                if let Some(m) = get("auth-method") {
                    if HTTP_METHODS.contains(&m) {
                        auth.method = m.to_string();
                    } else {
                        p.settings.denied.get_or_insert(format!(
                            "annotation {PREFIX}auth-method: {m:?} is not an HTTP method; every path of the Ingress answers 503"
                        ));
                    }
                }
                if let Some(h) = get("auth-response-headers") {
                    let names: Vec<String> = h
                        .split(',')
                        .map(str::trim)
                        .filter(|n| !n.is_empty())
                        .map(str::to_string)
                        .collect();
                    if names.iter().all(|n| valid_chars(n, "-_")) {
                        auth.response_headers = names;
                    } else {
                        p.settings.denied.get_or_insert(format!(
                            "annotation {PREFIX}auth-response-headers: {h:?} is not a list of header names; every path of the Ingress answers 503"
                        ));
                    }
                }
                if let Some(s) = get("auth-signin") {
                    if (s.starts_with("http://") || s.starts_with("https://"))
                        && s.bytes().all(|b| b.is_ascii_graphic())
                    {
                        auth.signin = Some(s.to_string());
                    } else {
                        warn(&mut p.warnings, "auth-signin", s, "is not an http(s) URL");
                    }
                }
                p.settings.external_auth = Some(auth);
            }
            Err(e) => {
                p.settings.denied.get_or_insert(format!(
                    "annotation {PREFIX}auth-url: {v:?} {e}; every path of the Ingress answers 503"
                ));
            }
        }
    }

    // Load balancing: cookie affinity wins over upstream-hash-by.
    if let Some(v) = get("upstream-hash-by") {
        if !valid_chars(v, "-_${}") {
            p.refused.get_or_insert(format!(
                "annotation {PREFIX}upstream-hash-by: {v:?} has characters a hash key cannot have; the Ingress is not served"
            ));
        } else {
            match hash_key(v) {
                Ok(parts) => p.settings.balance = Some(Balance::Hash(parts)),
                Err(e) => warn(&mut p.warnings, "upstream-hash-by", v, &e),
            }
        }
    }
    match get("affinity") {
        Some("cookie") => {
            let mut a = CookieAffinity {
                name: "INGRESSCOOKIE".into(),
                path: None,
                max_age: None,
                expires: None,
                same_site: None,
                domain: None,
                secure: false,
                persistent: get("affinity-mode") == Some("persistent"),
            };
            if let Some(v) = get("session-cookie-name") {
                if valid_chars(v, "-_.") {
                    a.name = v.to_string();
                } else {
                    warn(
                        &mut p.warnings,
                        "session-cookie-name",
                        v,
                        "is not a cookie name",
                    );
                }
            }
            if let Some(v) = get("session-cookie-path") {
                if v.starts_with('/') && valid_chars(v, "-._~/") {
                    a.path = Some(v.to_string());
                } else {
                    warn(&mut p.warnings, "session-cookie-path", v, "is not a path");
                }
            }
            for (name, field) in [
                ("session-cookie-max-age", &mut a.max_age),
                ("session-cookie-expires", &mut a.expires),
            ] {
                if let Some(v) = get(name) {
                    match v.parse::<u64>() {
                        Ok(n) => *field = Some(n),
                        Err(_) => warn(&mut p.warnings, name, v, "is not a number of seconds"),
                    }
                }
            }
            if let Some(v) = get("session-cookie-samesite") {
                match v.to_ascii_lowercase().as_str() {
                    "none" | "lax" | "strict" => a.same_site = Some(v.to_string()),
                    _ => warn(
                        &mut p.warnings,
                        "session-cookie-samesite",
                        v,
                        "is not None, Lax or Strict",
                    ),
                }
            }
            if let Some(v) = get("session-cookie-domain") {
                if valid_chars(v, "-.") {
                    a.domain = Some(v.to_string());
                } else {
                    warn(
                        &mut p.warnings,
                        "session-cookie-domain",
                        v,
                        "is not a domain",
                    );
                }
            }
            if let Some(v) = get("session-cookie-secure") {
                match parse_bool(v) {
                    Some(b) => a.secure = b,
                    None => warn(
                        &mut p.warnings,
                        "session-cookie-secure",
                        v,
                        "is not a boolean",
                    ),
                }
            }
            p.settings.balance = Some(Balance::Cookie(a));
        }
        Some(other) => warn(&mut p.warnings, "affinity", other, "is not \"cookie\""),
        None => {}
    }

    // Everything else under the prefix: not supported (yet), said once per annotation.
    for key in annotations.keys() {
        if let Some(name) = key.strip_prefix(PREFIX)
            && !APPLIED.contains(&name)
            && !name.ends_with("-snippet")
        {
            p.warnings.push(format!(
                "annotation {key} is not supported by Gatehouse yet; ignored"
            ));
        }
    }
    p
}

/// The host and port of an auth-url Gatehouse can call: plain http, a host, no nginx
/// variables.
pub(crate) fn auth_url(v: &str) -> Result<(String, u16), String> {
    if v.contains('$') {
        return Err("uses nginx variables, which Gatehouse does not expand".into());
    }
    let rest = v
        .strip_prefix("http://")
        .ok_or("is not an http:// URL (https checks are not supported yet)")?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>().map_err(|_| "has a bad port".to_string())?,
        ),
        None => (authority, 80),
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        || !v.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err("has no valid host".into());
    }
    Ok((host.to_ascii_lowercase(), port))
}

/// An upstream-hash-by value as parts: text, and the nginx variables Gatehouse knows
/// (`$request_uri`, `$uri`, `$remote_addr`, `$host`, `$http_<name>`, `$cookie_<name>`,
/// `$arg_<name>`, also as `${...}`).
pub(crate) fn hash_key(v: &str) -> Result<Vec<HashPart>, String> {
    let mut parts = Vec::new();
    let mut rest = v;
    while !rest.is_empty() {
        let Some(at) = rest.find('$') else {
            parts.push(HashPart::Text(rest.to_string()));
            break;
        };
        if at > 0 {
            parts.push(HashPart::Text(rest[..at].to_string()));
        }
        rest = &rest[at + 1..];
        let (name, after) = match rest.strip_prefix('{') {
            Some(r) => {
                let end = r.find('}').ok_or("has an unclosed ${")?;
                (&r[..end], &r[end + 1..])
            }
            None => {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            }
        };
        let part = match name {
            "request_uri" => HashPart::RequestUri,
            "uri" => HashPart::Uri,
            "remote_addr" | "binary_remote_addr" => HashPart::RemoteAddr,
            "host" => HashPart::Host,
            n => match (
                n.strip_prefix("http_"),
                n.strip_prefix("cookie_"),
                n.strip_prefix("arg_"),
            ) {
                (Some(h), _, _) if !h.is_empty() => HashPart::Header(h.replace('_', "-")),
                (_, Some(c), _) if !c.is_empty() => HashPart::Cookie(c.to_string()),
                (_, _, Some(a)) if !a.is_empty() => HashPart::Query(a.to_string()),
                _ => return Err(format!("uses ${n}, which Gatehouse does not know")),
            },
        };
        parts.push(part);
        rest = after;
    }
    Ok(parts)
}

/// Go's strconv.ParseBool, which ingress-nginx uses: no other spellings.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// ASCII letters and digits plus `extra`.
pub(crate) fn valid_chars(v: &str, extra: &str) -> bool {
    v.chars()
        .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

/// nginx sizes: a number with an optional k, m or g (bytes without).
fn body_size(v: &str) -> Option<u64> {
    let (digits, unit) = match v.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&v[..i], Some(c.to_ascii_lowercase())),
        _ => (v, None),
    };
    let n: u64 = digits.parse().ok()?;
    let scale = match unit {
        None => 1,
        Some('k') => 1024,
        Some('m') => 1024 * 1024,
        Some('g') => 1024 * 1024 * 1024,
        Some(_) => return None,
    };
    n.checked_mul(scale)
}

/// An entry of cors-allow-origin: `*`, `null`, or scheme://host[:port] where the host may
/// start with one `*.` label.
fn cors_origin_ok(o: &str) -> bool {
    if o == "*" || o == "null" {
        return true;
    }
    let Some((scheme, rest)) = o.split_once("://") else {
        return false;
    };
    let host_port = rest.strip_prefix("*.").unwrap_or(rest);
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (host_port, None),
    };
    !scheme.is_empty()
        && scheme.chars().all(|c| c.is_ascii_lowercase())
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_map(pairs: &[(&str, &str)]) -> Parsed {
        parse(
            &pairs
                .iter()
                .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn defaults_are_nginx_defaults() {
        let p = parse_map(&[]);
        assert_eq!(p.settings, Settings::default());
        assert_eq!(p.settings.ssl_redirect, None, "the class decides");
        assert_eq!(p.settings.body_size, None);
        assert_eq!(p.settings.timeouts, ProxyTimeouts::default());
    }

    #[test]
    fn snippets_refuse_the_ingress() {
        let p = parse_map(&[("configuration-snippet", "more_set_headers \"x: y\";")]);
        assert!(p.refused.unwrap().contains("configuration-snippet"));
        let p = parse_map(&[("server-snippet", "")]);
        assert!(p.refused.is_some(), "even empty");
    }

    #[test]
    fn booleans_are_go_booleans() {
        let ssl = |v: &str| parse_map(&[("ssl-redirect", v)]).settings.ssl_redirect;
        assert_eq!(ssl("false"), Some(false));
        assert_eq!(ssl("F"), Some(false));
        assert_eq!(ssl("True"), Some(true));
        let p = parse_map(&[("ssl-redirect", "no")]);
        assert_eq!(p.settings.ssl_redirect, None, "invalid: default kept");
        assert_eq!(p.warnings.len(), 1);
    }

    #[test]
    fn redirects_codes_and_refusal() {
        let p = parse_map(&[("permanent-redirect", "https://new.example.com/x")]);
        assert_eq!(
            p.settings.redirect,
            Some(FixedRedirect {
                location: "https://new.example.com/x".into(),
                status: 301
            })
        );
        let p = parse_map(&[
            ("permanent-redirect", "https://a.example/"),
            ("permanent-redirect-code", "308"),
        ]);
        assert_eq!(p.settings.redirect.unwrap().status, 308);
        let p = parse_map(&[
            ("permanent-redirect", "https://a.example/"),
            ("permanent-redirect-code", "200"),
        ]);
        assert_eq!(
            p.settings.redirect.unwrap().status,
            301,
            "out of range: default"
        );
        // Temporal wins over permanent; its range ends at 307.
        let p = parse_map(&[
            ("permanent-redirect", "https://a.example/"),
            ("temporal-redirect", "https://b.example/"),
            ("temporal-redirect-code", "308"),
        ]);
        assert_eq!(
            p.settings.redirect,
            Some(FixedRedirect {
                location: "https://b.example/".into(),
                status: 302
            })
        );
        let p = parse_map(&[("permanent-redirect", "https://a.example/{x}")]);
        assert!(p.refused.is_some());
    }

    #[test]
    fn canary_needs_canary_true() {
        let p = parse_map(&[("canary-weight", "30")]);
        assert_eq!(p.settings.canary, None);
        let p = parse_map(&[
            ("canary", "true"),
            ("canary-weight", "30"),
            ("canary-by-header", "X-Canary"),
        ]);
        let c = p.settings.canary.unwrap();
        assert_eq!(
            (c.weight, c.weight_total, c.by_header.as_deref()),
            (30, 100, Some("X-Canary"))
        );
    }

    #[test]
    fn sizes_timeouts_protocols() {
        assert_eq!(
            parse_map(&[("proxy-body-size", "8m")]).settings.body_size,
            Some(8 << 20)
        );
        assert_eq!(
            parse_map(&[("proxy-body-size", "0")]).settings.body_size,
            None
        );
        assert_eq!(
            parse_map(&[("proxy-body-size", "512")]).settings.body_size,
            Some(512)
        );
        assert_eq!(
            parse_map(&[("proxy-body-size", "1t")]).settings.body_size,
            None
        );
        assert_eq!(
            parse_map(&[("proxy-read-timeout", "5s")])
                .settings
                .timeouts
                .read_s,
            None
        );
        assert_eq!(
            parse_map(&[("proxy-read-timeout", "5")])
                .settings
                .timeouts
                .read_s,
            Some(5)
        );
        assert_eq!(
            parse_map(&[("backend-protocol", "grpc")])
                .settings
                .backend_protocol,
            BackendProtocol::Grpc
        );
        assert_eq!(
            parse_map(&[("backend-protocol", "FCGI")])
                .settings
                .backend_protocol,
            BackendProtocol::Http
        );
    }

    #[test]
    fn cors_defaults_and_origins() {
        let c = parse_map(&[("enable-cors", "true")]).settings.cors.unwrap();
        assert_eq!(c.allow_origins, vec!["*"]);
        assert!(c.allow_credentials);
        assert_eq!(c.max_age, 1_728_000);
        assert_eq!(c.allow_methods, CORS_METHODS);
        let p = parse_map(&[
            ("enable-cors", "true"),
            (
                "cors-allow-origin",
                "https://a.example, https://*.b.example:8443, not an origin",
            ),
        ]);
        assert_eq!(
            p.settings.cors.unwrap().allow_origins,
            vec!["https://a.example", "https://*.b.example:8443"]
        );
        assert_eq!(
            p.warnings
                .iter()
                .filter(|w| w.contains("is not an origin"))
                .count(),
            1
        );
    }

    #[test]
    fn unknown_annotations_are_reported() {
        let p = parse_map(&[("limit-rate", "5"), ("app-root", "/app")]);
        assert_eq!(p.settings.app_root.as_deref(), Some("/app"));
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].contains("limit-rate"));
        // Read, but not applied to traffic yet: said so.
        let p = parse_map(&[("auth-keepalive", "5")]);
        assert!(p.warnings[0].contains("not supported by Gatehouse yet"));
    }

    #[test]
    fn ranges_and_limits() {
        let p = parse_map(&[
            ("whitelist-source-range", "10.0.0.0/8, 192.0.2.7"),
            ("limit-rps", "5"),
            ("limit-whitelist", "10.1.0.0/16"),
        ]);
        assert_eq!(p.settings.allow_sources, vec!["10.0.0.0/8", "192.0.2.7"]);
        assert_eq!(p.settings.limits.rps, Some(5));
        assert_eq!(p.settings.limits.burst_multiplier, 5);
        assert_eq!(p.settings.limits.exempt, vec!["10.1.0.0/16"]);
        // A bad range closes the paths; a bad rate refuses the Ingress.
        let p = parse_map(&[("denylist-source-range", "10.0.0.0/33")]);
        assert!(p.settings.denied.is_some() && p.refused.is_none());
        let p = parse_map(&[("limit-rpm", "ten")]);
        assert!(p.refused.is_some());
    }
}
