//! The resource store: every typed object the sources delivered, by kind and key.
//!
//! Sources (a YAML directory, or kube-runtime reflectors) fill it; translation reads it.
//! Nothing downstream knows which source an object came from.

use kube::ResourceExt;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Every kind the store holds, in one table: variant, store field, type, API group, kind
/// and whether it is namespaced. `for_each_kind!(m)` hands the table to macro `m`, so the
/// store, the file parser and the Kubernetes reflectors cannot disagree about the kinds.
#[macro_export]
macro_rules! for_each_kind {
    ($m:ident) => {
        $m! {
            GatewayClass gateway_classes $crate::gwapi::gatewayclasses::GatewayClass, "gateway.networking.k8s.io" "GatewayClass" false;
            Gateway gateways $crate::gwapi::gateways::Gateway, "gateway.networking.k8s.io" "Gateway" true;
            ListenerSet listener_sets $crate::gwapi::listenersets::ListenerSet, "gateway.networking.k8s.io" "ListenerSet" true;
            HttpRoute http_routes $crate::gwapi::httproutes::HttpRoute, "gateway.networking.k8s.io" "HTTPRoute" true;
            ReferenceGrant reference_grants $crate::gwapi::referencegrants::ReferenceGrant, "gateway.networking.k8s.io" "ReferenceGrant" true;
            BackendTlsPolicy backend_tls_policies gateway_api::apis::standard::backendtlspolicies::BackendTlsPolicy, "gateway.networking.k8s.io" "BackendTLSPolicy" true;
            Ingress ingresses k8s_openapi::api::networking::v1::Ingress, "networking.k8s.io" "Ingress" true;
            IngressClass ingress_classes k8s_openapi::api::networking::v1::IngressClass, "networking.k8s.io" "IngressClass" false;
            Service services k8s_openapi::api::core::v1::Service, "" "Service" true;
            EndpointSlice endpoint_slices k8s_openapi::api::discovery::v1::EndpointSlice, "discovery.k8s.io" "EndpointSlice" true;
            Secret secrets k8s_openapi::api::core::v1::Secret, "" "Secret" true;
            ConfigMap config_maps k8s_openapi::api::core::v1::ConfigMap, "" "ConfigMap" true;
            Namespace namespaces k8s_openapi::api::core::v1::Namespace, "" "Namespace" false;
            GatewayParameters gateway_parameters gatehouse_api::GatewayParameters, "gatehouse.dev" "GatewayParameters" true;
            IngressClassParameters ingress_class_parameters gatehouse_api::IngressClassParameters, "gatehouse.dev" "IngressClassParameters" false;
            TrafficPolicy traffic_policies gatehouse_api::TrafficPolicy, "gatehouse.dev" "TrafficPolicy" true;
        }
    };
}

/// Namespace and name. Cluster-scoped objects have an empty namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    /// The object's name.
    pub name: String,
}

impl ObjectKey {
    /// The key of `namespace/name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of an object.
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

macro_rules! store {
    ($($variant:ident $field:ident $ty:ty, $group:literal $kind:literal $namespaced:literal;)*) => {
        /// One object of a kind the store holds. Shared: the store and a source's memory
        /// of what it parsed hold the same object, so an unchanged object keeps its identity
        /// from one load to the next, and translation recomputes only what changed.
        #[derive(Debug, Clone)]
        #[allow(missing_docs)] // One variant per kind, named as the kind.
        pub enum Object {
            $($variant(Arc<$ty>),)*
        }

        impl Object {
            /// The object's kind, as the API spells it.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Object::$variant(_) => $kind,)*
                }
            }

            /// The object's namespace and name.
            pub fn key(&self) -> ObjectKey {
                match self {
                    $(Object::$variant(o) => ObjectKey::of(&**o),)*
                }
            }

            /// Whether objects of its kind live in a namespace.
            pub fn is_namespaced(&self) -> bool {
                match self {
                    $(Object::$variant(_) => $namespaced,)*
                }
            }

            /// A hash of the object's spec (what a generation counts).
            pub fn spec_hash(&self) -> u64 {
                use std::hash::{Hash, Hasher};
                let spec = match self {
                    $(Object::$variant(o) => serde_json::to_value(&**o),)*
                }
                .ok()
                .and_then(|v| v.get("spec").map(|s| s.to_string()))
                .unwrap_or_default();
                let mut h = std::collections::hash_map::DefaultHasher::new();
                spec.hash(&mut h);
                h.finish()
            }

            /// Whether two objects are the same one (not merely equal).
            pub fn same(&self, other: &Object) -> bool {
                match (self, other) {
                    $((Object::$variant(a), Object::$variant(b)) => Arc::ptr_eq(a, b),)*
                    _ => false,
                }
            }

            /// The metadata to change, copying the object first if it is shared.
            pub fn meta_mut(&mut self) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                match self {
                    $(Object::$variant(o) => kube::Resource::meta_mut(Arc::make_mut(o)),)*
                }
            }
        }

        /// Every object by kind and key. Cloning it clones pointers, not objects.
        #[derive(Debug, Clone, Default)]
        #[allow(missing_docs)] // One map per kind, named as the kind.
        pub struct Store {
            $(pub $field: BTreeMap<ObjectKey, Arc<$ty>>,)*
        }

        impl Store {
            /// Inserts or replaces an object; returns the kind and key it was stored under.
            pub fn insert(&mut self, object: Object) -> (&'static str, ObjectKey) {
                let (kind, key) = (object.kind(), object.key());
                match object {
                    $(Object::$variant(o) => drop(self.$field.insert(key.clone(), o)),)*
                }
                (kind, key)
            }

            /// The kinds (as `Object::kind` spells them) whose objects differ between two
            /// stores: an object added, removed or replaced. Objects are compared by
            /// identity, so this costs a pointer comparison per object.
            pub fn changed_kinds(&self, other: &Store) -> Vec<&'static str> {
                let mut kinds = Vec::new();
                $(if !same_objects(&self.$field, &other.$field) {
                    kinds.push($kind);
                })*
                kinds
            }

            /// How many objects of each kind (as `Object::kind` spells it) it holds.
            pub fn counts(&self) -> Vec<(&'static str, usize)> {
                vec![$(($kind, self.$field.len()),)*]
            }

            /// A copy (of pointers) without the objects of `kinds`.
            pub fn without(&self, kinds: &[&str]) -> Store {
                Store {
                    $($field: if kinds.contains(&$kind) {
                        BTreeMap::new()
                    } else {
                        self.$field.clone()
                    },)*
                }
            }

            /// Removes the object of a kind (as `Object::kind` spells it) and key.
            pub fn remove(&mut self, kind: &str, key: &ObjectKey) {
                match kind {
                    $($kind => drop(self.$field.remove(key)),)*
                    _ => {}
                }
            }
        }
    };
}
for_each_kind!(store);

fn same_objects<T>(a: &BTreeMap<ObjectKey, Arc<T>>, b: &BTreeMap<ObjectKey, Arc<T>>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && Arc::ptr_eq(va, vb))
}

impl Store {
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
