//! The intermediate representation: what the operator computes and the data plane serves.
//!
//! Plain data, no Kubernetes types. Both front-ends (Gateway API and Ingress) produce it, and
//! the config channel carries it as separate keyed resources so that one edit is one small
//! delta: a `Listener` (socket and TLS), a `RouteTable` (routes of one listener, pointing at
//! the listener by key), a `Cluster` (endpoints of one Service port) and a `Certificate`.
//! Children name their parents by key; nothing points downwards by value.

pub use crate::tracing_export::{TraceProtocol, Tracing};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// A Gateway as the data plane sees it: only what is needed to report which generation a
/// config version contains (so the operator can mark it Programmed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gateway {
    /// "namespace/name".
    pub key: String,
    pub generation: i64,
    /// The ListenerSets whose listeners this Gateway serves, so an acknowledgement of a
    /// version also acknowledges their generations. The data plane does not read it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listener_sets: Vec<Generation>,
}

/// An object's generation, as a version of the config carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    /// "namespace/name".
    pub key: String,
    pub generation: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    Http,
    Https,
}

/// One Gateway listener. Listeners of one Gateway that share address and port share a socket
/// (a "bind"); the request's Host (and SNI on TLS) picks the listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// "namespace/gateway/listener".
    pub key: String,
    /// "namespace/gateway".
    pub gateway: String,
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    /// The listener hostname; `Any` when the listener has none.
    pub hostname: HostMatch,
    /// Certificates offered on this listener, each for the server names it covers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<SniCertificate>,
    /// Client certificates asked for and checked on HTTPS (Gateway spec.tls.frontend);
    /// it applies to the listener's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_validation: Option<ClientValidation>,
    /// Key of the `Certificate` presented to backends that ask for a client certificate
    /// over TLS (Gateway spec.tls.backend.clientCertificateRef).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_client_certificate: Option<String>,
    /// How long clients of this listener's port may take and how much they may hold (the
    /// Gateway's parameters; every listener of a port has the same).
    #[serde(default, skip_serializing_if = "ClientLimits::is_default")]
    pub limits: ClientLimits,
    /// Who the client is and what of its request is passed on (the Gateway's parameters;
    /// every listener of a port has the same).
    #[serde(default, skip_serializing_if = "Forwarding::is_default")]
    pub forwarding: Forwarding,
}

/// How a port learns the client's address, and what headers of a client's request are
/// passed on. By default the client is the socket's peer, and X-Forwarded-For,
/// X-Forwarded-Proto, X-Forwarded-Host, X-Forwarded-Port and X-Real-IP are Gatehouse's own:
/// a client's are replaced, never passed on. Header names with an underscore are dropped
/// (nginx's `underscores_in_headers off`: `X_User` must not pass for `X-User`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Forwarding {
    /// Every connection starts with a PROXY protocol header (v1 or v2), whose source
    /// address is the client's: behind a load balancer that sends one.
    pub proxy_protocol: bool,
    /// Networks of proxies in front whose X-Forwarded-For is believed: the client is the
    /// last address of the chain not in them, and the chain is passed on.
    pub trusted_proxies: Vec<String>,
    /// Header names with underscores are passed on.
    pub keep_underscore_headers: bool,
    /// One JSON line per request on the data plane's standard output.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub access_log: bool,
    /// A request without X-Request-ID gets one (random, 32 hex digits), which the backend
    /// receives and the access log shows; one the client sent is passed on as it is.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub generate_request_id: bool,
    /// A span per request, exported over OTLP (`tracing_export`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<Box<crate::tracing_export::Tracing>>,
}

impl Forwarding {
    pub fn is_default(&self) -> bool {
        *self == Forwarding::default()
    }
}

