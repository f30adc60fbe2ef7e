//! The Kubernetes source: one kube-runtime reflector per kind, filling the same `Store`
//! translation reads in standalone mode. Any change to any watched object wakes the
//! operator loop; bursts fold into one recompute.

use crate::store::{Object, Store, for_each_kind};
use futures::StreamExt;
use kube::runtime::reflector::{self, Store as Reader};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;
use tokio::sync::Notify;

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

macro_rules! kube_source {
    ($($variant:ident $field:ident $ty:ty, $group:literal $kind:literal $namespaced:literal;)*) => {
        /// Readers of every watched kind.
        #[derive(Clone)]
        pub struct KubeSource {
            changed: Arc<Notify>,
            $($field: Reader<$ty>,)*
        }

        impl KubeSource {
            pub fn start(client: &Client) -> KubeSource {
                let changed = Arc::new(Notify::new());
                KubeSource {
                    $($field: reflect(client, &changed),)*
                    changed,
                }
            }

            /// Waits until every reflector has listed once, so the first translation sees
            /// the whole cluster and never publishes a config with half the routes missing.
            pub async fn ready(&self) {
                $(let _ = self.$field.wait_until_ready().await;)*
            }

            /// A store with the current state of every kind.
            pub fn snapshot(&self) -> Store {
                let mut store = Store::default();
                $(for o in self.$field.state() {
                    store.insert(Object::$variant(o));
                })*
                store
            }
        }
    };
}
for_each_kind!(kube_source);

impl KubeSource {
    /// Resolves after the next change to any watched object.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}
