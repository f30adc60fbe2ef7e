//! Load balancing: upstream-hash-by, and cookie affinity (which wins over it).

use super::parsed::PREFIX;
use super::reader::Reader;
use super::values::{hash_key, parse_bool, valid_chars};
use gatehouse_api::{CookieAffinityPolicy, SessionAffinityPolicy};

/// affinity: cookie's default cookie name.
const COOKIE_NAME: &str = "INGRESSCOOKIE";

pub fn read_affinity(r: &mut Reader) -> Option<SessionAffinityPolicy> {
    let mut affinity = None;
    if let Some(v) = r.get("upstream-hash-by") {
        if !valid_chars(v, "-_${}") {
            r.refuse(format!(
                "annotation {PREFIX}upstream-hash-by: {v:?} has characters a hash key cannot have; the Ingress is not served"
            ));
        } else {
            match hash_key(v) {
                Ok(_) => {
                    affinity = Some(SessionAffinityPolicy {
                        cookie: None,
                        hash_by: Some(v.to_string()),
                    })
                }
                Err(e) => r.warn("upstream-hash-by", v, &e),
            }
        }
    }
    match r.get("affinity") {
        Some("cookie") => Some(SessionAffinityPolicy {
            cookie: Some(read_cookie(r)),
            hash_by: None,
        }),
        Some(other) => {
            r.warn("affinity", other, "is not \"cookie\"");
            affinity
        }
        None => affinity,
    }
}

/// affinity-mode and the session-cookie-* annotations.
fn read_cookie(r: &mut Reader) -> CookieAffinityPolicy {
    let mut a = CookieAffinityPolicy {
        name: COOKIE_NAME.into(),
        persistent: r.get("affinity-mode") == Some("persistent"),
        ..Default::default()
    };
    if let Some(v) = r.get("session-cookie-name") {
        if valid_chars(v, "-_.") {
            a.name = v.to_string();
        } else {
            r.warn("session-cookie-name", v, "is not a cookie name");
        }
    }
    if let Some(v) = r.get("session-cookie-path") {
        if v.starts_with('/') && valid_chars(v, "-._~/") {
            a.path = Some(v.to_string());
        } else {
            r.warn("session-cookie-path", v, "is not a path");
        }
    }
    for (name, field) in [
        ("session-cookie-max-age", &mut a.max_age),
        ("session-cookie-expires", &mut a.expires),
    ] {
        if let Some(v) = r.get(name) {
            match v.parse::<u64>() {
                Ok(n) => *field = Some(n),
                Err(_) => r.warn(name, v, "is not a number of seconds"),
            }
        }
    }
    if let Some(v) = r.get("session-cookie-samesite") {
        match v.to_ascii_lowercase().as_str() {
            "none" | "lax" | "strict" => a.same_site = Some(v.to_string()),
            _ => r.warn("session-cookie-samesite", v, "is not None, Lax or Strict"),
        }
    }
    if let Some(v) = r.get("session-cookie-domain") {
        if valid_chars(v, "-.") {
            a.domain = Some(v.to_string());
        } else {
            r.warn("session-cookie-domain", v, "is not a domain");
        }
    }
    if let Some(v) = r.get("session-cookie-secure") {
        match parse_bool(v) {
            Some(b) => a.secure = b,
            None => r.warn("session-cookie-secure", v, "is not a boolean"),
        }
    }
    a
}
