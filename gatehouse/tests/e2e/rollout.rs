//! Rolling a Gateway's data planes under steady load fails no request: a rollout restart,
//! scaling 2 -> 4 -> 1, each through the Gateway's LoadBalancer address with kept-alive
//! and new connections (docs/install.md has the figures). What makes it hold: readiness
//! after the first version (`/readyz`), the drain on SIGTERM (`dataplane/src/lifecycle.rs`)
//! and the Deployment's surge-first strategy (`operator/src/kubernetes/provision.rs`).

use crate::kubernetes::{
    DEPLOYED_OPERATOR, apply, cond, get, programmed_address, wait_k8s, web_backend,
};
use crate::support::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Requests on a new connection each (no pooling) until `stop`: (ok, failed).
fn load_new_connections(url: String, stop: Arc<AtomicBool>) -> JoinHandle<(u64, u64)> {
    tokio::spawn(async move {
        let c = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let (mut ok, mut failed) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            match c.get(&url).header("host", "web.example.com").send().await {
                Ok(r) if r.status() == 200 => ok += 1,
                other => {
                    failed += 1;
                    eprintln!("new-connection load: {other:?}");
                }
            }
        }
        (ok, failed)
    })
}

/// The data plane Deployment has rolled out: every replica updated and ready, and no other
/// pod of it left (terminating ones included).
async fn rolled_out(deployments: &Api<Deployment>, pods: &Api<Pod>, name: &str) -> bool {
    let Ok(d) = deployments.get(name).await else {
        return false;
    };
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(st) = d.status.as_ref() else {
        return false;
    };
    let current = st.observed_generation == d.metadata.generation
        && st.updated_replicas == Some(want)
        && st.ready_replicas == Some(want)
        && st.replicas == Some(want);
    let pods_now = pods
        .list(&ListParams::default().labels("gateway.networking.k8s.io/gateway-name=gw"))
        .await
        .map_or(usize::MAX, |l| l.items.len());
    current && pods_now == want as usize
}

