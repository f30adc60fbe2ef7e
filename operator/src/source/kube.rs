//! The Kubernetes source: one watch per kind, filling the same `Store` translation reads in
//! standalone mode.
//!
//! Watch events queue up and are applied to one kept store when the operator loop loads
//! it, so a change costs what it touches: an unchanged object keeps its identity (and
//! translation skips it), and ten thousand routes are not copied into a new store on every
//! event. A relist (a watch that had to start over) replaces its kind's objects at once,
//! when the list is complete.
//!
//! A kind that cannot be watched (its CRD is not installed: a cluster with the standard
//! channel only lacks ListenerSet and TLSRoute; or listing it is forbidden) does not hold
//! back start-up: it counts as listed and empty, is logged once, and is reported (the
//! source's errors, shown on `/status` and in each GatewayClass's Accepted message) until
//! its watch succeeds, which the watch's backoff keeps trying.

use super::{Loaded, Source};
use futures::StreamExt;
use gatehouse_translate::for_each_kind;
use gatehouse_translate::store::{Object, ObjectKey, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};

/// Kinds that cannot be watched now, with why.
pub type Unwatched = Arc<std::sync::Mutex<BTreeMap<&'static str, String>>>;

/// Why a watch error means the kind cannot be watched at all (rather than a passing
/// failure): its API is not served (404: no CRD) or listing it is forbidden (403).
fn unwatchable(e: &watcher::Error) -> Option<&'static str> {
    let (watcher::Error::InitialListFailed(kube::Error::Api(status))
    | watcher::Error::WatchStartFailed(kube::Error::Api(status))
    | watcher::Error::WatchFailed(kube::Error::Api(status))) = e
    else {
        return None;
    };
    match status.code {
        404 => Some("its CustomResourceDefinition is not installed"),
        403 => Some("the operator may not list it (RBAC)"),
        _ => None,
    }
}

/// What a watch saw, for one kind.
enum Change {
    Apply(Object),
    Delete(&'static str, ObjectKey),
    /// A relist began: objects until `Listed` replace the kind's.
    Relist(&'static str),
    Listed(&'static str),
}

/// Starts the watch of one kind; its events go to `changes`, and `listed` turns true
/// after its first complete list.
fn watch_kind<K>(
    client: &Client,
    kind: &'static str,
    wrap: fn(Arc<K>) -> Object,
    changes: mpsc::UnboundedSender<Change>,
    changed: Arc<Notify>,
    unwatched: Unwatched,
) -> watch::Receiver<bool>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let api: Api<K> = Api::all(client.clone());
    let (listed_tx, listed) = watch::channel(false);
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut ever_listed = false;
        while let Some(event) = stream.next().await {
            let change = match event {
                Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => {
                    Change::Apply(wrap(Arc::new(o)))
                }
                Ok(watcher::Event::Delete(o)) => Change::Delete(kind, ObjectKey::of(&o)),
                // Nothing to load until the list is done (a kind that cannot be listed
                // starts one every backoff): queued, not announced.
                Ok(watcher::Event::Init) => {
                    if changes.send(Change::Relist(kind)).is_err() {
                        return;
                    }
                    continue;
                }
                Ok(watcher::Event::InitDone) => {
                    // Queued before `listed` says so: a snapshot after `ready` has it all.
                    if changes.send(Change::Listed(kind)).is_err() {
                        return;
                    }
                    let _ = listed_tx.send(true);
                    ever_listed = true;
                    if let Ok(mut u) = unwatched.lock()
                        && u.remove(kind).is_some()
                    {
                        tracing::info!(%kind, "watching it now");
                    }
                    changed.notify_one();
                    continue;
                }
                // The backoff retries (up to every 30 s); a kind that could never be
                // listed is logged once and counts as listed (and empty) meanwhile. One
                // listed before keeps its objects as last listed while its watch retries.
                Err(e) => {
                    match unwatchable(&e).filter(|_| !ever_listed) {
                        Some(why) => {
                            let first = unwatched
                                .lock()
                                .map(|mut u| u.insert(kind, why.to_string()).is_none())
                                .unwrap_or(false);
                            if first {
                                tracing::warn!(%kind, error = %e, "not watched: {why}; its objects are not served");
                                let _ = listed_tx.send(true);
                                changed.notify_one();
                            }
                        }
                        None => tracing::warn!(%kind, error = %e, "watch failed; retrying"),
                    }
                    continue;
                }
            };
            if changes.send(change).is_err() {
                return; // The source is gone.
            }
            changed.notify_one();
        }
    });
    listed
}

