//! The compiler: versions of the received model compiled into runtimes, compiling only
//! what changed since the last version (see `Compiler`).

use super::cluster::{Cluster, compile_cluster};
use super::hosts::{CompiledVirtualHost, HostTable};
use super::route::compile_route;
use super::version::{Bind, CompiledListener, Runtime};
use crate::channel::received::Received;
use crate::net::tls::{self, TlsCache};
use crate::net::upstream_tls;
use gatehouse_model::ir::{Config, Protocol};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

/// Compiles a config with nothing to reuse (tools and tests; the data plane keeps a
/// `Compiler` across versions).
pub fn compile(config: &Config, version: u64) -> Result<Runtime, String> {
    Compiler::default().compile(&Received::of(config), version)
}

/// Compiles versions of the received model into runtimes, compiling only what changed since
/// the last version it compiled: changed clusters, and the virtual hosts that changed or
/// send to a changed cluster. Everything else is shared with the last runtime (a listener's
/// host table is copied, by pointer, when one of its hosts changed). With ten thousand
/// hostnames, a version that changes one compiles one.
#[derive(Default)]
pub struct Compiler {
    tls: TlsCache,
    clusters: HashMap<String, KeptCluster>,
    /// Compiled virtual hosts by resource key ("listener hostname").
    hosts: HashMap<Arc<str>, KeptHost>,
    /// The virtual hosts sending to each cluster, compiled again when it changes.
    users: HashMap<String, HashSet<Arc<str>>>,
    /// Host tables by listener key.
    host_tables: HashMap<String, Arc<HostTable>>,
}

/// A model cluster and what it compiled to, as the compiler keeps them between versions.
type KeptCluster = (gatehouse_model::ir::Cluster, Arc<Cluster>);

/// A compiled virtual host as the compiler keeps it between versions.
struct KeptHost {
    listener: Arc<str>,
    host: Arc<CompiledVirtualHost>,
    /// Every cluster its routes send to (backends, mirrors, external auth).
    clusters: Vec<String>,
}

impl Compiler {
    /// Compiles the received model. Fails (the version is NACKed; nothing of it is kept, and
    /// what changed stays changed for the next version) when something cannot be served: a
    /// reference to nothing, a regex that does not compile, a certificate that does not
    /// load.
    pub fn compile(&mut self, received: &Received, version: u64) -> Result<Runtime, String> {
        if let Some(e) = received.broken() {
            return Err(e.to_string());
        }
        let everything = received.changes.everything;
        validate_frame(received)?;
        let new_clusters = self.changed_clusters(received, everything)?;
        let new_hosts = self.changed_hosts(received, everything, &new_clusters)?;
        let tables = self.host_tables(received, everything, &new_hosts);
        let runtime = self.binds(received, &tables, version)?;
        self.keep(everything, new_clusters, new_hosts, tables);
        Ok(runtime)
    }

    /// Clusters: compile the changed ones (all of them for `everything`); None marks one
    /// gone.
    fn changed_clusters(
        &self,
        received: &Received,
        everything: bool,
    ) -> Result<HashMap<String, Option<KeptCluster>>, String> {
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
        Ok(new_clusters)
    }

    /// Virtual hosts: the changed ones and those sending to a changed cluster, compiled
    /// against this version's clusters; None marks one gone.
    fn changed_hosts(
        &self,
        received: &Received,
        everything: bool,
        new_clusters: &HashMap<String, Option<KeptCluster>>,
    ) -> Result<HashMap<Arc<str>, Option<KeptHost>>, String> {
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
            for key in new_clusters.keys() {
                host_keys.extend(self.users.get(key).into_iter().flatten().cloned());
            }
        }
        // (listener, hostname, compiled or None when gone) by key.
        let mut new_hosts: HashMap<Arc<str>, Option<KeptHost>> = HashMap::new();
        for key in host_keys {
            let compiled = match received.hosts.get(&key) {
                None => None,
                Some(h) => Some(compile_host(&h.listener, &h.host, &cluster)?),
            };
            new_hosts.insert(key, compiled);
        }
        Ok(new_hosts)
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