#[tokio::test]
async fn data_plane_rollouts_and_scaling_fail_no_request() {
    let _shared = DEPLOYED_OPERATOR.read().await;
    let client = gatehouse_testbed::client()
        .await
        .expect("testbed API server");
    let ns = gatehouse_testbed::unique_namespace("rollout");
    let parameters = |replicas: i32| {
        json!({
            "apiVersion": "gatehouse.dev/v1alpha1", "kind": "GatewayParameters",
            "metadata": {"name": "rolled", "namespace": ns},
            "spec": {
                "replicas": replicas,
                "shutdown": {"drainDelaySeconds": 5, "drainTimeoutSeconds": 20},
                // Scheduling and metadata a platform team sets, which must not get in the
                // way of a rollout.
                "pod": {
                    "labels": {"cost-center": "42"},
                    "annotations": {"example.com/scraped": "true"},
                    "tolerations": [{"key": "edge", "operator": "Exists", "effect": "NoSchedule"}],
                    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"gateway.networking.k8s.io/gateway-name": "gw"}}}],
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 50, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"gateway.networking.k8s.io/gateway-name": "gw"}}}}]}},
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "priorityClassName": "gatehouse-test-edge",
                    "securityContext": {"runAsNonRoot": true, "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
                },
                "podDisruptionBudget": {"maxUnavailable": 1},
                "service": {
                    "annotations": {"example.com/lb": "internal"},
                    "externalTrafficPolicy": "Cluster",
                    "loadBalancerSourceRanges": ["0.0.0.0/0"],
                    "nodePorts": [{"port": 80, "nodePort": 31876}]
                }
            }
        })
    };
    apply(
        &client,
        &[
            // The priority class the data planes ask for (admission refuses a pod naming
            // one that does not exist).
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "gatehouse-test-edge"}, "value": 1000}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                "metadata": {"name": "web", "namespace": ns},
                "spec": {
                    "parentRefs": [{"name": "gw"}],
                    "rules": [{"backendRefs": [{"name": "web", "port": 8080}]}]
                }
            }),
            parameters(2),
            json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "gw", "namespace": ns},
                "spec": {
                    "gatewayClassName": "gatehouse",
                    "infrastructure": {"parametersRef": {"group": "gatehouse.dev", "kind": "GatewayParameters", "name": "rolled"}},
                    "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]
                }
            }),
        ],
    )
    .await;
    apply(&client, &web_backend(&ns)).await;
    let address = programmed_address(&client, &ns, "gw").await;

    // The provisioned pods: probes, drain flags and a grace period that covers the drain.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let d = deployments
        .get("gatehouse-gw")
        .await
        .expect("data plane Deployment");
    let template = serde_json::to_value(&d).unwrap_or_default()["spec"]["template"].clone();
    let container = &template["spec"]["containers"][0];
    assert_eq!(template["spec"]["terminationGracePeriodSeconds"], 30);
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    let args: Vec<&str> = container["args"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let flag = |name: &str| {
        args.iter()
            .position(|a| *a == name)
            .and_then(|i| args.get(i + 1).copied())
    };
    assert_eq!(flag("--drain-delay-seconds"), Some("5"), "{args:?}");
    assert_eq!(flag("--drain-timeout-seconds"), Some("20"), "{args:?}");
    assert_eq!(flag("--health-address"), Some("0.0.0.0:9902"), "{args:?}");
    assert_eq!(template["metadata"]["labels"]["cost-center"], "42");
    assert_eq!(
        template["metadata"]["annotations"]["example.com/scraped"],
        "true"
    );
    assert_eq!(template["spec"]["tolerations"][0]["key"], "edge");
    assert_eq!(
        template["spec"]["topologySpreadConstraints"][0]["whenUnsatisfiable"],
        "ScheduleAnyway"
    );
    assert!(template["spec"]["affinity"]["podAntiAffinity"].is_object());
    assert_eq!(
        template["spec"]["nodeSelector"]["kubernetes.io/os"],
        "linux"
    );
    assert_eq!(template["spec"]["priorityClassName"], "gatehouse-test-edge");
    assert_eq!(
        container["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), &ns);
    let service = serde_json::to_value(services.get("gatehouse-gw").await.expect("Service"))
        .unwrap_or_default();
    assert_eq!(
        service["metadata"]["annotations"]["example.com/lb"],
        "internal"
    );
    assert_eq!(service["spec"]["externalTrafficPolicy"], "Cluster");
    assert_eq!(service["spec"]["loadBalancerSourceRanges"][0], "0.0.0.0/0");
    assert_eq!(service["spec"]["ports"][0]["nodePort"], 31876);
    let budgets: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
        Api::namespaced(client.clone(), &ns);
    assert!(
        budgets
            .get_opt("gatehouse-gw")
            .await
            .ok()
            .flatten()
            .is_some(),
        "the PDB"
    );

    let url = format!("http://{address}/");
    wait_k8s("both data planes ready", || {
        rolled_out(&deployments, &pods, "gatehouse-gw")
    })
    .await
    .expect("2 data planes");
    wait_k8s("the backend answers", || async {
        pod(&url, "web.example.com").await.starts_with("web-")
    })
    .await
    .expect("traffic");

    let stop = Arc::new(AtomicBool::new(false));
    let mut loads: Vec<_> = (0..3)
        .map(|_| load(url.clone(), "web.example.com", stop.clone()))
        .collect();
    loads.push(load_new_connections(url.clone(), stop.clone()));
    let started = Instant::now();

    // A rollout restart (what `kubectl rollout restart` writes).
    let restarted_at = format!("{:?}", std::time::SystemTime::now());
    deployments
        .patch(
            "gatehouse-gw",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"metadata": {"annotations": {
                "kubectl.kubernetes.io/restartedAt": restarted_at
            }}}}})),
        )
        .await
        .expect("restart");
    let wait_rolled = |what: &'static str| {
        let (deployments, pods) = (deployments.clone(), pods.clone());
        async move {
            wait_up_to(what, Duration::from_secs(120), || {
                rolled_out(&deployments, &pods, "gatehouse-gw")
            })
            .await
            .expect(what)
        }
    };
    // (`rolled_out` waits for the controller to observe the new generation first.)
    let restart = wait_rolled("rollout restart").await;
    // Scaled through the parameters, as a platform team does: 2 -> 4 -> 1.
    apply(&client, &[parameters(4)]).await;
    wait_k8s("4 wanted", || async {
        deployments
            .get("gatehouse-gw")
            .await
            .is_ok_and(|d| d.spec.and_then(|s| s.replicas) == Some(4))
    })
    .await
    .expect("scaled up");
    let up = wait_rolled("scale to 4").await;
    apply(&client, &[parameters(1)]).await;
    wait_k8s("1 wanted", || async {
        deployments
            .get("gatehouse-gw")
            .await
            .is_ok_and(|d| d.spec.and_then(|s| s.replicas) == Some(1))
    })
    .await
    .expect("scaled down");
    let down = wait_rolled("scale to 1").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ok, failed) = stop_load(&stop, loads).await;
    eprintln!(
        "data plane rollout restart ({restart:?}), 2 -> 4 ({up:?}) -> 1 ({down:?}) under load \
         for {:?}: {ok} ok, {failed} failed",
        started.elapsed()
    );
    assert_eq!(failed, 0, "requests failed during rollouts");
    assert!(ok > 100, "{ok} requests");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
}

