//! What both request paths (the direct HTTP/1 path and the pingora proxy) share when they
//! forward a request: how many attempts a request gets, how long a failed endpoint is
//! skipped, the Host a request is routed on, who the client is, and the headers Gatehouse
//! sets in place of the client's. Kept here, not in either path, so that neither path
//! depends on the other and both forward alike.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Connection attempts per request, the first included; a request tries at most every
/// endpoint of its cluster once.
pub const MAX_CONNECT_ATTEMPTS: u32 = 8;

/// Attempts per request under a route's retry policy, the first included.
pub const MAX_POLICY_ATTEMPTS: u32 = 16;

/// How long one write to a client may wait for it to take bytes (nginx's `send_timeout`):
/// a client that reads nothing for a minute does not hold a backend's answer longer.
pub(crate) const CLIENT_SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one read of a request body may wait for the client (nginx's
/// `client_body_timeout`).
pub(crate) const CLIENT_BODY_TIMEOUT: Duration = Duration::from_secs(60);

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
    if v.first() == Some(&b'[') {
        let Some(end) = v.iter().position(|b| *b == b']') else {
            return false;
        };
        let literal = &v[1..end];
        return !literal.is_empty()
            && literal
                .iter()
                .all(|b| b.is_ascii_hexdigit() || b":.".contains(b))
            && valid_port(&v[end + 1..]);
    }
    // A name: one pass over its bytes (every request's Host comes here).
    let mut i = 0;
    while i < v.len() && HOST_NAME_BYTE[usize::from(v[i])] {
        i += 1;
    }
    i > 0 && valid_port(&v[i..])
}

/// Nothing, or `:` and 1-5 digits.
fn valid_port(p: &[u8]) -> bool {
    match p {
        [] => true,
        [b':', digits @ ..] => {
            (1..=5).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit)
        }
        _ => false,
    }
}

/// The bytes of a host name: letters, digits, `-`, `.`, `_`.
static HOST_NAME_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_';
        b += 1;
    }
    t
};

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

/// Other claims about the client or the URL it asked for that backends and frameworks act
/// on (Forwarded per RFC 7239, the prefix and scheme a framework builds links from, the
/// original URL IIS and Symfony route on). Gatehouse does not set them and cannot vouch for
/// a client's: they are dropped too. A route's filter may still set them.
pub const CLAIM_HEADERS: [&str; 6] = [
    "forwarded",
    "x-forwarded-prefix",
    "x-forwarded-scheme",
    "x-scheme",
    "x-original-url",
    "x-rewrite-url",
];

/// Whether a client's header is dropped before forwarding: one Gatehouse sets or a claim
/// it cannot vouch for, or a name with an underscore unless the port keeps them (nginx's
/// `underscores_in_headers off`). Names are compared with `_` read as `-`: CGI, PHP, WSGI
/// and Rack backends read `X_Real_IP` as `X-Real-IP`, so a kept underscore must not spell
/// one of them.
pub fn dropped_header(name: &[u8], keep_underscores: bool) -> bool {
    let has_underscore = name.contains(&b'_');
    if has_underscore && !keep_underscores {
        return true;
    }
    let same = |listed: &str| {
        listed.len() == name.len()
            && listed.bytes().zip(name).all(|(l, n)| {
                let n = if *n == b'_' {
                    b'-'
                } else {
                    n.to_ascii_lowercase()
                };
                l == n
            })
    };
    SET_HEADERS
        .iter()
        .chain(CLAIM_HEADERS.iter())
        .any(|h| same(h))
}

/// The port's rules for learning who the client is, compiled.
#[derive(Debug, Default)]
pub struct ClientRules {
    /// Networks of proxies whose X-Forwarded-For is believed.
    pub trusted: Vec<ipnet::IpNet>,
    /// Read a PROXY protocol header first on every connection.
    pub proxy_protocol: bool,
    pub keep_underscores: bool,
    /// Its requests are logged (`http::access_log`).
    pub access_log: bool,
    /// A request without X-Request-ID gets one.
    pub generate_request_id: bool,
    /// Its requests continue or start a trace, and sampled ones send a span
    /// (`crate::traces`).
    pub tracer: Option<Arc<crate::traces::Tracer>>,
}

