//! Kubernetes mode: the Kubernetes source feeding the operator loop, leader election on a
//! coordination Lease, and the status writer.
//!
//! Every replica serves config to data planes; only the leader writes status, and only
//! what changed (conditions keep their lastTransitionTime while their status holds).

use crate::admin;
use crate::identity::Ca;
use crate::source::file::Loaded;
use crate::source::kube::KubeSource;
use crate::standalone::{Desired, Source, run};
use crate::status::{Condition, ObjectStatus, reason};
use crate::translate::{GATEWAY_GROUP, Settings};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct KubeOperatorOptions {
    pub settings: Settings,
    pub config_address: SocketAddr,
    pub admin_address: SocketAddr,
    /// Namespace of the leader-election Lease.
    pub lease_namespace: String,
    /// This replica's name in the Lease (the pod name in a cluster).
    pub identity: String,
    /// Provision a data plane Deployment and LoadBalancer Service per Gateway, with an
    /// identity from the operator's CA; the config channel then requires mutual TLS.
    /// Without it data planes are run by someone else over plain gRPC (tests run one in
    /// process).
    pub dataplanes: Option<crate::infra::DataPlaneSettings>,
}

impl Source for KubeSource {
    fn load(&mut self) -> Loaded {
        Loaded {
            store: self.snapshot(),
            errors: vec![],
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

/// Status writes made by this process, for tests and metrics.
pub static STATUS_WRITES: AtomicU64 = AtomicU64::new(0);

pub async fn run_kube(client: Client, opts: KubeOperatorOptions) -> anyhow::Result<()> {
    let grpc = tokio::net::TcpListener::bind(opts.config_address)
        .await
        .map_err(|e| anyhow::anyhow!("config server {}: {e}", opts.config_address))?;
    let admin = admin::bind(opts.admin_address).await?;
    let source = KubeSource::start(&client);
    tracing::info!("waiting for the first list of every watched kind");
    source.ready().await;

    let leader = Arc::new(AtomicBool::new(false));
    tokio::spawn(lead(
        client.clone(),
        opts.lease_namespace.clone(),
        opts.identity.clone(),
        leader.clone(),
    ));
    tokio::spawn(release_on_shutdown(
        client.clone(),
        opts.lease_namespace.clone(),
        opts.identity.clone(),
        leader.clone(),
    ));
    // Data planes we provision talk to us over mutual TLS with identities from our CA.
    let (provisioner, tls) = match opts.dataplanes.clone() {
        Some(settings) => {
            let ca = Arc::new(Ca::load_or_create(&client, &opts.lease_namespace).await?);
            let server = ca.issue_server()?;
            let tls = tonic::transport::ServerTlsConfig::new()
                .identity(tonic::transport::Identity::from_pem(
                    &server.cert_pem,
                    &server.key_pem,
                ))
                .client_ca_root(tonic::transport::Certificate::from_pem(ca.cert_pem()));
            (Some(crate::infra::Provisioner { settings, ca }), Some(tls))
        }
        None => (None, None),
    };
    let (status_tx, status_rx) = watch::channel(Arc::new(Desired::default()));
    let recorder = kube::runtime::events::Recorder::new(
        client.clone(),
        kube::runtime::events::Reporter {
            controller: "gatehouse-operator".into(),
            instance: Some(opts.identity.clone()),
        },
    );
    tokio::spawn(write_status(
        client,
        status_rx,
        leader,
        opts.settings.gateway_controller.clone(),
        provisioner,
        recorder,
    ));
    run(source, opts.settings, grpc, admin, Some(status_tx), tls).await
}

const LEASE_NAME: &str = "gatehouse-operator";
const LEASE_SECONDS: i32 = 15;

/// Holds (or waits for) the Lease; `leader` says whether this replica may write status.
async fn lead(client: Client, namespace: String, identity: String, leader: Arc<AtomicBool>) {
    let leases: Api<Lease> = Api::namespaced(client, &namespace);
    loop {
        let now = Timestamp::now();
        let held = match leases.get_opt(LEASE_NAME).await {
            Ok(None) => {
                let lease: Lease = serde_json::from_value(json!({
                    "metadata": {"name": LEASE_NAME, "namespace": namespace},
                    "spec": {
                        "holderIdentity": identity,
                        "leaseDurationSeconds": LEASE_SECONDS,
                        "acquireTime": MicroTime(now),
                        "renewTime": MicroTime(now),
                    }
                }))
                .unwrap_or_default();
                leases.create(&PostParams::default(), &lease).await.is_ok()
            }
            Ok(Some(mut lease)) => {
                let spec = lease.spec.get_or_insert_with(Default::default);
                let ours = spec.holder_identity.as_deref() == Some(identity.as_str());
                let duration = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS));
                let expired = spec
                    .renew_time
                    .as_ref()
                    .is_none_or(|t| t.0 + SignedDuration::from_secs(duration) < now);
                if ours || expired {
                    if !ours {
                        spec.acquire_time = Some(MicroTime(now));
                        spec.holder_identity = Some(identity.clone());
                        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                    }
                    spec.renew_time = Some(MicroTime(now));
                    spec.lease_duration_seconds = Some(LEASE_SECONDS);
                    // resourceVersion makes this a compare-and-swap: two candidates cannot
                    // both win.
                    leases
                        .replace(LEASE_NAME, &PostParams::default(), &lease)
                        .await
                        .is_ok()
                } else {
                    false
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the leader Lease");
                false
            }
        };
        if held != leader.swap(held, Ordering::SeqCst) {
            tracing::info!(leader = held, %identity, "leadership changed");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// On SIGTERM (a rollout, a drained node) the leader hands its Lease back, so the next
/// replica takes over within one poll instead of waiting for the Lease to expire.
async fn release_on_shutdown(
    client: Client,
    namespace: String,
    identity: String,
    leader: Arc<AtomicBool>,
) {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return;
    };
    term.recv().await;
    if leader.swap(false, Ordering::SeqCst) {
        let leases: Api<Lease> = Api::namespaced(client, &namespace);
        let patch = json!({"spec": {"holderIdentity": null, "renewTime": null}});
        match leases
            .patch(LEASE_NAME, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => tracing::info!(%identity, "released the leader Lease"),
            Err(e) => tracing::warn!(error = %e, "releasing the leader Lease"),
        }
    }
    std::process::exit(0);
}

/// Writes status whenever the report changes (and every 30 s, which also covers a fresh
/// leader), skipping objects whose status is already what it should be.
async fn write_status(
    client: Client,
    mut reports: watch::Receiver<Arc<Desired>>,
    leader: Arc<AtomicBool>,
    controller: String,
    provisioner: Option<crate::infra::Provisioner>,
    recorder: kube::runtime::events::Recorder,
) {
    let mut was_leader = false;
    // Ingress warnings already published as Events, by object: one Event per change.
    let mut published: std::collections::HashMap<String, String> = Default::default();
    // The status last made to hold for each object. Only objects whose status changed
    // since are read and patched: with ten thousand routes, a change writes one route's
    // status, not ten thousand reads. Everything is checked again when leadership is
    // taken and every five minutes (someone else may have written over it).
    let mut synced: std::collections::HashMap<String, Arc<ObjectStatus>> = Default::default();
    let mut full_pass_at = tokio::time::Instant::now();
    loop {
        tokio::select! {
            changed = reports.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(if was_leader { 30 } else { 2 })) => {}
        }
        let is_leader = leader.load(Ordering::SeqCst);
        if is_leader && (!was_leader || tokio::time::Instant::now() >= full_pass_at) {
            synced.clear();
            full_pass_at = tokio::time::Instant::now() + Duration::from_secs(300);
        }
        was_leader = is_leader;
        if !is_leader {
            continue;
        }
        let desired = reports.borrow_and_update().clone();
        if let Some(provisioner) = &provisioner {
            provisioner.reconcile(&client, &desired.dataplanes).await;
        }
        let report = &desired.status;
        // An Ingress deleted (and perhaps created again) gets its Events afresh.
        published.retain(|key, _| {
            let (ns, name) = key.split_once('/').unwrap_or_default();
            report.get("Ingress", ns, name).is_some()
        });
        synced.retain(|key, _| report.objects.contains_key(key));
        for (key, st) in &report.objects {
            // By identity: an object deleted and made again gets a status of its own (equal
            // in value, perhaps, but not yet written to the new object).
            if synced.get(key).is_some_and(|s| Arc::ptr_eq(s, st)) {
                continue;
            }
            let result = match st.kind.as_str() {
                "GatewayClass" => {
                    sync(
                        Api::<crate::gwapi::gatewayclasses::GatewayClass>::all(client.clone()),
                        st,
                        |cur| gateway_class_status(st, cur),
                    )
                    .await
                }
                "Gateway" => {
                    sync(
                        Api::<crate::gwapi::gateways::Gateway>::namespaced(
                            client.clone(),
                            &st.namespace,
                        ),
                        st,
                        |cur| gateway_status(st, cur),
                    )
                    .await
                }
                "ListenerSet" => {
                    sync(
                        Api::<crate::gwapi::listenersets::ListenerSet>::namespaced(
                            client.clone(),
                            &st.namespace,
                        ),
                        st,
                        |cur| listener_set_status(st, cur),
                    )
                    .await
                }
                "BackendTLSPolicy" => {
                    sync(
                        Api::<gateway_api::apis::standard::backendtlspolicies::BackendTlsPolicy>::namespaced(
                            client.clone(),
                            &st.namespace,
                        ),
                        st,
                        |cur| json!({ "ancestors": parents(st, cur, &controller, "ancestors", "ancestorRef") }),
                    )
                    .await
                }
                "TrafficPolicy" => {
                    sync(
                        Api::<gatehouse_api::TrafficPolicy>::namespaced(client.clone(), &st.namespace),
                        st,
                        |cur| json!({ "ancestors": parents(st, cur, &controller, "ancestors", "ancestorRef") }),
                    )
                    .await
                }
                "HTTPRoute" => {
                    sync(
                        Api::<crate::gwapi::httproutes::HttpRoute>::namespaced(
                            client.clone(),
                            &st.namespace,
                        ),
                        st,
                        |cur| route_status(st, cur, &controller),
                    )
                    .await
                }
                "Ingress" => {
                    let api = Api::<k8s_openapi::api::networking::v1::Ingress>::namespaced(
                        client.clone(),
                        &st.namespace,
                    );
                    ingress_events(&api, &recorder, st, &mut published).await;
                    sync(api, st, |_| ingress_status(st)).await
                }
                _ => Ok(()),
            };
            match result {
                Ok(()) => drop(synced.insert(key.clone(), st.clone())),
                Err(e) => {
                    tracing::warn!(kind = %st.kind, namespace = %st.namespace, name = %st.name, error = %e, "writing status")
                }
            }
        }
    }
}

/// Reads the object, computes its desired status from the current one, and patches when
/// they differ (ignoring transition times).
async fn sync<K>(
    api: Api<K>,
    st: &ObjectStatus,
    desired: impl Fn(&Value) -> Value,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    // Synthetic objects (the default Ingress Gateway) have nothing to write to.
    let Some(obj) = api.get_opt(&st.name).await? else {
        return Ok(());
    };
    let current = serde_json::to_value(&obj)
        .ok()
        .and_then(|v| v.get("status").cloned())
        .unwrap_or(Value::Null);
    let want = desired(&current);
    if without_times(&want) == without_times(&current) {
        return Ok(());
    }
    api.patch_status(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": want })),
    )
    .await?;
    STATUS_WRITES.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(kind = %st.kind, namespace = %st.namespace, name = %st.name, "status written");
    Ok(())
}

fn without_times(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| k.as_str() != "lastTransitionTime")
                .map(|(k, v)| (k.clone(), without_times(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_times).collect()),
        other => other.clone(),
    }
}

/// Conditions as the API wants them, keeping lastTransitionTime of any condition whose
/// status did not change.
///
/// `Programmed=False/Pending` only means this replica has not heard from a data plane yet
/// (a new leader, a data plane reconnecting). It is no evidence against a
/// `Programmed=True` already recorded for the same generation, which therefore stays.
fn conditions(want: &[Condition], current: &Value) -> Value {
    let now = serde_json::to_value(Time(Timestamp::now())).unwrap_or(Value::Null);
    Value::Array(
        want.iter()
            .map(|c| {
                if c.type_ == reason::PROGRAMMED && c.reason == reason::PENDING {
                    let recorded = current.as_array().and_then(|cs| {
                        cs.iter().find(|x| {
                            x["type"] == reason::PROGRAMMED
                                && x["status"] == "True"
                                && x["observedGeneration"] == c.observed_generation
                        })
                    });
                    if let Some(kept) = recorded {
                        return kept.clone();
                    }
                }
                let kept = current.as_array().and_then(|cs| {
                    cs.iter()
                        .find(|x| x["type"] == c.type_.as_str() && x["status"] == c.status.as_str())
                        .map(|x| x["lastTransitionTime"].clone())
                });
                json!({
                    "type": c.type_,
                    "status": c.status,
                    "reason": c.reason,
                    "message": c.message,
                    "observedGeneration": c.observed_generation,
                    "lastTransitionTime": kept.unwrap_or_else(|| now.clone()),
                })
            })
            .collect(),
    )
}

/// Features whose conformance tests pass here (`conformance/run GATEWAY-HTTP`, the table in
/// docs/conformance.md). The list is a claim: a feature goes in only with its tests passing.
pub const SUPPORTED_FEATURES: &[&str] = &[
    // Core.
    "Gateway",
    "HTTPRoute",
    "ReferenceGrant",
    // Gateway extended.
    "GatewayAddressEmpty",
    "GatewayFrontendClientCertificateValidation",
    "GatewayFrontendClientCertificateValidationInsecureFallback",
    "GatewayHTTPListenerIsolation",
    "GatewayHTTPSListenerDetectMisdirectedRequests",
    "GatewayInfrastructurePropagation",
    "GatewayPort8080",
    "GatewayStaticAddresses",
    "GatewayBackendClientCertificate",
    "ListenerSet",
    // BackendTLSPolicy.
    "BackendTLSPolicy",
    "BackendTLSPolicySANValidation",
    // HTTPRoute extended.
    "HTTPRoute303RedirectStatusCode",
    "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode",
    "HTTPRouteBackendProtocolH2C",
    "HTTPRouteBackendProtocolWebSocket",
    "HTTPRouteBackendRequestHeaderModification",
    "HTTPRouteBackendTimeout",
    "HTTPRouteCORS",
    "HTTPRouteDestinationPortMatching",
    "HTTPRouteHostRewrite",
    "HTTPRouteMethodMatching",
    "HTTPRouteNamedRouteRule",
    "HTTPRouteParentRefPort",
    "HTTPRoutePathRedirect",
    "HTTPRoutePathRewrite",
    "HTTPRoutePortRedirect",
    "HTTPRouteQueryParamMatching",
    "HTTPRouteRequestMirror",
    "HTTPRouteRequestMultipleMirrors",
    "HTTPRouteRequestPercentageMirror",
    "HTTPRouteRequestTimeout",
    "HTTPRouteResponseHeaderModification",
    "HTTPRouteRetry",
    "HTTPRouteRetryBackendTimeout",
    "HTTPRouteRetryConnectionError",
    "HTTPRouteSchemeRedirect",
];

fn gateway_class_status(st: &ObjectStatus, current: &Value) -> Value {
    json!({
        "conditions": conditions(&st.conditions, &current["conditions"]),
        // The spec wants them in alphabetical order.
        "supportedFeatures": SUPPORTED_FEATURES
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|f| json!({"name": f}))
            .collect::<Vec<_>>(),
    })
}

fn gateway_status(st: &ObjectStatus, current: &Value) -> Value {
    json!({
        "conditions": conditions(&st.conditions, &current["conditions"]),
        "addresses": st.addresses.iter().map(|a| json!({"type": "IPAddress", "value": a})).collect::<Vec<_>>(),
        "listeners": listeners_status(st, current),
        "attachedListenerSets": st.attached_listener_sets.unwrap_or(0),
    })
}

fn listener_set_status(st: &ObjectStatus, current: &Value) -> Value {
    json!({
        "conditions": conditions(&st.conditions, &current["conditions"]),
        "listeners": listeners_status(st, current),
    })
}

/// `status.listeners` of a Gateway or a ListenerSet.
fn listeners_status(st: &ObjectStatus, current: &Value) -> Vec<Value> {
    st.listeners
        .iter()
        .map(|l| {
            let cur = current["listeners"]
                .as_array()
                .and_then(|ls| ls.iter().find(|x| x["name"] == l.name.as_str()))
                .map(|x| x["conditions"].clone())
                .unwrap_or(Value::Null);
            json!({
                "name": l.name,
                "supportedKinds": l.supported_kinds.iter().map(|k| json!({"group": GATEWAY_GROUP, "kind": k})).collect::<Vec<_>>(),
                "attachedRoutes": l.attached_routes,
                "conditions": conditions(&l.conditions, &cur),
            })
        })
        .collect()
}

fn route_status(st: &ObjectStatus, current: &Value, controller: &str) -> Value {
    json!({ "parents": parents(st, current, controller, "parents", "parentRef") })
}

/// A route's `parents` or a policy's `ancestors`: our entries replace our previous ones;
/// other controllers' entries stay.
fn parents(
    st: &ObjectStatus,
    current: &Value,
    controller: &str,
    list: &str,
    reference: &str,
) -> Vec<Value> {
    let mut parents: Vec<Value> = current[list]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p["controllerName"] != controller)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    for p in &st.parents {
        let cur = current[list]
            .as_array()
            .and_then(|ps| {
                ps.iter().find(|x| {
                    let r = &x[reference];
                    x["controllerName"] == controller
                        && r["kind"] == p.parent_ref.kind.as_str()
                        && r["name"] == p.parent_ref.name.as_str()
                        && r["namespace"] == p.parent_ref.namespace.as_str()
                        && r["sectionName"].as_str() == p.parent_ref.section_name.as_deref()
                })
            })
            .map(|x| x["conditions"].clone())
            .unwrap_or(Value::Null);
        parents.push(json!({
            reference: p.parent_ref,
            "controllerName": controller,
            "conditions": conditions(&p.conditions, &cur),
        }));
    }
    parents
}

