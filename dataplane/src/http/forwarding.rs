//! What both request paths (the direct HTTP/1 path and the pingora proxy) share when they
//! forward a request: how many attempts a request gets, how long a failed endpoint is
//! skipped, the Host a request is routed on, who the client is, and the headers Gatehouse
//! sets in place of the client's. Kept here, not in either path, so that neither path
//! depends on the other and both forward alike.

use std::net::IpAddr;
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

/// Whether a Host value is a host and an optional port: a name of letters, digits, `-`,
/// `.` and `_`, an IPv4 address, or a bracketed IPv6 literal; a port of 1-5 digits. No
/// userinfo, no spaces, nothing a backend could read as another host.
pub fn valid_host(v: &[u8]) -> bool {
    let (host, port) = if v.first() == Some(&b'[') {
        let Some(end) = v.iter().position(|b| *b == b']') else {
            return false;
        };
        let literal = &v[1..end];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|b| b.is_ascii_hexdigit() || b":.".contains(b))
        {
            return false;
        }
        (&v[..=end], &v[end + 1..])
    } else {
        match v.iter().position(|b| *b == b':') {
            Some(i) => (&v[..i], &v[i..]),
            None => (v, &v[v.len()..]),
        }
    };
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => {
            (1..=5).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit)
        }
        _ => false,
    };
    let host_ok = host.first() == Some(&b'[')
        || (!host.is_empty()
            && host
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(b)));
    host_ok && port_ok
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
            push_ip(v, IpAddr::V4(ip));
        }
        std::net::IpAddr::V6(ip) => push_ip(v, IpAddr::V6(ip)),
    }
}

/// The headers Gatehouse sets on every forwarded request; a client's are dropped first,
/// never passed on (a backend trusting X-Real-IP must get Gatehouse's).
pub const SET_HEADERS: [&str; 5] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-real-ip",
];

/// Whether a client's header is dropped before forwarding: one Gatehouse sets, or a name
/// with an underscore unless the port keeps them (nginx's `underscores_in_headers off`).
pub fn dropped_header(name: &[u8], keep_underscores: bool) -> bool {
    (!keep_underscores && name.contains(&b'_'))
        || SET_HEADERS
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
}

/// The port's rules for learning who the client is, compiled.
#[derive(Debug, Default)]
pub struct ClientRules {
    /// Networks of proxies whose X-Forwarded-For is believed.
    pub trusted: Vec<ipnet::IpNet>,
    /// Read a PROXY protocol header first on every connection.
    pub proxy_protocol: bool,
    pub keep_underscores: bool,
}

impl ClientRules {
    /// The rules of a listener's forwarding (networks already checked by translation; an
    /// unusable one is skipped).
    pub fn of(f: &gatehouse_model::ir::Forwarding) -> ClientRules {
        ClientRules {
            trusted: f
                .trusted_proxies
                .iter()
                .filter_map(|n| gatehouse_model::ir::parse_network(n).ok())
                .collect(),
            proxy_protocol: f.proxy_protocol,
            keep_underscores: f.keep_underscore_headers,
        }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// Who sent a request that came from `peer` with this X-Forwarded-For: the peer, or,
    /// when the peer is a trusted proxy, the last address of the chain that is not (the
    /// first, when all are). Returns the client and whether the chain is believed (and so
    /// passed on).
    pub fn client(&self, peer: IpAddr, xff: Option<&[u8]>) -> (IpAddr, bool) {
        if self.trusted.is_empty() || !self.trusts(peer) {
            return (peer, false);
        }
        let Some(chain) = xff.and_then(|v| std::str::from_utf8(v).ok()) else {
            return (peer, true);
        };
        let hops: Vec<IpAddr> = chain
            .split(',')
            .filter_map(|h| h.trim().parse::<IpAddr>().ok())
            .collect();
        let client = hops
            .iter()
            .rev()
            .find(|ip| !self.trusts(**ip))
            .or(hops.first())
            .copied()
            .unwrap_or(peer);
        (client, true)
    }
}

/// The values of the headers Gatehouse sets, one definition for both paths.
pub struct Forwarded<'a> {
    pub peer: IpAddr,
    pub client: IpAddr,
    /// The client's X-Forwarded-For, when it is believed.
    pub chain: Option<&'a [u8]>,
    pub tls: bool,
    /// The Host header as the client sent it.
    pub host: &'a [u8],
    pub port: u16,
}

