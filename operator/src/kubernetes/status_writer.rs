//! The status writer: the leader writes each object's status when it changed since it last
//! made it hold, compares with what the API server has (ignoring lastTransitionTime, kept
//! while a condition's status holds) and patches only what differs. Ingress problems go out
//! as Warning Events.

use super::provision::Provisioner;
use crate::control_loop::Desired;
use gatehouse_translate::GATEWAY_GROUP;
use gatehouse_translate::gwapi;
use gatehouse_translate::status::{Condition, ObjectStatus, reason};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;

pub use crate::metrics::STATUS_WRITES;

/// Writes status whenever the report changes (and every 30 s, which also covers a fresh
/// leader), skipping objects whose status is already what it should be.
pub async fn write_status(
    client: Client,
    mut reports: watch::Receiver<Arc<Desired>>,
    leader: Arc<AtomicBool>,
    controller: String,
    provisioner: Option<Provisioner>,
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
                        Api::<gwapi::gatewayclasses::GatewayClass>::all(client.clone()),
                        st,
                        |cur| gateway_class_status(st, cur),
                    )
                    .await
                }
                "Gateway" => {
                    sync(
                        Api::<gwapi::gateways::Gateway>::namespaced(
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
                        Api::<gwapi::listenersets::ListenerSet>::namespaced(
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
                        Api::<gwapi::httproutes::HttpRoute>::namespaced(
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
        "addresses": st.addresses.iter().map(|a| gateway_address(a)).collect::<Vec<_>>(),
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
            "ingress": st.addresses.iter().map(|a| ingress_address(a)).collect::<Vec<_>>(),
        }
    })
}

/// A load balancer gives an IP address, or a hostname (AWS's NLB and ELB do): each is
/// published as what it is, so external-dns writes an A record for one and a CNAME for the
/// other.
fn is_ip(address: &str) -> bool {
    address.parse::<std::net::IpAddr>().is_ok()
}

fn gateway_address(address: &str) -> Value {
    let kind = if is_ip(address) {
        "IPAddress"
    } else {
        "Hostname"
    };
    json!({"type": kind, "value": address})
}

fn ingress_address(address: &str) -> Value {
    if is_ip(address) {
        json!({"ip": address})
    } else {
        json!({"hostname": address})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_balancer_hostnames_are_published_as_hostnames() {
        assert_eq!(
            gateway_address("198.18.0.10"),
            json!({"type": "IPAddress", "value": "198.18.0.10"})
        );
        assert_eq!(
            gateway_address("2001:db8::1"),
            json!({"type": "IPAddress", "value": "2001:db8::1"})
        );
        assert_eq!(
            gateway_address("a1b2.elb.us-east-1.amazonaws.com"),
            json!({"type": "Hostname", "value": "a1b2.elb.us-east-1.amazonaws.com"})
        );
        assert_eq!(ingress_address("198.18.0.10"), json!({"ip": "198.18.0.10"}));
        assert_eq!(
            ingress_address("lb.example.com"),
            json!({"hostname": "lb.example.com"})
        );
    }
}