impl ClientRules {
    /// The rules of a listener's forwarding (networks already checked by translation; an
    /// unusable one is skipped), its requests traced by `tracer`.
    pub fn of(
        f: &gatehouse_model::ir::Forwarding,
        tracer: Option<Arc<crate::traces::Tracer>>,
    ) -> ClientRules {
        ClientRules {
            trusted: f
                .trusted_proxies
                .iter()
                .filter_map(|n| gatehouse_model::ir::parse_network(n).ok())
                .collect(),
            proxy_protocol: f.proxy_protocol,
            keep_underscores: f.keep_underscore_headers,
            access_log: f.access_log,
            generate_request_id: f.generate_request_id,
            tracer,
        }
    }

    /// Whether `ip` is a trusted proxy; an IPv4-mapped IPv6 address is its IPv4 address.
    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// Who sent a request that came from `peer` with these X-Forwarded-For lines (all of
    /// them, in order: a chain split over several lines is one chain). The peer, or, when
    /// the peer is a trusted proxy, the chain walked from its right end: the first hop that
    /// is not trusted is the client. A hop that is not an address stops the walk at the
    /// last good one (what is left of it cannot be believed). Returns the client and whether
    /// the chain is believed (and so passed on).
    pub fn client(&self, peer: IpAddr, xff: &[&[u8]]) -> (IpAddr, bool) {
        if self.trusted.is_empty() || !self.trusts(peer) {
            return (peer, false);
        }
        let mut client = peer;
        for line in xff.iter().rev() {
            for hop in line.rsplit(|b| *b == b',') {
                let Some(ip) = hop_address(hop) else {
                    return (client, true);
                };
                client = ip;
                if !self.trusts(ip) {
                    return (client, true);
                }
            }
        }
        (client, true)
    }
}

