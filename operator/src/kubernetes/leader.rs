//! Leader election on the coordination Lease `gatehouse-system/gatehouse-operator`:
//! compare-and-swap on resourceVersion, 15 s lease, renewed every 2 s, handed back on
//! SIGTERM so the next replica takes over within one poll.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const LEASE_NAME: &str = "gatehouse-operator";
const LEASE_SECONDS: i32 = 15;

/// Holds (or waits for) the Lease; `leader` says whether this replica may write status.
pub async fn lead(client: Client, namespace: String, identity: String, leader: Arc<AtomicBool>) {
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
pub async fn release_on_shutdown(
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