    /// The sockets of the received listeners, with their host tables and TLS.
    fn binds(
        &mut self,
        received: &Received,
        tables: &HashMap<&str, Arc<HostTable>>,
        version: u64,
    ) -> Result<Runtime, String> {
        // Client certificates for backends, each loaded once.
        let mut backend_clients = HashMap::new();
        for key in received
            .listeners
            .values()
            .filter_map(|l| l.backend_client_certificate.as_deref())
        {
            if backend_clients.contains_key(key) {
                continue;
            }
            let cert = received
                .certificates
                .get(key)
                .ok_or_else(|| format!("Certificate {key}: missing"))?;
            backend_clients.insert(key, upstream_tls::client_certificate(cert)?);
        }
        let mut by_socket: HashMap<SocketAddr, Vec<&gatehouse_model::ir::Listener>> =
            HashMap::new();
        for l in received.listeners.values() {
            by_socket.entry(l.socket_addr()).or_default().push(l);
        }
        let certificates: Vec<gatehouse_model::ir::Certificate> =
            received.certificates.values().cloned().collect();
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
fn validate_frame(received: &Received) -> Result<(), String> {
    let mut errors = Vec::new();
    for l in received.listeners.values() {
        for c in &l.certificates {
            if !received.certificates.contains_key(&c.certificate) {
                errors.push(format!(
                    "Listener {}: certificates: unknown Certificate {:?}",
                    l.key, c.certificate
                ));
            }
        }
    }
    for listener in received.host_counts.keys() {
        if !received.listeners.contains_key(&**listener) {
            errors.push(format!("RouteTable {listener}: unknown listener"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Validates and compiles one virtual host of `listener`'s table.
fn compile_host(
    listener: &Arc<str>,
    vh: &Arc<gatehouse_model::ir::VirtualHost>,
    cluster: &dyn Fn(&str) -> Option<Arc<Cluster>>,
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
    Ok(KeptHost {
        listener: listener.clone(),
        clusters,
        host: Arc::new(CompiledVirtualHost {
            hostname: vh.hostname.clone(),
            routes,
        }),
    })
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
        let v1 = compiler.compile(&received, 1).expect("compiles");
        received.compiled();

        let c2 = config(
            vec![a.clone(), host("b.example.com", "ns/one:80")],
            &[("ns/one:80", 1), ("ns/two:80", 2)],
        );
        send(&mut received, &mut sent, &c2);
        let v2 = compiler.compile(&received, 2).expect("compiles");
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
        let v3 = compiler.compile(&received, 3).expect("compiles");
        received.compiled();
        for h in ["a.example.com", "b.example.com"] {
            assert!(!Arc::ptr_eq(&compiled(&v2, h), &compiled(&v3, h)), "{h}");
            let Target::Cluster(c) = &compiled(&v3, h).routes[0].backends[0].target else {
                panic!("no cluster");
            };
            assert_eq!(c.endpoints, vec![SocketAddr::from(([10, 0, 0, 1], 3))]);
        }

        // Cluster one gone: the unchanged hosts that name it are refused, not served stale.
        let c4 = config(vec![a.clone(), host("b.example.com", "ns/one:80")], &[]);
        send(&mut received, &mut sent, &c4);
        let refused = compiler.compile(&received, 4);
        assert!(refused.err().is_some_and(|e| e.contains("unknown Cluster")));
        // Back as it was: what v3 compiled still stands, and is served again.
        send(&mut received, &mut sent, &c3);
        let v5 = compiler.compile(&received, 5).expect("compiles");
        assert!(Arc::ptr_eq(
            &compiled(&v3, "a.example.com"),
            &compiled(&v5, "a.example.com")
        ));
        received.compiled();

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
