//! Kubernetes mode against the testbed's real API server: the operator (in this process)
//! reads Gateway API objects and Ingresses through kube-runtime reflectors, a data plane
//! (in this process) serves them, backends are real pods, and status is written to the API
//! server by the elected leader, only when it changes.

use crate::support::*;
use gatehouse_operator::kubernetes::{KubeOperatorOptions, STATUS_WRITES, run_kube};
use gatehouse_translate::Settings;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The deployed operator is shared by several tests: the one that kills it runs alone, so
/// the others' timing assertions (revocation within 2 s, rotation within 2 s) never measure
/// a leader failover.
pub(crate) static DEPLOYED_OPERATOR: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Cluster operations (scheduling, kube-proxy syncs) get more room than local ones; the
/// figures the issues promise are asserted on measured times instead.
pub(crate) async fn wait_k8s<F, Fut>(what: &str, check: F) -> Result<Duration, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_up_to(what, Duration::from_secs(30), check).await
}

/// Applies objects (server-side apply), whatever their kind.
pub(crate) async fn apply(client: &kube::Client, objects: &[Value]) {
    for o in objects {
        let api_version = o["apiVersion"].as_str().expect("apiVersion");
        let kind = o["kind"].as_str().expect("kind");
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let plural = match kind {
            "Gateway" => "gateways".to_string(),
            "GatewayClass" => "gatewayclasses".to_string(),
            "HTTPRoute" => "httproutes".to_string(),
            "IngressClass" => "ingressclasses".to_string(),
            "Ingress" => "ingresses".to_string(),
            "GatewayParameters" | "IngressClassParameters" => k_lower(kind),
            k if k.ends_with("ss") => format!("{}es", k.to_ascii_lowercase()),
            k if k.ends_with("cy") => format!("{}ies", k[..k.len() - 1].to_ascii_lowercase()),
            k => format!("{}s", k.to_ascii_lowercase()),
        };
        let resource = ApiResource::from_gvk_with_plural(&gvk, &plural);
        let api: Api<DynamicObject> = match o["metadata"]["namespace"].as_str() {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let name = o["metadata"]["name"].as_str().expect("name");
        api.patch(
            name,
            &PatchParams::apply("gatehouse-test").force(),
            &Patch::Apply(o),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
    }
}

fn k_lower(kind: &str) -> String {
    kind.to_ascii_lowercase()
}

pub(crate) async fn get(
    client: &kube::Client,
    group: &str,
    kind: &str,
    plural: &str,
    ns: Option<&str>,
    name: &str,
) -> Value {
    let gvk = GroupVersionKind::gvk(group, "v1", kind);
    let resource = ApiResource::from_gvk_with_plural(&gvk, plural);
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    api.get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|o| serde_json::to_value(o).ok())
        .unwrap_or(Value::Null)
}

/// A Deployment of echo-basic pods labelled `app: <name>`.
pub(crate) fn echo_deployment(name: &str, namespace: &str, replicas: u32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "echo",
                    "image": "registry.k8s.io/gateway-api/echo-basic:v1.6.1",
                    "env": [
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}
                    ]
                }]}
            }
        }
    })
}

/// Waits until the Gateway `namespace/name` is Programmed with an address; the address.
pub(crate) async fn programmed_address(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> String {
    let g = "gateway.networking.k8s.io";
    wait_k8s("Gateway Programmed with an address", || async {
        let gw = get(client, g, "Gateway", "gateways", Some(namespace), name).await;
        cond(&gw["status"]["conditions"], "Programmed").is_some_and(|c| c["status"] == "True")
            && gw["status"]["addresses"][0]["value"].is_string()
    })
    .await
    .expect("Gateway Programmed with an address");
    let gw = get(client, g, "Gateway", "gateways", Some(namespace), name).await;
    gw["status"]["addresses"][0]["value"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The echo backend `web` (one pod) and its Service on port 8080.
pub(crate) fn web_backend(namespace: &str) -> [Value; 2] {
    [
        echo_deployment("web", namespace, 1),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 8080, "targetPort": 3000}]}
        }),
    ]
}

/// GatewayParameters `name` with `spec`, Gateway `gw` (HTTP on 80) shaped by them, and
/// HTTPRoute `web` sending it to the `web` backend (`web_backend`).
pub(crate) fn shaped_gateway_and_route(namespace: &str, name: &str, spec: Value) -> [Value; 3] {
    [
        json!({
            "apiVersion": "gatehouse.dev/v1alpha1", "kind": "GatewayParameters",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec
        }),
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": namespace},
            "spec": {
                "gatewayClassName": "gatehouse",
                "infrastructure": {"parametersRef": {"group": "gatehouse.dev", "kind": "GatewayParameters", "name": name}},
                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]
            }
        }),
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "web", "port": 8080}]}]}
        }),
    ]
}

pub(crate) fn cond<'a>(conditions: &'a Value, type_: &str) -> Option<&'a Value> {
    conditions.as_array()?.iter().find(|c| c["type"] == type_)
}

