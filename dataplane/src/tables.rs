//! Runtime tables: the model compiled for serving, and the lookup a request takes.
//!
//! Pure: compiled once per config version, swapped atomically, never mutated. A request
//! holds an `Arc<Runtime>` from start to end, so it finishes on the table it started with.

use crate::held::Held;
use crate::tls::{self, TlsCache};
use gatehouse_model::ir::{
    BackendTarget, Config, Cors, Filter, HostMatch, PathMatch, Protocol, StringMatch,
    UpstreamProtocol,
};
use gatehouse_model::validate::anchored_regex;
use pingora_core::listeners::tls::Acceptor;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Everything a data plane serves for one config version.
pub struct Runtime {
    pub version: u64,
    pub binds: HashMap<SocketAddr, Arc<Bind>>,
}

impl Runtime {
    pub fn empty() -> Self {
        Runtime {
            version: 0,
            binds: HashMap::new(),
        }
    }

    /// The bind a connection arrived on, by its local address (or the wildcard bind).
    pub fn bind(&self, local: SocketAddr) -> Option<&Arc<Bind>> {
        self.binds.get(&local).or_else(|| {
            let any = match local {
                SocketAddr::V4(_) => std::net::IpAddr::from([0, 0, 0, 0]),
                SocketAddr::V6(_) => std::net::IpAddr::from([0u16; 8]),
            };
            self.binds.get(&SocketAddr::new(any, local.port()))
        })
    }
}

/// One socket: the listeners of one Gateway sharing an address and port.
pub struct Bind {
    pub addr: SocketAddr,
    pub protocol: Protocol,
    /// Most specific hostname first.
    pub listeners: Vec<ListenerTable>,
    /// TLS acceptor for HTTPS binds: one per certificate set, reused across versions.
    pub tls: Option<Arc<Acceptor>>,
}

pub struct ListenerTable {
    pub key: String,
    pub hostname: HostMatch,
    /// Presented to TLS backends that ask for a client certificate.
    pub backend_client: Option<Arc<pingora_core::utils::tls::CertKey>>,
    /// Its virtual hosts; shared with the versions that did not change them.
    pub hosts: Arc<HostTable>,
}

/// A listener's virtual hosts as a request finds them: exact hostnames by hash (10k
/// hostnames cost what 10 do), the others (wildcards, any) walked in precedence order.
/// Exact hostnames come first in a table's order, so an exact hit is what a walk over the
/// whole table would find.
#[derive(Default, Clone)]
pub struct HostTable {
    exact: HashMap<Arc<str>, Arc<VirtualHostTable>>,
    /// In `VirtualHost::precedence` order.
    others: Vec<Arc<VirtualHostTable>>,
}

impl HostTable {
    /// The first virtual host whose hostname matches `host` (lower-case, no port).
    pub fn find(&self, host: &str) -> Option<&Arc<VirtualHostTable>> {
        self.exact
            .get(host)
            .or_else(|| self.others.iter().find(|v| v.hostname.matches(host)))
    }

    pub fn insert(&mut self, host: Arc<VirtualHostTable>) {
        match &host.hostname {
            HostMatch::Exact(h) => drop(self.exact.insert(h.as_str().into(), host)),
            hostname => {
                let at = self
                    .others
                    .binary_search_by(|v| {
                        gatehouse_model::ir::VirtualHost::precedence(&v.hostname, hostname)
                    })
                    .unwrap_or_else(|at| at);
                match self.others.get(at) {
                    Some(v) if v.hostname == *hostname => self.others[at] = host,
                    _ => self.others.insert(at, host),
                }
            }
        }
    }

