//! Choosing an endpoint other than round robin: cookie affinity and consistent hashing
//! (ingress-nginx affinity: cookie and upstream-hash-by).
//!
//! Hashes are FNV-1a, the same in every data plane process, so replicas agree on which
//! endpoint a cookie or key means. Keys map to endpoints by rendezvous hashing: an
//! endpoint leaving or joining moves only the keys that were or become its own.

use crate::runtime::{Cluster, Ejections};
use gatehouse_model::ir::{CookieAffinity, HashPart};
use std::net::SocketAddr;

fn fnv(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325_u64 ^ seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The endpoint a key belongs to: highest hash of (key, endpoint).
pub fn rendezvous(key: u64, endpoints: &[SocketAddr]) -> Option<SocketAddr> {
    endpoints
        .iter()
        .max_by_key(|e| fnv(e.to_string().as_bytes(), key))
        .copied()
}

/// What a request offers to a hash key.
pub struct RequestParts<'a> {
    pub path_and_query: &'a str,
    pub path: &'a str,
    pub client: Option<std::net::IpAddr>,
    pub host: &'a str,
    pub headers: &'a http::HeaderMap,
    pub query: Option<&'a str>,
}

/// The hash of an upstream-hash-by key (missing parts are empty, as nginx's variables).
pub fn hash_key(parts: &[HashPart], req: &RequestParts<'_>) -> u64 {
    let mut key = String::new();
    for p in parts {
        match p {
            HashPart::Text(t) => key.push_str(t),
            HashPart::RequestUri => key.push_str(req.path_and_query),
            HashPart::Uri => key.push_str(req.path),
            HashPart::RemoteAddr => {
                if let Some(ip) = req.client {
                    key.push_str(&ip.to_string());
                }
            }
            HashPart::Host => key.push_str(req.host),
            HashPart::Header(h) => {
                if let Some(v) = req.headers.get(h.as_str()).and_then(|v| v.to_str().ok()) {
                    key.push_str(v);
                }
            }
            HashPart::Cookie(c) => {
                if let Some(v) = cookie(req.headers, c) {
                    key.push_str(v);
                }
            }
            HashPart::Query(q) => {
                if let Some(v) = crate::runtime::query_param(req.query, q) {
                    key.push_str(&v);
                }
            }
        }
    }
    fnv(key.as_bytes(), 0)
}

/// A cookie's value from the request's Cookie headers.
pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// A persistent cookie's value for an endpoint of a cluster.
fn pin(cluster: &str, endpoint: &SocketAddr) -> String {
    format!(
        "{:016x}",
        fnv(format!("{cluster}|{endpoint}").as_bytes(), 0)
    )
}

/// The endpoint a request with this affinity cookie value goes to, when it still exists
/// (a pinned endpoint gone, or an unknown value, means choosing anew).
pub fn by_cookie(a: &CookieAffinity, cluster: &Cluster, value: &str) -> Option<SocketAddr> {
    if a.persistent {
        cluster
            .endpoints
            .iter()
            .find(|e| pin(&cluster.key, e) == value)
            .copied()
    } else {
        if value.len() != 16 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        rendezvous(fnv(value.as_bytes(), 0), &cluster.endpoints)
    }
}

/// A new choice for a request without a usable cookie: the endpoint and the cookie value
/// that leads back to it.
pub fn choose(
    a: &CookieAffinity,
    cluster: &Cluster,
    ejections: &Ejections,
) -> Option<(SocketAddr, String)> {
    if a.persistent {
        let e = cluster.pick(&[], ejections)?;
        return Some((e, pin(&cluster.key, &e)));
    }
    let token = format!("{:016x}", rand::random::<u64>());
    let e = rendezvous(fnv(token.as_bytes(), 0), &cluster.endpoints)?;
    Some((e, token))
}

/// The Set-Cookie value for a new affinity cookie.
pub fn set_cookie(a: &CookieAffinity, value: &str, route_path: &str, https: bool) -> String {
    let mut c = format!(
        "{}={value}; Path={}",
        a.name,
        a.path.as_deref().unwrap_or(route_path)
    );
    if let Some(d) = &a.domain {
        c.push_str(&format!("; Domain={d}"));
    }
    if let Some(secs) = a.expires {
        let at = std::time::SystemTime::now() + std::time::Duration::from_secs(secs);
        c.push_str(&format!("; Expires={}", httpdate::fmt_http_date(at)));
    }
    if let Some(secs) = a.max_age {
        c.push_str(&format!("; Max-Age={secs}"));
    }
    if a.secure || https {
        c.push_str("; Secure");
    }
    c.push_str("; HttpOnly");
    if let Some(s) = &a.same_site {
        c.push_str(&format!("; SameSite={s}"));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_moves_only_the_keys_of_a_leaving_endpoint() {
        let all: Vec<SocketAddr> = (1..=5)
            .map(|i| format!("10.0.0.{i}:80").parse().unwrap())
            .collect();
        let fewer: Vec<SocketAddr> = all[..4].to_vec();
        let mut moved = 0;
        for key in 0..1000u64 {
            let before = rendezvous(key, &all).unwrap();
            let after = rendezvous(key, &fewer).unwrap();
            if before != after {
                assert_eq!(before, all[4], "only keys of the leaving endpoint move");
                moved += 1;
            }
        }
        assert!((100..=300).contains(&moved), "about a fifth moved: {moved}");
    }

    #[test]
    fn cookies_are_found_among_several() {
        let mut h = http::HeaderMap::new();
        h.append(
            http::header::COOKIE,
            "a=1; INGRESSCOOKIE=abc".parse().unwrap(),
        );
        assert_eq!(cookie(&h, "INGRESSCOOKIE"), Some("abc"));
        assert_eq!(cookie(&h, "b"), None);
    }
}
