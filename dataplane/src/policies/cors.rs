//! CORS (the HTTPRoute CORS filter): which origins are allowed and the headers to answer
//! with. Pure functions over the request's headers; the proxy answers preflights itself and
//! adds the response headers to backend answers.

use gatehouse_model::ir::{Cors, NginxCors};

/// A header to send: (name, value).
pub type Header = (&'static str, String);

/// What CORS makes of a request on a route with the filter.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No Origin header: not a cross-origin request; nothing to add.
    NotCors,
    /// A preflight (OPTIONS with Origin and Access-Control-Request-Method): answered here,
    /// without the backend. No headers when the origin is not allowed.
    Preflight(Vec<Header>),
    /// An actual request: forwarded, and these headers are added to the answer.
    Actual(Vec<Header>),
}

/// Classifies a request and computes the headers.
pub fn evaluate(
    c: &Cors,
    method: &http::Method,
    origin: Option<&str>,
    request_method: Option<&str>,
    request_headers: Option<&str>,
) -> Outcome {
    let Some(origin) = origin else {
        return Outcome::NotCors;
    };
    let allowed = origin_allowed(c, origin);
    if method == http::Method::OPTIONS
        && let Some(requested) = request_method
    {
        if !allowed {
            return Outcome::Preflight(vec![]);
        }
        let mut h = common(c, origin);
        let methods = if c.allow_methods.iter().any(|m| m == "*") {
            // Echoing the asked-for method is right with and without credentials ("*" is
            // not a wildcard in credentialed requests).
            requested.trim().to_string()
        } else {
            c.allow_methods.join(", ")
        };
        if !methods.is_empty() {
            h.push(("access-control-allow-methods", methods));
        }
        let headers = if c.allow_headers.iter().any(|m| m == "*") {
            request_headers.unwrap_or_default().trim().to_string()
        } else {
            c.allow_headers.join(", ")
        };
        if !headers.is_empty() {
            h.push(("access-control-allow-headers", headers));
        }
        if let Some(age) = c.max_age {
            h.push(("access-control-max-age", age.to_string()));
        }
        return Outcome::Preflight(h);
    }
    if !allowed {
        return Outcome::Actual(vec![]);
    }
    Outcome::Actual(common(c, origin))
}

/// ingress-nginx's CORS: for an allowed origin, every OPTIONS is a preflight (answered 204
/// here, with no need for Access-Control-Request-Method) and every other answer gets the
/// headers. With "*" any request is allowed, with or without Origin.
pub fn evaluate_nginx(c: &NginxCors, method: &http::Method, origin: Option<&str>) -> Outcome {
    let allow_origin = if c.allow_origins.iter().any(|o| o == "*") {
        "*".to_string()
    } else {
        match origin.filter(|o| nginx_origin_allowed(c, o)) {
            Some(o) => o.to_string(),
            None => return Outcome::NotCors,
        }
    };
    let mut h = vec![("access-control-allow-origin", allow_origin)];
    if c.allow_credentials {
        h.push(("access-control-allow-credentials", "true".into()));
    }
    h.push(("access-control-allow-methods", c.allow_methods.clone()));
    h.push(("access-control-allow-headers", c.allow_headers.clone()));
    if !c.expose_headers.is_empty() {
        h.push(("access-control-expose-headers", c.expose_headers.clone()));
    }
    h.push(("access-control-max-age", c.max_age.to_string()));
    if method == http::Method::OPTIONS {
        h.push(("content-type", "text/plain charset=UTF-8".into()));
        h.push(("content-length", "0".into()));
        return Outcome::Preflight(h);
    }
    Outcome::Actual(h)
}

/// nginx compares the Origin case-insensitively against each entry at its end, "*."
/// standing for one label.
fn nginx_origin_allowed(c: &NginxCors, origin: &str) -> bool {
    let origin = origin.to_ascii_lowercase();
    c.allow_origins.iter().any(|pattern| {
        let pattern = pattern.to_ascii_lowercase();
        match pattern.split_once("*.") {
            None => origin.ends_with(&pattern),
            Some((scheme, suffix)) => {
                let Some(before) = origin.strip_suffix(suffix) else {
                    return false;
                };
                let Some(before) = before.strip_suffix('.') else {
                    return false;
                };
                let label_start = before
                    .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                    .map_or(0, |i| i + 1);
                label_start < before.len() && before[..label_start].ends_with(scheme)
            }
        }
    })
}

/// Headers of both preflight and actual answers for an allowed origin. The origin is
/// echoed (never "*"), which is valid with credentials and lets caches key on Vary.
fn common(c: &Cors, origin: &str) -> Vec<Header> {
    let mut h = vec![
        ("access-control-allow-origin", origin.to_string()),
        ("vary", "Origin".to_string()),
    ];
    if c.allow_credentials {
        h.push(("access-control-allow-credentials", "true".into()));
    }
    if !c.expose_headers.is_empty() {
        h.push(("access-control-expose-headers", c.expose_headers.join(", ")));
    }
    h
}

/// `scheme://host[:port]`, lower-cased; `None` when it is not an origin.
fn split_origin(o: &str) -> Option<(String, String, Option<&str>)> {
    let (scheme, rest) = o.split_once("://")?;
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
        _ => (rest, None),
    };
    if host.is_empty() || host.contains('/') {
        return None;
    }
    Some((scheme.to_ascii_lowercase(), host.to_ascii_lowercase(), port))
}

