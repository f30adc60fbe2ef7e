//! Value syntaxes ingress-nginx annotations share with the TrafficPolicy fields that
//! replace them: Go booleans, nginx sizes, origins, auth URLs, hash keys.

use gatehouse_model::ir::HashPart;

/// The methods an external auth check may use (auth-method, TrafficPolicy externalAuth).
pub const HTTP_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE",
];

/// Go's strconv.ParseBool, which ingress-nginx uses: no other spellings.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// ASCII letters and digits plus `extra`.
pub fn valid_chars(v: &str, extra: &str) -> bool {
    v.chars()
        .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

/// nginx sizes: a number with an optional k, m or g (bytes without).
pub fn body_size(v: &str) -> Option<u64> {
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
pub fn cors_origin_ok(o: &str) -> bool {
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

/// The host and port of an auth-url Gatehouse can call: plain http, a host, no nginx
/// variables.
pub fn auth_url(v: &str) -> Result<(String, u16), String> {
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
pub fn hash_key(v: &str) -> Result<Vec<HashPart>, String> {
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