    pub fn remove(&mut self, hostname: &HostMatch) {
        match hostname {
            HostMatch::Exact(h) => drop(self.exact.remove(h.as_str())),
            _ => self.others.retain(|v| v.hostname != *hostname),
        }
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.others.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct VirtualHostTable {
    pub hostname: HostMatch,
    pub routes: Vec<Arc<CompiledRoute>>,
}

/// A route ready to serve: its model route (`Deref`: source, filters, timeouts, retry,
/// body limit and balance are read there, not copied) plus what serving needs compiled:
/// matchers, backends as clusters, access lists and limits. Rare parts are boxed, so ten
/// thousand routes cost little more than their model.
pub struct CompiledRoute {
    /// The model route it was compiled from.
    pub model: Arc<gatehouse_model::ir::Route>,
    pub path: PathRule,
    pub method: Option<http::Method>,
    pub headers: Vec<(http::HeaderName, ValueRule)>,
    pub query: Vec<(String, ValueRule)>,
    pub backends: Vec<CompiledBackend>,
    pub total_weight: u64,
    /// Where copies of each request go (RequestMirror filters).
    pub mirrors: Vec<CompiledMirror>,
    pub cors: Option<Box<Cors>>,
    pub nginx_cors: Option<Box<gatehouse_model::ir::NginxCors>>,
    pub access: Option<Box<crate::limits::Access>>,
    pub rate_limit: Option<Box<crate::limits::Limit>>,
    /// The check and, when it names a Service, that Service's cluster.
    pub external_auth: Option<Box<(gatehouse_model::ir::ExternalAuth, Option<Arc<Cluster>>)>>,
    /// The Strict-Transport-Security value for HTTPS answers.
    pub hsts: Option<String>,
    /// Served by the direct HTTP/1 path (`direct.rs`): no filters or policies, and every
    /// backend a plain HTTP/1 cluster, so proxying is forwarding plus X-Forwarded-*.
    pub direct: bool,
}

impl std::ops::Deref for CompiledRoute {
    type Target = gatehouse_model::ir::Route;

    fn deref(&self) -> &Self::Target {
        &self.model
    }
}

pub struct CompiledMirror {
    pub cluster: Arc<Cluster>,
    pub numerator: u32,
    pub denominator: u32,
}

impl CompiledMirror {
    /// Whether this request is mirrored, given a uniform sample in [0, denominator).
    pub fn takes(&self, sample: u32) -> bool {
        sample < self.numerator
    }
}

pub enum PathRule {
    Exact(String),
    Prefix(String),
    Regex(regex::Regex),
}

pub enum ValueRule {
    Exact(String),
    Regex(regex::Regex),
}

impl ValueRule {
    fn matches(&self, v: &str) -> bool {
        match self {
            ValueRule::Exact(e) => e == v,
            ValueRule::Regex(r) => r.is_match(v),
        }
    }
}

pub struct CompiledBackend {
    pub weight: u32,
    pub target: Target,
    pub filters: Vec<Filter>,
}

pub enum Target {
    Cluster(Arc<Cluster>),
    Invalid(String),
}

pub struct Cluster {
    pub key: String,
    pub protocol: UpstreamProtocol,
    pub endpoints: Vec<SocketAddr>,
    /// TLS to the endpoints (BackendTLSPolicy).
    pub tls: Option<crate::upstream_tls::BackendTls>,
    next: AtomicUsize,
}

impl Cluster {
    /// Round robin over the endpoints, skipping those this request already tried and those
    /// recently ejected; when every untried endpoint is ejected, an ejected one (it may be
    /// back), and when all were tried, any.
    pub fn pick(&self, tried: &[SocketAddr], ejections: &Ejections) -> Option<SocketAddr> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let candidates = (0..n).map(|k| self.endpoints[(start + k) % n]);
        let mut untried = candidates.clone().filter(|a| !tried.contains(a));
        let first_untried = untried.clone().next();
        untried
            .find(|a| !ejections.is_ejected(a))
            .or(first_untried)
            .or_else(|| candidates.clone().next())
    }
}

/// Endpoints that just refused or timed out a connect, skipped for a while by every
/// request (passive health checking): a pod that went away costs one failed connect, not
/// one per request until the config without it arrives. Shared by all config versions.
#[derive(Default)]
pub struct Ejections {
    /// Entries in `until`, so the common case (nothing ejected) takes no lock.
    count: AtomicUsize,
    until: std::sync::Mutex<std::collections::HashMap<SocketAddr, std::time::Instant>>,
}

impl Ejections {
    pub fn eject(&self, addr: SocketAddr, duration: std::time::Duration) {
        if let Ok(mut map) = self.until.lock() {
            map.insert(addr, std::time::Instant::now() + duration);
            self.count.store(map.len(), Ordering::Relaxed);
        }
    }