#[tokio::test]
async fn gateway_routes_ingress_and_status_against_a_real_api_server() {
    let client = gatehouse_testbed::client()
        .await
        .expect("testbed API server");
    let ns = gatehouse_testbed::unique_namespace("gh-k8s");
    let other = format!("{ns}-other");
    let controller = format!("gatehouse.dev/test-{ns}");
    let ip = next_ip();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for n in [&ns, &other] {
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": n}})).unwrap(),
            )
            .await
            .expect("namespace");
    }

    // The operator, its lease in the test namespace, with a controller name of its own.
    // A fixed port on this test's own address (a released :0 port can be taken by an
    // outgoing connection before the operator binds it).
    let config = std::net::SocketAddr::new(ip, 9901);
    let operator = tokio::spawn(run_kube(
        client.clone(),
        KubeOperatorOptions {
            settings: Settings {
                gateway_controller: controller.clone(),
                ingress_controller: format!("{controller}-ingress"),
                default_address: ip,
                ..Settings::default()
            },
            config_address: config,
            admin_address: "127.0.0.1:0".parse().unwrap(),
            lease_namespace: ns.clone(),
            identity: "test-operator".into(),
            pod_name: None,
            dataplanes: None,
        },
    ));
    let dataplane = spawn_dataplane(config);

    let class = ns.clone();
    let echo = |name: &str| echo_deployment(name, &ns, 2);
    let service = |name: &str| {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 8080, "targetPort": 3000}]}
        })
    };
    apply(&client, &[
        echo("web"), service("web"), echo("legacy"), service("legacy"),
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": class},
            "spec": {"controllerName": controller}
        }),
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": ns},
            "spec": {"gatewayClassName": class, "listeners": [{"name": "http", "protocol": "HTTP", "port": 8080}]}
        }),
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {
                "parentRefs": [{"name": "gw"}],
                "hostnames": ["web.example.com"],
                "rules": [{"backendRefs": [{"name": "web", "port": 8080}]}]
            }
        }),
        // A route from a namespace the listener does not allow (allowedRoutes: Same).
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "outsider", "namespace": other},
            "spec": {
                "parentRefs": [{"name": "gw", "namespace": ns}],
                "rules": [{"backendRefs": [{"name": "web", "namespace": ns, "port": 8080}]}]
            }
        }),
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": format!("{class}-ingress")},
            "spec": {
                "controller": format!("{controller}-ingress"),
                "parameters": {"apiGroup": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw", "namespace": ns, "scope": "Namespace"}
            }
        }),
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "legacy", "namespace": ns},
            "spec": {
                "ingressClassName": format!("{class}-ingress"),
                "rules": [{"host": "legacy.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "legacy", "port": {"name": "http"}}}}
                ]}}]
            }
        }),
    ])
    .await;

    // Status, written by the elected leader.
    let g = "gateway.networking.k8s.io";
    wait_k8s("GatewayClass Accepted", || async {
        let gc = get(&client, g, "GatewayClass", "gatewayclasses", None, &class).await;
        cond(&gc["status"]["conditions"], "Accepted").is_some_and(|c| c["status"] == "True")
    })
    .await
    .unwrap();
    if let Err(e) = wait_k8s("Gateway Programmed with its address", || async {
        let gw = get(&client, g, "Gateway", "gateways", Some(&ns), "gw").await;
        cond(&gw["status"]["conditions"], "Programmed").is_some_and(|c| {
            c["status"] == "True" && c["observedGeneration"] == gw["metadata"]["generation"]
        }) && gw["status"]["addresses"][0]["value"] == ip.to_string()
            && gw["status"]["listeners"][0]["attachedRoutes"] == 1
    })
    .await
    {
        let gw = get(&client, g, "Gateway", "gateways", Some(&ns), "gw").await;
        panic!("{e}: {}", gw["status"]);
    }
    wait_k8s("HTTPRoute status", || async {
        let r = get(&client, g, "HTTPRoute", "httproutes", Some(&ns), "web").await;
        cond(&r["status"]["parents"][0]["conditions"], "Accepted").is_some()
    })
    .await
    .unwrap();
    let route = get(&client, g, "HTTPRoute", "httproutes", Some(&ns), "web").await;
    let parent = &route["status"]["parents"][0];
    assert_eq!(parent["controllerName"], controller.as_str());
    assert_eq!(
        cond(&parent["conditions"], "Accepted").unwrap()["status"],
        "True"
    );
    assert_eq!(
        cond(&parent["conditions"], "ResolvedRefs").unwrap()["status"],
        "True"
    );
    wait_k8s("outsider refused", || async {
        let r = get(
            &client,
            g,
            "HTTPRoute",
            "httproutes",
            Some(&other),
            "outsider",
        )
        .await;
        cond(&r["status"]["parents"][0]["conditions"], "Accepted")
            .is_some_and(|c| c["status"] == "False" && c["reason"] == "NotAllowedByListeners")
    })
    .await
    .unwrap();
    wait_k8s("Ingress load balancer address", || async {
        let i = get(
            &client,
            "networking.k8s.io",
            "Ingress",
            "ingresses",
            Some(&ns),
            "legacy",
        )
        .await;
        i["status"]["loadBalancer"]["ingress"][0]["ip"] == ip.to_string()
    })
    .await
    .unwrap();

    // Traffic: the HTTPRoute and the Ingress on one Gateway, to real pods.
    let url = format!("http://{ip}:8080/k8s");
    let answers = std::sync::Mutex::new(std::collections::BTreeMap::<String, u32>::new());
    let waited = wait_k8s("web answers", || async {
        let a = pod(&url, "web.example.com").await;
        if let Ok(mut m) = answers.lock() {
            *m.entry(a.clone()).or_default() += 1;
        }
        a.starts_with("web-")
    })
    .await;
    if let Err(e) = waited {
        panic!("{e}: answers {answers:?}");
    }
    wait_k8s("legacy answers", || async {
        pod(&url, "legacy.example.com").await.starts_with("legacy-")
    })
    .await
    .unwrap();
    assert_eq!(pod(&url, "other.example.com").await, "404");

    referencegrant_revocation(&client, &url, &ns, &other).await;

    // Idle: nothing changes, so nothing is written.
    let writes = STATUS_WRITES.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        STATUS_WRITES.load(Ordering::Relaxed),
        writes,
        "status written while nothing changed"
    );

    operator.abort();
    dataplane.abort();
    for n in [&ns, &other] {
        let _ = namespaces.delete(n, &DeleteParams::default()).await;
    }
    let classes: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(g, "v1", "GatewayClass"),
            "gatewayclasses",
        ),
    );
    let _ = classes.delete(&class, &DeleteParams::default()).await;
}

