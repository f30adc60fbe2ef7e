//! Propagation against a real API server: HTTPRoutes written through the testbed's
//! kube-apiserver (conformance/testbed), timed from the write to the first answer of the
//! data plane. The operator runs as released (`gatehouse operator --infrastructure host`):
//! it watches the API server, and its data plane runs on this machine like standalone's,
//! so the figure is the API server's watch plus Gatehouse, not a pod network.
//!
//! `phase` is `bench/run`'s phase `apiserver`; the rest is what it asks of the testbed.

use crate::probe::wait_for;
use crate::process::{Running, spawn};
use crate::stats::percentile;
use crate::topology::PROXY_CORE;
use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The port the benchmark's Gateway listens on (on 127.0.0.1, the host infrastructure).
const PORT: u16 = 28_180;
const CONTROLLER: &str = "gatehouse.dev/bench-gateway-controller";
const CLASS: &str = "gatehouse-bench";

/// Phase `apiserver`: propagation at 100 routes (`quick`), or at 100, 1k and 10k; nothing
/// where the testbed cannot run (it needs root).
pub fn phase(
    bin: &Path,
    quick: bool,
    changes: usize,
    dir: &Path,
    running: &mut Running,
) -> Result<Vec<(usize, Vec<f64>)>> {
    if !possible() {
        eprintln!("propagation against the API server: skipped (the testbed needs root)");
        return Ok(vec![]);
    }
    let sizes: &[usize] = if quick { &[100] } else { &[100, 1000, 10_000] };
    propagation(bin, sizes, changes, dir, running)
}

/// Propagation through the testbed's API server at each size: the operator of this build
/// watching it, its data plane on this machine (core 0 for both, as standalone).
fn propagation(
    bin: &Path,
    sizes: &[usize],
    changes: usize,
    dir: &Path,
    running: &mut Running,
) -> Result<Vec<(usize, Vec<f64>)>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (client, ns) = rt.block_on(prepare())?;
    let result = (|| -> Result<Vec<(usize, Vec<f64>)>> {
        let args = operator_command(bin);
        let mut cmd = Command::new("taskset");
        cmd.arg("-c").arg(PROXY_CORE).args(&args);
        for (k, v) in operator_env(&ns) {
            cmd.env(k, v);
        }
        spawn(cmd, &dir.join("operator-apiserver.log"), running)?;
        let wait = |host: &str| wait_for(PORT, host, "/", "302", Duration::from_secs(30));
        let mut out = vec![];
        let mut present = 0;
        for &n in sizes {
            rt.block_on(create_routes(&client, &ns, present, n))?;
            present = n;
            wait_for(
                PORT,
                &format!("r{}.bench.example.com", n - 1),
                "/",
                "302",
                settle_limit(n),
            )
            .with_context(|| format!("{n} routes through the API server never served"))?;
            let ms = rt.block_on(propagation_ms(&client, &ns, n, changes, wait))?;
            eprintln!(
                "propagation at {n} routes over {changes} changes (API server): p50 {} ms, p90 {} ms, p99 {} ms",
                crate::stats::ms(percentile(&ms, 50.0)),
                crate::stats::ms(percentile(&ms, 90.0)),
                crate::stats::ms(percentile(&ms, 99.0))
            );
            out.push((n, ms));
        }
        Ok(out)
    })();
    rt.block_on(clean_up(&client, &ns));
    result
}

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
fn operator_command(bin: &Path) -> Vec<String> {
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
fn operator_env(namespace: &str) -> Vec<(&'static str, String)> {
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
async fn prepare() -> Result<(kube::Client, String)> {
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
async fn create_routes(client: &kube::Client, ns: &str, from: usize, to: usize) -> Result<()> {
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
async fn propagation_ms(
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
async fn clean_up(client: &kube::Client, ns: &str) {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(ns, &Default::default()).await;
    let _ = api(client, "GatewayClass", "gatewayclasses", None)
        .delete(CLASS, &Default::default())
        .await;
}

/// Whether the machine can run the testbed (it needs root).
fn possible() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// How long to wait for a route table of `n` routes to be in.
fn settle_limit(n: usize) -> Duration {
    Duration::from_secs(60 + (n as u64) / 50)
}
