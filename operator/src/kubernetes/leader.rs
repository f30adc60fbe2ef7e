//! Leader election on the coordination Lease `gatehouse-system/gatehouse-operator`:
//! compare-and-swap on resourceVersion, 15 s lease, renewed every 2 s, handed back on
//! SIGTERM so the next replica takes over within one poll. A leader whose renewals fail
//! (the API server slow or away) leads on for at most 10 s after its last renewal; one
//! that finds another holder steps down at once.
//!
//! The leader alone serves data planes, so it alone hears their ACKs and writes status
//! from them: it labels its own pod `gatehouse.dev/config-leader: "true"`, which the
//! `gatehouse-operator` Service selects on, and the other replicas refuse subscriptions
//! (`UNAVAILABLE`). They stay warm (watching and translating), so a takeover is a Lease
//! poll, an endpoint update and one redial of each data plane, which serves on meanwhile.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// The label the leader's pod carries and the config Service selects on.
pub const LEADER_LABEL: &str = "gatehouse.dev/config-leader";

pub const LEASE_NAME: &str = "gatehouse-operator";
const LEASE_SECONDS: i32 = 15;
/// How long a leader that cannot reach the API server keeps leading: well inside the
/// Lease's 15 s, after which another replica may take it.
const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// One round's API calls (the client's own read timeout is minutes).
const ROUND_TIMEOUT: Duration = Duration::from_secs(5);

/// Holds (or waits for) the Lease; `leader` says whether this replica may write status.
pub async fn lead(
    client: Client,
    namespace: String,
    identity: String,
    leader: Arc<AtomicBool>,
    leading: watch::Sender<bool>,
) {
    let leases: Api<Lease> = Api::namespaced(client, &namespace);
    let mut renewed: Option<tokio::time::Instant> = None;
    loop {
        let round = tokio::time::timeout(ROUND_TIMEOUT, hold(&leases, &namespace, &identity))
            .await
            .unwrap_or(Round::Failed);
        let held = match round {
            Round::Held => {
                renewed = Some(tokio::time::Instant::now());
                true
            }
            Round::HeldByAnother => false,
            // An API server hiccup: still ours while the Lease we last renewed has not run
            // out by our own clock, with a margin (no other replica may take it before
            // LEASE_SECONDS); never longer, so two replicas never both lead.
            Round::Failed => {
                leader.load(Ordering::SeqCst)
                    && renewed.is_some_and(|t| t.elapsed() < RENEW_DEADLINE)
            }
        };
        if held != leader.swap(held, Ordering::SeqCst) {
            tracing::info!(leader = held, %identity, "leadership changed");
        }
        leading.send_if_modified(|l| std::mem::replace(l, held) != held);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// What one round of holding the Lease came to.
enum Round {
    /// Created or renewed by us.
    Held,
    /// Another replica holds it, unexpired (or won the race for it).
    HeldByAnother,
    /// The API server did not answer as it should (or in time): nothing is known.
    Failed,
}

/// One round: creates the Lease, renews it, or takes it over once expired.
async fn hold(leases: &Api<Lease>, namespace: &str, identity: &str) -> Round {
    let now = Timestamp::now();
    let result = match leases.get_opt(LEASE_NAME).await {
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
            leases.create(&PostParams::default(), &lease).await
        }
        Ok(Some(mut lease)) => {
            let spec = lease.spec.get_or_insert_with(Default::default);
            let ours = spec.holder_identity.as_deref() == Some(identity);
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS));
            let expired = spec
                .renew_time
                .as_ref()
                .is_none_or(|t| t.0 + SignedDuration::from_secs(duration) < now);
            if !ours && !expired {
                return Round::HeldByAnother;
            }
            if !ours {
                spec.acquire_time = Some(MicroTime(now));
                spec.holder_identity = Some(identity.to_string());
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.renew_time = Some(MicroTime(now));
            spec.lease_duration_seconds = Some(LEASE_SECONDS);
            // resourceVersion makes this a compare-and-swap: two candidates cannot both
            // win.
            leases
                .replace(LEASE_NAME, &PostParams::default(), &lease)
                .await
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading the leader Lease");
            return Round::Failed;
        }
    };
    match result {
        Ok(_) => Round::Held,
        // Someone else wrote it first (409) or created it (409 on create).
        Err(kube::Error::Api(e)) if e.code == 409 => Round::HeldByAnother,
        Err(e) => {
            tracing::warn!(error = %e, "writing the leader Lease");
            Round::Failed
        }
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

/// Keeps this replica's pod labelled as the leader while it leads (and not otherwise), so
/// the config Service sends data planes to it alone. A failed patch is tried again every
/// 2 s until the label matches.
pub async fn label_pod(
    client: Client,
    namespace: String,
    pod: String,
    mut leading: watch::Receiver<bool>,
) {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client, &namespace);
    let mut labelled: Option<bool> = None;
    loop {
        let want = *leading.borrow_and_update();
        if labelled != Some(want) {
            let value = if want { json!("true") } else { json!(null) };
            let patch = json!({"metadata": {"labels": {LEADER_LABEL: value}}});
            match pods
                .patch(&pod, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    tracing::info!(%pod, leader = want, "pod label set");
                    labelled = Some(want);
                }
                Err(e) => tracing::warn!(%pod, error = %e, "labelling the operator pod"),
            }
        }
        let retry = labelled != Some(want);
        tokio::select! {
            changed = leading.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(2)), if retry => {}
        }
    }
}