/// examples/kubernetes/ on the operator deployed as a pod (`testbed install-gatehouse`):
/// the data planes are provisioned per Gateway, reached at the LoadBalancer address.
#[tokio::test]
async fn examples_kubernetes_on_the_operator_deployed_in_the_cluster() {
    let _alone = DEPLOYED_OPERATOR.write().await;
    let client = gatehouse_testbed::client()
        .await
        .expect("testbed API server");
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), "gatehouse-system");
    assert!(
        deployments
            .get_opt("gatehouse-operator")
            .await
            .ok()
            .flatten()
            .is_some(),
        "the operator is not deployed: run conformance/testbed/testbed install-gatehouse (scripts/test does)"
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/kubernetes");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut objects = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: Value =
                serde_yaml::from_value(serde_yaml::Value::deserialize(doc).unwrap()).unwrap();
            if !v.is_null() {
                objects.push(v);
            }
        }
    }
    // A namespace the Gateway's selector leaves out, with a route of its own.
    objects
        .push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "excluded"}}));
    objects.push(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "sneaky", "namespace": "excluded"},
        "spec": {
            "parentRefs": [{"name": "shared", "namespace": "infra"}],
            "hostnames": ["sneaky.example.com"],
            "rules": [{"backendRefs": [{"name": "app", "namespace": "app", "port": 8080}]}]
        }
    }));
    // An Ingress with a snippet: not served, and said so in an Event.
    objects.push(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "snippet", "namespace": "legacy", "annotations": {
            "nginx.ingress.kubernetes.io/configuration-snippet": "return 200;"}},
        "spec": {
            "ingressClassName": "gatehouse-shared",
            "rules": [{"host": "snippet.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "legacy", "port": {"name": "http"}}}}]}}]
        }
    }));
    // A previous run's namespaces may still be terminating; objects applied into them
    // would be deleted with them.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    wait_up_to(
        "the previous run's namespaces gone",
        Duration::from_secs(60),
        || async {
            let mut gone = true;
            for ns in ["app", "legacy", "excluded", "infra"] {
                gone &= namespaces
                    .get_opt(ns)
                    .await
                    .ok()
                    .flatten()
                    .is_none_or(|n| n.metadata.deletion_timestamp.is_none());
            }
            gone
        },
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    apply(&client, &objects).await;

    let g = "gateway.networking.k8s.io";
    wait_k8s("Gateway Programmed with an address", || async {
        let gw = get(&client, g, "Gateway", "gateways", Some("infra"), "shared").await;
        cond(&gw["status"]["conditions"], "Programmed").is_some_and(|c| c["status"] == "True")
            && gw["status"]["addresses"][0]["value"].is_string()
    })
    .await
    .unwrap();
    let programmed = started.elapsed();
    let gw = get(&client, g, "Gateway", "gateways", Some("infra"), "shared").await;
    let address = gw["status"]["addresses"][0]["value"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    eprintln!(
        "examples/kubernetes: Gateway Programmed with address {address} {programmed:?} after apply"
    );
    assert!(programmed < Duration::from_secs(10), "took {programmed:?}");

    let url = format!("http://{address}/");
    for (host, want) in [
        ("app.example.com", "app-"),
        ("legacy.example.com", "legacy-"),
    ] {
        if wait_k8s(host, || async { pod(&url, host).await.starts_with(want) })
            .await
            .is_err()
        {
            panic!(
                "{host} never reached {want}*: last answer {:?}",
                pod(&url, host).await
            );
        }
    }
    wait_k8s("the excluded route refused", || async {
        let r = get(
            &client,
            g,
            "HTTPRoute",
            "httproutes",
            Some("excluded"),
            "sneaky",
        )
        .await;
        cond(&r["status"]["parents"][0]["conditions"], "Accepted")
            .is_some_and(|c| c["status"] == "False" && c["reason"] == "NotAllowedByListeners")
    })
    .await
    .unwrap();
    assert_eq!(
        pod(&url, "sneaky.example.com").await,
        "404",
        "no traffic for the excluded route"
    );
    // The Ingress reports the address of the Gateway that serves it.
    wait_k8s("the Ingress's status.loadBalancer", || async {
        let i = get(
            &client,
            "networking.k8s.io",
            "Ingress",
            "ingresses",
            Some("legacy"),
            "legacy",
        )
        .await;
        i["status"]["loadBalancer"]["ingress"][0]["ip"] == address.as_str()
    })
    .await
    .unwrap();
    // The refused Ingress: a Warning Event naming the snippet, and no traffic.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "legacy");
    wait_k8s("the snippet Ingress's Event", || async {
        events.list(&Default::default()).await.is_ok_and(|l| {
            l.items.iter().any(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("snippet")
                    && e.reason.as_deref() == Some("NotServed")
                    && e.note
                        .as_deref()
                        .is_some_and(|n| n.contains("configuration-snippet"))
            })
        })
    })
    .await
    .unwrap();
    assert_eq!(pod(&url, "snippet.example.com").await, "404");
    // The data planes' objects carry the Gateway's name label.
    let dp = deployments_in(&client, "infra").await;
    assert!(dp.contains(&"gatehouse-shared".to_string()), "{dp:?}");

    // Kill the operator pod while traffic flows: the data plane keeps serving, and the new
    // leader writes no status that did not change (resourceVersions stay put).
    let watched = [
        (g, "Gateway", "gateways", Some("infra"), "shared"),
        (g, "HTTPRoute", "httproutes", Some("app"), "app"),
        (g, "HTTPRoute", "httproutes", Some("excluded"), "sneaky"),
        (
            "networking.k8s.io",
            "Ingress",
            "ingresses",
            Some("legacy"),
            "legacy",
        ),
        (g, "GatewayClass", "gatewayclasses", None, "gatehouse"),
    ];
    let versions = || async {
        let mut v = Vec::new();
        for (group, kind, plural, ns, name) in watched {
            v.push(
                get(&client, group, kind, plural, ns, name).await["metadata"]["resourceVersion"]
                    .clone(),
            );
        }
        v
    };
    let before = versions().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loads: Vec<_> = (0..2)
        .map(|_| load(url.clone(), "app.example.com", stop.clone()))
        .collect();
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(client.clone(), "gatehouse-system");
    let old: Vec<String> = pods
        .list(&kube::api::ListParams::default().labels("app.kubernetes.io/name=gatehouse-operator"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    for name in &old {
        pods.delete(
            name,
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), "gatehouse-system");
    wait_k8s("a new operator pod holding the Lease", || async {
        let holder = leases
            .get("gatehouse-operator")
            .await
            .ok()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .unwrap_or_default();
        !holder.is_empty() && !old.contains(&holder)
    })
    .await
    .unwrap();
    let idle: u64 = std::env::var("GATEHOUSE_IDLE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    tokio::time::sleep(Duration::from_secs(idle)).await;
    let after_kill = versions().await;
    // And a rollout of the operator (`kubectl rollout restart`), the load still on: the
    // data planes serve through it and reconnect to the new pod.
    let operators: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), "gatehouse-system");
    let rolled = operators
        .patch(
            "gatehouse-operator",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"metadata": {"annotations": {
                "kubectl.kubernetes.io/restartedAt": format!("{:?}", std::time::SystemTime::now())
            }}}}})),
        )
        .await
        .unwrap();
    let before_rollout: Vec<String> = pods
        .list(&kube::api::ListParams::default().labels("app.kubernetes.io/name=gatehouse-operator"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    wait_up_to("the operator rolled", Duration::from_secs(120), || async {
        let done = operators.get("gatehouse-operator").await.is_ok_and(|d| {
            let st = d.status.unwrap_or_default();
            st.observed_generation >= rolled.metadata.generation
                && st.updated_replicas == st.replicas
                && st.ready_replicas == st.replicas
        });
        let holder = leases
            .get("gatehouse-operator")
            .await
            .ok()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .unwrap_or_default();
        done && !holder.is_empty() && !before_rollout.contains(&holder)
    })
    .await
    .unwrap();
    wait_k8s(
        "the Gateway Programmed after the operator's rollout",
        || async {
            let gw = get(&client, g, "Gateway", "gateways", Some("infra"), "shared").await;
            cond(&gw["status"]["conditions"], "Programmed").is_some_and(|c| c["status"] == "True")
        },
    )
    .await
    .unwrap();
    let (ok, failed) = stop_load(&stop, loads).await;
    eprintln!(
        "operator pod killed, then the operator rolled, under load: {ok} ok, {failed} failed; {idle} s idle after the new leader"
    );
    assert_eq!(failed, 0);
    assert!(ok > 100);
    let rewritten: Vec<_> = watched
        .iter()
        .zip(before.iter().zip(&after_kill))
        .filter(|(_, (b, a))| b != a)
        .map(|((_, kind, _, ns, name), _)| format!("{kind} {}/{name}", ns.unwrap_or("")))
        .collect();
    assert!(
        rewritten.is_empty(),
        "the new leader rewrote status that had not changed: {rewritten:?}"
    );

    for ns in ["app", "legacy", "excluded", "infra"] {
        let _ = namespaces.delete(ns, &DeleteParams::default()).await;
    }
    let classes: Api<k8s_openapi::api::networking::v1::IngressClass> = Api::all(client.clone());
    let _ = classes
        .delete("gatehouse-shared", &DeleteParams::default())
        .await;
    let parameters = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gatehouse.dev", "v1alpha1", "IngressClassParameters"),
        "ingressclassparameters",
    );
    let _ = Api::<DynamicObject>::all_with(client.clone(), &parameters)
        .delete("gatehouse-shared", &DeleteParams::default())
        .await;
}