/// Timeouts and caps for the clients of one port: what a client that sends half a head,
/// or nothing, or holds connections open, may cost. The defaults sit between nginx's and
/// Envoy's edge recommendations (docs/security.md has the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ClientLimits {
    /// The whole request head, from its first byte (or the connection's start) to its end
    /// (nginx client_header_timeout 60 s; Envoy edge request_headers_timeout 10 s).
    pub header_timeout_ms: u64,
    /// A kept-alive HTTP/1 connection between requests, and an HTTP/2 connection with no
    /// stream (nginx keepalive_timeout 75 s).
    pub idle_timeout_ms: u64,
    /// Open client connections per port; more are accepted and closed at once.
    pub max_connections: u32,
    /// A request head's size (431 above it; Envoy max_request_headers_kb 60).
    pub max_header_bytes: u32,
    /// A request head's header count (431 above it; Envoy 100).
    pub max_headers: u32,
    /// A backend's answer head, from the request sent (504 when exceeded; nginx
    /// proxy_read_timeout 60 s).
    pub upstream_header_timeout_ms: u64,
    /// An HTTP/2 PING this often on every client connection; one unanswered for 20 s (or
    /// the interval, when shorter) closes it. 0: none (Envoy connection_keepalive).
    pub h2_ping_interval_ms: u64,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            header_timeout_ms: 10_000,
            idle_timeout_ms: 75_000,
            max_connections: 10_000,
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            upstream_header_timeout_ms: 60_000,
            h2_ping_interval_ms: 60_000,
        }
    }
}

impl ClientLimits {
    pub fn is_default(&self) -> bool {
        *self == ClientLimits::default()
    }
}

/// Which client certificates a TLS listener accepts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClientValidation {
    /// PEM CA certificates a client certificate must chain to.
    pub ca_pem: String,
    /// AllowInsecureFallback: connections without a valid client certificate are accepted
    /// too (the certificate is still asked for).
    #[serde(default)]
    pub insecure_fallback: bool,
}

impl Listener {
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }
}

/// A certificate and the SNI names it is chosen for. Empty `server_names` makes it the
/// default for its socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SniCertificate {
    pub server_names: Vec<HostMatch>,
    /// Key of a `Certificate` resource ("namespace/secret").
    pub certificate: String,
}

/// PEM chain and private key from a kubernetes.io/tls Secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    pub key: String,
    pub chain_pem: String,
    pub private_key_pem: String,
}

impl std::fmt::Debug for Certificate {
    // Never print private keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// How a hostname pattern matches a request host.
///
/// Gateway API and Ingress disagree on wildcards: in Gateway API `*.example.com` matches any
/// number of labels in front of the suffix; in Ingress it covers exactly one label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum HostMatch {
    Any,
    /// Lower-case host, no port.
    Exact(String),
    /// Gateway API wildcard: the suffix including its leading dot (".example.com"),
    /// matching one or more labels before it.
    Suffix(String),
    /// Ingress wildcard: suffix with leading dot, matching exactly one label before it.
    OneLabel(String),
}

impl HostMatch {
    /// Parses a Gateway API hostname ("*.example.com" is `Suffix`).
    pub fn gateway(hostname: &str) -> HostMatch {
        let h = hostname.to_ascii_lowercase();
        match h.strip_prefix('*') {
            Some(suffix) => HostMatch::Suffix(suffix.to_string()),
            None => HostMatch::Exact(h),
        }
    }

    /// Parses an Ingress host ("*.example.com" is `OneLabel`).
    pub fn ingress(host: &str) -> HostMatch {
        let h = host.to_ascii_lowercase();
        match h.strip_prefix('*') {
            Some(suffix) => HostMatch::OneLabel(suffix.to_string()),
            None => HostMatch::Exact(h),
        }
    }

