//! `kubectl get` on our kinds shows what matters (the CRDs' additionalPrinterColumns): the
//! API server's Table view, which kubectl prints, read for each kind on the testbed.

use crate::kubernetes::{
    DEPLOYED_OPERATOR, apply, shaped_gateway_and_route, wait_k8s, web_backend,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams};
use serde_json::{Value, json};

/// The Table kubectl would print for `plural` in `namespace`: its column names and the
/// cells of the row named `name`.
async fn table_row(
    client: &kube::Client,
    plural: &str,
    namespace: &str,
    name: &str,
) -> (Vec<String>, Vec<Value>) {
    let request = http::Request::get(format!(
        "/apis/gatehouse.dev/v1alpha1/namespaces/{namespace}/{plural}"
    ))
    .header(
        http::header::ACCEPT,
        "application/json;as=Table;v=v1;g=meta.k8s.io",
    )
    .body(Vec::new())
    .expect("a request");
    let table: Value = client.request(request).await.expect("the Table view");
    let columns = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_string())
        .collect();
    let row = table["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["object"]["metadata"]["name"] == name)
        .map(|r| r["cells"].as_array().cloned().unwrap_or_default())
        .unwrap_or_default();
    (columns, row)
}

#[tokio::test]
async fn kubectl_get_shows_what_matters_of_our_kinds() {
    let _shared = DEPLOYED_OPERATOR.read().await;
    let client = gatehouse_testbed::client()
        .await
        .expect("testbed API server");
    let ns = gatehouse_testbed::unique_namespace("columns");
    let mut objects =
        vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})];
    objects.extend(web_backend(&ns));
    objects.extend(shaped_gateway_and_route(
        &ns,
        "small",
        json!({"replicas": 2, "service": {"type": "ClusterIP"}}),
    ));
    objects.extend([
        json!({
            "apiVersion": "gatehouse.dev/v1alpha1", "kind": "TrafficPolicy",
            "metadata": {"name": "limits", "namespace": ns},
            "spec": {
                "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "web"}],
                "maxRequestBodyBytes": 1024
            }
        }),
    ]);
    apply(&client, &objects).await;

    let (columns, row) = table_row(&client, "gatewayparameters", &ns, "small").await;
    assert_eq!(columns, ["Name", "Replicas", "Max", "Service", "Age"]);
    assert_eq!(row[1], 2);
    assert_eq!(row[3], "ClusterIP");

    let accepted = wait_k8s("the TrafficPolicy Accepted in kubectl's view", || async {
        let (_, row) = table_row(&client, "trafficpolicies", &ns, "limits").await;
        row.get(2) == Some(&json!("True"))
    })
    .await;
    let (columns, row) = table_row(&client, "trafficpolicies", &ns, "limits").await;
    accepted.unwrap_or_else(|e| panic!("{e}: {columns:?} {row:?}"));
    assert_eq!(columns, ["Name", "Target", "Accepted", "Reason", "Age"]);
    assert_eq!(row[1], "web");
    assert_eq!(row[3], "Accepted");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
}
