//! The compiler: versions of the received model compiled into runtimes, compiling only
//! what changed since the last version (see `Compiler`).

use super::cluster::{Cluster, compile_cluster};
use super::hosts::{CompiledVirtualHost, HostTable};
use super::route::compile_route;
use super::version::{Bind, CompiledListener, Runtime};
use crate::channel::received::Received;
use crate::http::forwarding::ClientRules;
use crate::metrics::{CertificateLabels, Metrics, SeriesLabels};
use crate::net::tls::{self, TlsCache};
use crate::net::upstream_tls;
use crate::traces::Tracers;
use gatehouse_model::ir::{Config, Protocol, RouteSource};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

/// Compiles a config with nothing to reuse (tools and tests; the data plane keeps a
/// `Compiler` across versions). Strict: any refused resource fails it.
pub fn compile(config: &Config, version: u64) -> Result<Runtime, String> {
    let (runtime, refused) = Compiler::default().compile(&Received::of(config), version);
    if refused.is_empty() {
        Ok(runtime)
    } else {
        Err(refused
            .iter()
            .map(|r| format!("{}: {}", r.resource, r.error))
            .collect::<Vec<_>>()
            .join("; "))
    }
}

/// A resource of a version the data plane could not apply. It is left out (a virtual host
/// keeps its last good form), reported alone, and the rest of the version applies: one
/// tenant's object never holds back another's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// What it is: "Certificate ns/name", "VirtualHost <key>", "Cluster <key>", ...
    pub resource: String,
    /// The listeners it affects (keys), when it belongs to some.
    pub listeners: Vec<String>,
    pub error: String,
}

impl Refused {
    fn new(resource: String, listeners: Vec<String>, error: impl Into<String>) -> Self {
        Refused {
            resource,
            listeners,
            error: error.into(),
        }
    }
}

/// Compiles versions of the received model into runtimes, compiling only what changed since
/// the last version it compiled: changed clusters, and the virtual hosts that changed or
/// send to a changed cluster. Everything else is shared with the last runtime (a listener's
/// host table is copied, by pointer, when one of its hosts changed). With ten thousand
/// hostnames, a version that changes one compiles one.
#[derive(Default)]
pub struct Compiler {
    /// Where compiled routes and listeners get their request series.
    metrics: Arc<Metrics>,
    /// The running span exporters, by the settings that asked for them.
    tracers: Tracers,
    /// When each certificate expires (Unix seconds; None: its chain did not parse), by key,
    /// with a hash of the chain it was read from: parsed once per chain, not per version.
    expiries: HashMap<String, (u64, Option<f64>)>,
    tls: TlsCache,
    clusters: HashMap<String, KeptCluster>,
    /// Compiled virtual hosts by resource key ("listener hostname").
    hosts: HashMap<Arc<str>, KeptHost>,
    /// The virtual hosts sending to each cluster, compiled again when it changes.
    users: HashMap<String, HashSet<Arc<str>>>,
    /// Host tables by listener key.
    host_tables: HashMap<String, Arc<HostTable>>,
    /// Virtual hosts the last version refused: compiled again with every version until
    /// they compile (a cluster they name may come back without them changing).
    refused_hosts: HashSet<Arc<str>>,
}

/// A model cluster and what it compiled to, as the compiler keeps them between versions.
type KeptCluster = (gatehouse_model::ir::Cluster, Arc<Cluster>);

/// A compiled virtual host as the compiler keeps it between versions.
struct KeptHost {
    listener: Arc<str>,
    /// The model it was compiled from: compiled again, as its last good form, when a
    /// cluster it sends to changes while its newer form is refused.
    source: Arc<gatehouse_model::ir::VirtualHost>,
    host: Arc<CompiledVirtualHost>,
    /// Every cluster its routes send to (backends, mirrors, external auth).
    clusters: Vec<String>,
}

impl Compiler {
    /// A compiler whose routes count their requests in `metrics`.
    pub fn with_metrics(metrics: Arc<Metrics>) -> Compiler {
        Compiler {
            tracers: Tracers::counted(metrics.spans.clone()),
            metrics,
            ..Compiler::default()
        }
    }