impl Forwarded<'_> {
    /// X-Forwarded-For: the believed chain and the peer, or the peer alone.
    pub fn forwarded_for(&self, out: &mut Vec<u8>) {
        push_forwarded_for(out, self.chain, self.peer);
    }

    /// The header lines, in one order, as the direct path writes them.
    pub fn write_headers(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"x-forwarded-for: ");
        self.forwarded_for(out);
        out.extend_from_slice(if self.tls {
            b"\r\nx-forwarded-proto: https\r\nx-forwarded-host: "
        } else {
            b"\r\nx-forwarded-proto: http\r\nx-forwarded-host: "
        });
        out.extend_from_slice(self.host);
        out.extend_from_slice(b"\r\nx-forwarded-port: ");
        push_decimal(out, u64::from(self.port));
        out.extend_from_slice(b"\r\nx-real-ip: ");
        push_ip(out, self.client);
        out.extend_from_slice(b"\r\n");
    }
}

/// A number as decimal text, without the formatting machinery.
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// An address as text, IPv4 without the formatting machinery.
pub(crate) fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(ip) => {
            for (i, octet) in ip.octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_decimal(out, u64::from(*octet));
            }
        }
        IpAddr::V6(ip) => out.extend_from_slice(ip.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_a_name_and_a_port() {
        for ok in [
            "app.test",
            "app.test:8080",
            "10.0.0.1:80",
            "[::1]:443",
            "[2001:db8::1]",
            "a_b.test",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "app.test:abc",
            "app.test:",
            "user@app.test",
            "a b",
            "[::1",
            "app.test:123456",
            "a.test:80:81",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_appends_the_client() {
        let text = |previous: Option<&[u8]>, ip: &str| {
            let mut v = Vec::new();
            push_forwarded_for(&mut v, previous, ip.parse().unwrap());
            String::from_utf8(v).unwrap()
        };
        assert_eq!(text(None, "10.0.100.7"), "10.0.100.7");
        assert_eq!(text(None, "0.9.10.255"), "0.9.10.255");
        assert_eq!(
            text(Some(b"192.0.2.1"), "2001:db8::1"),
            "192.0.2.1, 2001:db8::1"
        );
    }

    fn rules(trusted: &[&str]) -> ClientRules {
        ClientRules::of(&gatehouse_model::ir::Forwarding {
            trusted_proxies: trusted.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
    }

    #[test]
    fn the_client_is_the_peer_unless_a_trusted_proxy_says_otherwise() {
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        let xff = Some(&b"203.0.113.9, 10.0.0.4"[..]);
        assert_eq!(
            rules(&[]).client(peer, xff),
            (peer, false),
            "nobody trusted"
        );
        assert_eq!(
            rules(&["192.168.0.0/16"]).client(peer, xff),
            (peer, false),
            "the peer is not trusted"
        );
        assert_eq!(
            rules(&["10.0.0.0/8"]).client(peer, xff),
            ("203.0.113.9".parse().unwrap(), true),
            "the last untrusted hop"
        );
        assert_eq!(
            rules(&["10.0.0.0/8"]).client(peer, Some(b"10.1.1.1")),
            ("10.1.1.1".parse().unwrap(), true),
            "all trusted: the first"
        );
        assert_eq!(rules(&["10.0.0.0/8"]).client(peer, None), (peer, true));
    }

    #[test]
    fn headers_gatehouse_sets_replace_the_clients() {
        for name in ["X-Real-IP", "x-forwarded-host", "X-Forwarded-For", "x_user"] {
            assert!(dropped_header(name.as_bytes(), false), "{name}");
        }
        assert!(!dropped_header(b"x_user", true));
        assert!(!dropped_header(b"x-user", false));
        let f = Forwarded {
            peer: "10.0.0.5".parse().unwrap(),
            client: "203.0.113.9".parse().unwrap(),
            chain: Some(b"203.0.113.9"),
            tls: true,
            host: b"a.example:8443",
            port: 8443,
        };
        let mut out = Vec::new();
        f.write_headers(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "x-forwarded-for: 203.0.113.9, 10.0.0.5\r\nx-forwarded-proto: https\r\nx-forwarded-host: a.example:8443\r\nx-forwarded-port: 8443\r\nx-real-ip: 203.0.113.9\r\n"
        );
    }
}