/// GatewayParameters shape a Gateway's data planes: replicas, resources and Service type,
/// followed when they change; a Gateway naming parameters that do not exist is refused
/// with InvalidParameters and gets no data planes.
#[tokio::test]
async fn gateway_parameters_shape_the_data_planes() {
    let _shared = DEPLOYED_OPERATOR.read().await;
    let client = gatehouse_testbed::client()
        .await
        .expect("testbed API server");
    let ns = gatehouse_testbed::unique_namespace("params");
    let parameters = |replicas: i32| {
        json!({
            "apiVersion": "gatehouse.dev/v1alpha1", "kind": "GatewayParameters",
            "metadata": {"name": "small", "namespace": ns},
            "spec": {
                "replicas": replicas,
                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
                "service": {"type": "ClusterIP"}
            }
        })
    };
    let gateway = |name: &str, params: &str| {
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "gatewayClassName": "gatehouse",
                "infrastructure": {"parametersRef": {"group": "gatehouse.dev", "kind": "GatewayParameters", "name": params}},
                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]
            }
        })
    };
    apply(
        &client,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            parameters(2),
            gateway("shaped", "small"),
            gateway("broken", "nowhere"),
            // A load balancer class another controller implements: the Service asks for
            // it (the testbed's load balancer then leaves it alone, as a cloud's would).
            json!({
                "apiVersion": "gatehouse.dev/v1alpha1", "kind": "GatewayParameters",
                "metadata": {"name": "other-lb", "namespace": ns},
                "spec": {"service": {"loadBalancerClass": "example.com/other-lb"}}
            }),
            gateway("classed", "other-lb"),
        ],
    )
    .await;

    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &ns);
    let replicas = || async {
        deployments
            .get_opt("gatehouse-shaped")
            .await
            .ok()
            .flatten()
            .and_then(|d| d.status)
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
    };
    wait_k8s("2 data plane pods ready", || async {
        replicas().await == 2
    })
    .await
    .unwrap();
    let d = deployments.get("gatehouse-shaped").await.unwrap();
    let container = &d.spec.unwrap().template.spec.unwrap().containers[0];
    let requests = container
        .resources
        .as_ref()
        .and_then(|r| r.requests.clone())
        .unwrap_or_default();
    assert_eq!(requests.get("cpu").map(|q| q.0.as_str()), Some("10m"));
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), &ns);
    let service = services.get("gatehouse-shaped").await.unwrap();
    let spec = service.spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    let cluster_ip = spec.cluster_ip.unwrap_or_default();
    wait_k8s("the Service of the other load balancer class", || async {
        services
            .get_opt("gatehouse-classed")
            .await
            .ok()
            .flatten()
            .is_some_and(|s| {
                s.spec.and_then(|s| s.load_balancer_class).as_deref()
                    == Some("example.com/other-lb")
            })
    })
    .await
    .unwrap();

    let g = "gateway.networking.k8s.io";
    wait_k8s("Gateway Programmed at its ClusterIP", || async {
        let gw = get(&client, g, "Gateway", "gateways", Some(&ns), "shaped").await;
        cond(&gw["status"]["conditions"], "Programmed").is_some_and(|c| c["status"] == "True")
            && gw["status"]["addresses"][0]["value"] == cluster_ip.as_str()
    })
    .await
    .unwrap();
    // The data planes answer there (no routes yet: our 404).
    let url = format!("http://{cluster_ip}/");
    wait_k8s("the data planes answer at the ClusterIP", || async {
        pod(&url, "any.example.com").await == "404"
    })
    .await
    .unwrap();

    wait_k8s("missing parameters refused", || async {
        let gw = get(&client, g, "Gateway", "gateways", Some(&ns), "broken").await;
        cond(&gw["status"]["conditions"], "Accepted")
            .is_some_and(|c| c["status"] == "False" && c["reason"] == "InvalidParameters")
    })
    .await
    .unwrap();
    assert!(
        deployments
            .get_opt("gatehouse-broken")
            .await
            .unwrap()
            .is_none(),
        "no data planes for a refused Gateway"
    );

    // A disruption budget and an autoscaler when asked for; the autoscaler then owns the
    // replica count.
    let mut scaled = parameters(2);
    scaled["spec"]["podDisruptionBudget"] = json!({"maxUnavailable": 1});
    scaled["spec"]["autoscaling"] =
        json!({"minReplicas": 2, "maxReplicas": 4, "targetCPUUtilizationPercentage": 70});
    apply(&client, &[scaled]).await;
    let budgets: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
        Api::namespaced(client.clone(), &ns);
    let autoscalers: Api<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler> =
        Api::namespaced(client.clone(), &ns);
    wait_k8s("a PDB and an autoscaler", || async {
        let pdb = budgets.get_opt("gatehouse-shaped").await.ok().flatten();
        let hpa = autoscalers.get_opt("gatehouse-shaped").await.ok().flatten();
        pdb.and_then(|p| p.spec).and_then(|s| s.max_unavailable)
            == Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
            && hpa.is_some_and(|h| h.spec.max_replicas == 4 && h.spec.min_replicas == Some(2))
    })
    .await
    .unwrap();
    // Handed over to the autoscaler, the Deployment keeps its 2 pods (the testbed runs no
    // autoscaler controller, so a count reset to 1 would stay). The Deployment was applied
    // before the autoscaler was created, in the same round.
    let kept = deployments
        .get("gatehouse-shaped")
        .await
        .ok()
        .and_then(|d| d.spec)
        .and_then(|s| s.replicas);
    assert_eq!(
        kept,
        Some(2),
        "the replica count when the autoscaler took over"
    );
    // Changing the parameters reshapes the data planes; the PDB and autoscaler go.
    apply(&client, &[parameters(1)]).await;
    wait_k8s("scaled to 1 replica", || async {
        deployments
            .get_opt("gatehouse-shaped")
            .await
            .ok()
            .flatten()
            .and_then(|d| d.spec)
            .and_then(|s| s.replicas)
            == Some(1)
    })
    .await
    .unwrap();
    wait_k8s("the PDB and the autoscaler deleted", || async {
        matches!(budgets.get_opt("gatehouse-shaped").await, Ok(None))
            && matches!(autoscalers.get_opt("gatehouse-shaped").await, Ok(None))
    })
    .await
    .unwrap();

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
}

