//! The lookup a request takes: what it is matched on (`RequestView`, borrowed from its
//! head), then listener by Host, virtual host, and the first route whose matchers accept it.

use super::route::{CompiledRoute, PathRule, ValueRule};
use super::version::{Bind, CompiledListener};
use std::sync::Arc;

/// What a request needs to be matched: all borrowed from the request head.
pub struct RequestView<'a> {
    /// Lower-case, without port.
    pub host: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub method: &'a http::Method,
    pub headers: Headers<'a>,
}

/// A request's headers, as pingora keeps them or as parsed off the wire (the direct
/// HTTP/1 path, which builds no header map).
#[derive(Clone, Copy)]
pub enum Headers<'a> {
    Map(&'a http::HeaderMap),
    /// Names in any case, as the client sent them.
    Raw(&'a [httparse::Header<'a>]),
}

impl Headers<'_> {
    /// Whether a value of header `name` (UTF-8; others never match) satisfies `f`.
    pub fn any_value(&self, name: &http::HeaderName, f: impl Fn(&str) -> bool) -> bool {
        match self {
            Headers::Map(map) => map
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(f),
            Headers::Raw(raw) => raw
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(name.as_str()))
                .filter_map(|h| std::str::from_utf8(h.value).ok())
                .any(f),
        }
    }
}

/// Element-wise prefix match: `/foo` matches `/foo`, `/foo/` and `/foo/x`, not `/foobar`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

impl ValueRule {
    fn matches(&self, v: &str) -> bool {
        match self {
            ValueRule::Exact(e) => e == v,
            ValueRule::Regex(r) => r.is_match(v),
        }
    }
}

impl CompiledRoute {
    /// Whether the request satisfies every matcher of the route.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        let path_ok = match &self.path {
            PathRule::Exact(p) => p == req.path,
            PathRule::Prefix(p) => prefix_matches(p, req.path),
            PathRule::Regex(r) => r.is_match(req.path),
        };
        if !path_ok {
            return false;
        }
        if let Some(m) = &self.method
            && m != req.method
        {
            return false;
        }
        let headers_ok = self
            .headers
            .iter()
            .all(|(name, rule)| req.headers.any_value(name, |v| rule.matches(v)));
        if !headers_ok {
            return false;
        }
        self.query.iter().all(|(name, rule)| {
            // The spec: with repeated parameters, the first value counts.
            query_param(req.query, name).is_some_and(|v| rule.matches(&v))
        })
    }
}

/// The first value of a query parameter, percent-decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Why no route serves a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Miss {
    NoListener,
    NoRoute,
}

impl Bind {
    /// The listener a hostname (Host header or SNI) selects: the most specific that matches.
    pub fn listener_for(&self, host: &str) -> Option<&CompiledListener> {
        self.listeners.iter().find(|l| l.hostname.matches(host))
    }

    /// Whether a request's Host belongs to another listener than the one its TLS server
    /// name selected: such a request is misdirected (421), since the connection was set up
    /// with the other listener's certificate.
    pub fn misdirected(&self, sni: &str, host: &str) -> bool {
        match (self.listener_for(sni), self.listener_for(host)) {
            (Some(by_sni), Some(by_host)) => by_sni.key != by_host.key,
            _ => false,
        }
    }

    /// Listener by Host, then virtual host, then the first route in precedence order.
    pub fn route(
        &self,
        req: &RequestView<'_>,
    ) -> Result<(&CompiledListener, &Arc<CompiledRoute>), Miss> {
        let listener = self
            .listeners
            .iter()
            .find(|l| l.hostname.matches(req.host))
            .ok_or(Miss::NoListener)?;
        let vhost = listener.hosts.find(req.host).ok_or(Miss::NoRoute)?;
        let route = vhost
            .routes
            .iter()
            .find(|r| r.matches(req))
            .ok_or(Miss::NoRoute)?;
        Ok((listener, route))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_element_wise() {
        assert!(prefix_matches("/foo", "/foo"));
        assert!(prefix_matches("/foo", "/foo/"));
        assert!(prefix_matches("/foo", "/foo/bar"));
        assert!(!prefix_matches("/foo", "/foobar"));
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/aaa/bbb", "/aaa/bbb/"));
    }

    #[test]
    fn query_params_decode_and_take_first() {
        assert_eq!(
            query_param(Some("a=1&b=x%20y&a=2"), "a").as_deref(),
            Some("1")
        );
        assert_eq!(
            query_param(Some("a=1&b=x%20y"), "b").as_deref(),
            Some("x y")
        );
        assert_eq!(query_param(Some("flag"), "flag").as_deref(), Some(""));
        assert_eq!(query_param(Some("a=%zz"), "a").as_deref(), Some("%zz"));
        assert_eq!(query_param(None, "a"), None);
    }
}
