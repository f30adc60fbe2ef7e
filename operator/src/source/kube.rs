//! The Kubernetes source: one kube-runtime reflector per kind, filling the same `Store`
//! translation reads in standalone mode. Any change to any watched object wakes the
//! operator loop; bursts fold into one recompute.

use crate::gwapi::gatewayclasses::GatewayClass;
use crate::gwapi::gateways::Gateway;
use crate::gwapi::httproutes::HttpRoute;
use crate::gwapi::referencegrants::ReferenceGrant;
use crate::store::{Object, Store};
use futures::StreamExt;
use gatehouse_api::{GatewayParameters, IngressClassParameters};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::reflector::{self, Store as Reader};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;
use tokio::sync::Notify;

/// Readers of every watched kind.
#[derive(Clone)]
pub struct KubeSource {
    changed: Arc<Notify>,
    gateway_classes: Reader<GatewayClass>,
    gateways: Reader<Gateway>,
    http_routes: Reader<HttpRoute>,
    reference_grants: Reader<ReferenceGrant>,
    ingresses: Reader<Ingress>,
    ingress_classes: Reader<IngressClass>,
    services: Reader<Service>,
    endpoint_slices: Reader<EndpointSlice>,
    secrets: Reader<Secret>,
    config_maps: Reader<ConfigMap>,
    namespaces: Reader<Namespace>,
    gateway_parameters: Reader<GatewayParameters>,
    ingress_class_parameters: Reader<IngressClassParameters>,
}

/// Starts a reflector for one kind; every event pokes `changed`.
fn reflect<K>(client: &Client, changed: &Arc<Notify>) -> Reader<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let api: Api<K> = Api::all(client.clone());
    let (reader, writer) = reflector::store();
    let stream =
        reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    let changed = changed.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => changed.notify_one(),
                // The backoff retries; a missing CRD or permission shows up here.
                Err(e) => {
                    tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying")
                }
            }
        }
    });
    reader
}

impl KubeSource {
    pub fn start(client: &Client) -> KubeSource {
        let changed = Arc::new(Notify::new());
        KubeSource {
            gateway_classes: reflect(client, &changed),
            gateways: reflect(client, &changed),
            http_routes: reflect(client, &changed),
            reference_grants: reflect(client, &changed),
            ingresses: reflect(client, &changed),
            ingress_classes: reflect(client, &changed),
            services: reflect(client, &changed),
            endpoint_slices: reflect(client, &changed),
            secrets: reflect(client, &changed),
            config_maps: reflect(client, &changed),
            namespaces: reflect(client, &changed),
            gateway_parameters: reflect(client, &changed),
            ingress_class_parameters: reflect(client, &changed),
            changed,
        }
    }

    /// Waits until every reflector has listed once, so the first translation sees the
    /// whole cluster and never publishes a config with half the routes missing.
    pub async fn ready(&self) {
        let _ = self.gateway_classes.wait_until_ready().await;
        let _ = self.gateways.wait_until_ready().await;
        let _ = self.http_routes.wait_until_ready().await;
        let _ = self.reference_grants.wait_until_ready().await;
        let _ = self.ingresses.wait_until_ready().await;
        let _ = self.ingress_classes.wait_until_ready().await;
        let _ = self.services.wait_until_ready().await;
        let _ = self.endpoint_slices.wait_until_ready().await;
        let _ = self.secrets.wait_until_ready().await;
        let _ = self.config_maps.wait_until_ready().await;
        let _ = self.namespaces.wait_until_ready().await;
        let _ = self.gateway_parameters.wait_until_ready().await;
        let _ = self.ingress_class_parameters.wait_until_ready().await;
    }

    /// Resolves after the next change to any watched object.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// A store with the current state of every kind.
    pub fn snapshot(&self) -> Store {
        let mut store = Store::default();
        fn fill<K: Resource<DynamicType = ()> + Clone>(
            store: &mut Store,
            reader: &Reader<K>,
            wrap: fn(K) -> Object,
        ) {
            for o in reader.state() {
                store.insert(wrap((*o).clone()));
            }
        }
        fill(&mut store, &self.gateway_classes, Object::GatewayClass);
        fill(&mut store, &self.gateways, Object::Gateway);
        fill(&mut store, &self.http_routes, Object::HttpRoute);
        fill(&mut store, &self.reference_grants, Object::ReferenceGrant);
        fill(&mut store, &self.ingresses, Object::Ingress);
        fill(&mut store, &self.ingress_classes, Object::IngressClass);
        fill(&mut store, &self.services, Object::Service);
        fill(&mut store, &self.endpoint_slices, Object::EndpointSlice);
        fill(&mut store, &self.secrets, Object::Secret);
        fill(&mut store, &self.config_maps, Object::ConfigMap);
        fill(&mut store, &self.namespaces, Object::Namespace);
        fill(
            &mut store,
            &self.gateway_parameters,
            Object::GatewayParameters,
        );
        fill(
            &mut store,
            &self.ingress_class_parameters,
            Object::IngressClassParameters,
        );
        store
    }
}
