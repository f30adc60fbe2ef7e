//! Status as translation reports it: conditions per object, per listener and per route parent,
//! with the reasons the Gateway API spec names. Sources decide where it goes (the API server,
//! or the admin endpoint and the log in standalone mode).

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A status condition as the Kubernetes API has it (lastTransitionTime is the status
/// writer's to keep).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Accepted, Programmed, ResolvedRefs, ... (`reason::*`).
    #[serde(rename = "type")]
    pub type_: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    /// A reason the spec names (`reason::*`).
    pub reason: String,
    /// What a person needs to know: the field, the object, what to do.
    pub message: String,
    /// The object generation the condition was computed from.
    pub observed_generation: i64,
}

impl Condition {
    /// A condition of `type_`, True or False; the generation is stamped when it is set.
    pub fn new(type_: &str, status: bool, reason: &str, message: impl Into<String>) -> Self {
        Condition {
            type_: type_.into(),
            status: if status { "True" } else { "False" }.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: 0,
        }
    }

    /// Whether the condition holds.
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// One listener's entry in a Gateway's or ListenerSet's `status.listeners`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    /// The listener's name.
    pub name: String,
    /// Route kinds that may attach (of group gateway.networking.k8s.io).
    pub supported_kinds: Vec<String>,
    /// Routes attached (accepted or not served), as the spec counts them.
    pub attached_routes: i32,
    /// Accepted, ResolvedRefs, Conflicted, Programmed.
    pub conditions: Vec<Condition>,
}

/// A route's parentRef with defaults filled in (group, kind, namespace), as route status
/// echoes it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    /// gateway.networking.k8s.io unless the route said otherwise.
    pub group: String,
    /// Gateway or ListenerSet.
    pub kind: String,
    /// The route's namespace unless the route said otherwise.
    pub namespace: String,
    /// The parent's name.
    pub name: String,
    /// The listener named, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// The port named, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

impl std::fmt::Display for ParentRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)?;
        if let Some(s) = &self.section_name {
            write!(f, "/{s}")?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// A route's (or a policy's) status towards one parent (or ancestor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ParentStatus {
    /// The parent, defaults filled in.
    pub parent_ref: ParentRef,
    /// Accepted, ResolvedRefs (and PartiallyInvalid) towards this parent.
    pub conditions: Vec<Condition>,
}

/// What translation says of one object: its conditions and, by kind, its addresses,
/// listeners or parents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    /// The object's kind (Gateway, HTTPRoute, Ingress, ...).
    pub kind: String,
    /// Its namespace; empty for cluster-scoped objects.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The generation the status was computed from.
    pub generation: i64,
    /// The object's own conditions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// A Gateway's (or an Ingress's) addresses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// A Gateway's or ListenerSet's listeners.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerStatus>,
    /// A route's parents, or a policy's ancestors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<ParentStatus>,
    /// A Gateway's count of accepted ListenerSets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attached_listener_sets: Option<i32>,
    /// A ListenerSet's Gateway ("namespace/name"), whose data planes program it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

impl ObjectStatus {
    /// An object's status with no conditions yet.
    pub fn new(kind: &str, namespace: &str, name: &str, generation: i64) -> Self {
        ObjectStatus {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
            generation,
            ..Default::default()
        }
    }

    /// Sets a condition, replacing one of the same type, stamped with this generation.
    pub fn set(&mut self, mut condition: Condition) {
        condition.observed_generation = self.generation;
        set_condition(&mut self.conditions, condition);
    }

    /// The object's condition of a type.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// One of its listeners, by name.
    pub fn listener_mut(&mut self, name: &str) -> Option<&mut ListenerStatus> {
        self.listeners.iter_mut().find(|l| l.name == name)
    }
}

/// Replaces the condition of the same type, or appends it.
pub fn set_condition(conditions: &mut Vec<Condition>, condition: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(existing) => *existing = condition,
        None => conditions.push(condition),
    }
}

/// Status of every object translation looked at, keyed "Kind namespace/name". Statuses are
/// shared: a report of ten thousand routes is copied and compared by pointer where the
/// next one did not change them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct StatusReport {
    /// Every object's status, by `StatusReport::key`.
    pub objects: BTreeMap<String, Arc<ObjectStatus>>,
}

impl StatusReport {
    /// "Kind namespace/name", or "Kind name" for cluster-scoped objects.
    pub fn key(kind: &str, namespace: &str, name: &str) -> String {
        if namespace.is_empty() {
            format!("{kind} {name}")
        } else {
            format!("{kind} {namespace}/{name}")
        }
    }

    /// An object's status, made (with this generation) when it has none yet.
    pub fn entry(
        &mut self,
        kind: &str,
        namespace: &str,
        name: &str,
        generation: i64,
    ) -> &mut ObjectStatus {
        Arc::make_mut(
            self.objects
                .entry(Self::key(kind, namespace, name))
                .or_insert_with(|| Arc::new(ObjectStatus::new(kind, namespace, name, generation))),
        )
    }

