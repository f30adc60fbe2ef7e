//! `helm uninstall` leaves no object of ours behind: a second install of the chart (its own
//! release, namespace, GatewayClass and controllerName) provisions a Gateway's data planes,
//! is uninstalled, and afterwards nothing of it is left, in its namespace (every listable
//! kind, found by discovery), in the Gateway's namespace or cluster-wide; the first
//! install's data planes in the same namespace stay (charts/gatehouse/templates/uninstall.yaml,
//! operator/src/kubernetes/uninstall.rs).

use crate::chart::helm_on_testbed;
use crate::kubernetes::{DEPLOYED_OPERATOR, apply, programmed_address, wait_k8s, web_backend};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use kube::discovery::{Discovery, Scope, verbs};
use serde_json::json;
use std::time::Instant;

/// Objects of every listable kind of `scope` (in `namespace` when namespaced) matching
/// `selector`, as "Kind/name", sorted.
async fn objects_of_every_kind(
    client: &kube::Client,
    discovery: &Discovery,
    scope: Scope,
    namespace: &str,
    selector: &str,
) -> Vec<String> {
    let mut found = vec![];
    for group in discovery.groups() {
        for (resource, caps) in group.recommended_resources() {
            if caps.scope != scope || !caps.supports_operation(verbs::LIST) {
                continue;
            }
            let api: Api<DynamicObject> = match scope {
                Scope::Namespaced => Api::namespaced_with(client.clone(), namespace, &resource),
                Scope::Cluster => Api::all_with(client.clone(), &resource),
            };
            let Ok(list) = api.list(&ListParams::default().labels(selector)).await else {
                continue;
            };
            found.extend(
                list.items
                    .into_iter()
                    .map(|o| format!("{}/{}", resource.kind, o.metadata.name.unwrap_or_default())),
            );
        }
    }
    found.sort();
    found
}

/// Every object in `namespace` but Events and what Kubernetes puts in each namespace itself.
async fn objects_in(client: &kube::Client, discovery: &Discovery, namespace: &str) -> Vec<String> {
    let mut found =
        objects_of_every_kind(client, discovery, Scope::Namespaced, namespace, "").await;
    found.retain(|o| {
        !o.starts_with("Event/")
            && o != "ServiceAccount/default"
            && o != "ConfigMap/kube-root-ca.crt"
    });
    found
}

/// Cluster-scoped objects labelled with the release's instance label.
async fn cluster_objects_of(
    client: &kube::Client,
    discovery: &Discovery,
    release: &str,
) -> Vec<String> {
    let selector = format!("app.kubernetes.io/instance={release}");
    objects_of_every_kind(client, discovery, Scope::Cluster, "", &selector).await
}

/// Objects in `namespace` labelled as the data planes of Gateway `gateway`.
async fn data_plane_objects(
    client: &kube::Client,
    discovery: &Discovery,
    namespace: &str,
    gateway: &str,
) -> Vec<String> {
    let selector = format!("gateway.networking.k8s.io/gateway-name={gateway}");
    objects_of_every_kind(client, discovery, Scope::Namespaced, namespace, &selector).await
}

