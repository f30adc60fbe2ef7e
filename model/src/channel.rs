//! Encoding of model resources on the config channel, and the delta between two versions.

use crate::ir::{Certificate, Cluster, Gateway, Listener, ListenerHost, Resource, VirtualHost};
use crate::proto;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown resource kind {kind:?} (key {key:?})")]
    UnknownKind { kind: String, key: String },
    #[error("{kind} {key:?}: {source}")]
    Body {
        kind: String,
        key: String,
        source: serde_json::Error,
    },
}

/// Encodes one resource for the wire.
pub fn encode(resource: &Resource) -> proto::Resource {
    let body = match resource {
        Resource::Gateway(v) => serde_json::to_vec(v),
        Resource::Listener(v) => serde_json::to_vec(v),
        Resource::VirtualHost(v) => serde_json::to_vec(v),
        Resource::Cluster(v) => serde_json::to_vec(v),
        Resource::Certificate(v) => serde_json::to_vec(v),
    };
    proto::Resource {
        kind: resource.kind().to_string(),
        key: resource.key(),
        // Serialising plain data structs to JSON cannot fail (no maps with non-string keys).
        body: body.unwrap_or_default().into(),
    }
}

/// Decodes one resource from the wire.
pub fn decode(resource: &proto::Resource) -> Result<Resource, DecodeError> {
    fn body<T: serde::de::DeserializeOwned>(r: &proto::Resource) -> Result<T, DecodeError> {
        serde_json::from_slice(&r.body).map_err(|source| DecodeError::Body {
            kind: r.kind.clone(),
            key: r.key.clone(),
            source,
        })
    }
    Ok(match resource.kind.as_str() {
        "Gateway" => Resource::Gateway(body::<Gateway>(resource)?),
        "Listener" => Resource::Listener(body::<Listener>(resource)?),
        "VirtualHost" => Resource::VirtualHost(body::<ListenerHost>(resource)?),
        "Cluster" => Resource::Cluster(body::<Cluster>(resource)?),
        "Certificate" => Resource::Certificate(body::<Certificate>(resource)?),
        _ => {
            return Err(DecodeError::UnknownKind {
                kind: resource.kind.clone(),
                key: resource.key.clone(),
            });
        }
    })
}

/// Encodes every resource of a config version, reusing the encoding of each virtual host
/// the version shares (the same `Arc`) with the previous call's: with thousands of
/// hostnames, a version that changes one encodes one.
#[derive(Default)]
pub struct Encoder {
    /// By the address of the shared virtual host, which the entry keeps alive.
    hosts: HashMap<usize, (Arc<VirtualHost>, proto::Resource)>,
}

impl Encoder {
    pub fn encode_all(&mut self, config: &crate::ir::Config) -> ResourceSet {
        let mut hosts = HashMap::with_capacity(self.hosts.len());
        let resources = config.resources().map(|r| match r {
            Resource::VirtualHost(h) => {
                let address = Arc::as_ptr(&h.host) as usize;
                let encoded = match self.hosts.remove(&address) {
                    // The same virtual host in the same listener's table ("listener host").
                    Some((_, e))
                        if e.key
                            .strip_prefix(h.listener.as_str())
                            .is_some_and(|rest| rest.starts_with(' ')) =>
                    {
                        e
                    }
                    _ => encode(&Resource::VirtualHost(h.clone())),
                };
                hosts.insert(address, (h.host, encoded.clone()));
                encoded
            }
            other => encode(&other),
        });
        let set = ResourceSet::new(resources);
        self.hosts = hosts;
        set
    }
}

/// (kind, key) of a resource: its identity across versions.
pub type ResourceId = (String, String);

/// A set of encoded resources, as last sent to (or received by) one data plane.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceSet {
    pub resources: BTreeMap<ResourceId, proto::Resource>,
}

impl ResourceSet {
    pub fn new(resources: impl IntoIterator<Item = proto::Resource>) -> Self {
        ResourceSet {
            resources: resources
                .into_iter()
                .map(|r| ((r.kind.clone(), r.key.clone()), r))
                .collect(),
        }
    }

    /// The update that turns `self` into `next`: changed or new resources, and removed keys.
    pub fn delta_to(&self, next: &ResourceSet) -> (Vec<proto::Resource>, Vec<proto::ResourceKey>) {
        let upserts = next
            .resources
            .iter()
            .filter(|(id, r)| self.resources.get(*id) != Some(*r))
            .map(|(_, r)| r.clone())
            .collect();
        let removals = self
            .resources
            .keys()
            .filter(|id| !next.resources.contains_key(*id))
            .map(|(kind, key)| proto::ResourceKey {
                kind: kind.clone(),
                key: key.clone(),
            })
            .collect();
        (upserts, removals)
    }

    /// Applies an update received on the wire.
    pub fn apply(&mut self, update: &proto::ConfigUpdate) {
        if update.full {
            self.resources.clear();
        }
        for removal in &update.removals {
            self.resources
                .remove(&(removal.kind.clone(), removal.key.clone()));
        }
        for r in &update.upserts {
            self.resources
                .insert((r.kind.clone(), r.key.clone()), r.clone());
        }
    }
}

/// What a data plane holds: every resource it was sent, each decoded once, when it
/// arrived. A resource that does not decode stays as its error until it is replaced, and
/// makes every version refused meanwhile.
#[derive(Debug, Default)]
pub struct Received {
    resources: BTreeMap<ResourceId, Result<Resource, String>>,
}