    /// Compiles the received model. What cannot be served (a resource that did not decode,
    /// a reference to nothing, a regex that does not compile, a certificate that does not
    /// load, two protocols on one socket) is refused alone and returned; everything else
    /// compiles.
    pub fn compile(&mut self, received: &Received, version: u64) -> (Runtime, Vec<Refused>) {
        let mut refused: Vec<Refused> = received
            .broken()
            .map(|((kind, key), e)| Refused::new(format!("{kind} {key}"), vec![], e))
            .collect();
        let everything = received.changes.everything;
        refused.extend(unknown_references(received));
        let new_clusters = self.changed_clusters(received, everything, &mut refused);
        let (new_hosts, refused_hosts) =
            self.changed_hosts(received, everything, &new_clusters, &mut refused);
        let tables = self.host_tables(received, everything, &new_hosts);
        let runtime = self.binds(received, &tables, version, &mut refused);
        self.keep(everything, new_clusters, new_hosts, tables);
        self.refused_hosts = refused_hosts;
        (runtime, refused)
    }

    /// Clusters: compile the changed ones (all of them for `everything`); None marks one
    /// gone.
    fn changed_clusters(
        &self,
        received: &Received,
        everything: bool,
        refused: &mut Vec<Refused>,
    ) -> HashMap<String, Option<KeptCluster>> {
        let mut new_clusters: HashMap<String, Option<KeptCluster>> = HashMap::new();
        let cluster_keys: Vec<String> = if everything {
            received
                .clusters
                .keys()
                .chain(self.clusters.keys())
                .cloned()
                .collect()
        } else {
            received.changes.clusters.iter().cloned().collect()
        };
        for key in cluster_keys {
            let compiled = match received.clusters.get(&key) {
                None => None,
                Some(c) => match self.clusters.get(&key) {
                    Some((source, compiled)) if source == c => {
                        Some((source.clone(), compiled.clone()))
                    }
                    _ => match compile_cluster(c) {
                        Ok(compiled) => Some((c.clone(), Arc::new(compiled))),
                        Err(e) => {
                            refused.push(Refused::new(format!("Cluster {key}"), vec![], e));
                            None
                        }
                    },
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
        new_clusters
    }

    /// Virtual hosts: the changed ones, those sending to a changed cluster and those the
    /// last version refused, compiled against this version's clusters; None marks one gone.
    /// A refused one keeps its last good form (left out when it has none) and is returned,
    /// to be tried again with the next version.
    #[allow(clippy::type_complexity)]
    fn changed_hosts(
        &self,
        received: &Received,
        everything: bool,
        new_clusters: &HashMap<String, Option<KeptCluster>>,
        refused: &mut Vec<Refused>,
    ) -> (HashMap<Arc<str>, Option<KeptHost>>, HashSet<Arc<str>>) {
        let cluster = |key: &str| -> Option<Arc<Cluster>> {
            match new_clusters.get(key) {
                Some(c) => c.as_ref().map(|(_, c)| c.clone()),
                None if everything => None,
                None => self.clusters.get(key).map(|(_, c)| c.clone()),
            }
        };
        let mut host_keys: HashSet<Arc<str>> = HashSet::new();
        if everything {
            host_keys.extend(received.hosts.keys().cloned());
            host_keys.extend(self.hosts.keys().cloned());
        } else {
            host_keys.extend(received.changes.hosts.iter().cloned());
            host_keys.extend(self.refused_hosts.iter().cloned());
            for key in new_clusters.keys() {
                host_keys.extend(self.users.get(key).into_iter().flatten().cloned());
            }
        }
        // (listener, hostname, compiled or None when gone) by key.
        let mut new_hosts: HashMap<Arc<str>, Option<KeptHost>> = HashMap::new();
        let mut refused_hosts = HashSet::new();
        for key in host_keys {
            let compiled = match received.hosts.get(&key) {
                None => None,
                Some(h) => match compile_host(&h.listener, &h.host, &cluster, &self.metrics) {
                    Ok(compiled) => Some(compiled),
                    Err(e) => {
                        let resource = format!("VirtualHost {key}");
                        refused.push(Refused::new(resource, vec![h.listener.to_string()], e));
                        refused_hosts.insert(key.clone());
                        // Its last good form keeps serving (as a refused version's would),
                        // with this version's clusters: endpoints that left must not keep
                        // getting its traffic. None after a full update, or when a cluster
                        // it needs is gone.
                        match self.hosts.get(&key) {
                            Some(old) if !everything => {
                                if !old.clusters.iter().any(|c| new_clusters.contains_key(c)) {
                                    continue;
                                }
                                compile_host(&old.listener, &old.source, &cluster, &self.metrics)
                                    .ok()
                            }
                            _ => None,
                        }
                    }
                },
            };
            new_hosts.insert(key, compiled);
        }
        (new_hosts, refused_hosts)
    }

    /// The host table of every received listener: copied and edited for the listeners
    /// whose hosts changed, shared with the last version for the others.
    fn host_tables<'r>(
        &self,
        received: &'r Received,
        everything: bool,
        new_hosts: &HashMap<Arc<str>, Option<KeptHost>>,
    ) -> HashMap<&'r str, Arc<HostTable>> {
        // Host tables of the listeners whose hosts changed: a host gone leaves the
        // table of the listener it was compiled for.
        let mut new_tables: HashMap<&str, HostTable> = HashMap::new();
        for (key, host) in new_hosts {
            if let Some(old) = self.hosts.get(key) {
                let table = new_tables.entry(&*old.listener).or_insert_with(|| {
                    match self.host_tables.get(&*old.listener) {
                        Some(t) if !everything => (**t).clone(),
                        _ => HostTable::default(),
                    }
                });
                table.remove(&old.host.hostname);
            }
            if let Some(h) = host {
                let table = new_tables.entry(&*h.listener).or_insert_with(|| {
                    match self.host_tables.get(&*h.listener) {
                        Some(t) if !everything => (**t).clone(),
                        _ => HostTable::default(),
                    }
                });
                table.insert(h.host.clone());
            }
        }
        received
            .listeners
            .keys()
            .map(|l| {
                let table = match new_tables.remove(l.as_str()) {
                    Some(t) => Arc::new(t),
                    None if everything => Arc::default(),
                    None => self.host_tables.get(l).cloned().unwrap_or_default(),
                };
                (l.as_str(), table)
            })
            .collect()
    }

    /// Compiled: keep what this version built, for the next one.
    fn keep(
        &mut self,
        everything: bool,
        new_clusters: HashMap<String, Option<KeptCluster>>,
        new_hosts: HashMap<Arc<str>, Option<KeptHost>>,
        tables: HashMap<&str, Arc<HostTable>>,
    ) {
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
        self.host_tables = tables
            .into_iter()
            .map(|(k, t)| (k.to_string(), t))
            .collect();
    }

    /// The sockets of the received listeners, with their host tables and TLS. A listener
    /// on a socket another protocol holds, a certificate that does not load, a backend
    /// client certificate that does not: refused alone.
    fn binds(
        &mut self,
        received: &Received,
        tables: &HashMap<&str, Arc<HostTable>>,
        version: u64,
        refused: &mut Vec<Refused>,
    ) -> Runtime {
        let backend_clients = backend_clients(received, refused);
        let mut by_socket: HashMap<SocketAddr, Vec<&gatehouse_model::ir::Listener>> =
            HashMap::new();
        for l in received.listeners.values() {
            by_socket.entry(l.socket_addr()).or_default().push(l);
        }
        let certificates: Vec<gatehouse_model::ir::Certificate> =
            received.certificates.values().cloned().collect();
        let mut binds = super::version::Binds::default();
        let mut used_tls = Vec::new();
        for (addr, mut listeners) in by_socket {
            // The socket's protocol is its first listener's (in key order).
            listeners.sort_by(|a, b| a.key.cmp(&b.key));
            let protocol = listeners[0].protocol;
            listeners.retain(|l| {
                let same = l.protocol == protocol;
                if !same {
                    refused.push(Refused::new(
                        format!("Listener {}", l.key),
                        vec![l.key.clone()],
                        format!("{addr} is used with another protocol"),
                    ));
                }
                same
            });
            let mut compiled: Vec<CompiledListener> = listeners
                .iter()
                .map(|l| CompiledListener {
                    key: l.key.clone(),
                    hostname: l.hostname.clone(),
                    backend_client: l
                        .backend_client_certificate
                        .as_deref()
                        .and_then(|k| backend_clients.get(k).cloned()),
                    hosts: tables.get(l.key.as_str()).cloned().unwrap_or_default(),
                    unrouted: self.metrics.series(series_labels(&l.key, None)),
                })
                .collect();
            compiled.sort_by_key(|l| std::cmp::Reverse(l.hostname.specificity()));
            let tls = match protocol {
                Protocol::Http => None,
                Protocol::Https => {
                    let certs: Vec<(&str, &gatehouse_model::ir::SniCertificate)> = listeners
                        .iter()
                        .flat_map(|l| l.certificates.iter().map(|c| (l.key.as_str(), c)))
                        .collect();
                    // Client validation is per port: every listener of the bind has the same.
                    let client = listeners.iter().find_map(|l| l.client_validation.as_ref());
                    match tls::acceptor(&certs, &certificates, client, &mut self.tls) {
                        Ok((key, acceptor, unloadable)) => {
                            refused.extend(unloadable.into_iter().map(|(cert, listeners, e)| {
                                Refused::new(format!("Certificate {cert}"), listeners, e)
                            }));
                            used_tls.push(key);
                            Some(acceptor)
                        }
                        Err(e) => {
                            // No TLS for this socket at all: its listeners are refused.
                            for l in &listeners {
                                refused.push(Refused::new(
                                    format!("Listener {}", l.key),
                                    vec![l.key.clone()],
                                    format!("{addr}: {e}"),
                                ));
                            }
                            continue;
                        }
                    }
                }
            };
            binds.insert(
                addr,
                Arc::new(Bind {
                    addr,
                    protocol,
                    listeners: compiled,
                    tls,
                    limits: listeners[0].limits,
                    clients: Arc::new(ClientRules::of(
                        &listeners[0].forwarding,
                        self.tracer(&listeners, refused),
                    )),
                    unmatched: self.metrics.series(SeriesLabels {
                        gateway: listeners[0].gateway.clone(),
                        ..SeriesLabels::default()
                    }),
                }),
            );
        }
        self.tls.retain(&used_tls);
        self.show_certificates(received);
        Runtime { version, binds }
    }
}

impl Compiler {
    /// The tracer of a socket's listeners, when their Gateway asks for tracing; one that
    /// cannot start is reported on the listeners, which serve untraced.
    fn tracer(
        &mut self,
        listeners: &[&gatehouse_model::ir::Listener],
        refused: &mut Vec<Refused>,
    ) -> Option<Arc<crate::traces::Tracer>> {
        let first = listeners.first()?;
        let settings = first.forwarding.tracing.as_ref()?;
        self.tracers
            .tracer(settings)
            .map_err(|e| {
                refused.push(Refused::new(
                    format!("Listener {}", first.key),
                    listeners.iter().map(|l| l.key.clone()).collect(),
                    e,
                ))
            })
            .ok()
    }

