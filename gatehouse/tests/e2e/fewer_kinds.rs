//! An operator that cannot watch every kind (here its ServiceAccount may not list
//! ListenerSets or BackendTLSPolicies; on a cluster with an older Gateway API release, a
//! CRD is missing, which the watch sees the same way) starts anyway, serves
//! Gateways and HTTPRoutes, logs once and says so on its GatewayClass
//! (`operator/src/source/kube.rs`).

use crate::kubernetes::{apply, cond, get, wait_k8s, web_backend};
use crate::support::*;
use gatehouse_operator::kubernetes::{KubeOperatorOptions, run_kube};
use gatehouse_translate::Settings;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams};
use serde_json::json;

/// What the operator reads and writes, without ListenerSets and BackendTLSPolicies.
fn rules_without_two_kinds() -> serde_json::Value {
    json!([
        {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["gatewayclasses", "gateways", "httproutes", "referencegrants"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["gatewayclasses/status", "gateways/status", "httproutes/status"], "verbs": ["get", "patch", "update"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "ingressclasses"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses/status"], "verbs": ["get", "patch", "update"]},
        {"apiGroups": [""], "resources": ["secrets", "configmaps", "namespaces", "services"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["gatehouse.dev"], "resources": ["gatewayparameters", "ingressclassparameters", "trafficpolicies"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update", "patch"]},
    ])
}

#[tokio::test]
async fn an_operator_that_cannot_watch_every_kind_serves_the_rest() {
    let admin = gatehouse_testbed::client()
        .await
        .expect("testbed API server");
    let ns = gatehouse_testbed::unique_namespace("fewer");
    let controller = format!("gatehouse.dev/test-{ns}");
    let role = format!("{ns}-operator");
    apply(
        &admin,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "operator", "namespace": ns}}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": role}, "rules": rules_without_two_kinds()}),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": role},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": ns}]
            }),
        ],
    )
    .await;
    // The operator's client acts as that ServiceAccount.
    let mut config = gatehouse_testbed::config()
        .await
        .expect("testbed kubeconfig");
    config.auth_info.impersonate = Some(format!("system:serviceaccount:{ns}:operator"));
    let restricted = kube::Client::try_from(config).expect("client");

    let ip = next_ip();
    let config_address = std::net::SocketAddr::new(ip, 9901);
    let operator = tokio::spawn(run_kube(
        restricted,
        KubeOperatorOptions {
            settings: Settings {
                gateway_controller: controller.clone(),
                ingress_controller: format!("{controller}-ingress"),
                default_address: ip,
                ..Settings::default()
            },
            config_address,
            admin_address: "127.0.0.1:0".parse().expect("address"),
            lease_namespace: ns.clone(),
            identity: "restricted-operator".into(),
            pod_name: None,
            dataplanes: None,
        },
    ));
    let dataplane = spawn_dataplane(config_address);
    let class = ns.clone();
    apply(&admin, &web_backend(&ns)).await;
    apply(
        &admin,
        &[
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
        ],
    )
    .await;

    let g = "gateway.networking.k8s.io";
    let url = format!("http://{ip}:8080/");
    wait_k8s("the route serves", || async {
        pod(&url, "web.example.com").await.starts_with("web-")
    })
    .await
    .expect("an operator missing two kinds still serves HTTPRoutes");
    wait_k8s("HTTPRoute status written", || async {
        let r = get(&admin, g, "HTTPRoute", "httproutes", Some(&ns), "web").await;
        cond(&r["status"]["parents"][0]["conditions"], "Accepted")
            .is_some_and(|c| c["status"] == "True")
    })
    .await
    .expect("route status");
    let accepted = || async {
        let gc = get(&admin, g, "GatewayClass", "gatewayclasses", None, &class).await;
        cond(&gc["status"]["conditions"], "Accepted").cloned()
    };
    let said = wait_k8s("the GatewayClass names what is not watched", || async {
        accepted().await.is_some_and(|c| {
            let m = c["message"].as_str().unwrap_or_default();
            c["status"] == "True" && m.contains("ListenerSet") && m.contains("BackendTLSPolicy")
        })
    })
    .await;
    let condition = accepted().await.unwrap_or_default();
    assert!(said.is_ok(), "Accepted: {condition}");
    assert!(
        condition["message"]
            .as_str()
            .is_some_and(|m| m.contains("may not list it")),
        "{condition}"
    );

    operator.abort();
    dataplane.abort();
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(admin.clone());
    let _ = roles.delete(&role, &DeleteParams::default()).await;
    let bindings: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> = Api::all(admin.clone());
    let _ = bindings.delete(&role, &DeleteParams::default()).await;
    let classes: Api<gatehouse_translate::gwapi::gatewayclasses::GatewayClass> = Api::all(admin);
    let _ = classes.delete(&class, &DeleteParams::default()).await;
}
