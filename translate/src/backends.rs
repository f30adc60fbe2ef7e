//! Backend references: Services and their ports, EndpointSlices, the clusters built from
//! them, and the TLS Secrets routes and listeners name.

use crate::references::grant_allows;
use crate::status::{StatusReport, reason};
use crate::store::{ObjectKey, Store};
use crate::tls_material::certificate_material;
use gatehouse_model::ir::{Cluster, UpstreamProtocol};
use k8s_openapi::api::core::v1::ServicePort;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Clone, Copy)]
pub enum PortRef<'a> {
    Number(i32),
    Name(&'a str),
}

/// A reference to a backend as both front-ends write it.
#[derive(Debug, Clone, Copy)]
pub struct BackendRef<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub port: Option<PortRef<'a>>,
}

/// How a cluster is spoken to when not as its Service port says (ingress-nginx
/// backend-protocol); `name` suffixes the cluster key.
#[derive(Debug, Clone)]
pub struct ClusterVariant {
    pub name: &'static str,
    pub protocol: UpstreamProtocol,
    pub tls: Option<gatehouse_model::ir::UpstreamTls>,
}

/// Why a reference cannot be served: a spec reason and a message naming the field.
pub type RefError = (&'static str, String);

/// A port reference that outlives the object it was read from.
#[derive(Debug, Clone, PartialEq)]
enum OwnedPort {
    Number(i32),
    Name(String),
}

/// How a cluster was resolved, so that it can be built again from the store (its
/// endpoints changed) without translating what referred to it.
#[derive(Debug, Clone)]
pub struct ClusterRecipe {
    from: (String, String, String),
    group: String,
    kind: String,
    namespace: String,
    name: String,
    port: Option<OwnedPort>,
    variant: Option<ClusterVariant>,
}

/// A cluster as resolved: how, from which Service port, and what it holds.
#[derive(Debug, Clone)]
pub struct BuiltCluster {
    pub recipe: ClusterRecipe,
    /// (namespace, Service, port name), for BackendTLSPolicy status.
    pub origin: (String, String, Option<String>),
    pub cluster: Cluster,
}

/// Resolves references into clusters, building each cluster once.
pub struct Backends<'s> {
    store: &'s Store,
    clusters: BTreeMap<String, BuiltCluster>,
    tls: crate::backend_tls::BackendTlsPolicies,
    /// Keys resolved since the last `take_used`.
    used: Vec<String>,
}

impl<'s> Backends<'s> {
    pub fn new(store: &'s Store) -> Self {
        Backends {
            store,
            clusters: BTreeMap::new(),
            tls: crate::backend_tls::BackendTlsPolicies::plan(store),
            used: Vec::new(),
        }
    }

    /// BackendTLSPolicy status, once the route tables say which Gateway uses what;
    /// `clusters` are every cluster in use.
    pub fn report_tls(
        &self,
        clusters: &BTreeMap<String, BuiltCluster>,
        config: &gatehouse_model::ir::Config,
        status: &mut StatusReport,
    ) {
        if self.tls.is_empty() {
            return;
        }
        let origins = clusters
            .iter()
            .map(|(k, c)| (k.clone(), c.origin.clone()))
            .collect();
        self.tls.report(&origins, config, status);
    }

    /// The keys of the clusters resolved since the last call.
    pub fn take_used(&mut self) -> Vec<String> {
        std::mem::take(&mut self.used)
    }

    /// Builds a cluster again as its recipe says, from the store as it is now.
    pub fn rebuild(&mut self, recipe: &ClusterRecipe) {
        let port = recipe.port.as_ref().map(|p| match p {
            OwnedPort::Number(n) => PortRef::Number(*n),
            OwnedPort::Name(n) => PortRef::Name(n),
        });
        let _ = self.resolve_as(
            (&recipe.from.0, &recipe.from.1, &recipe.from.2),
            BackendRef {
                group: &recipe.group,
                kind: &recipe.kind,
                namespace: &recipe.namespace,
                name: &recipe.name,
                port,
            },
            recipe.variant.as_ref(),
        );
        self.used.clear();
    }

    /// Resolves a Service reference made by an object of (group, kind, namespace).
    pub fn resolve(
        &mut self,
        from: (&str, &str, &str),
        r: BackendRef<'_>,
    ) -> Result<String, RefError> {
        self.resolve_as(from, r, None)
    }