/// The watches of every kind the store holds.
pub struct KubeSource {
    changed: Arc<Notify>,
    changes: mpsc::UnboundedReceiver<Change>,
    listed: Vec<watch::Receiver<bool>>,
    store: Arc<Store>,
    /// Kinds being relisted, with the objects listed so far.
    relisting: BTreeMap<&'static str, Vec<Object>>,
    unwatched: Unwatched,
}

macro_rules! kube_source {
    ($($variant:ident $field:ident $ty:ty, $group:literal $kind:literal $namespaced:literal;)*) => {
        impl KubeSource {
            pub fn start(client: &Client) -> KubeSource {
                let changed = Arc::new(Notify::new());
                let (tx, changes) = mpsc::unbounded_channel();
                let unwatched = Unwatched::default();
                let listed = vec![
                    $(watch_kind::<$ty>(client, $kind, Object::$variant, tx.clone(), changed.clone(), unwatched.clone()),)*
                ];
                let mut source = KubeSource::fed_by(changed, changes, listed);
                source.unwatched = unwatched;
                source
            }
        }

        /// Replaces the objects of one kind with `objects` (a relist).
        fn replace_kind(store: &mut Store, kind: &str, objects: Vec<Object>) {
            match kind {
                $($kind => store.$field.clear(),)*
                _ => {}
            }
            for o in objects {
                store.insert(o);
            }
        }
    };
}
for_each_kind!(kube_source);

impl KubeSource {
    /// An empty store fed by `changes`, each announced on `changed`.
    fn fed_by(
        changed: Arc<Notify>,
        changes: mpsc::UnboundedReceiver<Change>,
        listed: Vec<watch::Receiver<bool>>,
    ) -> KubeSource {
        KubeSource {
            changed,
            changes,
            listed,
            store: Arc::default(),
            relisting: BTreeMap::new(),
            unwatched: Unwatched::default(),
        }
    }

    /// The kinds that cannot be watched now, with why.
    pub fn unwatched(&self) -> BTreeMap<&'static str, String> {
        self.unwatched.lock().map(|u| u.clone()).unwrap_or_default()
    }

    /// A source with no watches, fed by the function returned (as a watch would feed it).
    #[cfg(test)]
    pub(crate) fn detached() -> (KubeSource, impl Fn(Object)) {
        let changed = Arc::new(Notify::new());
        let (tx, changes) = mpsc::unbounded_channel();
        let notify = changed.clone();
        let emit = move |o: Object| {
            let _ = tx.send(Change::Apply(o));
            notify.notify_one();
        };
        (KubeSource::fed_by(changed, changes, Vec::new()), emit)
    }

    /// Waits until every watch has listed once, so the first translation sees the whole
    /// cluster and never publishes a config with half the routes missing.
    pub async fn ready(&self) {
        for listed in &self.listed {
            let mut listed = listed.clone();
            let _ = listed.wait_for(|done| *done).await;
        }
    }

    /// Resolves once a change waits to be loaded by `snapshot`. Cancel-safe: changes stay
    /// queued until `snapshot` takes them, so a wait dropped midway (the operator loop
    /// selects between it and data plane reports) loses nothing; the next one sees them.
    pub async fn changed(&self) {
        if self.changes.is_empty() {
            self.changed.notified().await;
        }
    }

    /// Resolves at the next watch event (for folding a burst into one load).
    pub async fn next_event(&self) {
        self.changed.notified().await;
    }

    /// The store with every change seen so far applied. Shared until the next call; the
    /// changes are applied in place when nothing else holds the last one.
    pub fn snapshot(&mut self) -> Arc<Store> {
        let mut pending = Vec::new();
        while let Ok(change) = self.changes.try_recv() {
            pending.push(change);
        }
        if !pending.is_empty() {
            let store = Arc::make_mut(&mut self.store);
            for change in pending {
                match change {
                    Change::Relist(kind) => drop(self.relisting.insert(kind, Vec::new())),
                    Change::Listed(kind) => {
                        let objects = self.relisting.remove(kind).unwrap_or_default();
                        replace_kind(store, kind, objects);
                    }
                    Change::Apply(o) => match self.relisting.get_mut(o.kind()) {
                        Some(listing) => listing.push(o),
                        None => drop(store.insert(o)),
                    },
                    Change::Delete(kind, key) => store.remove(kind, &key),
                }
            }
        }
        self.store.clone()
    }
}

