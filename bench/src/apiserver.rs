//! Propagation against a real API server: HTTPRoutes written through the testbed's
//! kube-apiserver (conformance/testbed), timed from the write to the first answer of the
//! data plane. The operator runs as released (`gatehouse operator --infrastructure host`):
//! it watches the API server, and its data plane runs on this machine like standalone's,
//! so the figure is the API server's watch plus Gatehouse, not a pod network.

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The port the benchmark's Gateway listens on (on 127.0.0.1, the host infrastructure).
pub const PORT: u16 = 28_180;
const CONTROLLER: &str = "gatehouse.dev/bench-gateway-controller";
const CLASS: &str = "gatehouse-bench";

fn api(client: &kube::Client, kind: &str, plural: &str, ns: Option<&str>) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", kind);
    let resource = ApiResource::from_gvk_with_plural(&gvk, plural);
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// A redirect route of its own hostname (no backend: the API server refuses loopback
/// endpoints, and the answer says which route served it).
fn route(ns: &str, name: &str, host: &str) -> Result<DynamicObject> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "parentRefs": [{"name": "bench"}],
            "hostnames": [host],
            "rules": [{"filters": [{"type": "RequestRedirect",
                "requestRedirect": {"statusCode": 302, "hostname": "done.example.com"}}]}]
        }
    }))?)
}

/// The command that runs the operator against the testbed (pinned by the caller).
pub fn operator_command(bin: &Path) -> Vec<String> {
    vec![
        bin.join("gatehouse").display().to_string(),
        "operator".into(),
        "--infrastructure".into(),
        "host".into(),
        "--gateway-controller".into(),
        CONTROLLER.into(),
        "--ingress-controller".into(),
        "gatehouse.dev/bench-ingress-controller".into(),
        "--config-address".into(),
        "127.0.0.1:29901".into(),
        "--admin-address".into(),
        "127.0.0.1:29900".into(),
    ]
}

/// The environment of that command: the testbed's kubeconfig, and the benchmark's
/// namespace for the operator's Lease (not the deployed operator's).
pub fn operator_env(namespace: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "KUBECONFIG",
            gatehouse_testbed::DEFAULT_KUBECONFIG.to_string(),
        ),
        ("POD_NAMESPACE", namespace.to_string()),
        ("POD_NAME", "gatehouse-bench-operator".to_string()),
    ]
}

/// The testbed's client, a namespace of our own with the GatewayClass and Gateway.
pub async fn prepare() -> Result<(kube::Client, String)> {
    let client = gatehouse_testbed::client()
        .await
        .context("the testbed's API server (conformance/testbed up, as root)")?;
    let ns = gatehouse_testbed::unique_namespace("bench");
    let pp = PatchParams::apply("gatehouse-bench").force();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
        )
        .await?;
    let class: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": CLASS}, "spec": {"controllerName": CONTROLLER}
    }))?;
    api(&client, "GatewayClass", "gatewayclasses", None)
        .patch(CLASS, &pp, &Patch::Apply(&class))
        .await?;
    let gateway: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "bench", "namespace": ns},
        "spec": {"gatewayClassName": CLASS,
            "listeners": [{"name": "http", "protocol": "HTTP", "port": PORT}]}
    }))?;
    api(&client, "Gateway", "gateways", Some(&ns))
        .patch("bench", &pp, &Patch::Apply(&gateway))
        .await?;
    Ok((client, ns))
}

/// Creates routes r<from>..r<to> (16 writes at a time).
pub async fn create_routes(client: &kube::Client, ns: &str, from: usize, to: usize) -> Result<()> {
    let routes = api(client, "HTTPRoute", "httproutes", Some(ns));
    futures::stream::iter(from..to)
        .map(|i| {
            let routes = routes.clone();
            async move {
                let r = route(ns, &format!("r{i}"), &format!("r{i}.bench.example.com"))?;
                routes
                    .create(&PostParams::default(), &r)
                    .await
                    .with_context(|| format!("creating HTTPRoute r{i}"))?;
                Ok::<(), anyhow::Error>(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Milliseconds from creating a route through the API server to its first answer, for
/// `changes` new routes; `wait` polls the data plane until a host answers 302.
pub async fn propagation_ms(
    client: &kube::Client,
    ns: &str,
    size: usize,
    changes: usize,
    wait: impl Fn(&str) -> Result<()>,
) -> Result<Vec<f64>> {
    let routes = api(client, "HTTPRoute", "httproutes", Some(ns));
    let mut out = Vec::with_capacity(changes);
    for k in 0..changes {
        let name = format!("new-{size}-{k}");
        let host = format!("{name}.bench.example.com");
        let r = route(ns, &name, &host)?;
        let start = Instant::now();
        routes.create(&PostParams::default(), &r).await?;
        wait(&host)?;
        out.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(out)
}

/// Deletes what `prepare` made (the routes go with the namespace).
pub async fn clean_up(client: &kube::Client, ns: &str) {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(ns, &Default::default()).await;
    let _ = api(client, "GatewayClass", "gatewayclasses", None)
        .delete(CLASS, &Default::default())
        .await;
}

/// Whether the machine can run the testbed (it needs root).
pub fn possible() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// How long to wait for a route table of `n` routes to be in.
pub fn settle_limit(n: usize) -> Duration {
    Duration::from_secs(60 + (n as u64) / 50)
}