async fn deployments_in(client: &kube::Client, ns: &str) -> Vec<String> {
    let api: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), ns);
    api.list(&kube::api::ListParams::default().labels("gateway.networking.k8s.io/gateway-name"))
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter_map(|d| d.metadata.name)
                .collect()
        })
        .unwrap_or_default()
}

/// Subscribes on the config channel and returns the first update, or the error.
async fn subscribe(
    url: &str,
    tls: Option<tonic::transport::ClientTlsConfig>,
    gateway: &str,
) -> Result<gatehouse_model::proto::ConfigUpdate, String> {
    use gatehouse_model::proto::{self, data_plane_message::Message};
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(2));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(|e| e.to_string())?;
    }
    let channel = endpoint.connect().await.map_err(|e| format!("{e:?}"))?;
    let mut client = proto::config_discovery_client::ConfigDiscoveryClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(proto::DataPlaneMessage {
        message: Some(Message::Subscribe(proto::Subscribe {
            node: "intruder".into(),
            gateways: vec![gateway.into()],
        })),
    })
    .await
    .map_err(|e| e.to_string())?;
    let mut updates = client
        .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|e| format!("{:?}: {}", e.code(), e.message()))?
        .into_inner();
    match updates.message().await {
        Ok(Some(u)) => Ok(u),
        Ok(None) => Err("stream ended".into()),
        Err(e) => Err(format!("{:?}: {}", e.code(), e.message())),
    }
}