impl Source for KubeSource {
    fn load(&mut self) -> Loaded {
        let unwatched = self.unwatched();
        let errors = unwatched
            .iter()
            .map(|(kind, why)| gatehouse_translate::yaml::SourceError {
                file: std::path::PathBuf::from(format!("{kind} (Kubernetes API)")),
                line: None,
                message: format!("not watched: {why}; {kind} objects are not served"),
            })
            .collect();
        Loaded {
            store: self.snapshot(),
            errors,
            unwatched,
        }
    }

    async fn changed(&mut self) -> anyhow::Result<()> {
        KubeSource::changed(self).await;
        // Fold a burst of events (a kubectl apply of many objects) into one recompute:
        // wait while events keep coming 2 ms apart, 20 ms at most. A lone change goes on
        // after 2 ms. Dropped midway, the changes stay queued for the next call.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(20);
        while tokio::time::Instant::now() < deadline
            && tokio::time::timeout(Duration::from_millis(2), KubeSource::next_event(self))
                .await
                .is_ok()
        {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_translate::store::Object;
    use k8s_openapi::api::core::v1::Service;

    fn service(name: &str) -> Object {
        let mut s = Service::default();
        s.metadata.namespace = Some("default".into());
        s.metadata.name = Some(name.into());
        Object::Service(std::sync::Arc::new(s))
    }

    /// The operator loop selects between this wait and data plane reports, so the wait is
    /// dropped whenever a report comes first, including while it folds a burst of events.
    /// The events it had seen must still be announced: once a patched EndpointSlice went
    /// unloaded until the next unrelated change (the conformance test HTTPRouteServiceTypes
    /// saw 503 for 30 s).
    #[tokio::test]
    async fn a_change_is_announced_even_after_a_wait_dropped_midway() {
        let (mut source, emit) = KubeSource::detached();
        emit(service("a"));
        // Dropped inside the 2 ms fold, after it took the event's notification.
        let dropped = tokio::time::timeout(Duration::from_millis(1), Source::changed(&mut source));
        assert!(
            dropped.await.is_err(),
            "the fold waits 2 ms for more events"
        );
        tokio::time::timeout(Duration::from_secs(5), Source::changed(&mut source))
            .await
            .expect("a queued change was never announced")
            .expect("the source is alive");
        let loaded = Source::load(&mut source);
        assert!(
            loaded
                .store
                .services
                .contains_key(&ObjectKey::new("default", "a"))
        );
        // Loaded: nothing to announce until the next event.
        let idle = tokio::time::timeout(Duration::from_millis(50), Source::changed(&mut source));
        assert!(idle.await.is_err(), "nothing new after the load");
        emit(service("b"));
        tokio::time::timeout(Duration::from_secs(5), Source::changed(&mut source))
            .await
            .expect("the next event is announced")
            .expect("the source is alive");
    }
}
