//! What both request paths (the direct HTTP/1 path and the pingora proxy) share when they
//! forward a request: how many attempts a request gets, how long a failed endpoint is
//! skipped, the Host a request is routed on, and the X-Forwarded-For value. Kept here, not
//! in either path, so that neither path depends on the other.

use std::time::Duration;

/// Connection attempts per request, the first included; a request tries at most every
/// endpoint of its cluster once.
pub const MAX_CONNECT_ATTEMPTS: u32 = 8;

/// Attempts per request under a route's retry policy, the first included.
pub const MAX_POLICY_ATTEMPTS: u32 = 16;

/// How long an endpoint that failed a connect is skipped.
pub(crate) const EJECTION: Duration = Duration::from_secs(10);

/// A Host value without port, lower-case, without a trailing dot.
pub(crate) fn normalize_host(raw: &str) -> std::borrow::Cow<'_, str> {
    let host = if raw.starts_with('[') {
        // IPv6 literal: keep the brackets, drop the port.
        raw.split_inclusive(']').next().unwrap_or(raw)
    } else {
        raw.rsplit_once(':').map(|(h, _)| h).unwrap_or(raw)
    };
    let host = host.trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

/// Writes an X-Forwarded-For value: `previous`, then `client`; without the formatting
/// machinery (it is on every proxied request).
pub(crate) fn push_forwarded_for(
    v: &mut Vec<u8>,
    previous: Option<&[u8]>,
    client: std::net::IpAddr,
) {
    if let Some(p) = previous {
        v.extend_from_slice(p);
        v.extend_from_slice(b", ");
    }
    match client {
        std::net::IpAddr::V4(ip) => {
            for (i, octet) in ip.octets().iter().enumerate() {
                if i > 0 {
                    v.push(b'.');
                }
                let o = *octet;
                if o >= 100 {
                    v.push(b'0' + o / 100);
                }
                if o >= 10 {
                    v.push(b'0' + (o / 10) % 10);
                }
                v.push(b'0' + o % 10);
            }
        }
        std::net::IpAddr::V6(ip) => v.extend_from_slice(ip.to_string().as_bytes()),
    }
}
