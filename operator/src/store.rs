//! The resource store: every typed object the sources delivered, by kind and key.
//!
//! Sources (a YAML directory, or kube-runtime reflectors) fill it; translation reads it.
//! Nothing downstream knows which source an object came from.

use crate::gwapi::gatewayclasses::GatewayClass;
use crate::gwapi::gateways::Gateway;
use crate::gwapi::httproutes::HttpRoute;
use crate::gwapi::referencegrants::ReferenceGrant;
use gatehouse_api::{GatewayParameters, IngressClassParameters};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::ResourceExt;
use std::collections::BTreeMap;

/// Namespace and name. Cluster-scoped objects have an empty namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    pub fn of<K: ResourceExt>(obj: &K) -> Self {
        ObjectKey::new(obj.namespace().unwrap_or_default(), obj.name_any())
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}", self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// One object of a kind the store holds.
#[derive(Debug, Clone)]
pub enum Object {
    GatewayClass(GatewayClass),
    Gateway(Gateway),
    HttpRoute(HttpRoute),
    ReferenceGrant(ReferenceGrant),
    Ingress(Ingress),
    IngressClass(IngressClass),
    Service(Service),
    EndpointSlice(EndpointSlice),
    Secret(Secret),
    ConfigMap(ConfigMap),
    Namespace(Namespace),
    GatewayParameters(GatewayParameters),
    IngressClassParameters(IngressClassParameters),
}

impl Object {
    pub fn kind(&self) -> &'static str {
        match self {
            Object::GatewayClass(_) => "GatewayClass",
            Object::Gateway(_) => "Gateway",
            Object::HttpRoute(_) => "HTTPRoute",
            Object::ReferenceGrant(_) => "ReferenceGrant",
            Object::Ingress(_) => "Ingress",
            Object::IngressClass(_) => "IngressClass",
            Object::Service(_) => "Service",
            Object::EndpointSlice(_) => "EndpointSlice",
            Object::Secret(_) => "Secret",
            Object::ConfigMap(_) => "ConfigMap",
            Object::Namespace(_) => "Namespace",
            Object::GatewayParameters(_) => "GatewayParameters",
            Object::IngressClassParameters(_) => "IngressClassParameters",
        }
    }

    pub fn key(&self) -> ObjectKey {
        match self {
            Object::GatewayClass(o) => ObjectKey::of(o),
            Object::Gateway(o) => ObjectKey::of(o),
            Object::HttpRoute(o) => ObjectKey::of(o),
            Object::ReferenceGrant(o) => ObjectKey::of(o),
            Object::Ingress(o) => ObjectKey::of(o),
            Object::IngressClass(o) => ObjectKey::of(o),
            Object::Service(o) => ObjectKey::of(o),
            Object::EndpointSlice(o) => ObjectKey::of(o),
            Object::Secret(o) => ObjectKey::of(o),
            Object::ConfigMap(o) => ObjectKey::of(o),
            Object::Namespace(o) => ObjectKey::of(o),
            Object::GatewayParameters(o) => ObjectKey::of(o),
            Object::IngressClassParameters(o) => ObjectKey::of(o),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Store {
    pub gateway_classes: BTreeMap<ObjectKey, GatewayClass>,
    pub gateways: BTreeMap<ObjectKey, Gateway>,
    pub http_routes: BTreeMap<ObjectKey, HttpRoute>,
    pub reference_grants: BTreeMap<ObjectKey, ReferenceGrant>,
    pub ingresses: BTreeMap<ObjectKey, Ingress>,
    pub ingress_classes: BTreeMap<ObjectKey, IngressClass>,
    pub services: BTreeMap<ObjectKey, Service>,
    pub endpoint_slices: BTreeMap<ObjectKey, EndpointSlice>,
    pub secrets: BTreeMap<ObjectKey, Secret>,
    pub config_maps: BTreeMap<ObjectKey, ConfigMap>,
    pub namespaces: BTreeMap<ObjectKey, Namespace>,
    pub gateway_parameters: BTreeMap<ObjectKey, GatewayParameters>,
    pub ingress_class_parameters: BTreeMap<ObjectKey, IngressClassParameters>,
}

impl Store {
    /// Inserts or replaces an object; returns the kind and key it was stored under.
    pub fn insert(&mut self, object: Object) -> (&'static str, ObjectKey) {
        let (kind, key) = (object.kind(), object.key());
        match object {
            Object::GatewayClass(o) => drop(self.gateway_classes.insert(key.clone(), o)),
            Object::Gateway(o) => drop(self.gateways.insert(key.clone(), o)),
            Object::HttpRoute(o) => drop(self.http_routes.insert(key.clone(), o)),
            Object::ReferenceGrant(o) => drop(self.reference_grants.insert(key.clone(), o)),
            Object::Ingress(o) => drop(self.ingresses.insert(key.clone(), o)),
            Object::IngressClass(o) => drop(self.ingress_classes.insert(key.clone(), o)),
            Object::Service(o) => drop(self.services.insert(key.clone(), o)),
            Object::EndpointSlice(o) => drop(self.endpoint_slices.insert(key.clone(), o)),
            Object::Secret(o) => drop(self.secrets.insert(key.clone(), o)),
            Object::ConfigMap(o) => drop(self.config_maps.insert(key.clone(), o)),
            Object::Namespace(o) => drop(self.namespaces.insert(key.clone(), o)),
            Object::GatewayParameters(o) => drop(self.gateway_parameters.insert(key.clone(), o)),
            Object::IngressClassParameters(o) => {
                drop(self.ingress_class_parameters.insert(key.clone(), o))
            }
        }
        (kind, key)
    }

    /// Labels of a namespace; a namespace the store has not seen has only the label
    /// `kubernetes.io/metadata.name` that the API server would give it.
    pub fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        let mut labels = self
            .namespaces
            .get(&ObjectKey::new("", namespace))
            .map(|ns| ns.labels().clone())
            .unwrap_or_default();
        labels.insert("kubernetes.io/metadata.name".into(), namespace.into());
        labels
    }
}