    /// Whether `host` (lower-case, without port) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Any => true,
            HostMatch::Exact(h) => h == host,
            HostMatch::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
            HostMatch::OneLabel(s) => match host.strip_suffix(s.as_str()) {
                Some(label) => !label.is_empty() && !label.contains('.'),
                None => false,
            },
        }
    }

    /// Ordering key for "most specific first": exact before wildcards, longer wildcard
    /// suffixes before shorter ones, one-label before any-depth at equal length, Any last.
    pub fn specificity(&self) -> (u8, usize, u8) {
        match self {
            HostMatch::Exact(h) => (3, h.len(), 0),
            HostMatch::OneLabel(s) => (2, s.len(), 1),
            HostMatch::Suffix(s) => (2, s.len(), 0),
            HostMatch::Any => (0, 0, 0),
        }
    }
}

impl std::fmt::Display for HostMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostMatch::Any => write!(f, "*"),
            HostMatch::Exact(h) => write!(f, "{h}"),
            HostMatch::Suffix(s) => write!(f, "*{s} (any depth)"),
            HostMatch::OneLabel(s) => write!(f, "*{s} (one label)"),
        }
    }
}

/// The routes of one listener, keyed like the listener.
///
/// Virtual hosts and routes are shared (`Arc`): a new version that changes one hostname
/// shares every other virtual host with the last one, so comparing, encoding and compiling
/// versions costs what changed (an `Arc` of an `Eq` type compares by pointer first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RouteTable {
    /// Same key as the `Listener` it serves.
    pub listener: String,
    /// Most specific hostname first (`VirtualHost::precedence`); a request uses the first
    /// virtual host whose hostname matches and never falls through to a less specific one.
    pub virtual_hosts: Vec<Arc<VirtualHost>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualHost {
    pub hostname: HostMatch,
    /// In precedence order: the first route whose match holds wins.
    pub routes: Vec<Arc<Route>>,
}

impl VirtualHost {
    /// The order of virtual hosts in a route table: most specific hostname first, then by
    /// hostname, so both ends of the channel sort a table alike.
    pub fn precedence(a: &HostMatch, b: &HostMatch) -> std::cmp::Ordering {
        b.specificity().cmp(&a.specificity()).then_with(|| a.cmp(b))
    }
}

/// One virtual host of one listener: the unit the config channel carries, so a route edit
/// resends the routes of one hostname, not the listener's whole table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerHost {
    /// Key of the `Listener` whose table holds it.
    pub listener: String,
    pub host: Arc<VirtualHost>,
}

impl ListenerHost {
    /// "namespace/gateway/listener hostname": unique, since a table has one virtual host
    /// per hostname and hostnames hold no spaces.
    pub fn key(listener: &str, hostname: &HostMatch) -> String {
        format!("{listener} {hostname}")
    }
}

/// One match of one rule, with the rule's action. A rule with three matches becomes three
/// routes, because precedence is decided per match, not per rule.
///
/// Rare parts (retry, access lists, limits, balance, external auth) are boxed: a route
/// without them is half the size (784 -> 384 bytes), and tables hold thousands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub source: RouteSource,
    #[serde(rename = "match")]
    pub matcher: RouteMatch,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
    /// Weighted backends. Empty with no redirect filter answers 500.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<WeightedBackend>,
    #[serde(default, skip_serializing_if = "Timeouts::is_default")]
    pub timeouts: Timeouts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Box<Retry>>,
    /// Largest request body accepted; a larger one is answered 413 (nginx
    /// proxy-body-size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_body: Option<u64>,
    /// Which client addresses may use the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Box<SourceAccess>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<Box<RateLimit>>,
    /// How an endpoint of the backend is chosen; round robin when None.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<Box<Balance>>,
    /// Every request is first checked by another service (ingress-nginx auth-url).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_auth: Option<Box<ExternalAuth>>,
    /// Strict-Transport-Security added to answers over HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsts: Option<Hsts>,
}

/// HTTP Strict Transport Security (RFC 6797), sent only on HTTPS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hsts {
    pub max_age: u64,
    #[serde(default)]
    pub include_sub_domains: bool,
    #[serde(default)]
    pub preload: bool,
}