    /// Tells the metrics which certificates the listeners serve and when each expires.
    fn show_certificates(&mut self, received: &Received) {
        use std::hash::{Hash, Hasher};
        let mut served = std::collections::BTreeMap::new();
        for l in received.listeners.values() {
            for sc in &l.certificates {
                let Some(cert) = received.certificates.get(&sc.certificate) else {
                    continue;
                };
                let mut hasher = rustc_hash::FxHasher::default();
                cert.chain_pem.hash(&mut hasher);
                let hash = hasher.finish();
                let expiry = match self.expiries.get(&sc.certificate) {
                    Some((h, e)) if *h == hash => *e,
                    _ => {
                        let e = not_after(&cert.chain_pem);
                        self.expiries.insert(sc.certificate.clone(), (hash, e));
                        e
                    }
                };
                let Some(expiry) = expiry else { continue };
                let (gateway, listener) = l.key.rsplit_once('/').unwrap_or(("", &l.key));
                let labels = CertificateLabels {
                    gateway: gateway.to_string(),
                    listener: listener.to_string(),
                    certificate: sc.certificate.clone(),
                    server_name: sc
                        .server_names
                        .first()
                        .map_or_else(|| "*".to_string(), |n| n.to_string()),
                };
                served.insert(labels, expiry);
            }
        }
        self.expiries
            .retain(|key, _| received.certificates.contains_key(key));
        self.metrics.set_certificates(served);
    }
}

/// The notAfter of a PEM chain's first certificate, in Unix seconds.
fn not_after(chain_pem: &str) -> Option<f64> {
    let der = rustls_pemfile::certs(&mut chain_pem.as_bytes())
        .next()?
        .ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some(cert.validity().not_after.timestamp() as f64)
}

/// Client certificates for backends, each loaded once; one that does not load is refused
/// and its listeners present none.
fn backend_clients<'r>(
    received: &'r Received,
    refused: &mut Vec<Refused>,
) -> HashMap<&'r str, Arc<pingora_core::utils::tls::CertKey>> {
    let mut loaded = HashMap::new();
    let mut failed: HashMap<&str, (Vec<String>, String)> = HashMap::new();
    for l in received.listeners.values() {
        let Some(key) = l.backend_client_certificate.as_deref() else {
            continue;
        };
        if loaded.contains_key(key) {
            continue;
        }
        if let Some((listeners, _)) = failed.get_mut(key) {
            listeners.push(l.key.clone());
            continue;
        }
        let cert = received
            .certificates
            .get(key)
            .ok_or_else(|| format!("Certificate {key}: missing"))
            .and_then(upstream_tls::client_certificate);
        match cert {
            Ok(c) => drop(loaded.insert(key, c)),
            Err(e) => drop(failed.insert(key, (vec![l.key.clone()], e))),
        }
    }
    for (key, (listeners, e)) in failed {
        refused.push(Refused::new(format!("Certificate {key}"), listeners, e));
    }
    loaded
}

