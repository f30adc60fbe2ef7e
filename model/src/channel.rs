//! Encoding of model resources on the config channel, and the delta between two versions.

use crate::ir::{Certificate, Cluster, Gateway, Listener, Resource, RouteTable};
use crate::proto;
use std::collections::BTreeMap;

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
        Resource::RouteTable(v) => serde_json::to_vec(v),
        Resource::Cluster(v) => serde_json::to_vec(v),
        Resource::Certificate(v) => serde_json::to_vec(v),
    };
    proto::Resource {
        kind: resource.kind().to_string(),
        key: resource.key().to_string(),
        // Serialising plain data structs to JSON cannot fail (no maps with non-string keys).
        body: body.unwrap_or_default(),
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
        "RouteTable" => Resource::RouteTable(body::<RouteTable>(resource)?),
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

    /// Decodes every resource; the first undecodable one is an error.
    pub fn decode_all(&self) -> Result<Vec<Resource>, DecodeError> {
        self.resources.values().map(decode).collect()
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
        r.body = b"{".to_vec();
        assert!(decode(&r).unwrap_err().to_string().contains("Cluster"));
        r.kind = "Nope".into();
        assert!(matches!(decode(&r), Err(DecodeError::UnknownKind { .. })));
    }
}
