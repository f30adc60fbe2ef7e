//! Metrics in a cluster (the testbed, Gatehouse installed by its chart): a provisioned data
//! plane pod's `/metrics` (its port named `metrics`) counts exactly the N requests sent
//! through its Gateway's address, and of the operator's replicas exactly one says it leads.

use crate::kubernetes::{
    DEPLOYED_OPERATOR, apply, programmed_address, shaped_gateway_and_route, wait_k8s, web_backend,
};
use crate::metrics::{samples, value};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::json;
use std::collections::BTreeMap;

/// The samples of `GET http://ip:port/metrics`.
async fn pod_metrics(ip: &str, port: i32) -> BTreeMap<String, f64> {
    let text = crate::support::client()
        .get(format!("http://{ip}:{port}/metrics"))
        .send()
        .await
        .expect("the pod's /metrics answers")
        .text()
        .await
        .expect("a text page");
    samples(&text)
}

/// (pod IP, the container's port named `name`) of each running pod matching `selector`.
async fn pod_ports(pods: &Api<Pod>, selector: &str, name: &str) -> Vec<(String, i32)> {
    let list = pods
        .list(&ListParams::default().labels(selector))
        .await
        .expect("pods listed");
    list.items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let ip = p.status.as_ref()?.pod_ip.clone()?;
            let port = p
                .spec?
                .containers
                .first()?
                .ports
                .as_ref()?
                .iter()
                .find(|port| port.name.as_deref() == Some(name))?
                .container_port;
            Some((ip, port))
        })
        .collect()
}

#[tokio::test]
async fn a_data_plane_pod_counts_exactly_the_requests_it_served() {
    let _shared = DEPLOYED_OPERATOR.read().await;
    let client = gatehouse_testbed::client()
        .await
        .expect("testbed API server");
    let ns = gatehouse_testbed::unique_namespace("metrics");
    let mut objects =
        vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})];
    objects.extend(web_backend(&ns));
    objects.extend(shaped_gateway_and_route(&ns, "one", json!({"replicas": 1})));
    apply(&client, &objects).await;
    let address = programmed_address(&client, &ns, "gw").await;
    let url = format!("http://{address}/");
    wait_k8s("the route serves", || async {
        reqwest::get(&url).await.is_ok_and(|r| r.status() == 200)
    })
    .await
    .expect("the route serves");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let selector = "gateway.networking.k8s.io/gateway-name=gw";
    let dataplanes = pod_ports(&pods, selector, "metrics").await;
    let [(ip, port)] = dataplanes.as_slice() else {
        panic!("one data plane pod with a metrics port: {dataplanes:?}");
    };
    let route = [
        ("gateway", format!("{ns}/gw")),
        ("route_name", "web".to_string()),
    ];
    let route: Vec<(&str, &str)> = route.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let ok: Vec<(&str, &str)> = route.iter().copied().chain([("code", "200")]).collect();
    let before = pod_metrics(ip, *port).await;
    let n = 40;
    let http = crate::support::client();
    for _ in 0..n {
        let r = http.get(&url).send().await.expect("an answer");
        assert_eq!(r.status(), 200);
        r.bytes().await.expect("the body");
    }
    let counted = |s: &BTreeMap<String, f64>| value(s, "gatehouse_requests_total", &ok);
    let mut after = pod_metrics(ip, *port).await;
    // A request is counted once its answer is sent; the last may still be finishing.
    for _ in 0..100 {
        if counted(&after) - counted(&before) >= f64::from(n) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        after = pod_metrics(ip, *port).await;
    }
    assert_eq!(counted(&after) - counted(&before), f64::from(n));
    let durations =
        |s: &BTreeMap<String, f64>| value(s, "gatehouse_request_duration_seconds_count", &route);
    assert_eq!(durations(&after) - durations(&before), f64::from(n));

    // Of the operator's replicas, exactly one leads.
    let operators: Api<Pod> = Api::namespaced(client.clone(), "gatehouse-system");
    let replicas = pod_ports(
        &operators,
        "app.kubernetes.io/name=gatehouse-operator",
        "admin",
    )
    .await;
    assert!(!replicas.is_empty());
    let mut leaders = 0.0;
    for (ip, port) in &replicas {
        let m = pod_metrics(ip, *port).await;
        assert!(m.contains_key("gatehouse_operator_leader"), "{ip}");
        leaders += value(&m, "gatehouse_operator_leader", &[]);
    }
    assert_eq!(leaders, 1.0, "{} replicas", replicas.len());

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
}