/// References to nothing: a listener naming a certificate the version lacks (served
/// without it), a route table for a listener it lacks (not served).
fn unknown_references(received: &Received) -> Vec<Refused> {
    let mut refused = Vec::new();
    for l in received.listeners.values() {
        for c in &l.certificates {
            if !received.certificates.contains_key(&c.certificate) {
                refused.push(Refused::new(
                    format!("Certificate {}", c.certificate),
                    vec![l.key.clone()],
                    format!("unknown to listener {}", l.key),
                ));
            }
        }
    }
    for listener in received.host_counts.keys() {
        if !received.listeners.contains_key(&**listener) {
            refused.push(Refused::new(
                format!("RouteTable {listener}"),
                vec![],
                "unknown listener",
            ));
        }
    }
    refused
}

/// Validates and compiles one virtual host of `listener`'s table.
fn compile_host(
    listener: &Arc<str>,
    vh: &Arc<gatehouse_model::ir::VirtualHost>,
    cluster: &dyn Fn(&str) -> Option<Arc<Cluster>>,
    metrics: &Metrics,
) -> Result<KeptHost, String> {
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
        .map(|r| {
            let series = metrics.series(series_labels(listener, Some(&r.source)));
            compile_route(r, cluster, series).map(Arc::new)
        })
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
    Ok(KeptHost {
        listener: listener.clone(),
        source: vh.clone(),
        clusters,
        host: Arc::new(CompiledVirtualHost {
            hostname: vh.hostname.clone(),
            routes,
        }),
    })
}