    /// An object's status, if any.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<&ObjectStatus> {
        self.objects
            .get(&Self::key(kind, namespace, name))
            .map(|s| &**s)
    }

    /// Keys whose status differs between two reports (added, removed or changed). One
    /// walk over both (they are in key order); a status shared by both (the same `Arc`,
    /// which belongs to one object) is unchanged without looking inside.
    pub fn changed_keys<'a>(&'a self, newer: &'a StatusReport) -> Vec<&'a str> {
        let mut keys = Vec::new();
        let (mut old, mut new) = (
            self.objects.iter().peekable(),
            newer.objects.iter().peekable(),
        );
        loop {
            match (old.peek(), new.peek()) {
                (Some((_, a)), Some((_, b))) if Arc::ptr_eq(a, b) => {
                    old.next();
                    new.next();
                }
                (Some((ka, a)), Some((kb, b))) => match ka.cmp(kb) {
                    std::cmp::Ordering::Less => {
                        keys.push(ka.as_str());
                        old.next();
                    }
                    std::cmp::Ordering::Greater => {
                        keys.push(kb.as_str());
                        new.next();
                    }
                    std::cmp::Ordering::Equal => {
                        if a != b {
                            keys.push(kb.as_str());
                        }
                        old.next();
                        new.next();
                    }
                },
                (Some((k, _)), None) => {
                    keys.push(k.as_str());
                    old.next();
                }
                (None, Some((k, _))) => {
                    keys.push(k.as_str());
                    new.next();
                }
                (None, None) => return keys,
            }
        }
    }
}

/// Condition types and reasons, spelled as the Gateway API spec spells them (each constant
/// is its own documentation).
#[allow(missing_docs)]
pub mod reason {
    pub const ACCEPTED: &str = "Accepted";
    pub const PROGRAMMED: &str = "Programmed";
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    pub const CONFLICTED: &str = "Conflicted";
    pub const PARTIALLY_INVALID: &str = "PartiallyInvalid";

    pub const INVALID: &str = "Invalid";
    pub const TARGET_NOT_FOUND: &str = "TargetNotFound";
    pub const PENDING: &str = "Pending";
    pub const INVALID_PARAMETERS: &str = "InvalidParameters";
    pub const UNSUPPORTED_ADDRESS: &str = "UnsupportedAddress";
    pub const LISTENERS_NOT_VALID: &str = "ListenersNotValid";
    pub const ADDRESS_NOT_USABLE: &str = "AddressNotUsable";
    pub const ADDRESS_NOT_ASSIGNED: &str = "AddressNotAssigned";
    pub const NOT_ALLOWED: &str = "NotAllowed";
    pub const PARENT_NOT_ACCEPTED: &str = "ParentNotAccepted";
    /// Ingress: annotations ignored (invalid or not supported), named in the message.
    pub const ANNOTATIONS: &str = "Annotations";
    pub const IGNORED: &str = "Ignored";

    pub const HOSTNAME_CONFLICT: &str = "HostnameConflict";
    pub const PROTOCOL_CONFLICT: &str = "ProtocolConflict";
    pub const NO_CONFLICTS: &str = "NoConflicts";
    pub const PORT_UNAVAILABLE: &str = "PortUnavailable";
    pub const UNSUPPORTED_PROTOCOL: &str = "UnsupportedProtocol";
    pub const INVALID_CERTIFICATE_REF: &str = "InvalidCertificateRef";
    pub const INVALID_ROUTE_KINDS: &str = "InvalidRouteKinds";
    pub const REF_NOT_PERMITTED: &str = "RefNotPermitted";
    pub const INVALID_CA_CERTIFICATE_REF: &str = "InvalidCACertificateRef";
    pub const INVALID_CA_CERTIFICATE_KIND: &str = "InvalidCACertificateKind";
    pub const NO_VALID_CA_CERTIFICATE: &str = "NoValidCACertificate";
    pub const INVALID_CLIENT_CERTIFICATE_REF: &str = "InvalidClientCertificateRef";
    pub const INSECURE_FRONTEND_VALIDATION_MODE: &str = "InsecureFrontendValidationMode";
    pub const CONFIGURATION_CHANGED: &str = "ConfigurationChanged";

    pub const NOT_ALLOWED_BY_LISTENERS: &str = "NotAllowedByListeners";
    pub const NO_MATCHING_LISTENER_HOSTNAME: &str = "NoMatchingListenerHostname";
    pub const NO_MATCHING_PARENT: &str = "NoMatchingParent";
    pub const UNSUPPORTED_VALUE: &str = "UnsupportedValue";
    pub const INVALID_KIND: &str = "InvalidKind";
    pub const BACKEND_NOT_FOUND: &str = "BackendNotFound";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(statuses: &[(&str, &Arc<ObjectStatus>)]) -> StatusReport {
        StatusReport {
            objects: statuses
                .iter()
                .map(|(k, s)| (k.to_string(), Arc::clone(s)))
                .collect(),
        }
    }

    /// Added, removed and changed keys are found; shared and equal statuses are not.
    #[test]
    fn changed_keys_walks_both_reports() {
        let st = |name: &str, generation| {
            Arc::new(ObjectStatus::new("HTTPRoute", "ns", name, generation))
        };
        let (a, b, c, d) = (st("a", 1), st("b", 1), st("c", 1), st("d", 1));
        let old = report(&[("a", &a), ("b", &b), ("c", &c)]);
        let (b2, c_equal) = (st("b", 2), st("c", 1));
        let new = report(&[("b", &b2), ("c", &c_equal), ("d", &d)]);
        let mut keys = old.changed_keys(&new);
        keys.sort();
        assert_eq!(keys, ["a", "b", "d"]);
        assert!(old.changed_keys(&old.clone()).is_empty());
    }
}
