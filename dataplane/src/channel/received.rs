//! What a data plane holds of the model: every resource it was sent, decoded once when it
//! arrived, and what changed since the last version it compiled, so that compiling a
//! version costs what changed, not the size of the model.

use gatehouse_model::channel::{ResourceId, decode};
use gatehouse_model::ir::{Certificate, Cluster, Config, Listener, Resource, VirtualHost};
use gatehouse_model::proto;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// The model as received, by kind and key.
#[derive(Debug, Default)]
pub struct Received {
    pub listeners: BTreeMap<String, Listener>,
    /// Virtual hosts by resource key ("listener hostname").
    pub hosts: HashMap<Arc<str>, ReceivedHost>,
    /// How many virtual hosts each listener key has.
    pub host_counts: HashMap<Arc<str>, usize>,
    pub clusters: BTreeMap<String, Cluster>,
    pub certificates: BTreeMap<String, Certificate>,
    /// Resources that did not decode: refused (and left out) until they are replaced or
    /// removed.
    broken: BTreeMap<ResourceId, String>,
    pub changes: Changes,
}

/// One virtual host of a listener's table.
#[derive(Debug, Clone)]
pub struct ReceivedHost {
    /// Shared by every host of the listener.
    pub listener: Arc<str>,
    pub host: Arc<VirtualHost>,
}

/// What changed since the last compiled version.
#[derive(Debug, Default)]
pub struct Changes {
    /// Compile everything (the first version, a full update).
    pub everything: bool,
    /// Listeners or certificates changed: binds and TLS are set up again.
    pub frame: bool,
    /// Virtual hosts by resource key.
    pub hosts: HashSet<Arc<str>>,
    pub clusters: HashSet<String>,
}

impl Received {
    /// Everything in a config, all of it to compile.
    pub fn of(config: &Config) -> Received {
        let mut received = Received::default();
        for r in config.resources() {
            received.put(r);
        }
        received.changes.everything = true;
        received
    }

    /// Applies an update received on the wire, decoding what it brings.
    pub fn apply(&mut self, update: &proto::ConfigUpdate) {
        if update.full {
            *self = Received::default();
            self.changes.everything = true;
        }
        for removal in &update.removals {
            let id = (removal.kind.clone(), removal.key.clone());
            self.broken.remove(&id);
            self.take(&id);
        }
        for r in &update.upserts {
            let id = (r.kind.clone(), r.key.clone());
            self.broken.remove(&id);
            // The previous resource of this id goes first: a body that no longer decodes
            // must not leave the old one serving as if it were current.
            self.take(&id);
            match decode(r) {
                Ok(resource) => self.put(resource),
                Err(e) => drop(self.broken.insert(id, e.to_string())),
            }
        }
    }

    /// The resources that did not decode, and why: refused alone until replaced or
    /// removed.
    pub fn broken(&self) -> impl Iterator<Item = (&ResourceId, &str)> {
        self.broken.iter().map(|(id, e)| (id, e.as_str()))
    }

    /// After a version compiled: nothing has changed since.
    pub fn compiled(&mut self) {
        self.changes = Changes::default();
    }

    fn put(&mut self, resource: Resource) {
        match resource {
            // Gateways only tell the operator which generations a version holds.
            Resource::Gateway(_) => {}
            Resource::Listener(l) => {
                self.changes.frame = true;
                self.listeners.insert(l.key.clone(), l);
            }
            Resource::Certificate(c) => {
                self.changes.frame = true;
                self.certificates.insert(c.key.clone(), c);
            }
            Resource::Cluster(c) => {
                self.changes.clusters.insert(c.key.clone());
                self.clusters.insert(c.key.clone(), c);
            }
            Resource::VirtualHost(h) => {
                let key: Arc<str> =
                    gatehouse_model::ir::ListenerHost::key(&h.listener, &h.host.hostname).into();
                let listener = match self.host_counts.get_key_value(h.listener.as_str()) {
                    Some((name, _)) => name.clone(),
                    None => Arc::from(h.listener.as_str()),
                };
                *self.host_counts.entry(listener.clone()).or_default() += 1;
                self.hosts.insert(
                    key.clone(),
                    ReceivedHost {
                        listener,
                        host: h.host,
                    },
                );
                self.changes.hosts.insert(key);
            }
        }
    }

    fn take(&mut self, (kind, key): &ResourceId) {
        match kind.as_str() {
            "Listener" if self.listeners.remove(key).is_some() => self.changes.frame = true,
            "Certificate" if self.certificates.remove(key).is_some() => self.changes.frame = true,
            "Cluster" if self.clusters.remove(key).is_some() => {
                self.changes.clusters.insert(key.clone());
            }
            "VirtualHost" => {
                if let Some((key, host)) = self.hosts.remove_entry(key.as_str()) {
                    if let Some(n) = self.host_counts.get_mut(&host.listener) {
                        *n -= 1;
                        if *n == 0 {
                            self.host_counts.remove(&host.listener);
                        }
                    }
                    self.changes.hosts.insert(key);
                }
            }
            _ => {}
        }
    }

    /// The config of everything received (for tools; the data plane compiles from `Received`).
    pub fn config(&self) -> Config {
        let mut resources: Vec<Resource> = Vec::new();
        resources.extend(self.listeners.values().cloned().map(Resource::Listener));
        resources.extend(self.hosts.values().map(|h| {
            Resource::VirtualHost(gatehouse_model::ir::ListenerHost {
                listener: h.listener.to_string(),
                host: h.host.clone(),
            })
        }));
        resources.extend(self.clusters.values().cloned().map(Resource::Cluster));
        resources.extend(
            self.certificates
                .values()
                .cloned()
                .map(Resource::Certificate),
        );
        Config::from_resources(resources)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_model::channel::encode;
    use gatehouse_model::ir::UpstreamProtocol;

    fn cluster(key: &str, port: u16) -> proto::Resource {
        encode(&Resource::Cluster(Cluster {
            key: key.into(),
            protocol: UpstreamProtocol::Http1,
            endpoints: vec![([127, 0, 0, 1], port).into()],
            tls: None,
        }))
    }

    fn update(full: bool, upserts: Vec<proto::Resource>) -> proto::ConfigUpdate {
        proto::ConfigUpdate {
            version: 1,
            full,
            upserts,
            removals: vec![],
        }
    }

    /// A resource that does not decode refuses every version until it is replaced, and
    /// does not leave the version before it serving as if it were current.
    #[test]
    fn an_undecodable_resource_refuses_until_replaced() {
        let mut received = Received::default();
        received.apply(&update(true, vec![cluster("a", 1), cluster("b", 2)]));
        assert!(received.broken().next().is_none());
        assert!(received.changes.everything);
        received.compiled();

        let mut bad = cluster("a", 3);
        bad.body = b"{".to_vec().into();
        received.apply(&update(false, vec![bad]));
        assert!(received.broken().any(|((kind, _), _)| kind == "Cluster"));
        assert!(
            !received.clusters.contains_key("a"),
            "the old body is not kept"
        );
        assert!(received.changes.clusters.contains("a"));

        received.apply(&update(false, vec![cluster("a", 4)]));
        assert!(received.broken().next().is_none());
        assert_eq!(
            received.clusters["a"].endpoints,
            vec![std::net::SocketAddr::from(([127, 0, 0, 1], 4))]
        );
        assert_eq!(received.config().clusters.len(), 2);
    }
}