impl Hsts {
    /// The header value, made from the numbers and flags alone.
    pub fn header_value(&self) -> String {
        let mut v = format!("max-age={}", self.max_age);
        if self.include_sub_domains {
            v.push_str("; includeSubDomains");
        }
        if self.preload {
            v.push_str("; preload");
        }
        v
    }
}

/// An authorization check before each request: a request to `url` with the client's
/// headers; 2xx lets the request through, 401 and 403 are answered to the client, anything
/// else (or no answer) is 500.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalAuth {
    /// http://host[:port]/path?query, sent as the check's request line and Host.
    pub url: String,
    /// The cluster whose endpoints receive the check (a Service of the cluster); None
    /// resolves the URL's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub method: String,
    /// Headers of the check's answer copied onto the request to the backend (absent ones
    /// are removed from it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_headers: Vec<String>,
    /// A 401 is answered with a 302 to this URL, the original URL in `rd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signin: Option<String>,
}

/// Choosing an endpoint other than round robin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Balance {
    /// Session affinity by a cookie the data plane sets (ingress-nginx affinity: cookie).
    Cookie(CookieAffinity),
    /// Consistent hashing of a key made of these parts (ingress-nginx upstream-hash-by):
    /// requests with one key go to one endpoint while the endpoints stay.
    Hash(Vec<HashPart>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CookieAffinity {
    pub name: String,
    /// Cookie path; the route's path when None.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
    /// Seconds from now, written as an Expires date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Secure always; otherwise only on HTTPS requests.
    #[serde(default)]
    pub secure: bool,
    /// The cookie pins one endpoint while it exists ("persistent"); otherwise it holds a
    /// key hashed onto the endpoints, so a scale-up rebalances some sessions ("balanced").
    #[serde(default)]
    pub persistent: bool,
}

/// A piece of a hash key: fixed text, or a part of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HashPart {
    Text(String),
    /// Path and query as sent.
    RequestUri,
    /// Path alone.
    Uri,
    RemoteAddr,
    Host,
    Header(String),
    Cookie(String),
    Query(String),
}

/// Client addresses let in or refused (ingress-nginx allow-/denylist-source-range), by
/// the address of the connection's peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceAccess {
    /// Networks refused, checked first ("10.0.0.0/8", "2001:db8::/32", "192.0.2.7").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    /// When not empty, only these networks are let in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Answer to a refused client: 403, or 503 when everyone is refused because the
    /// configuration was invalid.
    pub status: u16,
}

/// Requests per client address (ingress-nginx limit-rps, limit-rpm, limit-connections):
/// nginx's leaky bucket without delay, burst = rate x burst_multiplier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Routes with one zone share their counts (ingress-nginx: one zone per Ingress).
    pub zone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_second: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_minute: Option<u32>,
    pub burst_multiplier: u32,
    /// Requests in progress at once per client address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<u32>,
    /// Networks never limited.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exempt: Vec<String>,
    /// Answer to a limited request (503 as nginx's default).
    pub status: u16,
    /// IPv6 clients counted by this prefix (64: one count per /64, what one host usually
    /// holds); None counts each address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_prefix: Option<u8>,
}

/// A network in CIDR form or a single address, as the model carries them.
pub fn parse_network(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is not an IP address or network"))
}

impl Route {
    /// A route with no filters, backends or policies: what callers then fill in.
    pub fn new(source: RouteSource, matcher: RouteMatch) -> Route {
        Route {
            source,
            matcher,
            filters: vec![],
            backends: vec![],
            timeouts: Timeouts::default(),
            retry: None,
            max_request_body: None,
            access: None,
            rate_limit: None,
            balance: None,
            external_auth: None,
            hsts: None,
        }
    }