#[tokio::test]
async fn helm_uninstall_leaves_nothing_of_ours_behind() {
    let _shared = DEPLOYED_OPERATOR.read().await;
    let client = gatehouse_testbed::client()
        .await
        .expect("testbed API server");
    let release_ns = gatehouse_testbed::unique_namespace("uninstall");
    let app_ns = gatehouse_testbed::unique_namespace("uninstall-app");
    // Cluster-scoped names (ClusterRoles, the GatewayClass) derive from the release's name:
    // unique per run.
    let release = format!("{release_ns}-gatehouse");
    let class = release_ns.clone();
    let controller = format!("gatehouse.dev/{release_ns}");
    let mut objects = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": release_ns}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": app_ns}}),
    ];
    objects.extend(web_backend(&app_ns));
    for (gateway, class) in [("gw", class.as_str()), ("first", "gatehouse")] {
        objects.push(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": gateway, "namespace": app_ns},
            "spec": {"gatewayClassName": class, "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}
        }));
    }
    objects.push(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": app_ns},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "web", "port": 8080}]}]}
    }));
    apply(&client, &objects).await;

    let chart = crate::chart::repo().join("charts/gatehouse");
    let chart = chart.to_str().expect("a UTF-8 path");
    let parameters = r#"{"podDisruptionBudget":{"minAvailable":1},"autoscaling":{"minReplicas":1,"maxReplicas":2}}"#;
    helm_on_testbed(&[
        "install",
        &release,
        chart,
        "--namespace",
        &release_ns,
        "--skip-crds",
        "--set",
        "operator.replicas=1",
        "--set",
        &format!("gatewayClass.name={class}"),
        "--set",
        &format!("gatewayClass.controllerName={controller}"),
        "--set-json",
        &format!("gatewayClass.parameters={parameters}"),
        "--set",
        "ingressClass.create=false",
        "--set",
        &format!("ingressClass.controller={controller}-ingress"),
    ]);

    // The second install serves its Gateway; the first install serves its own beside it.
    let address = programmed_address(&client, &app_ns, "gw").await;
    wait_k8s("the second install's Gateway serves", || async {
        reqwest::get(format!("http://{address}/"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await
    .expect("the second install's Gateway serves");
    programmed_address(&client, &app_ns, "first").await;
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("API discovery");
    let provisioned = data_plane_objects(&client, &discovery, &app_ns, "gw").await;
    for kind in [
        "Deployment/gatehouse-gw",
        "Service/gatehouse-gw",
        "ServiceAccount/gatehouse-gw",
        "Secret/gatehouse-gw-identity",
        "PodDisruptionBudget/gatehouse-gw",
        "HorizontalPodAutoscaler/gatehouse-gw",
    ] {
        assert!(
            provisioned.iter().any(|p| p == kind),
            "{kind} provisioned: {provisioned:?}"
        );
    }
    let before = objects_in(&client, &discovery, &release_ns).await;
    for made in ["Lease/gatehouse-operator", "Secret/gatehouse-ca"] {
        assert!(before.iter().any(|o| o == made), "{made} in {before:?}");
    }

    let started = Instant::now();
    helm_on_testbed(&["uninstall", &release, "--namespace", &release_ns]);
    let took = started.elapsed();

    // Deletion is asynchronous (pods terminate, the garbage collector follows owners):
    // await the emptiness, then check the first install was left alone.
    let left = wait_k8s("nothing of the release left", || async {
        objects_in(&client, &discovery, &release_ns)
            .await
            .is_empty()
            && data_plane_objects(&client, &discovery, &app_ns, "gw")
                .await
                .is_empty()
            && cluster_objects_of(&client, &discovery, &release)
                .await
                .is_empty()
    })
    .await;
    if let Err(e) = left {
        panic!(
            "{e}: in {release_ns}: {:?}; of Gateway gw: {:?}; cluster-wide: {:?}",
            objects_in(&client, &discovery, &release_ns).await,
            data_plane_objects(&client, &discovery, &app_ns, "gw").await,
            cluster_objects_of(&client, &discovery, &release).await
        );
    }
    let first: Api<Deployment> = Api::namespaced(client.clone(), &app_ns);
    assert!(
        first
            .get_opt("gatehouse-first")
            .await
            .ok()
            .flatten()
            .is_some(),
        "the first install's data planes stay"
    );
    eprintln!(
        "helm uninstall took {took:?}; it deleted {} provisioned objects and the release's {} objects",
        provisioned.len(),
        before.len()
    );

    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in [&app_ns, &release_ns] {
        let _ = namespaces.delete(ns, &DeleteParams::default()).await;
    }
}