/// Ingresses have no conditions in the API: refused or ignored annotations are reported
/// as Warning Events on the Ingress (`kubectl describe ingress`), once per change.
async fn ingress_events(
    api: &Api<k8s_openapi::api::networking::v1::Ingress>,
    recorder: &kube::runtime::events::Recorder,
    st: &ObjectStatus,
    published: &mut std::collections::HashMap<String, String>,
) {
    use kube::runtime::events::{Event, EventType};
    let key = format!("{}/{}", st.namespace, st.name);
    let (reason, note) = match (
        st.condition(reason::ACCEPTED).filter(|c| !c.is_true()),
        st.condition(reason::ANNOTATIONS).filter(|c| !c.is_true()),
    ) {
        (Some(c), _) => ("NotServed", c.message.clone()),
        (None, Some(c)) => ("AnnotationIgnored", c.message.clone()),
        (None, None) => {
            published.remove(&key);
            return;
        }
    };
    if published.get(&key) == Some(&note) {
        return;
    }
    let Ok(Some(ingress)) = api.get_opt(&st.name).await else {
        return;
    };
    let event = Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Translate".into(),
        secondary: None,
    };
    match recorder.publish(&event, &ingress.object_ref(&())).await {
        Ok(()) => {
            published.insert(key, note);
        }
        Err(e) => tracing::warn!(ingress = %key, error = %e, "publishing an Event"),
    }
}

fn ingress_status(st: &ObjectStatus) -> Value {
    json!({
        "loadBalancer": {
            "ingress": st.addresses.iter().map(|a| json!({"ip": a})).collect::<Vec<_>>(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Object;
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
                .contains_key(&crate::store::ObjectKey::new("default", "a"))
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