/// Two operator replicas (the chart's default): the leader's pod is killed while traffic
/// flows and a route is added at once. The standby takes the Lease, the Service sends the
/// data planes to it, and the new route is served and its status written within 15 s of
/// the new leader; no request fails.
#[tokio::test]
async fn the_standby_operator_takes_over_when_the_leader_dies() {
    let _alone = DEPLOYED_OPERATOR.write().await;
    let client = gatehouse_testbed::client()
        .await
        .expect("testbed API server");
    let ns = gatehouse_testbed::unique_namespace("failover");
    let route = |name: &str, host: &str| {
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "parentRefs": [{"name": "gw"}],
                "hostnames": [host],
                "rules": [{"backendRefs": [{"name": "web", "port": 8080}]}]
            }
        })
    };
    apply(
        &client,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            route("before", "before.example.com"),
            json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "gw", "namespace": ns},
                "spec": {
                    "gatewayClassName": "gatehouse",
                    "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]
                }
            }),
        ],
    )
    .await;
    apply(&client, &web_backend(&ns)).await;
    let g = "gateway.networking.k8s.io";
    let address = programmed_address(&client, &ns, "gw").await;
    let url = format!("http://{address}/");
    wait_k8s("the backend answers", || async {
        pod(&url, "before.example.com").await.starts_with("web-")
    })
    .await
    .expect("traffic");

    let operators: Api<Pod> = Api::namespaced(client.clone(), "gatehouse-system");
    let operator_pods = || async {
        operators
            .list(&ListParams::default().labels("app.kubernetes.io/name=gatehouse-operator"))
            .await
            .map(|l| l.items)
            .unwrap_or_default()
    };
    assert!(
        operator_pods().await.len() >= 2,
        "the chart's default is two operator replicas"
    );
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), "gatehouse-system");
    let holder = || async {
        leases
            .get("gatehouse-operator")
            .await
            .ok()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .unwrap_or_default()
    };
    let leader = holder().await;
    assert!(!leader.is_empty(), "a leader holds the Lease");

    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = (0..2)
        .map(|_| load(url.clone(), "before.example.com", stop.clone()))
        .collect();
    // The leader dies without handing the Lease back (grace 0: SIGKILL), and a route is
    // added while no replica leads.
    operators
        .delete(
            &leader,
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .expect("kill the leader");
    let killed = Instant::now();
    apply(&client, &[route("during", "during.example.com")]).await;
    wait_up_to("a new leader", Duration::from_secs(60), || async {
        let h = holder().await;
        !h.is_empty() && h != leader
    })
    .await
    .expect("a new leader");
    let new_leader = Instant::now();
    let served = wait_up_to("the new route served", Duration::from_secs(30), || async {
        pod(&url, "during.example.com").await.starts_with("web-")
    })
    .await;
    let status = wait_up_to(
        "the new route's status",
        Duration::from_secs(30),
        || async {
            let r = get(&client, g, "HTTPRoute", "httproutes", Some(&ns), "during").await;
            cond(&r["status"]["parents"][0]["conditions"], "Accepted")
                .is_some_and(|c| c["status"] == "True")
        },
    )
    .await
    .map(|_| new_leader.elapsed());
    let (ok, failed) = stop_load(&stop, loads).await;
    eprintln!(
        "operator leader killed under load: new leader after {:?}; the route added meanwhile served {served:?} and its status written {status:?} after the new leader; {ok} ok, {failed} failed",
        new_leader - killed
    );
    let limit = Duration::from_secs(15);
    assert!(
        served.is_ok_and(|d| d <= limit),
        "route not served within 15 s of the new leader"
    );
    assert!(
        status.is_ok_and(|d| d <= limit),
        "status not written within 15 s of the new leader"
    );
    assert_eq!(failed, 0, "requests failed during the failover");
    assert!(ok > 100, "{ok} requests");
    // The standby's replacement comes up, and the chart's two replicas are back.
    wait_up_to(
        "two operator replicas again",
        Duration::from_secs(60),
        || async { operator_pods().await.len() >= 2 },
    )
    .await
    .expect("replicas back");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
}

