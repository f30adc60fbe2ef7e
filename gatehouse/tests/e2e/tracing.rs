//! Tracing over real sockets: `gatehouse standalone` (the binary) whose Gateway's
//! parameters name a real OpenTelemetry Collector (conformance/otelsink: upstream's OTLP
//! receiver and file exporter, built from their Go modules by scripts/install-otelsink).
//! On both request paths the backend receives the trace the client started, with
//! Gatehouse's span as the parent, and the collector receives that span with the route
//! and the status; a request that is not sampled is propagated and not exported.

use crate::metrics::{free_port, scrape, start_standalone_with, value};
use crate::support::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

struct Collector {
    grpc: std::net::SocketAddr,
    http: std::net::SocketAddr,
    spans: PathBuf,
    _dir: tempfile::TempDir,
    process: std::process::Child,
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// The collector, listening for OTLP over gRPC and HTTP, writing what it receives as OTLP
/// JSON lines to a file.
async fn collector() -> Collector {
    let repo = crate::chart::repo();
    let built = Command::new(repo.join("scripts/install-otelsink"))
        .stderr(Stdio::inherit())
        .output()
        .expect("scripts/install-otelsink runs");
    assert!(built.status.success(), "the collector builds");
    let bin = String::from_utf8_lossy(&built.stdout).trim().to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let (grpc, http) = (free_port(), free_port());
    let spans = dir.path().join("spans.json");
    let config = format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: \"{grpc}\"}}
      http: {{endpoint: \"{http}\"}}
exporters:
  file: {{path: \"{}\", format: json, flush_interval: 100ms}}
service:
  telemetry: {{metrics: {{level: none}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [file]}}
",
        spans.display()
    );
    let config_file = dir.path().join("config.yaml");
    std::fs::write(&config_file, config).expect("config written");
    let process = Command::new(bin)
        .arg("--config")
        .arg(&config_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the collector starts");
    let c = Collector {
        grpc,
        http,
        spans,
        _dir: dir,
        process,
    };
    wait_up_to("the collector listens", Duration::from_secs(30), || async {
        tokio::net::TcpStream::connect(c.grpc).await.is_ok()
            && tokio::net::TcpStream::connect(c.http).await.is_ok()
    })
    .await
    .expect("the collector listens");
    c
}

/// Every span the collector wrote so far, each with its resource's `service.name`.
fn spans(file: &Path) -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        for rs in v["resourceSpans"].as_array().into_iter().flatten() {
            let service = attribute(&rs["resource"], "service.name");
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    out.push((service.clone(), s.clone()));
                }
            }
        }
    }
    out
}

/// An attribute's value as text (OTLP JSON writes integers as strings).
fn attribute(item: &Value, key: &str) -> String {
    item["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["key"] == key)
        .map(|a| {
            let v = &a["value"];
            v["stringValue"]
                .as_str()
                .or_else(|| v["intValue"].as_str())
                .map(str::to_string)
                .unwrap_or_else(|| v["intValue"].to_string())
        })
        .unwrap_or_default()
}

fn parameters(endpoint: &str, protocol: &str, percent: u32) -> String {
    format!(
        "apiVersion: gatehouse.dev/v1alpha1
kind: GatewayParameters
metadata:
  name: traced
  namespace: default
spec:
  tracing:
    endpoint: {endpoint}
    protocol: {protocol}
    samplingPercent: {percent}
    serviceName: edge
    resourceAttributes: {{deployment.environment: test}}
"
    )
}

/// What the echo backend received as header `name`.
fn echoed(body: &Value, name: &str) -> String {
    body["headers"][name][0]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Sends a GET with these headers and returns the backend's echo.
async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = client().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("answer");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn both_paths_continue_the_clients_trace_and_export_the_span_over_grpc() {
    let otel = collector().await;
    let endpoint = format!("http://{}", otel.grpc);
    let g = start_standalone_with(&[&parameters(&endpoint, "GRPC", 0)], Some("traced")).await;
    let url = |path: &str| format!("http://{}:8080{path}", g.ip);

    // The direct path (a plain GET) and pingora's (a route with a filter), each with a
    // sampled traceparent of the client's and a tracestate.
    let cases = [
        ("/direct/a", "4bf92f3577b34da6a3ce929d0e0e4736", "direct"),
        (
            "/filtered/b",
            "0af7651916cd43dd8448eb211c80319c",
            "filtered",
        ),
    ];
    let mut ours = Vec::new();
    for (path, trace, route) in cases {
        let sent = format!("00-{trace}-00f067aa0ba902b7-01");
        let (status, body) = get(
            &url(path),
            &[("traceparent", &sent), ("tracestate", "vendor=opaque")],
        )
        .await;
        assert_eq!(status, 200, "{path}");
        let got = echoed(&body, "Traceparent");
        let (prefix, flags) = (format!("00-{trace}-"), "-01");
        assert!(
            got.starts_with(&prefix) && got.ends_with(flags),
            "{path}: {got}"
        );
        let span_id = got[prefix.len()..got.len() - flags.len()].to_string();
        assert_ne!(
            span_id, "00f067aa0ba902b7",
            "{path}: Gatehouse's span is the parent"
        );
        assert_eq!(echoed(&body, "Tracestate"), "vendor=opaque", "{path}");
        ours.push((trace, span_id, route));
    }
    // Not sampled (no traceparent, 0 %): the backend still gets a new trace, unsampled,
    // and a tracestate that came without a trace is dropped.
    let (status, body) = get(&url("/direct/c"), &[("tracestate", "lost=1")]).await;
    assert_eq!(status, 200);
    let unsampled = echoed(&body, "Traceparent");
    assert!(
        unsampled.len() == 55 && unsampled.ends_with("-00"),
        "{unsampled}"
    );
    assert_eq!(echoed(&body, "Tracestate"), "");
    // A sampled request no route takes: its span says 404, with no route.
    let no_route = "5e5ef2ea3f1d4f0c9a4b7d1e2c3b4a59";
    let r = client()
        .get(url("/nowhere"))
        .header("traceparent", format!("00-{no_route}-1111111111111111-01"))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 404);

    let found = wait_up_to("three spans exported", Duration::from_secs(20), || async {
        spans(&otel.spans).len() >= 3
    })
    .await;
    let seen = spans(&otel.spans);
    found.unwrap_or_else(|e| panic!("{e}: {seen:?}"));
    assert_eq!(seen.len(), 3, "only the sampled requests: {seen:?}");
    for (trace, span_id, route) in &ours {
        let (service, span) = seen
            .iter()
            .find(|(_, s)| s["traceId"] == *trace)
            .unwrap_or_else(|| panic!("no span of {trace}: {seen:?}"));
        assert_eq!(service, "edge");
        assert_eq!(
            span["spanId"],
            *span_id.as_str(),
            "the span the backend was told of"
        );
        assert_eq!(span["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(span["kind"], 2, "server");
        assert_eq!(attribute(span, "gatehouse.route.name"), *route);
        assert_eq!(attribute(span, "gatehouse.route.kind"), "HTTPRoute");
        assert_eq!(attribute(span, "gatehouse.route.namespace"), "default");
        assert_eq!(attribute(span, "http.response.status_code"), "200");
        assert_eq!(attribute(span, "http.request.method"), "GET");
        assert_eq!(attribute(span, "gatehouse.gateway"), "default/gw");
        assert_eq!(attribute(span, "gatehouse.outcome"), "proxied");
        assert!(!attribute(span, "network.peer.address").is_empty());
        assert_eq!(span["name"], format!("GET HTTPRoute default/{route}"));
    }
    let (_, lost) = seen
        .iter()
        .find(|(_, s)| s["traceId"] == no_route)
        .unwrap_or_else(|| panic!("no span of the 404: {seen:?}"));
    assert_eq!(attribute(lost, "http.response.status_code"), "404");
    assert_eq!(attribute(lost, "gatehouse.route.name"), "");
    assert_eq!(attribute(lost, "url.path"), "/nowhere");
    let unsampled_trace = &unsampled[3..35];
    assert!(!seen.iter().any(|(_, s)| s["traceId"] == unsampled_trace));
    let metrics = scrape(g.admin).await;
    let exported = value(
        &metrics,
        "gatehouse_trace_spans_total",
        &[("outcome", "exported")],
    );
    assert_eq!(exported, 3.0);
}

#[tokio::test]
async fn otlp_over_http_with_every_request_sampled() {
    let otel = collector().await;
    let endpoint = format!("http://{}", otel.http);
    let g = start_standalone_with(&[&parameters(&endpoint, "HTTP", 100)], Some("traced")).await;
    let url = |path: &str| format!("http://{}:8080{path}", g.ip);
    let n = 12;
    let mut traces = Vec::new();
    for i in 0..n {
        let path = if i % 2 == 0 {
            "/direct/h"
        } else {
            "/filtered/h"
        };
        let (status, body) = get(&url(path), &[]).await;
        assert_eq!(status, 200);
        let got = echoed(&body, "Traceparent");
        assert!(got.ends_with("-01"), "sampled at 100 %: {got}");
        traces.push(got[3..35].to_string());
    }
    let ours = |seen: &[(String, Value)]| {
        seen.iter()
            .filter(|(_, s)| traces.iter().any(|t| s["traceId"] == *t.as_str()))
            .count()
    };
    let found = wait_up_to("every request's span", Duration::from_secs(20), || async {
        ours(&spans(&otel.spans)) >= n
    })
    .await;
    let seen = spans(&otel.spans);
    found.unwrap_or_else(|e| panic!("{e}: {} of {n}", ours(&seen)));
    assert_eq!(ours(&seen), n);
    for (_, s) in seen
        .iter()
        .filter(|(_, s)| traces.iter().any(|t| s["traceId"] == *t.as_str()))
    {
        let parent = s["parentSpanId"].as_str().unwrap_or_default();
        assert_eq!(parent, "", "a new trace has no parent: {s}");
        assert_eq!(attribute(s, "http.response.status_code"), "200");
    }
}

/// A collector that is down costs no request: every one is answered, and the spans that
/// could not be sent are counted as failed exports.
#[tokio::test]
async fn a_collector_that_is_down_fails_no_request() {
    // A port nothing listens on (taken, then let go).
    let down = free_port();
    let endpoint = format!("http://{down}");
    let g = start_standalone_with(&[&parameters(&endpoint, "GRPC", 100)], Some("traced")).await;
    let url = |path: &str| format!("http://{}:8080{path}", g.ip);
    for i in 0..20 {
        let path = if i % 2 == 0 {
            "/direct/d"
        } else {
            "/filtered/d"
        };
        let (status, _) = get(&url(path), &[]).await;
        assert_eq!(status, 200, "{path}");
    }
    let counted = wait_up_to(
        "failed exports counted",
        Duration::from_secs(30),
        || async {
            let m = scrape(g.admin).await;
            value(
                &m,
                "gatehouse_trace_spans_total",
                &[("outcome", "export_failed")],
            ) >= 20.0
        },
    )
    .await;
    let m = scrape(g.admin).await;
    counted.unwrap_or_else(|e| panic!("{e}: {m:?}"));
    assert_eq!(
        value(
            &m,
            "gatehouse_trace_spans_total",
            &[("outcome", "exported")]
        ),
        0.0
    );
}
