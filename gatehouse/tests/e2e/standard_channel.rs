//! A cluster that had no Gateway API CRDs, where the gatehouse-crds chart installed the
//! standard channel's: Gateways and HTTPRoutes serve and get their status with
//! none of the experimental kinds or fields. It needs the testbed switched over first, so it
//! is ignored in the main run; scripts/test switches (`testbed up --channel none`, `helm
//! install gatehouse-crds`, `testbed install-gatehouse`) and runs it with `--ignored
//! standard_channel`.

use crate::kubernetes::{apply, cond, get, programmed_address, wait_k8s, web_backend};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams};
use serde_json::json;

#[tokio::test]
#[ignore = "needs the testbed on the standard-channel CRDs of charts/gatehouse-crds: scripts/test switches it and runs this"]
async fn gateways_serve_on_a_cluster_with_the_standard_channel_only() {
    let client = gatehouse_testbed::client()
        .await
        .expect("testbed API server");
    // The cluster is what the test says it is: the chart's standard-channel CRDs, no
    // experimental ones.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let routes = crds
        .get("httproutes.gateway.networking.k8s.io")
        .await
        .expect("the HTTPRoute CRD");
    let annotations = routes.metadata.annotations.unwrap_or_default();
    assert_eq!(
        annotations
            .get("gateway.networking.k8s.io/channel")
            .map(String::as_str),
        Some("standard")
    );
    assert_eq!(
        annotations
            .get("meta.helm.sh/release-name")
            .map(String::as_str),
        Some("gatehouse-crds"),
        "installed by the chart"
    );
    assert!(
        crds.get_opt("xbackendtrafficpolicies.gateway.networking.x-k8s.io")
            .await
            .expect("CRDs listed")
            .is_none(),
        "no experimental kinds"
    );

    let ns = gatehouse_testbed::unique_namespace("standard");
    let mut objects =
        vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})];
    objects.extend(web_backend(&ns));
    objects.push(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": ns},
        "spec": {"gatewayClassName": "gatehouse", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}
    }));
    objects.push(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": "/web"}}],
                "backendRefs": [{"name": "web", "port": 8080}]
            }]
        }
    }));
    apply(&client, &objects).await;
    let address = programmed_address(&client, &ns, "gw").await;
    let g = "gateway.networking.k8s.io";
    wait_k8s("the HTTPRoute Accepted with its refs resolved", || async {
        let route = get(&client, g, "HTTPRoute", "httproutes", Some(&ns), "web").await;
        let conditions = &route["status"]["parents"][0]["conditions"];
        ["Accepted", "ResolvedRefs"]
            .iter()
            .all(|t| cond(conditions, t).is_some_and(|c| c["status"] == "True"))
    })
    .await
    .expect("HTTPRoute status");
    wait_k8s("the route serves", || async {
        let Ok(response) = reqwest::get(format!("http://{address}/web/a")).await else {
            return false;
        };
        response.status() == 200
            && response
                .json::<serde_json::Value>()
                .await
                .is_ok_and(|echo| echo["namespace"] == ns.as_str())
    })
    .await
    .expect("the route serves from the web pod");
    let other = reqwest::get(format!("http://{address}/other"))
        .await
        .expect("the Gateway answers");
    assert_eq!(other.status(), 404, "only the route's path is routed");
    let class = get(
        &client,
        g,
        "GatewayClass",
        "gatewayclasses",
        None,
        "gatehouse",
    )
    .await;
    assert_eq!(
        cond(&class["status"]["conditions"], "Accepted").map(|c| c["status"].clone()),
        Some(json!("True")),
        "{class}"
    );

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
}
