//! Encoding of model resources on the config channel, and the delta between two versions.

use crate::ir::{Certificate, Cluster, Config, Gateway, Listener, ListenerHost, Resource};
use crate::proto;
use crate::seen::SeenHosts;
use std::collections::{HashMap, HashSet};

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

/// The largest message a data plane takes from the operator: a full snapshot of a large
/// table (about 360 bytes a route) must fit. The operator is authenticated (mutual TLS in
/// Kubernetes mode).
pub const MAX_MESSAGE: usize = 1 << 30;

/// The largest message the operator takes from a data plane: an acknowledgement, with the
/// listeners and resources it names. A data plane (one of many, each with its own identity)
/// cannot make the operator hold more.
pub const MAX_REPORT: usize = 4 << 20;

/// Data plane reports queued for the operator loop; a stream waits while it is full.
pub const REPORT_QUEUE: usize = 1024;

/// (kind, key) of a resource: its identity across versions.
pub type ResourceId = (String, String);

/// What one data plane was sent, kept by identity: the next version's delta is found by
/// comparing pointers (virtual hosts) and small values (the rest), and only what changed
/// is encoded. With thousands of hostnames, a version that changes one sends one.
#[derive(Debug, Default)]
pub struct Sent {
    started: bool,
    hosts: SeenHosts,
    /// Every other resource by kind and key.
    others: HashMap<&'static str, HashMap<String, Resource>>,
}

impl Sent {
    /// The update that brings a data plane from what it was sent to `config`: everything
    /// the first time, then what changed; None when nothing did.
    pub fn update(&mut self, config: &Config, version: u64) -> Option<proto::ConfigUpdate> {
        let full = !self.started;
        self.started = true;
        let changes = self.hosts.changes(config, full);
        let mut upserts: Vec<proto::Resource> = changes
            .changed
            .iter()
            .map(|(listener, host)| {
                encode(&Resource::VirtualHost(ListenerHost {
                    listener: listener.to_string(),
                    host: (*host).clone(),
                }))
            })
            .collect();
        let mut removals: Vec<proto::ResourceKey> = changes
            .gone
            .iter()
            .map(|(listener, hostname)| proto::ResourceKey {
                kind: "VirtualHost".into(),
                key: ListenerHost::key(listener, hostname),
            })
            .collect();
        self.hosts.record(&changes);

        let mut present: HashSet<(&'static str, String)> = HashSet::new();
        for r in config.resources_but_hosts() {
            let (kind, key) = (r.kind(), r.key());
            present.insert((kind, key.clone()));
            let known = self.others.entry(kind).or_default();
            if known.get(&key) != Some(&r) || full {
                upserts.push(encode(&r));
                known.insert(key, r);
            }
        }
        for (kind, known) in &mut self.others {
            known.retain(|key, _| {
                let keep = present.contains(&(*kind, key.clone()));
                if !keep {
                    removals.push(proto::ResourceKey {
                        kind: kind.to_string(),
                        key: key.clone(),
                    });
                }
                keep
            });
        }

        (full || !upserts.is_empty() || !removals.is_empty()).then_some(proto::ConfigUpdate {
            version,
            full,
            upserts,
            removals,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{UpstreamProtocol, VirtualHost};
    use std::sync::Arc;

    fn cluster(key: &str, port: u16) -> Cluster {
        Cluster {
            key: key.into(),
            protocol: UpstreamProtocol::Http1,
            endpoints: vec![([127, 0, 0, 1], port).into()],
            tls: None,
        }
    }

    fn host(name: &str, path: &str) -> Arc<VirtualHost> {
        use crate::ir::*;
        Arc::new(VirtualHost {
            hostname: HostMatch::gateway(name),
            routes: vec![Arc::new(Route::new(
                RouteSource {
                    kind: "HTTPRoute".into(),
                    namespace: "default".into(),
                    name: name.into(),
                    rule: 0,
                },
                RouteMatch::path_only(PathMatch::Prefix(path.into())),
            ))],
        })
    }

    fn config(hosts: Vec<Arc<VirtualHost>>, clusters: Vec<Cluster>) -> Config {
        Config {
            route_tables: vec![crate::ir::RouteTable {
                listener: "ns/gw/http".into(),
                virtual_hosts: hosts,
            }],
            clusters,
            ..Default::default()
        }
    }

    /// What a receiving end holds after the updates: the config back together.
    fn received(updates: &[proto::ConfigUpdate]) -> Config {
        let mut held: std::collections::BTreeMap<ResourceId, Resource> = Default::default();
        for u in updates {
            if u.full {
                held.clear();
            }
            for r in &u.removals {
                held.remove(&(r.kind.clone(), r.key.clone()));
            }
            for r in &u.upserts {
                held.insert((r.kind.clone(), r.key.clone()), decode(r).expect("decodes"));
            }
        }
        Config::from_resources(held.into_values())
    }

    /// Virtual hosts travel one resource each: the first update carries everything, the
    /// next only what changed (a new host, a host gone, a cluster's endpoints), nothing
    /// when nothing did; the receiving end puts the same config back together, most
    /// specific host first.
    #[test]
    fn updates_carry_what_changed_and_reassemble() {
        let (a, b, wild) = (
            host("a.example.com", "/"),
            host("b.example.com", "/"),
            host("*.example.com", "/"),
        );
        let mut sent = Sent::default();
        let c1 = config(
            vec![wild.clone(), a.clone(), b.clone()],
            vec![cluster("x", 1)],
        );
        let first = sent.update(&c1, 1).expect("first update");
        assert!(first.full);
        assert_eq!(first.upserts.len(), 4);
        assert!(sent.update(&c1, 2).is_none(), "nothing changed");

        // An equal host under a new pointer is not sent again.
        let a_copy = Arc::new((*a).clone());
        let c2 = config(vec![a_copy, b.clone(), wild.clone()], vec![cluster("x", 1)]);
        assert!(sent.update(&c2, 3).is_none());

        let b2 = host("b.example.com", "/v2");
        let c3 = config(vec![a.clone(), b2.clone()], vec![cluster("x", 2)]);
        let delta = sent.update(&c3, 4).expect("a delta");
        assert!(!delta.full);
        let mut kinds: Vec<(&str, &str)> = delta
            .upserts
            .iter()
            .map(|r| (r.kind.as_str(), r.key.as_str()))
            .collect();
        kinds.sort();
        assert_eq!(
            kinds,
            [
                ("Cluster", "x"),
                ("VirtualHost", "ns/gw/http b.example.com")
            ]
        );
        assert_eq!(delta.removals.len(), 1);
        assert_eq!(
            delta.removals[0].key,
            "ns/gw/http *.example.com (any depth)"
        );

        let got = received(&[first, delta]);
        let mut want = config(vec![a, b2], vec![cluster("x", 2)]);
        want.route_tables[0]
            .virtual_hosts
            .sort_by(|x, y| VirtualHost::precedence(&x.hostname, &y.hostname));
        assert_eq!(got, want);
    }

    #[test]
    fn decode_rejects_unknown_kind_and_bad_body() {
        let mut r = encode(&Resource::Cluster(cluster("a", 1)));
        assert!(decode(&r).is_ok());
        r.body = prost::bytes::Bytes::from_static(b"{");
        assert!(decode(&r).unwrap_err().to_string().contains("Cluster"));
        r.kind = "Nope".into();
        assert!(matches!(decode(&r), Err(DecodeError::UnknownKind { .. })));
    }
}