/// Whether an Origin is allowed: `*`, an exact origin, or a pattern whose host starts with
/// `*.` (one or more labels in front of the suffix). Scheme and port must agree.
pub fn origin_allowed(c: &Cors, origin: &str) -> bool {
    let Some((scheme, host, port)) = split_origin(origin) else {
        return false;
    };
    c.allow_origins.iter().any(|pattern| {
        if pattern == "*" {
            return true;
        }
        let Some((p_scheme, p_host, p_port)) = split_origin(pattern) else {
            return false;
        };
        if p_scheme != scheme || p_port != port {
            return false;
        }
        match p_host.strip_prefix('*') {
            Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
            None => p_host == host,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str], methods: &[&str], headers: &[&str], credentials: bool) -> Cors {
        Cors {
            allow_origins: origins.iter().map(|s| s.to_string()).collect(),
            allow_methods: methods.iter().map(|s| s.to_string()).collect(),
            allow_headers: headers.iter().map(|s| s.to_string()).collect(),
            expose_headers: vec!["x-header-3".into(), "x-header-4".into()],
            allow_credentials: credentials,
            max_age: Some(3600),
        }
    }

    #[test]
    fn nginx_origins_match_at_the_end_with_one_label_wildcards() {
        let c = NginxCors {
            allow_origins: vec![
                "https://app.example.org".into(),
                "https://*.example.net".into(),
            ],
            allow_methods: String::new(),
            allow_headers: String::new(),
            expose_headers: String::new(),
            allow_credentials: false,
            max_age: 0,
        };
        assert!(nginx_origin_allowed(&c, "HTTPS://APP.example.org"));
        assert!(nginx_origin_allowed(&c, "https://a-1.example.net"));
        assert!(!nginx_origin_allowed(&c, "https://a.b.example.net"));
        assert!(!nginx_origin_allowed(&c, "https://example.net"));
        assert!(!nginx_origin_allowed(&c, "http://a.example.net"));
        assert!(!nginx_origin_allowed(&c, "https://app.example.org.evil"));
    }

    fn get<'a>(h: &'a [Header], name: &str) -> Option<&'a str> {
        h.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn origins_exact_wildcard_any_depth_scheme_and_port() {
        let c = cors(
            &["https://www.foo.com", "https://*.bar.com"],
            &[],
            &[],
            false,
        );
        assert!(origin_allowed(&c, "https://www.foo.com"));
        assert!(origin_allowed(&c, "HTTPS://WWW.FOO.COM"));
        assert!(origin_allowed(&c, "https://www.bar.com"));
        assert!(origin_allowed(&c, "https://xpto.www.bar.com"));
        assert!(!origin_allowed(&c, "https://bar.com"));
        assert!(!origin_allowed(&c, "http://www.foo.com"));
        assert!(!origin_allowed(&c, "https://www.foo.com:8443"));
        assert!(!origin_allowed(&c, "https://foobar.com"));
        assert!(!origin_allowed(&c, "null"));
        let any = cors(&["*"], &[], &[], false);
        assert!(origin_allowed(&any, "https://foobar.com:12345"));
    }

    #[test]
    fn preflight_lists_or_echoes_methods_and_headers() {
        let c = cors(
            &["https://www.foo.com"],
            &["GET", "OPTIONS"],
            &["x-header-1", "x-header-2"],
            true,
        );
        let Outcome::Preflight(h) = evaluate(
            &c,
            &http::Method::OPTIONS,
            Some("https://www.foo.com"),
            Some("GET"),
            Some("x-header-1"),
        ) else {
            panic!("not a preflight")
        };
        assert_eq!(
            get(&h, "access-control-allow-origin"),
            Some("https://www.foo.com")
        );
        assert_eq!(
            get(&h, "access-control-allow-methods"),
            Some("GET, OPTIONS")
        );
        assert_eq!(
            get(&h, "access-control-allow-headers"),
            Some("x-header-1, x-header-2")
        );
        assert_eq!(get(&h, "access-control-allow-credentials"), Some("true"));
        assert_eq!(get(&h, "access-control-max-age"), Some("3600"));

        let wild = cors(&["*"], &["*"], &["*"], false);
        let Outcome::Preflight(h) = evaluate(
            &wild,
            &http::Method::OPTIONS,
            Some("https://other.foo.com"),
            Some("PUT"),
            Some("x-a, x-b"),
        ) else {
            panic!("not a preflight")
        };
        assert_eq!(get(&h, "access-control-allow-methods"), Some("PUT"));
        assert_eq!(get(&h, "access-control-allow-headers"), Some("x-a, x-b"));
        assert_eq!(get(&h, "access-control-allow-credentials"), None);
    }

    #[test]
    fn disallowed_origins_and_plain_requests_get_nothing() {
        let c = cors(&["https://www.foo.com"], &["GET"], &[], true);
        assert_eq!(
            evaluate(
                &c,
                &http::Method::OPTIONS,
                Some("https://foobar.com"),
                Some("GET"),
                None
            ),
            Outcome::Preflight(vec![])
        );
        assert_eq!(
            evaluate(
                &c,
                &http::Method::GET,
                Some("https://foobar.com"),
                None,
                None
            ),
            Outcome::Actual(vec![])
        );
        assert_eq!(
            evaluate(&c, &http::Method::GET, None, None, None),
            Outcome::NotCors
        );
        // OPTIONS without Access-Control-Request-Method is an actual request.
        let Outcome::Actual(h) = evaluate(
            &c,
            &http::Method::OPTIONS,
            Some("https://www.foo.com"),
            None,
            None,
        ) else {
            panic!("not an actual request")
        };
        assert_eq!(
            get(&h, "access-control-allow-origin"),
            Some("https://www.foo.com")
        );
    }
}