    /// Keys of every cluster the route sends to: its backends, its mirrors and its
    /// external auth service.
    pub fn clusters(&self) -> impl Iterator<Item = &str> {
        let mirrors = self.filters.iter().filter_map(|f| match f {
            Filter::Mirror(m) => Some(&m.target),
            _ => None,
        });
        self.backends
            .iter()
            .map(|b| &b.target)
            .chain(mirrors)
            .filter_map(|t| match t {
                BackendTarget::Cluster(k) => Some(k.as_str()),
                BackendTarget::Invalid(_) => None,
            })
            .chain(
                self.external_auth
                    .as_ref()
                    .and_then(|a| a.cluster.as_deref()),
            )
    }
}

/// Time limits of a route, in milliseconds. `None` is the data plane's default; `Some(0)`
/// turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Timeouts {
    /// From the request's arrival to the end of the answer, retries included (504 when
    /// exceeded before the answer started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_ms: Option<u64>,
    /// One attempt at a backend: connect plus waiting for its answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_request_ms: Option<u64>,
    /// Establishing a connection to a backend (nginx proxy-connect-timeout; 504).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<u64>,
    /// Longest wait for the backend between two reads (nginx proxy-read-timeout; 504).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_idle_ms: Option<u64>,
    /// Longest wait between two writes to the backend (nginx proxy-send-timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_idle_ms: Option<u64>,
}

impl Timeouts {
    pub fn is_default(&self) -> bool {
        *self == Timeouts::default()
    }
}

/// When to send a request to a backend again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    /// Answers that are retried (5xx codes). Connect failures and backend timeouts are
    /// always retried while attempts remain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<u16>,
    /// Retries after the first attempt.
    pub attempts: u32,
    /// Wait before each retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
}

/// Where a route came from, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSource {
    /// "HTTPRoute" or "Ingress".
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// Rule index within the object.
    pub rule: usize,
}

/// "HTTPRoute namespace/name rule N", as logs show a route.
impl std::fmt::Display for RouteSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}/{} rule {}",
            self.kind, self.namespace, self.name, self.rule
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteMatch {
    pub path: PathMatch,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ValueMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<ValueMatch>,
}