/// The config channel of the deployed operator is mutual TLS with identities from the
/// operator's CA: no certificate, no config; a Gateway's certificate gets that Gateway's
/// config and nothing else.
#[tokio::test]
async fn config_channel_admits_only_a_gateways_own_data_planes() {
    let _shared = DEPLOYED_OPERATOR.read().await;
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let client = gatehouse_testbed::client()
        .await
        .expect("testbed API server");
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(client.clone(), "gatehouse-system");
    let operator = services
        .get("gatehouse-operator")
        .await
        .expect("the operator is deployed (testbed install-gatehouse)");
    let ip = operator
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("operator ClusterIP");
    let ns = gatehouse_testbed::unique_namespace("mtls");
    apply(
        &client,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "a", "namespace": ns},
                "spec": {
                    "gatewayClassName": "gatehouse",
                    "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]
                }
            }),
        ],
    )
    .await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
    wait_k8s("the Gateway's identity Secret", || async {
        secrets
            .get_opt("gatehouse-a-identity")
            .await
            .ok()
            .flatten()
            .is_some()
    })
    .await
    .unwrap();
    let secret = secrets.get("gatehouse-a-identity").await.unwrap();
    let data = secret.data.unwrap_or_default();
    let file = |k: &str| data.get(k).map(|b| b.0.clone()).unwrap_or_default();
    let ca = Certificate::from_pem(file("ca.crt"));
    let name = "gatehouse-operator.gatehouse-system.svc";
    let anonymous = ClientTlsConfig::new()
        .domain_name(name)
        .ca_certificate(ca.clone());
    let identified = anonymous
        .clone()
        .identity(Identity::from_pem(file("tls.crt"), file("tls.key")));
    let gateway = format!("{ns}/a");

    let plain = subscribe(&format!("http://{ip}:9901"), None, &gateway).await;
    assert!(plain.is_err(), "plain gRPC got config: {plain:?}");
    let https = format!("https://{ip}:9901");
    let no_cert = subscribe(&https, Some(anonymous), &gateway).await;
    assert!(no_cert.is_err(), "no client certificate got config");
    let other = subscribe(&https, Some(identified.clone()), &format!("{ns}/b")).await;
    assert!(
        other
            .as_ref()
            .is_err_and(|e| e.starts_with("PermissionDenied")),
        "another Gateway's config: {other:?}"
    );
    let everything = subscribe(&https, Some(identified.clone()), "").await;
    assert!(everything.is_err(), "an identity asked for all Gateways");
    let own = subscribe(&https, Some(identified), &gateway).await;
    assert!(
        own.as_ref().is_ok_and(|u| u.full),
        "its own Gateway: {own:?}"
    );

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
}

