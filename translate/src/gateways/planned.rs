//! What planning decides about Gateways, their listeners and ListenerSets: the types route
//! attachment and the model read, and which Gateway a parentRef leads to.

use crate::settings::GATEWAY_GROUP;
use crate::store::ObjectKey;
use gatehouse_api::GatewayParametersSpec;
use gatehouse_model::ir::{self, HostMatch, Protocol, SniCertificate};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Which namespaces may attach routes to a listener.
#[derive(Debug, Clone, PartialEq)]
pub enum AllowedNamespaces {
    Same,
    All,
    Selector(LabelSelector),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
    /// (key, operator, values)
    pub match_expressions: Vec<(String, String, Vec<String>)>,
}

impl LabelSelector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|(k, op, values)| {
                let value = labels.get(k);
                match op.as_str() {
                    "In" => value.is_some_and(|v| values.contains(v)),
                    "NotIn" => value.is_none_or(|v| !values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }
}

/// Who declared a listener: the Gateway itself or one of its ListenerSets. Status, route
/// attachment (parentRef kind, sectionName, allowedRoutes "Same") and ReferenceGrants are
/// the owner's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Gateway(ObjectKey),
    ListenerSet(ObjectKey),
}

impl Owner {
    pub fn kind(&self) -> &'static str {
        match self {
            Owner::Gateway(_) => "Gateway",
            Owner::ListenerSet(_) => "ListenerSet",
        }
    }

    pub fn key(&self) -> &ObjectKey {
        match self {
            Owner::Gateway(k) | Owner::ListenerSet(k) => k,
        }
    }
}

/// A LabelSelector from any of the generated selector types (they share one shape).
macro_rules! label_selector {
    ($sel:expr) => {{
        let sel = $sel;
        $crate::gateways::LabelSelector {
            match_labels: sel.and_then(|s| s.match_labels.clone()).unwrap_or_default(),
            match_expressions: sel
                .and_then(|s| s.match_expressions.as_ref())
                .map(|e| {
                    e.iter()
                        .map(|x| {
                            (
                                x.key.clone(),
                                x.operator.clone(),
                                x.values.clone().unwrap_or_default(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }};
}
pub(super) use label_selector;

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedListener {
    pub key: String,
    pub owner: Owner,
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
    /// The protocol as written (HTTP, HTTPS, TLS, TCP, ...), for conflicts.
    pub spec_protocol: String,
    pub hostname: HostMatch,
    pub allowed_namespaces: AllowedNamespaces,
    /// Whether HTTPRoutes may attach (allowedRoutes.kinds includes it or is unset).
    pub allows_http_routes: bool,
    pub certificates: Vec<SniCertificate>,
    pub client_validation: Option<ir::ClientValidation>,
    /// Valid and not conflicted: gets a socket and a route table.
    pub served: bool,
    pub attached_routes: i32,
}

impl PlannedListener {
    /// Whether objects in `namespace` (with these labels) may attach to this listener;
    /// "Same" is the namespace of the listener's owner (Gateway or ListenerSet).
    pub fn admits(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        match &self.allowed_namespaces {
            AllowedNamespaces::Same => namespace == self.owner.key().namespace,
            AllowedNamespaces::All => true,
            AllowedNamespaces::Selector(sel) => sel.matches(labels),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedGateway {
    pub key: ObjectKey,
    pub generation: i64,
    /// Where listeners bind.
    pub address: IpAddr,
    /// What status reports as the Gateway's addresses (and its Ingresses').
    pub published: Vec<String>,
    pub listeners: Vec<PlannedListener>,
    /// How its data planes run (Kubernetes provider).
    pub dataplane: GatewayParametersSpec,
    /// Made for an IngressClass, not an API object.
    pub synthetic: bool,
    pub accepted: bool,
    /// Every ListenerSet naming this Gateway as its parent, allowed or not.
    pub listener_sets: Vec<PlannedListenerSet>,
    /// Certificate key presented to backends asking for a client certificate.
    pub backend_client_certificate: Option<String>,
    /// Its clients' timeouts and caps, from its parameters.
    pub client_limits: ir::ClientLimits,
    /// How its clients' addresses are learned and their headers passed on.
    pub forwarding: ir::Forwarding,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedListenerSet {
    pub key: ObjectKey,
    pub generation: i64,
    /// Allowed by the Gateway and with at least one valid listener.
    pub accepted: bool,
}

/// The Gateway of ours a parentRef (group, kind, namespace, name) leads to, and the
/// owner of the listeners it may attach to; None when the parent is not ours.
pub fn parent(
    gateways: &BTreeMap<ObjectKey, PlannedGateway>,
    group: Option<&str>,
    kind: Option<&str>,
    namespace: &str,
    name: &str,
) -> Option<(ObjectKey, Owner)> {
    if group.unwrap_or(GATEWAY_GROUP) != GATEWAY_GROUP {
        return None;
    }
    let key = ObjectKey::new(namespace, name);
    match kind.unwrap_or("Gateway") {
        "Gateway" => gateways
            .contains_key(&key)
            .then(|| (key.clone(), Owner::Gateway(key))),
        "ListenerSet" => gateways
            .values()
            .find(|g| g.listener_sets.iter().any(|s| s.key == key))
            .map(|g| (g.key.clone(), Owner::ListenerSet(key))),
        _ => None,
    }
}