    pub fn is_ejected(&self, addr: &SocketAddr) -> bool {
        if self.count.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let Ok(mut map) = self.until.lock() else {
            return false;
        };
        let now = std::time::Instant::now();
        map.retain(|_, until| *until > now);
        self.count.store(map.len(), Ordering::Relaxed);
        map.contains_key(addr)
    }
}

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

impl CompiledRoute {
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
    pub fn listener_for(&self, host: &str) -> Option<&ListenerTable> {
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
    ) -> Result<(&ListenerTable, &Arc<CompiledRoute>), Miss> {
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

/// Compiles a config with nothing to reuse (tools and tests; the data plane keeps a
/// `Compiler` across versions).
pub fn compile(config: &Config, version: u64) -> Result<Runtime, String> {
    Compiler::default().compile(&Held::of(config), version)
}

/// Compiles versions of the held model into runtimes, compiling only what changed since
/// the last version it compiled: changed clusters, and the virtual hosts that changed or
/// send to a changed cluster. Everything else is shared with the last runtime (a listener's
/// host table is copied, by pointer, when one of its hosts changed). With ten thousand
/// hostnames, a version that changes one compiles one.
#[derive(Default)]
pub struct Compiler {
    tls: TlsCache,
    clusters: HashMap<String, (gatehouse_model::ir::Cluster, Arc<Cluster>)>,
    /// Compiled virtual hosts by resource key ("listener hostname").
    hosts: HashMap<Arc<str>, CompiledHost>,
    /// The virtual hosts sending to each cluster, compiled again when it changes.
    users: HashMap<String, HashSet<Arc<str>>>,
    tables: HashMap<String, Arc<HostTable>>,
}

struct CompiledHost {
    listener: Arc<str>,
    table: Arc<VirtualHostTable>,
    /// Every cluster its routes send to (backends, mirrors, external auth).
    clusters: Vec<String>,
}

impl Compiler {
    /// Compiles the held model. Fails (the version is NACKed; nothing of it is kept, and
    /// what was dirty stays dirty for the next version) when something cannot be served: a
    /// reference to nothing, a regex that does not compile, a certificate that does not
    /// load.
    pub fn compile(&mut self, held: &Held, version: u64) -> Result<Runtime, String> {
        if let Some(e) = held.broken() {
            return Err(e.to_string());
        }
        let everything = held.dirty.everything;
        validate_frame(held)?;

        // Clusters: compile the changed ones; None marks one gone.
        let mut new_clusters: HashMap<
            String,
            Option<(gatehouse_model::ir::Cluster, Arc<Cluster>)>,
        > = HashMap::new();
        let cluster_keys: Vec<String> = if everything {
            held.clusters
                .keys()
                .chain(self.clusters.keys())
                .cloned()
                .collect()
        } else {
            held.dirty.clusters.iter().cloned().collect()
        };
        for key in cluster_keys {
            let compiled = match held.clusters.get(&key) {
                None => None,
                Some(c) => match self.clusters.get(&key) {
                    Some((source, compiled)) if source == c => {
                        Some((source.clone(), compiled.clone()))
                    }
                    _ => Some((c.clone(), Arc::new(compile_cluster(c)?))),
                },
            };
            let unchanged = match (&compiled, self.clusters.get(&key)) {
                (Some((_, a)), Some((_, b))) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            if !unchanged || everything {
                new_clusters.insert(key, compiled);
            }
        }
        let cluster = |key: &str| -> Option<Arc<Cluster>> {
            match new_clusters.get(key) {
                Some(c) => c.as_ref().map(|(_, c)| c.clone()),
                None if everything => None,
                None => self.clusters.get(key).map(|(_, c)| c.clone()),
            }
        };

        // Virtual hosts: the changed ones and those sending to a changed cluster.
        let mut host_keys: HashSet<Arc<str>> = HashSet::new();
        if everything {
            host_keys.extend(held.hosts.keys().cloned());
            host_keys.extend(self.hosts.keys().cloned());
        } else {
            host_keys.extend(held.dirty.hosts.iter().cloned());
            for key in new_clusters.keys() {
                host_keys.extend(self.users.get(key).into_iter().flatten().cloned());
            }
        }
        // (listener, hostname, compiled or None when gone) by key.
        let mut new_hosts: HashMap<Arc<str>, Option<CompiledHost>> = HashMap::new();
        for key in host_keys {
            let compiled = match held.hosts.get(&key) {
                None => None,
                Some(h) => Some(compile_host(&h.listener, &h.host, &cluster)?),
            };
            new_hosts.insert(key, compiled);
        }

        // Host tables of the listeners whose hosts changed: a host gone leaves the
        // table of the listener it was compiled for.
        let mut new_tables: HashMap<&str, HostTable> = HashMap::new();
        for (key, host) in &new_hosts {
            if let Some(old) = self.hosts.get(key) {
                let table = new_tables.entry(&*old.listener).or_insert_with(|| {
                    match self.tables.get(&*old.listener) {
                        Some(t) if !everything => (**t).clone(),
                        _ => HostTable::default(),
                    }
                });
                table.remove(&old.table.hostname);
            }
            if let Some(h) = host {
                let table = new_tables.entry(&*h.listener).or_insert_with(|| {
                    match self.tables.get(&*h.listener) {
                        Some(t) if !everything => (**t).clone(),
                        _ => HostTable::default(),
                    }
                });
                table.insert(h.table.clone());
            }
        }
        let tables: HashMap<&str, Arc<HostTable>> = held
            .listeners
            .keys()
            .map(|l| {
                let table = match new_tables.remove(l.as_str()) {
                    Some(t) => Arc::new(t),
                    None if everything => Arc::default(),
                    None => self.tables.get(l).cloned().unwrap_or_default(),
                };
                (l.as_str(), table)
            })
            .collect();

        let runtime = self.binds(held, &tables, version)?;

        // Compiled: keep what this version built.
        if everything {
            self.clusters.clear();
            self.hosts.clear();
            self.users.clear();
        }
        for (key, c) in new_clusters {
            match c {
                Some(c) => drop(self.clusters.insert(key, c)),
                None => drop(self.clusters.remove(&key)),
            }
        }
        for (key, host) in new_hosts {
            if let Some(old) = self.hosts.remove(&key) {
                for c in &old.clusters {
                    if let Some(users) = self.users.get_mut(c) {
                        users.remove(&key);
                        if users.is_empty() {
                            self.users.remove(c);
                        }
                    }
                }
            }
            if let Some(host) = host {
                for c in &host.clusters {
                    self.users.entry(c.clone()).or_default().insert(key.clone());
                }
                self.hosts.insert(key, host);
            }
        }
        self.tables = tables
            .into_iter()
            .map(|(k, t)| (k.to_string(), t))
            .collect();
        Ok(runtime)
    }

    /// The sockets of the held listeners, with their host tables and TLS.
    fn binds(
        &mut self,
        held: &Held,
        tables: &HashMap<&str, Arc<HostTable>>,
        version: u64,
    ) -> Result<Runtime, String> {
        // Client certificates for backends, each loaded once.
        let mut backend_clients = HashMap::new();
        for key in held
            .listeners
            .values()
            .filter_map(|l| l.backend_client_certificate.as_deref())
        {
            if backend_clients.contains_key(key) {
                continue;
            }
            let cert = held
                .certificates
                .get(key)
                .ok_or_else(|| format!("Certificate {key}: missing"))?;
            backend_clients.insert(key, crate::upstream_tls::client_certificate(cert)?);
        }
        let mut by_socket: HashMap<SocketAddr, Vec<&gatehouse_model::ir::Listener>> =
            HashMap::new();
        for l in held.listeners.values() {
            by_socket.entry(l.socket_addr()).or_default().push(l);
        }
        let certificates: Vec<gatehouse_model::ir::Certificate> =
            held.certificates.values().cloned().collect();
        let mut binds = HashMap::new();
        let mut used_tls = Vec::new();
        for (addr, listeners) in by_socket {
            let protocol = listeners[0].protocol;
            if let Some(other) = listeners.iter().find(|l| l.protocol != protocol) {
                return Err(format!(
                    "Listener {}: {addr} is used with two protocols",
                    other.key
                ));
            }
            let mut compiled: Vec<ListenerTable> = listeners
                .iter()
                .map(|l| ListenerTable {
                    key: l.key.clone(),
                    hostname: l.hostname.clone(),
                    backend_client: l
                        .backend_client_certificate
                        .as_deref()
                        .and_then(|k| backend_clients.get(k).cloned()),
                    hosts: tables.get(l.key.as_str()).cloned().unwrap_or_default(),
                })
                .collect();
            compiled.sort_by_key(|l| std::cmp::Reverse(l.hostname.specificity()));
            let tls = match protocol {
                Protocol::Http => None,
                Protocol::Https => {
                    let certs: Vec<_> = listeners
                        .iter()
                        .flat_map(|l| l.certificates.iter())
                        .collect();
                    // Client validation is per port: every listener of the bind has the same.
                    let client = listeners.iter().find_map(|l| l.client_validation.as_ref());
                    let (key, acceptor) =
                        tls::acceptor(&certs, &certificates, client, &mut self.tls)
                            .map_err(|e| format!("{addr}: {e}"))?;
                    used_tls.push(key);
                    Some(acceptor)
                }
            };
            binds.insert(
                addr,
                Arc::new(Bind {
                    addr,
                    protocol,
                    listeners: compiled,
                    tls,
                }),
            );
        }
        self.tls.retain(&used_tls);
        Ok(Runtime { version, binds })
    }
}

/// What a version needs besides its virtual hosts: the certificates its listeners name,
/// and a listener for every table.
fn validate_frame(held: &Held) -> Result<(), String> {
    let mut errors = Vec::new();
    for l in held.listeners.values() {
        for c in &l.certificates {
            if !held.certificates.contains_key(&c.certificate) {
                errors.push(format!(
                    "Listener {}: certificates: unknown Certificate {:?}",
                    l.key, c.certificate
                ));
            }
        }
    }
    for listener in held.host_counts.keys() {
        if !held.listeners.contains_key(&**listener) {
            errors.push(format!("RouteTable {listener}: unknown listener"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

fn compile_cluster(c: &gatehouse_model::ir::Cluster) -> Result<Cluster, String> {
    let tls = c
        .tls
        .as_ref()
        .map(crate::upstream_tls::BackendTls::compile)
        .transpose()
        .map_err(|e| format!("Cluster {}: {e}", c.key))?;
    Ok(Cluster {
        key: c.key.clone(),
        protocol: c.protocol,
        endpoints: c.endpoints.clone(),
        tls,
        next: AtomicUsize::new(0),
    })
}

/// Validates and compiles one virtual host of `listener`'s table.
fn compile_host(
    listener: &Arc<str>,
    vh: &Arc<gatehouse_model::ir::VirtualHost>,
    cluster: &dyn Fn(&str) -> Option<Arc<Cluster>>,
) -> Result<CompiledHost, String> {
    let mut errors = Vec::new();
    gatehouse_model::validate::validate_virtual_host(
        listener,
        vh,
        &|k| cluster(k).is_some(),
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    let routes = vh
        .routes
        .iter()
        .map(|r| compile_route(r, cluster).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("RouteTable {listener}: {e}"))?;
    let mut clusters: Vec<String> = vh
        .routes
        .iter()
        .flat_map(|r| r.clusters())
        .map(str::to_string)
        .collect();
    clusters.sort();
    clusters.dedup();
    Ok(CompiledHost {
        listener: listener.clone(),
        clusters,
        table: Arc::new(VirtualHostTable {
            hostname: vh.hostname.clone(),
            routes,
        }),
    })
}

fn compile_route(
    r: &Arc<gatehouse_model::ir::Route>,
    cluster: &dyn Fn(&str) -> Option<Arc<Cluster>>,
) -> Result<CompiledRoute, String> {
    let regex = |p: &str| anchored_regex(p).map_err(|e| format!("invalid regex {p:?}: {e}"));
    let value = |v: &StringMatch| -> Result<ValueRule, String> {
        Ok(match v {
            StringMatch::Exact(s) => ValueRule::Exact(s.clone()),
            StringMatch::Regex(p) => ValueRule::Regex(regex(p)?),
        })
    };
    let m = &r.matcher;
    let path = match &m.path {
        PathMatch::Exact(p) => PathRule::Exact(p.clone()),
        PathMatch::Prefix(p) => PathRule::Prefix(p.clone()),
        PathMatch::Regex(p) => PathRule::Regex(regex(p)?),
    };
    let method = m
        .method
        .as_deref()
        .map(|s| http::Method::from_bytes(s.as_bytes()).map_err(|e| format!("method {s:?}: {e}")))
        .transpose()?;
    let headers = m
        .headers
        .iter()
        .map(|h| {
            let name = http::HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|e| format!("header name {:?}: {e}", h.name))?;
            Ok((name, value(&h.value)?))
        })
        .collect::<Result<_, String>>()?;
    let query = m
        .query
        .iter()
        .map(|q| Ok((q.name.clone(), value(&q.value)?)))
        .collect::<Result<_, String>>()?;
    let backends: Vec<CompiledBackend> = r
        .backends
        .iter()
        .map(|b| CompiledBackend {
            weight: b.weight,
            target: match &b.target {
                BackendTarget::Cluster(k) => match cluster(k) {
                    Some(c) => Target::Cluster(c),
                    None => Target::Invalid(format!("unknown cluster {k}")),
                },
                BackendTarget::Invalid(reason) => Target::Invalid(reason.clone()),
            },
            filters: b.filters.clone(),
        })
        .collect();
    let mirrors = r
        .filters
        .iter()
        .filter_map(|f| match f {
            Filter::Mirror(m) => Some(m),
            _ => None,
        })
        .filter_map(|m| match &m.target {
            // A mirror whose backend cannot be served mirrors nothing; the route still serves.
            BackendTarget::Cluster(k) => cluster(k).map(|c| CompiledMirror {
                cluster: c,
                numerator: m.numerator.min(m.denominator),
                denominator: m.denominator.max(1),
            }),
            BackendTarget::Invalid(_) => None,
        })
        .collect();
    let cors = r.filters.iter().find_map(|f| match f {
        Filter::Cors(c) => Some(c.clone()),
        _ => None,
    });
    let direct = r.filters.is_empty()
        && r.timeouts.is_default()
        && r.retry.is_none()
        && r.access.is_none()
        && r.rate_limit.is_none()
        && r.balance.is_none()
        && r.external_auth.is_none()
        && r.hsts.is_none()
        && !backends.is_empty()
        && backends.iter().all(|b| {
            b.filters.is_empty()
                && matches!(&b.target, Target::Cluster(c)
                    if c.protocol == UpstreamProtocol::Http1 && c.tls.is_none())
        });
    Ok(CompiledRoute {
        direct,
        model: r.clone(),
        path,
        method,
        headers,
        query,
        mirrors,
        cors: cors.map(Box::new),
        nginx_cors: r.filters.iter().find_map(|f| match f {
            Filter::NginxCors(c) => Some(Box::new(c.clone())),
            _ => None,
        }),
        access: r
            .access
            .as_ref()
            .map(|a| crate::limits::Access::compile(a).map(Box::new))
            .transpose()?,
        rate_limit: r
            .rate_limit
            .as_ref()
            .map(|l| crate::limits::Limit::compile(l).map(Box::new))
            .transpose()?,
        hsts: r.hsts.as_ref().map(|h| h.header_value()),
        external_auth: match &r.external_auth {
            None => None,
            Some(a) => {
                let cluster = match &a.cluster {
                    None => None,
                    Some(k) => Some(
                        cluster(k).ok_or_else(|| format!("external auth: cluster {k} missing"))?,
                    ),
                };
                Some(Box::new(((**a).clone(), cluster)))
            }
        },
        total_weight: backends.iter().map(|b| u64::from(b.weight)).sum(),
        backends,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host table answers what walking the table in precedence order answers,
    /// whatever order the hosts were put in.
    #[test]
    fn host_table_finds_what_a_walk_finds() {
        let names = [
            HostMatch::gateway("a.example.com"),
            HostMatch::gateway("b.example.com"),
            HostMatch::gateway("*.deep.example.com"),
            HostMatch::ingress("*.example.com"),
            HostMatch::gateway("*.example.com"),
            HostMatch::gateway("c.other.com"),
            HostMatch::Any,
        ];
        let host = |h: &HostMatch| {
            Arc::new(VirtualHostTable {
                hostname: h.clone(),
                routes: vec![],
            })
        };
        let mut sorted = names.to_vec();
        sorted.sort_by(gatehouse_model::ir::VirtualHost::precedence);
        for order in [names.to_vec(), names.iter().rev().cloned().collect()] {
            let mut table = HostTable::default();
            for h in &order {
                table.insert(host(h));
            }
            // Put in twice: replaced, not added.
            table.insert(host(&HostMatch::gateway("*.example.com")));
            assert_eq!(table.len(), names.len());
            for name in [
                "a.example.com",
                "b.example.com",
                "x.deep.example.com",
                "x.y.example.com",
                "x.example.com",
                "c.other.com",
                "example.com",
                "nothing.org",
            ] {
                let walk = sorted.iter().find(|v| v.matches(name));
                assert_eq!(table.find(name).map(|v| &v.hostname), walk, "{name}");
            }
            table.remove(&HostMatch::Any);
            table.remove(&HostMatch::gateway("a.example.com"));
            assert!(table.find("nothing.org").is_none());
            assert_eq!(
                table.find("a.example.com").map(|v| v.hostname.clone()),
                Some(HostMatch::ingress("*.example.com"))
            );
        }
    }

    #[test]
    fn a_retry_skips_tried_and_ejected_endpoints() {
        let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let c: SocketAddr = "10.0.0.3:80".parse().unwrap();
        let cluster = Cluster {
            key: "k".into(),
            protocol: UpstreamProtocol::Http1,
            endpoints: vec![a, b, c],
            tls: None,
            next: AtomicUsize::new(0),
        };
        let none = Ejections::default();
        // Whatever the round-robin position, a retry never lands on a tried endpoint.
        for _ in 0..6 {
            let picked = cluster.pick(&[a, b], &none);
            assert_eq!(picked, Some(c));
        }
        // Ejected endpoints are skipped by every request while untried healthy ones exist.
        let ejections = Ejections::default();
        ejections.eject(a, std::time::Duration::from_secs(60));
        ejections.eject(b, std::time::Duration::from_secs(60));
        for _ in 0..6 {
            assert_eq!(cluster.pick(&[], &ejections), Some(c));
        }
        // All ejected: still an answer (an ejected endpoint may be back).
        ejections.eject(c, std::time::Duration::from_secs(60));
        assert!(cluster.pick(&[], &ejections).is_some());
        // All tried: any endpoint.
        assert!(cluster.pick(&[a, b, c], &none).is_some());
        // Ejection ends.
        let brief = Ejections::default();
        brief.eject(a, std::time::Duration::ZERO);
        assert!(!brief.is_ejected(&a));
    }

    fn host(name: &str, cluster: &str) -> Arc<gatehouse_model::ir::VirtualHost> {
        use gatehouse_model::ir::*;
        Arc::new(VirtualHost {
            hostname: HostMatch::gateway(name),
            routes: vec![Arc::new(Route {
                backends: vec![WeightedBackend {
                    weight: 1,
                    target: BackendTarget::Cluster(cluster.into()),
                    filters: vec![],
                }],
                ..Route::new(
                    RouteSource {
                        kind: "HTTPRoute".into(),
                        namespace: "default".into(),
                        name: name.into(),
                        rule: 0,
                    },
                    RouteMatch::path_only(PathMatch::Prefix("/".into())),
                )
            })],
        })
    }

    fn config(
        hosts: Vec<Arc<gatehouse_model::ir::VirtualHost>>,
        clusters: &[(&str, u16)],
    ) -> Config {
        use gatehouse_model::ir::*;
        Config {
            listeners: vec![Listener {
                key: "ns/gw/http".into(),
                gateway: "ns/gw".into(),
                name: "http".into(),
                address: [127, 0, 0, 1].into(),
                port: 8080,
                protocol: Protocol::Http,
                hostname: HostMatch::Any,
                certificates: vec![],
                client_validation: None,
                backend_client_certificate: None,
            }],
            route_tables: vec![RouteTable {
                listener: "ns/gw/http".into(),
                virtual_hosts: hosts,
            }],
            clusters: clusters
                .iter()
                .map(|(key, port)| gatehouse_model::ir::Cluster {
                    key: key.to_string(),
                    protocol: UpstreamProtocol::Http1,
                    endpoints: vec![([10, 0, 0, 1], *port).into()],
                    tls: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    /// The compiled table of `host` in a runtime.
    fn compiled(rt: &Runtime, host: &str) -> Arc<VirtualHostTable> {
        let listener = &rt.binds.values().next().expect("a bind").listeners[0];
        listener.hosts.find(host).expect("the host").clone()
    }

    /// Brings `held` to `to` as the config channel would: the changed resources.
    fn send(held: &mut Held, sent: &mut gatehouse_model::channel::Sent, to: &Config) {
        if let Some(update) = sent.update(to, 0) {
            held.apply(&update);
        }
    }

    /// A version compiles only the virtual hosts that changed and those whose clusters
    /// changed; a refused version leaves its changes to be compiled by the next one.
    #[test]
    fn a_version_compiles_what_changed() {
        let (a, b) = (
            host("a.example.com", "ns/one:80"),
            host("b.example.com", "ns/two:80"),
        );
        let mut compiler = Compiler::default();
        let c1 = config(
            vec![a.clone(), b.clone()],
            &[("ns/one:80", 1), ("ns/two:80", 2)],
        );
        let mut held = Held::default();
        let mut sent = gatehouse_model::channel::Sent::default();
        send(&mut held, &mut sent, &c1);
        let v1 = compiler.compile(&held, 1).expect("compiles");
        held.compiled();

        let c2 = config(
            vec![a.clone(), host("b.example.com", "ns/one:80")],
            &[("ns/one:80", 1), ("ns/two:80", 2)],
        );
        send(&mut held, &mut sent, &c2);
        let v2 = compiler.compile(&held, 2).expect("compiles");
        held.compiled();
        assert!(Arc::ptr_eq(
            &compiled(&v1, "a.example.com"),
            &compiled(&v2, "a.example.com")
        ));
        assert!(!Arc::ptr_eq(
            &compiled(&v1, "b.example.com"),
            &compiled(&v2, "b.example.com")
        ));

        // New endpoints for cluster one: both hosts send to it and are compiled again.
        let c3 = config(
            vec![a.clone(), host("b.example.com", "ns/one:80")],
            &[("ns/one:80", 3)],
        );
        send(&mut held, &mut sent, &c3);
        let v3 = compiler.compile(&held, 3).expect("compiles");
        held.compiled();
        for h in ["a.example.com", "b.example.com"] {
            assert!(!Arc::ptr_eq(&compiled(&v2, h), &compiled(&v3, h)), "{h}");
            let Target::Cluster(c) = &compiled(&v3, h).routes[0].backends[0].target else {
                panic!("no cluster");
            };
            assert_eq!(c.endpoints, vec![SocketAddr::from(([10, 0, 0, 1], 3))]);
        }

        // Cluster one gone: the unchanged hosts that name it are refused, not served stale.
        let c4 = config(vec![a.clone(), host("b.example.com", "ns/one:80")], &[]);
        send(&mut held, &mut sent, &c4);
        let refused = compiler.compile(&held, 4);
        assert!(refused.err().is_some_and(|e| e.contains("unknown Cluster")));
        // Back as it was: what v3 compiled still stands, and is served again.
        send(&mut held, &mut sent, &c3);
        let v5 = compiler.compile(&held, 5).expect("compiles");
        assert!(Arc::ptr_eq(
            &compiled(&v3, "a.example.com"),
            &compiled(&v5, "a.example.com")
        ));
        held.compiled();

        // The same model compiled from scratch answers alike.
        let fresh = compile(&c3, 6).expect("compiles");
        for h in ["a.example.com", "b.example.com"] {
            assert_eq!(
                compiled(&fresh, h).routes[0].model,
                compiled(&v5, h).routes[0].model
            );
        }
    }

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