    /// Resolves a Service reference into a cluster spoken to as `variant` says (its own
    /// cluster: another Ingress may reach the same port differently).
    pub fn resolve_as(
        &mut self,
        from: (&str, &str, &str),
        r: BackendRef<'_>,
        variant: Option<&ClusterVariant>,
    ) -> Result<String, RefError> {
        let group = if r.group == "core" { "" } else { r.group };
        if !group.is_empty() || r.kind != "Service" {
            return Err((
                reason::INVALID_KIND,
                format!(
                    "backend {}/{} {:?} is not a Service",
                    r.group, r.kind, r.name
                ),
            ));
        }
        if r.namespace != from.2
            && !grant_allows(self.store, from, ("", "Service", r.namespace, r.name))
        {
            return Err((
                reason::REF_NOT_PERMITTED,
                format!(
                    "Service {}/{} is in another namespace and no ReferenceGrant allows it",
                    r.namespace, r.name
                ),
            ));
        }
        let Some(service) = self
            .store
            .services
            .get(&ObjectKey::new(r.namespace, r.name))
        else {
            return Err((
                reason::BACKEND_NOT_FOUND,
                format!("Service {}/{} not found", r.namespace, r.name),
            ));
        };
        let ports = service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_deref())
            .unwrap_or_default();
        let port = match r.port {
            None => {
                return Err((
                    reason::BACKEND_NOT_FOUND,
                    format!("Service {}/{}: a port is required", r.namespace, r.name),
                ));
            }
            Some(PortRef::Number(n)) => ports.iter().find(|p| p.port == n),
            Some(PortRef::Name(n)) => ports.iter().find(|p| p.name.as_deref() == Some(n)),
        };
        let Some(port) = port else {
            return Err((
                reason::BACKEND_NOT_FOUND,
                format!(
                    "Service {}/{} has no port {}",
                    r.namespace,
                    r.name,
                    match r.port {
                        Some(PortRef::Number(n)) => n.to_string(),
                        Some(PortRef::Name(n)) => format!("{n:?}"),
                        None => String::new(),
                    }
                ),
            ));
        };
        let mut key = format!("{}/{}:{}", r.namespace, r.name, port.port);
        if let Some(v) = variant {
            key = format!("{key}/{}", v.name);
        }
        if !self.clusters.contains_key(&key) {
            let mut cluster = self.cluster(&key, r.namespace, r.name, port);
            if let Some(v) = variant {
                cluster.protocol = v.protocol;
                cluster.tls = v.tls.clone();
            }
            let recipe = ClusterRecipe {
                from: (from.0.into(), from.1.into(), from.2.into()),
                group: r.group.into(),
                kind: r.kind.into(),
                namespace: r.namespace.into(),
                name: r.name.into(),
                port: r.port.map(|p| match p {
                    PortRef::Number(n) => OwnedPort::Number(n),
                    PortRef::Name(n) => OwnedPort::Name(n.into()),
                }),
                variant: variant.cloned(),
            };
            self.clusters.insert(
                key.clone(),
                BuiltCluster {
                    recipe,
                    origin: (r.namespace.into(), r.name.into(), port.name.clone()),
                    cluster,
                },
            );
        }
        self.used.push(key.clone());
        Ok(key)
    }

    /// Ready endpoints of one Service port, from its EndpointSlices.
    fn cluster(&self, key: &str, namespace: &str, service: &str, port: &ServicePort) -> Cluster {
        let mut endpoints = Vec::new();
        let mut terminating = Vec::new();
        let slices = self.store.endpoint_slices.iter().filter(|(k, s)| {
            k.namespace == namespace
                && s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("kubernetes.io/service-name"))
                    .is_some_and(|n| n == service)
        });
        for (_, slice) in slices {
            if slice.address_type == "FQDN" {
                continue;
            }
            let wanted = port.name.as_deref().unwrap_or_default();
            let Some(slice_port) = slice
                .ports
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|p| p.name.as_deref().unwrap_or_default() == wanted)
                .and_then(|p| p.port)
                .and_then(|p| u16::try_from(p).ok())
            else {
                continue;
            };
            for ep in slice.endpoints.iter().flatten() {
                let c = ep.conditions.as_ref();
                let ready = c.and_then(|c| c.ready).unwrap_or(true);
                // Terminating endpoints still finishing their work report serving.
                let serving = c.and_then(|c| c.serving).unwrap_or(ready);
                let list = match (ready, serving) {
                    (true, _) => &mut endpoints,
                    (false, true) => &mut terminating,
                    (false, false) => continue,
                };
                for a in &ep.addresses {
                    if let Ok(ip) = a.parse::<IpAddr>() {
                        list.push(SocketAddr::new(ip, slice_port));
                    }
                }
            }
        }
        // Only when no endpoint is ready do serving, terminating ones take traffic (as
        // kube-proxy does): better a pod on its way out than no answer.
        if endpoints.is_empty() {
            endpoints = terminating;
        }
        endpoints.sort();
        endpoints.dedup();
        // kubernetes.io/ws (WebSocket) and anything unknown: HTTP/1.1, where Upgrade works.
        let protocol = match port.app_protocol.as_deref() {
            Some("kubernetes.io/h2c") => UpstreamProtocol::H2c,
            _ => UpstreamProtocol::Http1,
        };
        Cluster {
            key: key.to_string(),
            protocol,
            endpoints,
            tls: self.tls.for_port(namespace, service, port.name.as_deref()),
        }
    }

    /// Checks a kubernetes.io/tls Secret and returns its certificate key ("namespace/name").
    pub fn certificate(store: &Store, namespace: &str, name: &str) -> Result<String, String> {
        certificate_material(store, namespace, name).map(|c| c.key)
    }

    /// The clusters built so far, by key (taken: the next call returns those built after).
    pub fn take_built(&mut self) -> BTreeMap<String, BuiltCluster> {
        std::mem::take(&mut self.clusters)
    }
}

/// (Service, namespace) of a cluster DNS name: `svc.ns`, `svc.ns.svc` or
/// `svc.ns.svc.cluster.local`.
pub fn service_host(host: &str) -> Option<(&str, &str)> {
    let labels: Vec<&str> = host.split('.').collect();
    match labels.as_slice() {
        [svc, ns] | [svc, ns, "svc"] | [svc, ns, "svc", "cluster", "local"] => Some((svc, ns)),
        _ => None,
    }
}