/// The labels of the series of listener `listener` ("namespace/gateway/listener") and,
/// when given, of a route of it.
fn series_labels(listener: &str, route: Option<&RouteSource>) -> SeriesLabels {
    let (gateway, name) = listener.rsplit_once('/').unwrap_or(("", listener));
    SeriesLabels {
        gateway: gateway.to_string(),
        listener: name.to_string(),
        route_kind: route.map(|r| r.kind.clone()).unwrap_or_default(),
        route_namespace: route.map(|r| r.namespace.clone()).unwrap_or_default(),
        route_name: route.map(|r| r.name.clone()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Target;

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
                limits: Default::default(),
                forwarding: Default::default(),
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

    /// The compiled virtual host `host` in a runtime.
    fn compiled(rt: &Runtime, host: &str) -> Arc<CompiledVirtualHost> {
        let listener = &rt.binds.values().next().expect("a bind").listeners[0];
        listener.hosts.find(host).expect("the host").clone()
    }

    /// Brings `received` to `to` as the config channel would: the changed resources.
    fn send(received: &mut Received, sent: &mut gatehouse_model::channel::Sent, to: &Config) {
        if let Some(update) = sent.update(to, 0) {
            received.apply(&update);
        }
    }

    /// A version compiles only the virtual hosts that changed and those whose clusters
    /// changed; a refused version leaves its changes to be compiled by the next one.
    /// A version that must compile with nothing refused.
    fn compiled_clean(compiler: &mut Compiler, received: &Received, version: u64) -> Runtime {
        let (runtime, refused) = compiler.compile(received, version);
        assert!(refused.is_empty(), "{refused:?}");
        runtime
    }

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
        let mut received = Received::default();
        let mut sent = gatehouse_model::channel::Sent::default();
        send(&mut received, &mut sent, &c1);
        let v1 = compiled_clean(&mut compiler, &received, 1);
        received.compiled();

        let c2 = config(
            vec![a.clone(), host("b.example.com", "ns/one:80")],
            &[("ns/one:80", 1), ("ns/two:80", 2)],
        );
        send(&mut received, &mut sent, &c2);
        let v2 = compiled_clean(&mut compiler, &received, 2);
        received.compiled();
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
        send(&mut received, &mut sent, &c3);
        let v3 = compiled_clean(&mut compiler, &received, 3);
        received.compiled();
        for h in ["a.example.com", "b.example.com"] {
            assert!(!Arc::ptr_eq(&compiled(&v2, h), &compiled(&v3, h)), "{h}");
            let Target::Cluster(c) = &compiled(&v3, h).routes[0].backends[0].target else {
                panic!("no cluster");
            };
            assert_eq!(c.endpoints, vec![SocketAddr::from(([10, 0, 0, 1], 3))]);
        }

        // Host b now names a cluster that is not there: refused alone, its last good form
        // serves on; when cluster one's endpoints change, that form gets the new ones
        // (traffic never stays on endpoints that left).
        let c3b = config(
            vec![a.clone(), host("b.example.com", "ns/zzz:80")],
            &[("ns/one:80", 3)],
        );
        send(&mut received, &mut sent, &c3b);
        let (v3b, refused) = compiler.compile(&received, 3);
        received.compiled();
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(Arc::ptr_eq(
            &compiled(&v3, "b.example.com"),
            &compiled(&v3b, "b.example.com")
        ));
        let c3c = config(
            vec![a.clone(), host("b.example.com", "ns/zzz:80")],
            &[("ns/one:80", 4)],
        );
        send(&mut received, &mut sent, &c3c);
        let (v3c, refused) = compiler.compile(&received, 3);
        received.compiled();
        assert_eq!(refused.len(), 1, "{refused:?}");
        let Target::Cluster(c) = &compiled(&v3c, "b.example.com").routes[0].backends[0].target
        else {
            panic!("no cluster");
        };
        assert_eq!(c.endpoints, vec![SocketAddr::from(([10, 0, 0, 1], 4))]);

        // Cluster one gone: the hosts that name it are refused alone (the rest of the
        // version applies) and are not served: their last good form would send to
        // endpoints no cluster has any more.
        let c4 = config(vec![a.clone(), host("b.example.com", "ns/one:80")], &[]);
        send(&mut received, &mut sent, &c4);
        let (v4, refused) = compiler.compile(&received, 4);
        received.compiled();
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(refused.iter().all(|r| r.error.contains("unknown Cluster")
            && r.resource.starts_with("VirtualHost ")
            && r.listeners == ["ns/gw/http"]));
        let listener = &v4.binds.values().next().expect("a bind").listeners[0];
        assert!(listener.hosts.find("a.example.com").is_none());
        // The cluster back, the hosts unchanged: the refused hosts are tried again, and
        // served.
        send(&mut received, &mut sent, &c3);
        let v5 = compiled_clean(&mut compiler, &received, 5);
        received.compiled();
        assert_eq!(
            compiled(&v3, "a.example.com").routes[0].model,
            compiled(&v5, "a.example.com").routes[0].model
        );

        // The same model compiled from scratch answers alike.
        let fresh = compile(&c3, 6).expect("compiles");
        for h in ["a.example.com", "b.example.com"] {
            assert_eq!(
                compiled(&fresh, h).routes[0].model,
                compiled(&v5, h).routes[0].model
            );
        }
    }
}