/// One X-Forwarded-For hop as an address: `1.2.3.4`, `1.2.3.4:5678`, `::1` or `[::1]:5678`,
/// with spaces around.
fn hop_address(hop: &[u8]) -> Option<IpAddr> {
    let hop = std::str::from_utf8(hop).ok()?.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = hop.strip_prefix('[') {
        let (ip, _) = rest.split_once(']')?;
        return ip.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
    }
    let (ip, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    ip.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
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
    /// The peer and port as text, when the connection has them written already.
    pub texts: Option<&'a ConnectionTexts>,
    /// An X-Request-ID Gatehouse generated (the client sent none).
    pub request_id: Option<&'a str>,
    /// The request's trace, when its Gateway traces: the backend gets its `traceparent`.
    pub trace: Option<&'a crate::traces::TraceContext>,
}

/// A connection's peer address and local port as text, written once per connection
/// rather than for every request it carries.
pub struct ConnectionTexts {
    peer: Vec<u8>,
    port: Vec<u8>,
}

impl ConnectionTexts {
    pub fn of(peer: IpAddr, port: u16) -> ConnectionTexts {
        let mut t = ConnectionTexts {
            peer: Vec::with_capacity(15),
            port: Vec::with_capacity(5),
        };
        push_ip(&mut t.peer, peer);
        push_decimal(&mut t.port, u64::from(port));
        t
    }
}

impl Forwarded<'_> {
    /// X-Forwarded-For: the believed chain and the peer, or the peer alone.
    pub fn forwarded_for(&self, out: &mut Vec<u8>) {
        match self.texts {
            Some(t) => {
                if let Some(chain) = self.chain {
                    out.extend_from_slice(chain);
                    out.extend_from_slice(b", ");
                }
                out.extend_from_slice(&t.peer);
            }
            None => push_forwarded_for(out, self.chain, self.peer),
        }
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
        match self.texts {
            Some(t) => out.extend_from_slice(&t.port),
            None => push_decimal(out, u64::from(self.port)),
        }
        out.extend_from_slice(b"\r\nx-real-ip: ");
        match self.texts {
            Some(t) if self.client == self.peer => out.extend_from_slice(&t.peer),
            _ => push_ip(out, self.client),
        }
        out.extend_from_slice(b"\r\n");
        if let Some(id) = self.request_id {
            out.extend_from_slice(b"x-request-id: ");
            out.extend_from_slice(id.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if let Some(trace) = self.trace {
            out.extend_from_slice(b"traceparent: ");
            out.extend_from_slice(&trace.traceparent());
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Whether the client's header `name` gives way to Gatehouse's trace headers: its
    /// `traceparent` always, its `tracestate` when the trace was not continued.
    pub fn replaces(&self, name: &[u8]) -> bool {
        self.trace.is_some_and(|t| {
            name.eq_ignore_ascii_case(b"traceparent")
                || (!t.keeps_tracestate() && name.eq_ignore_ascii_case(b"tracestate"))
        })
    }
}

/// A new request id: 128 random bits as 32 hex digits (as nginx's $request_id).
pub fn new_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
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
        ClientRules::of(
            &gatehouse_model::ir::Forwarding {
                trusted_proxies: trusted.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
            None,
        )
    }

    #[test]
    fn the_client_is_the_peer_unless_a_trusted_proxy_says_otherwise() {
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        let xff: &[&[u8]] = &[b"203.0.113.9, 10.0.0.4"];
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
            rules(&["10.0.0.0/8"]).client(peer, &[b"10.1.1.1"]),
            ("10.1.1.1".parse().unwrap(), true),
            "all trusted: the first"
        );
        assert_eq!(rules(&["10.0.0.0/8"]).client(peer, &[]), (peer, true));
        let trusted = rules(&["10.0.0.0/8"]);
        assert_eq!(
            trusted.client(peer, &[b"198.51.100.1", b"203.0.113.9, 10.0.0.4"]),
            ("203.0.113.9".parse().unwrap(), true),
            "two lines are one chain, read from the right"
        );
        assert_eq!(
            trusted.client(peer, &[b"198.51.100.1, 10.0.0.3", b"10.0.0.4"]),
            ("198.51.100.1".parse().unwrap(), true),
            "the chain goes on in the earlier line"
        );
        assert_eq!(
            trusted.client(peer, &[b"203.0.113.9, unknown, 10.0.0.4"]),
            ("10.0.0.4".parse().unwrap(), true),
            "a hop that is not an address stops the walk"
        );
        assert_eq!(
            trusted.client(peer, &[b"203.0.113.9:4711, [2001:db8::1]:80"]),
            ("2001:db8::1".parse().unwrap(), true),
            "ports and brackets are read"
        );
        assert_eq!(
            trusted.client(
                "::ffff:10.0.0.5".parse().unwrap(),
                &[b"::ffff:10.0.0.9, 203.0.113.9"]
            ),
            ("203.0.113.9".parse().unwrap(), true),
            "IPv4-mapped addresses are their IPv4 address"
        );
    }

    #[test]
    fn headers_gatehouse_sets_replace_the_clients() {
        for name in [
            "X-Real-IP",
            "x-forwarded-host",
            "X-Forwarded-For",
            "x_user",
            "Forwarded",
            "X-Original-URL",
        ] {
            assert!(dropped_header(name.as_bytes(), false), "{name}");
        }
        assert!(!dropped_header(b"x_user", true));
        assert!(
            dropped_header(b"X_Real_IP", true),
            "a kept underscore does not spell a set header"
        );
        assert!(dropped_header(b"x_forwarded-for", true));
        assert!(!dropped_header(b"x-forwarded", false));
        assert!(!dropped_header(b"x-user", false));
        let f = Forwarded {
            peer: "10.0.0.5".parse().unwrap(),
            client: "203.0.113.9".parse().unwrap(),
            chain: Some(b"203.0.113.9"),
            tls: true,
            host: b"a.example:8443",
            port: 8443,
            texts: None,
            request_id: None,
            trace: None,
        };
        let mut out = Vec::new();
        f.write_headers(&mut out);
        let want = "x-forwarded-for: 203.0.113.9, 10.0.0.5\r\nx-forwarded-proto: https\r\nx-forwarded-host: a.example:8443\r\nx-forwarded-port: 8443\r\nx-real-ip: 203.0.113.9\r\n";
        assert_eq!(String::from_utf8(out).unwrap(), want);
        // Written with the connection's texts: the same lines.
        let texts = ConnectionTexts::of(f.peer, f.port);
        let with_texts = Forwarded {
            texts: Some(&texts),
            request_id: None,
            ..f
        };
        let mut out = Vec::new();
        with_texts.write_headers(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }
}