/// A backend scaled from 1 to 5 pods and back to 1 while traffic runs through a provisioned
/// data plane: new pods take traffic once ready, and pods going away cost no request
/// (terminating endpoints leave the table; a connect or a replayable request that fails on
/// one goes to another). Then a ReferenceGrant revoked on the same Gateway.
#[tokio::test]
async fn backend_scaled_under_load_then_grant_revoked_on_the_deployed_operator() {
    let _shared = DEPLOYED_OPERATOR.read().await;
    let client = gatehouse_testbed::client()
        .await
        .expect("testbed API server");
    let ns = gatehouse_testbed::unique_namespace("scale");
    let other = format!("{ns}-other");
    let mut objects = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}}),
        echo_deployment("web", &ns, 1),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 8080, "targetPort": 3000}]}
        }),
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {
                "parentRefs": [{"name": "gw"}],
                "rules": [{"backendRefs": [{"name": "web", "port": 8080}]}]
            }
        }),
    ];
    objects.push(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": ns},
        "spec": {
            "gatewayClassName": "gatehouse",
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]
        }
    }));
    apply(&client, &objects).await;
    let url = format!("http://{}/", programmed_address(&client, &ns, "gw").await);
    wait_k8s("the backend answers", || async {
        pod(&url, "web.example.com").await.starts_with("web-")
    })
    .await
    .unwrap();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loads: Vec<_> = (0..4)
        .map(|_| load(url.clone(), "web.example.com", stop.clone()))
        .collect();
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &ns);
    let scale = |n: i32| {
        let deployments = deployments.clone();
        async move {
            deployments
                .patch(
                    "web",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"replicas": n}})),
                )
                .await
                .unwrap();
        }
    };
    let pods_answering = || async {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..40 {
            seen.insert(pod(&url, "web.example.com").await);
        }
        seen.into_iter().filter(|p| p.starts_with("web-")).count()
    };
    scale(5).await;
    wait_k8s("traffic spread over 5 pods", || async {
        pods_answering().await == 5
    })
    .await
    .unwrap();
    scale(1).await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns);
    wait_k8s("4 pods gone", || async {
        pods.list(&kube::api::ListParams::default().labels("app=web"))
            .await
            .map(|l| l.items.len() == 1)
            .unwrap_or(false)
    })
    .await
    .unwrap();
    // Keep the load on a little past the last deletion.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ok, failed) = stop_load(&stop, loads).await;
    eprintln!("backend scaled 1 -> 5 -> 1 under load: {ok} ok, {failed} failed");
    assert_eq!(failed, 0);
    assert!(ok > 100, "{ok} requests");

    // Role separation on the same deployed operator: a grant revoked is refused at once.
    referencegrant_revocation(&client, &url, &ns, &other).await;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    for n in [&ns, &other] {
        let _ = namespaces.delete(n, &DeleteParams::default()).await;
    }
}

