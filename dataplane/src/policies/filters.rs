//! Filters that compute new paths and locations: pure functions, tested without sockets.

use gatehouse_model::ir::{PathModifier, Redirect};

/// Applies a path modifier. `prefix` is the route's PathPrefix match, needed for
/// `ReplacePrefixMatch` (element-wise, so `/foo` + `/xyz` turns `/foo/bar` into `/xyz/bar`).
pub fn modify_path(modifier: &PathModifier, path: &str, prefix: Option<&str>) -> String {
    match modifier {
        PathModifier::ReplaceFullPath(p) => p.clone(),
        // Needs the route's regex: see `expand_template`; without it, unchanged.
        PathModifier::RegexTemplate(_) => path.to_string(),
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

/// ingress-nginx rewrite-target: `template` with `$1`..`$9` replaced by the groups `re`
/// captured in `path` (empty for a group that did not take part, or no match).
pub fn expand_template(template: &str, re: &regex::Regex, path: &str) -> String {
    let captures = re.captures(path);
    let mut out = String::with_capacity(template.len() + path.len());
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().and_then(|d| d.to_digit(10))) {
            ('$', Some(n)) => {
                chars.next();
                if let Some(m) = captures.as_ref().and_then(|c| c.get(n as usize)) {
                    out.push_str(m.as_str());
                }
            }
            _ => out.push(c),
        }
    }
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    out
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
    fn nginx_templates_take_capture_groups() {
        let re = regex::Regex::new("^(?:(?i)/api(/|$)(.*).*)$").unwrap();
        assert_eq!(expand_template("/$2", &re, "/api/users/7"), "/users/7");
        assert_eq!(expand_template("/$2", &re, "/api"), "/");
        // $1 followed by text is group 1 then the text (nginx), not a group "1x".
        assert_eq!(expand_template("/v1$1x", &re, "/api/a"), "/v1/x");
        assert_eq!(
            expand_template("/$9", &re, "/api/a"),
            "/",
            "no such group: empty"
        );
        assert_eq!(
            expand_template("$2", &re, "/api/a"),
            "/a",
            "always absolute"
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