impl RouteMatch {
    /// A match on the path alone (no method, header or query conditions).
    pub fn path_only(path: PathMatch) -> Self {
        RouteMatch {
            path,
            method: None,
            headers: vec![],
            query: vec![],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathMatch {
    /// Whole path equal.
    Exact(String),
    /// Element-wise prefix: `/foo` matches `/foo`, `/foo/` and `/foo/bar`, not `/foobar`.
    /// Stored without a trailing slash (except the root `/`).
    Prefix(String),
    /// RE2-like regular expression that must match the whole path.
    Regex(String),
}

/// A header (name is case-insensitive) or query parameter (name is exact) match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueMatch {
    pub name: String,
    pub value: StringMatch,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StringMatch {
    Exact(String),
    /// Must match the whole value.
    Regex(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Filter {
    RequestHeaders(HeaderModifier),
    ResponseHeaders(HeaderModifier),
    Redirect(Redirect),
    Rewrite(Rewrite),
    /// Send a copy of the request to another backend; its answer is dropped.
    Mirror(Mirror),
    Cors(Cors),
    /// Answers with a fixed Location (ingress-nginx permanent-/temporal-redirect).
    RedirectTo(FixedRedirect),
    /// ingress-nginx enable-cors: every OPTIONS from an allowed origin is answered 204 here,
    /// and every answer to an allowed origin gets the headers.
    NginxCors(NginxCors),
}

/// CORS as ingress-nginx does it; the header values are sent as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NginxCors {
    /// ["*"] (any origin, even none; answered with "*"), or origins compared
    /// case-insensitively at the end of the Origin, where "*." stands for one label.
    pub allow_origins: Vec<String>,
    pub allow_methods: String,
    pub allow_headers: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub expose_headers: String,
    pub allow_credentials: bool,
    pub max_age: u32,
}

/// A redirect to a fixed URL, query not carried over. 301, 302, 303, 307 and 308 send it as
/// Location; other 3xx codes send it as the body (as nginx's `return` does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedRedirect {
    pub location: String,
    pub status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mirror {
    pub target: BackendTarget,
    /// Share of requests mirrored: numerator/denominator (1/1 is all).
    pub numerator: u32,
    pub denominator: u32,
}

/// Cross-origin resource sharing: answers preflights itself and adds the allow headers to
/// answers for allowed origins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Cors {
    /// "https://a.example", "https://*.example" (any depth of labels) or "*".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origins: Vec<String>,
    /// Methods, or ["*"].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub allow_credentials: bool,
    /// Seconds; None leaves Access-Control-Max-Age out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HeaderModifier {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redirect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub status: u16,
    /// The request's query is not carried over (ingress-nginx app-root).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drop_query: bool,
    /// One trailing slash of the path is dropped, "/a/" -> "/a" (ingress-nginx's
    /// redirect to HTTPS).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strip_trailing_slash: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rewrite {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathModifier {
    ReplaceFullPath(String),
    /// Replaces the part of the path matched by the route's `Prefix` match.
    ReplacePrefixMatch(String),
    /// Replaces the whole path with this text, where `$1`..`$9` are the groups the route's
    /// `Regex` path match captured (ingress-nginx rewrite-target); a group that did not
    /// take part is empty.
    RegexTemplate(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightedBackend {
    pub weight: u32,
    pub target: BackendTarget,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackendTarget {
    /// Key of a `Cluster`.
    Cluster(String),
    /// A reference that cannot be served (missing Service, not permitted, unknown kind):
    /// its share of traffic answers 500. The reason is for logs.
    Invalid(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    /// Cleartext HTTP/2 by prior knowledge (appProtocol kubernetes.io/h2c).
    H2c,
}

/// The endpoints of one Service port: "namespace/service:port".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    pub key: String,
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// Ready endpoints. Empty answers 503.
    pub endpoints: Vec<SocketAddr>,
    /// TLS to the endpoints (a BackendTLSPolicy); cleartext when None.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
}

/// How the data plane speaks TLS to a cluster's endpoints and what it accepts from them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UpstreamTls {
    /// Server name sent (SNI). Without `subject_alt_names` the certificate must be valid
    /// for it.
    pub hostname: String,
    pub trust: UpstreamTrust,
    /// When given, the certificate must carry at least one of them, and need not be
    /// valid for `hostname`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<SubjectAltName>,
}

/// What the endpoints' certificate chains must lead to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UpstreamTrust {
    /// PEM CA certificates.
    CaPem(String),
    /// The system's trust store (wellKnownCACertificates: System).
    System,
    /// Not verified (ingress-nginx backend-protocol HTTPS/GRPCS: proxy_ssl_verify off).
    Insecure,
    /// The policy has no usable CA: requests answer 503, and never go out in cleartext.
    Unusable(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SubjectAltName {
    /// A DNS name (wildcards as in certificates).
    Hostname(String),
    /// A URI, compared exactly (e.g. a SPIFFE ID).
    Uri(String),
}

/// Every resource the channel carries, as one sum type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Gateway(Gateway),
    Listener(Listener),
    /// One virtual host of a listener's route table.
    VirtualHost(ListenerHost),
    Cluster(Cluster),
    Certificate(Certificate),
}

impl Resource {
    pub fn kind(&self) -> &'static str {
        match self {
            Resource::Gateway(_) => "Gateway",
            Resource::Listener(_) => "Listener",
            Resource::VirtualHost(_) => "VirtualHost",
            Resource::Cluster(_) => "Cluster",
            Resource::Certificate(_) => "Certificate",
        }
    }

    pub fn key(&self) -> String {
        match self {
            Resource::Gateway(g) => g.key.clone(),
            Resource::Listener(l) => l.key.clone(),
            Resource::VirtualHost(h) => ListenerHost::key(&h.listener, &h.host.hostname),
            Resource::Cluster(c) => c.key.clone(),
            Resource::Certificate(c) => c.key.clone(),
        }
    }
}

/// The whole configuration the operator computed, before it is cut into resources.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    pub gateways: Vec<Gateway>,
    pub listeners: Vec<Listener>,
    pub route_tables: Vec<RouteTable>,
    pub clusters: Vec<Cluster>,
    pub certificates: Vec<Certificate>,
}

impl Config {
    /// The config cut into the resources the channel carries: route tables travel as one
    /// resource per virtual host.
    pub fn resources(&self) -> impl Iterator<Item = Resource> + '_ {
        let hosts = self.route_tables.iter().flat_map(|t| {
            t.virtual_hosts.iter().map(|h| {
                Resource::VirtualHost(ListenerHost {
                    listener: t.listener.clone(),
                    host: h.clone(),
                })
            })
        });
        self.resources_but_hosts().chain(hosts)
    }

    /// Every resource but the virtual hosts: Gateways, Listeners, Clusters, Certificates.
    pub fn resources_but_hosts(&self) -> impl Iterator<Item = Resource> + '_ {
        let gateways = self.gateways.iter().cloned().map(Resource::Gateway);
        let listeners = self.listeners.iter().cloned().map(Resource::Listener);
        let clusters = self.clusters.iter().cloned().map(Resource::Cluster);
        let certs = self.certificates.iter().cloned().map(Resource::Certificate);
        gateways.chain(listeners).chain(clusters).chain(certs)
    }

    /// Puts resources back together: virtual hosts into one route table per listener, in
    /// `VirtualHost::precedence` order.
    pub fn from_resources(resources: impl IntoIterator<Item = Resource>) -> Config {
        let mut config = Config::default();
        let mut tables: std::collections::BTreeMap<String, Vec<Arc<VirtualHost>>> =
            Default::default();
        for r in resources {
            match r {
                Resource::Gateway(g) => config.gateways.push(g),
                Resource::Listener(l) => config.listeners.push(l),
                Resource::VirtualHost(h) => tables.entry(h.listener).or_default().push(h.host),
                Resource::Cluster(c) => config.clusters.push(c),
                Resource::Certificate(c) => config.certificates.push(c),
            }
        }
        config.route_tables = tables
            .into_iter()
            .map(|(listener, mut virtual_hosts)| {
                virtual_hosts.sort_by(|a, b| VirtualHost::precedence(&a.hostname, &b.hostname));
                RouteTable {
                    listener,
                    virtual_hosts,
                }
            })
            .collect();
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_wildcards_match_any_depth_ingress_wildcards_one_label() {
        let gw = HostMatch::gateway("*.example.com");
        assert!(gw.matches("a.example.com"));
        assert!(gw.matches("a.b.example.com"));
        assert!(!gw.matches("example.com"));
        assert!(!gw.matches("aexample.com"));

        let ing = HostMatch::ingress("*.foo.com");
        assert!(ing.matches("bar.foo.com"));
        assert!(!ing.matches("baz.bar.foo.com"));
        assert!(!ing.matches("foo.com"));
        assert!(!ing.matches(".foo.com"));
    }

    #[test]
    fn specificity_orders_exact_then_longest_wildcard_then_any() {
        let mut hosts = vec![
            HostMatch::Any,
            HostMatch::gateway("*.com"),
            HostMatch::gateway("a.example.com"),
            HostMatch::gateway("*.example.com"),
            HostMatch::ingress("*.example.com"),
        ];
        hosts.sort_by_key(|h| std::cmp::Reverse(h.specificity()));
        assert_eq!(
            hosts,
            vec![
                HostMatch::gateway("a.example.com"),
                HostMatch::ingress("*.example.com"),
                HostMatch::gateway("*.example.com"),
                HostMatch::gateway("*.com"),
                HostMatch::Any,
            ]
        );
    }
}