/// `helm upgrade` with a changed value (the image tag, as an upgrade to a new release
/// sets it) rolls the operator and then every data plane to the new image, under load with
/// no failed request; upgraded back, they roll back.
#[tokio::test]
async fn helm_upgrade_rolls_the_operator_and_the_data_planes() {
    let _alone = DEPLOYED_OPERATOR.write().await;
    let client = gatehouse_testbed::client()
        .await
        .expect("testbed API server");
    let ns = gatehouse_testbed::unique_namespace("upgrade");
    apply(
        &client,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                "metadata": {"name": "web", "namespace": ns},
                "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "web", "port": 8080}]}]}
            }),
            json!({
                "apiVersion": "gatehouse.dev/v1alpha1", "kind": "GatewayParameters",
                "metadata": {"name": "two", "namespace": ns},
                "spec": {"replicas": 2}
            }),
            json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "gw", "namespace": ns},
                "spec": {
                    "gatewayClassName": "gatehouse",
                    "infrastructure": {"parametersRef": {"group": "gatehouse.dev", "kind": "GatewayParameters", "name": "two"}},
                    "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]
                }
            }),
        ],
    )
    .await;
    apply(&client, &web_backend(&ns)).await;
    let address = programmed_address(&client, &ns, "gw").await;
    let url = format!("http://{address}/");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    wait_k8s("two data planes", || {
        rolled_out(&deployments, &pods, "gatehouse-gw")
    })
    .await
    .expect("data planes");
    wait_k8s("the backend answers", || async {
        pod(&url, "any.example.com").await.starts_with("web-")
    })
    .await
    .expect("traffic");

    let operators: Api<Deployment> = Api::namespaced(client.clone(), "gatehouse-system");
    let operator_pods: Api<Pod> = Api::namespaced(client.clone(), "gatehouse-system");
    let image_of = |d: &Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.containers.first())
            .and_then(|c| c.image.clone())
            .unwrap_or_default()
    };
    // Both rolled to `tag`: the operator's pods run it, and so does the data plane.
    let rolled_to = |tag: String| {
        let (operators, operator_pods, deployments, pods) = (
            operators.clone(),
            operator_pods.clone(),
            deployments.clone(),
            pods.clone(),
        );
        async move {
            let operator_done = operators.get("gatehouse-operator").await.is_ok_and(|d| {
                let st = d.status.clone().unwrap_or_default();
                image_of(&d).ends_with(&tag)
                    && st.observed_generation == d.metadata.generation
                    && st.updated_replicas == st.replicas
                    && st.ready_replicas == st.replicas
            });
            let operator_pods_done = operator_pods
                .list(&ListParams::default().labels("app.kubernetes.io/name=gatehouse-operator"))
                .await
                .is_ok_and(|l| {
                    l.items.iter().all(|p| {
                        p.spec
                            .as_ref()
                            .and_then(|s| s.containers.first())
                            .and_then(|c| c.image.as_deref())
                            .is_some_and(|i| i.ends_with(&tag))
                    })
                });
            let dataplane_image = deployments
                .get("gatehouse-gw")
                .await
                .map(|d| image_of(&d))
                .unwrap_or_default();
            operator_done
                && operator_pods_done
                && dataplane_image.ends_with(&tag)
                && rolled_out(&deployments, &pods, "gatehouse-gw").await
        }
    };
    let chart = crate::chart::repo().join("charts/gatehouse");
    let chart = chart.to_str().expect("a UTF-8 path");
    let helm_upgrade = |values: &[&str]| {
        let mut args = vec!["upgrade", "gatehouse", chart];
        args.extend(["--namespace", "gatehouse-system", "--skip-crds"]);
        args.extend(values);
        crate::chart::helm_on_testbed(&args);
    };

    let stop = Arc::new(AtomicBool::new(false));
    let mut loads: Vec<_> = (0..2)
        .map(|_| load(url.clone(), "any.example.com", stop.clone()))
        .collect();
    loads.push(load_new_connections(url.clone(), stop.clone()));
    let started = Instant::now();
    helm_upgrade(&["--reuse-values", "--set", "image.tag=v0.0.0-upgraded"]);
    let up = wait_up_to("rolled to the new tag", Duration::from_secs(180), || {
        rolled_to("v0.0.0-upgraded".to_string())
    })
    .await;
    let upgraded_after = started.elapsed();
    // Back to the chart's defaults (what every other test expects).
    helm_upgrade(&["--reset-values"]);
    let default_tag = format!(":v{}", env!("CARGO_PKG_VERSION"));
    let back = wait_up_to("rolled back", Duration::from_secs(180), || {
        rolled_to(default_tag.clone())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ok, failed) = stop_load(&stop, loads).await;
    eprintln!(
        "helm upgrade (image tag) rolled the operator and 2 data planes in {upgraded_after:?}, and back in {:?}, under load: {ok} ok, {failed} failed",
        started.elapsed() - upgraded_after
    );
    up.expect("helm upgrade rolled the operator and the data planes");
    back.expect("helm upgrade back rolled them back");
    assert_eq!(failed, 0, "requests failed during the upgrade");
    assert!(ok > 100, "{ok} requests");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
}
