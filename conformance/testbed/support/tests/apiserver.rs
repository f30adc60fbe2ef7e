//! Against the testbed's real API server: typed objects, a kube-runtime watcher, and a pod
//! that really runs and answers on its own address.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::{WatchStreamExt, conditions, wait::await_condition, watcher};
use std::time::Duration;

fn json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("valid object")
}

#[tokio::test]
async fn objects_watches_and_a_running_pod() -> anyhow::Result<()> {
    let client = gatehouse_testbed::client().await?;

    let nodes: Api<Node> = Api::all(client.clone());
    let node = nodes.get("testbed").await?;
    let ready = node
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    assert!(ready, "the testbed node is Ready");

    let ns = gatehouse_testbed::unique_namespace("rust-it");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &json(serde_json::json!({"metadata": {"name": ns}})),
        )
        .await?;

    // A watcher sees an object created after it started.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let mut events = watcher(config_maps.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    config_maps
        .create(
            &PostParams::default(),
            &json(serde_json::json!({"metadata": {"name": "hello"}, "data": {"k": "v"}})),
        )
        .await?;
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(cm) = events.try_next().await? {
            if cm.metadata.name.as_deref() == Some("hello") {
                return anyhow::Ok(cm);
            }
        }
        anyhow::bail!("watch ended")
    })
    .await??;
    assert_eq!(seen.data.unwrap_or_default()["k"], "v");

    // A pod runs echo-basic as a process and answers on its pod address.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.create(
        &PostParams::default(),
        &json(serde_json::json!({
            "metadata": {"name": "echo"},
            "spec": {"containers": [{
                "name": "echo",
                "image": "registry.k8s.io/gateway-api/echo-basic:v1.6.1",
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}
                ]
            }]}
        })),
    )
    .await?;
    tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(pods.clone(), "echo", conditions::is_pod_running()),
    )
    .await??;
    let ip = pods
        .get("echo")
        .await?
        .status
        .and_then(|s| s.pod_ip)
        .expect("pod IP");
    let url = format!("http://{ip}:3000/from-rust");
    let mut body = serde_json::Value::Null;
    for _ in 0..50 {
        if let Ok(r) = reqwest::Client::new().get(&url).send().await {
            body = r.json().await?;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(body["pod"], "echo");
    assert_eq!(body["namespace"], ns.as_str());
    assert_eq!(body["path"], "/from-rust");

    namespaces.delete(&ns, &DeleteParams::default()).await?;
    Ok(())
}