impl Received {
    /// Applies an update received on the wire, decoding what it brings.
    pub fn apply(&mut self, update: &proto::ConfigUpdate) {
        if update.full {
            self.resources.clear();
        }
        for removal in &update.removals {
            self.resources
                .remove(&(removal.kind.clone(), removal.key.clone()));
        }
        for r in &update.upserts {
            self.resources.insert(
                (r.kind.clone(), r.key.clone()),
                decode(r).map_err(|e| e.to_string()),
            );
        }
    }

    /// The config of everything held; the first undecodable resource is an error.
    pub fn config(&self) -> Result<crate::ir::Config, String> {
        let resources = self
            .resources
            .values()
            .cloned()
            .collect::<Result<Vec<_>, _>>()?;
        Ok(crate::ir::Config::from_resources(resources))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Cluster, UpstreamProtocol};

    fn cluster(key: &str, port: u16) -> proto::Resource {
        encode(&Resource::Cluster(Cluster {
            key: key.into(),
            protocol: UpstreamProtocol::Http1,
            endpoints: vec![([127, 0, 0, 1], port).into()],
            tls: None,
        }))
    }

    #[test]
    fn delta_carries_only_changes_and_applies_back() {
        let old = ResourceSet::new([cluster("a", 1), cluster("b", 2)]);
        let new = ResourceSet::new([cluster("a", 1), cluster("b", 3), cluster("c", 4)]);
        let (upserts, removals) = old.delta_to(&new);
        assert_eq!(upserts.len(), 2);
        assert!(removals.is_empty());

        let mut received = old.clone();
        received.apply(&proto::ConfigUpdate {
            version: 2,
            full: false,
            upserts,
            removals,
        });
        assert_eq!(received, new);

        let (_, removals) = new.delta_to(&ResourceSet::new([cluster("a", 1)]));
        assert_eq!(removals.len(), 2);
    }

    #[test]
    fn decode_rejects_unknown_kind_and_bad_body() {
        let mut r = cluster("a", 1);
        assert!(decode(&r).is_ok());
        r.body = prost::bytes::Bytes::from_static(b"{");
        assert!(decode(&r).unwrap_err().to_string().contains("Cluster"));
        r.kind = "Nope".into();
        assert!(matches!(decode(&r), Err(DecodeError::UnknownKind { .. })));
    }

    fn host(name: &str, path: &str) -> Arc<VirtualHost> {
        use crate::ir::*;
        Arc::new(VirtualHost {
            hostname: HostMatch::gateway(name),
            routes: vec![Arc::new(Route {
                source: RouteSource {
                    kind: "HTTPRoute".into(),
                    namespace: "default".into(),
                    name: name.into(),
                    rule: 0,
                },
                matcher: RouteMatch::path_only(PathMatch::Prefix(path.into())),
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
            })],
        })
    }

    fn config(hosts: Vec<Arc<VirtualHost>>) -> crate::ir::Config {
        crate::ir::Config {
            route_tables: vec![crate::ir::RouteTable {
                listener: "ns/gw/http".into(),
                virtual_hosts: hosts,
            }],
            ..Default::default()
        }
    }

    /// Virtual hosts travel one resource each; a version re-encodes only the hosts it does
    /// not share with the last, sends only those, and the receiving end puts the same
    /// table back together.
    #[test]
    fn virtual_hosts_travel_alone_and_reassemble() {
        let (a, b, wild) = (
            host("a.example.com", "/"),
            host("b.example.com", "/"),
            host("*.example.com", "/"),
        );
        let mut encoder = Encoder::default();
        let first = encoder.encode_all(&config(vec![a.clone(), b.clone(), wild.clone()]));
        assert_eq!(first.resources.len(), 3);
        let encoded_b =
            &first.resources[&("VirtualHost".into(), "ns/gw/http b.example.com".into())];

        let b2 = host("b.example.com", "/v2");
        let second = encoder.encode_all(&config(vec![a.clone(), b2.clone(), wild.clone()]));
        let encoded_a = |set: &ResourceSet| {
            set.resources[&("VirtualHost".into(), "ns/gw/http a.example.com".into())]
                .body
                .clone()
        };
        // The shared host's body is the same buffer, not a new encoding of it.
        assert_eq!(encoded_a(&first).as_ptr(), encoded_a(&second).as_ptr());
        let (upserts, removals) = first.delta_to(&second);
        assert_eq!(upserts.len(), 1);
        assert_ne!(upserts[0].body, encoded_b.body);
        assert!(removals.is_empty());

        let mut received = Received::default();
        received.apply(&proto::ConfigUpdate {
            version: 1,
            full: true,
            upserts: first.resources.values().cloned().collect(),
            removals: vec![],
        });
        received.apply(&proto::ConfigUpdate {
            version: 2,
            full: false,
            upserts,
            removals,
        });
        let got = received.config().expect("decodes");
        // Most specific first, whatever order the resources came in.
        assert_eq!(got, config(vec![a, b2, wild]));
    }

    #[test]
    fn an_undecodable_resource_refuses_until_replaced() {
        let mut bad = cluster("a", 1);
        bad.body = prost::bytes::Bytes::from_static(b"{");
        let mut received = Received::default();
        received.apply(&proto::ConfigUpdate {
            version: 1,
            full: true,
            upserts: vec![bad, cluster("b", 2)],
            removals: vec![],
        });
        assert!(received.config().unwrap_err().contains("Cluster"));
        received.apply(&proto::ConfigUpdate {
            version: 2,
            full: false,
            upserts: vec![cluster("a", 1)],
            removals: vec![],
        });
        assert_eq!(received.config().expect("decodes").clusters.len(), 2);
    }
}