/// A TLS Secret replaced in the cluster: new handshakes get the new certificate within 2 s,
/// with no restart of anything.
#[tokio::test]
async fn rotated_tls_secret_is_served_within_two_seconds() {
    let _shared = DEPLOYED_OPERATOR.read().await;
    let client = gatehouse_testbed::client()
        .await
        .expect("testbed API server");
    let ns = gatehouse_testbed::unique_namespace("rotate");
    let secret = |ns: &str| {
        let (yaml, der) = tls_secret("site", &["site.example.com"]);
        let mut v: Value = serde_yaml::from_str(&yaml).expect("secret yaml");
        v["metadata"]["namespace"] = json!(ns);
        (v, der)
    };
    let (first, first_der) = secret(&ns);
    apply(
        &client,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            first,
            json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "tls", "namespace": ns},
                "spec": {
                    "gatewayClassName": "gatehouse",
                    "listeners": [{
                        "name": "https", "port": 443, "protocol": "HTTPS",
                        "tls": {"mode": "Terminate", "certificateRefs": [{"name": "site"}]}
                    }]
                }
            }),
        ],
    )
    .await;
    let ip: std::net::IpAddr = programmed_address(&client, &ns, "tls")
        .await
        .parse()
        .expect("an IP address");
    let addr = std::net::SocketAddr::new(ip, 443);
    wait_k8s("the first certificate served", || async {
        served_certificate(addr, Some("site.example.com")).await == first_der
    })
    .await
    .unwrap();

    let (second, second_der) = secret(&ns);
    let started = std::time::Instant::now();
    apply(&client, &[second]).await;
    wait_k8s("the rotated certificate served", || async {
        served_certificate(addr, Some("site.example.com")).await == second_der
    })
    .await
    .unwrap();
    let took = started.elapsed();
    eprintln!("TLS Secret rotated: new handshakes get the new certificate after {took:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
}

/// An HTTPRoute in `ns` on Gateway `gw` splitting traffic between Service `web` there and
/// Service `remote` in `other`, allowed by a ReferenceGrant; deleting the grant gives
/// ResolvedRefs=False RefNotPermitted within 2 s and 500 for that share only.
async fn referencegrant_revocation(client: &kube::Client, url: &str, ns: &str, other: &str) {
    let client = client.clone();
    let g = "gateway.networking.k8s.io";
    let remote = echo_deployment("remote", other, 1);
    apply(&client, &[
        remote,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "remote", "namespace": other},
            "spec": {"selector": {"app": "remote"}, "ports": [{"name": "http", "port": 8080, "targetPort": 3000}]}
        }),
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
            "metadata": {"name": "let-routes-in", "namespace": other},
            "spec": {
                "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": ns}],
                "to": [{"group": "", "kind": "Service"}]
            }
        }),
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "split", "namespace": ns},
            "spec": {
                "parentRefs": [{"name": "gw"}],
                "hostnames": ["split.example.com"],
                "rules": [{"backendRefs": [
                    {"name": "web", "port": 8080},
                    {"name": "remote", "namespace": other, "port": 8080}
                ]}]
            }
        }),
    ])
    .await;
    let answers = std::sync::Mutex::new(std::collections::BTreeMap::<String, u32>::new());
    let both = wait_k8s("both shares answer", || async {
        let mut seen = (false, false);
        for _ in 0..20 {
            let p = pod(url, "split.example.com").await;
            seen.0 |= p.starts_with("web-");
            seen.1 |= p.starts_with("remote-");
            if let Ok(mut m) = answers.lock() {
                *m.entry(p).or_default() += 1;
            }
        }
        seen == (true, true)
    })
    .await;
    if let Err(e) = both {
        panic!("{e}: answers {answers:?}");
    }
    let grants: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        other,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(g, "v1beta1", "ReferenceGrant"),
            "referencegrants",
        ),
    );
    grants
        .delete("let-routes-in", &DeleteParams::default())
        .await
        .expect("delete grant");
    let revoked = wait_k8s("RefNotPermitted after the grant went", || async {
        let r = get(&client, g, "HTTPRoute", "httproutes", Some(ns), "split").await;
        cond(&r["status"]["parents"][0]["conditions"], "ResolvedRefs")
            .is_some_and(|c| c["status"] == "False" && c["reason"] == "RefNotPermitted")
    })
    .await
    .unwrap();
    eprintln!("ReferenceGrant deleted -> RefNotPermitted in {revoked:?}");
    assert!(revoked < Duration::from_secs(2), "took {revoked:?}");
    let answers: Vec<String> =
        futures::future::join_all((0..40).map(|_| pod(url, "split.example.com"))).await;
    assert!(
        answers.iter().any(|a| a == "500"),
        "the revoked share answers 500: {answers:?}"
    );
    assert!(
        answers.iter().any(|a| a.starts_with("web-")),
        "the allowed share still answers: {answers:?}"
    );
    assert!(
        !answers.iter().any(|a| a.starts_with("remote-")),
        "no traffic crosses without the grant: {answers:?}"
    );
}
