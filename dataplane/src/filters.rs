//! Filters that compute new paths and locations: pure functions, tested without sockets.

use gatehouse_model::ir::{PathModifier, Redirect};

/// Applies a path modifier. `prefix` is the route's PathPrefix match, needed for
/// `ReplacePrefixMatch` (element-wise, so `/foo` + `/xyz` turns `/foo/bar` into `/xyz/bar`).
pub fn modify_path(modifier: &PathModifier, path: &str, prefix: Option<&str>) -> String {
    match modifier {
        PathModifier::ReplaceFullPath(p) => p.clone(),
        PathModifier::ReplacePrefixMatch(replacement) => {
            let prefix = prefix.unwrap_or("/");
            let rest = if prefix == "/" {
                path
            } else {
                path.strip_prefix(prefix).unwrap_or(path)
            };
            if rest.is_empty() {
                return replacement.clone();
            }
            // rest starts with '/': join without doubling the slash.
            let base = replacement.trim_end_matches('/');
            format!("{base}{rest}")
        }
    }
}

/// The Location of a RequestRedirect, following the spec's port rules: an explicit port,
/// else the well-known port of an explicit scheme, else the listener's port; the port is
/// left out when it is the default for the scheme.
pub fn redirect_location(
    r: &Redirect,
    request_tls: bool,
    host: &str,
    listener_port: u16,
    path: &str,
    query: Option<&str>,
    prefix: Option<&str>,
) -> String {
    let scheme = r
        .scheme
        .as_deref()
        .unwrap_or(if request_tls { "https" } else { "http" });
    let hostname = r.hostname.as_deref().unwrap_or(host);
    let port = match (r.port, &r.scheme) {
        (Some(p), _) => p,
        (None, Some(s)) if s == "https" => 443,
        (None, Some(s)) if s == "http" => 80,
        (None, _) => listener_port,
    };
    let default_port = matches!((scheme, port), ("http", 80) | ("https", 443));
    let mut path = match &r.path {
        Some(m) => modify_path(m, path, prefix),
        None => path.to_string(),
    };
    if r.strip_trailing_slash && path.ends_with('/') {
        path.pop();
    }
    let query = query.filter(|_| !r.drop_query);
    let mut location = format!("{scheme}://{hostname}");
    if !default_port {
        location.push_str(&format!(":{port}"));
    }
    location.push_str(&path);
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        location.push('?');
        location.push_str(q);
    }
    location
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(r: &str) -> PathModifier {
        PathModifier::ReplacePrefixMatch(r.into())
    }

    #[test]
    fn replace_prefix_match_is_element_wise() {
        assert_eq!(
            modify_path(&prefix("/xyz"), "/foo/bar", Some("/foo")),
            "/xyz/bar"
        );
        assert_eq!(
            modify_path(&prefix("/xyz/"), "/foo/bar", Some("/foo")),
            "/xyz/bar"
        );
        assert_eq!(modify_path(&prefix("/"), "/foo/bar", Some("/foo")), "/bar");
        assert_eq!(modify_path(&prefix("/"), "/foo", Some("/foo")), "/");
        assert_eq!(modify_path(&prefix("/xyz"), "/foo", Some("/foo")), "/xyz");
        assert_eq!(modify_path(&prefix("/xyz"), "/bar", Some("/")), "/xyz/bar");
        assert_eq!(
            modify_path(
                &PathModifier::ReplaceFullPath("/new".into()),
                "/a/b",
                Some("/a")
            ),
            "/new"
        );
    }

    #[test]
    fn redirect_ports_follow_the_spec() {
        let r = |scheme: Option<&str>, port: Option<u16>| Redirect {
            scheme: scheme.map(String::from),
            hostname: Some("example.org".into()),
            path: None,
            port,
            status: 302,
            drop_query: false,
            strip_trailing_slash: false,
        };
        assert_eq!(
            redirect_location(&r(None, None), false, "h", 80, "/p", Some("a=1"), None),
            "http://example.org/p?a=1"
        );
        assert_eq!(
            redirect_location(&r(None, None), false, "h", 8080, "/p", None, None),
            "http://example.org:8080/p"
        );
        assert_eq!(
            redirect_location(&r(Some("https"), None), false, "h", 8080, "/p", None, None),
            "https://example.org/p"
        );
        assert_eq!(
            redirect_location(
                &r(Some("https"), Some(8443)),
                false,
                "h",
                80,
                "/p",
                None,
                None
            ),
            "https://example.org:8443/p"
        );
        assert_eq!(
            redirect_location(&r(None, Some(443)), true, "h", 80, "/", None, None),
            "https://example.org/"
        );
    }
}
