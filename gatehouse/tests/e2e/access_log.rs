//! Access logs over real sockets: `gatehouse standalone` (the binary) with its Gateway's
//! parameters asking for access logs and request ids; a mixed load (the direct path,
//! pingora's, no route, HTTPS, HTTP/2, requests with and without X-Request-ID) gives one
//! JSON line per request on standard output with the right fields, and the backend gets the
//! id the line shows. A Gateway without the parameters logs nothing.

use crate::metrics::{start_standalone, start_standalone_with};
use crate::support::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

const LOGGED: &str = "apiVersion: gatehouse.dev/v1alpha1
kind: GatewayParameters
metadata:
  name: logged
  namespace: default
spec:
  clients: {accessLog: true, generateRequestId: true}
";

/// The access log lines written so far, parsed (a line that is not a JSON object fails).
fn lines(g: &crate::metrics::Standalone) -> Vec<Value> {
    let out = g.stdout.lock().map(|l| l.clone()).unwrap_or_default();
    out.iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert!(v.is_object(), "{l}");
            v
        })
        .collect()
}

#[tokio::test]
async fn every_request_gets_one_json_line_with_its_fields() {
    let g = start_standalone_with(&[LOGGED], Some("logged")).await;
    // start_standalone's own requests (to /direct and /filtered, while waiting for the
    // routes) are logged too; they are told apart by their paths.
    let ours = |g: &crate::metrics::Standalone| -> Vec<Value> {
        lines(g)
            .into_iter()
            .filter(|l| l["path"] != "/direct" && l["path"] != "/filtered")
            .collect()
    };
    let url = |path: &str| format!("http://{}:8080{path}", g.ip);
    let http = client();
    let mut sent: BTreeMap<(&str, u16), usize> = BTreeMap::new();
    let mut echoed_id = String::new();
    for i in 0..20 {
        let r = http.get(url("/direct/a")).send().await.expect("answer");
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.expect("echo JSON");
        if i == 0 {
            // The backend got the generated id.
            echoed_id = body["headers"]["X-Request-Id"][0]
                .as_str()
                .unwrap_or_default()
                .to_string();
        }
    }
    *sent.entry(("/direct/a", 200)).or_default() += 20;
    for i in 0..10 {
        let mut req = http.get(url("/filtered/b"));
        if i < 3 {
            req = req.header("x-request-id", format!("given-{i}"));
        }
        let r = req.send().await.expect("answer");
        assert_eq!(r.status(), 200);
        r.bytes().await.expect("body");
    }
    *sent.entry(("/filtered/b", 200)).or_default() += 10;
    for _ in 0..5 {
        let r = http.get(url("/nowhere")).send().await.expect("answer");
        assert_eq!(r.status(), 404);
    }
    *sent.entry(("/nowhere", 404)).or_default() += 5;
    let tls = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .resolve("metrics.test", SocketAddr::new(g.ip, 8443))
        .build()
        .expect("a client");
    for _ in 0..4 {
        let r = tls
            .get("https://metrics.test:8443/direct/tls")
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), 200);
        r.bytes().await.expect("body");
    }
    *sent.entry(("/direct/tls", 200)).or_default() += 4;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("a client");
    for _ in 0..2 {
        let r = h2.get(url("/filtered/h2")).send().await.expect("answer");
        assert_eq!(r.status(), 200);
        r.bytes().await.expect("body");
    }
    *sent.entry(("/filtered/h2", 200)).or_default() += 2;
    let total: usize = sent.values().sum();

    let all = wait_up_to("every request logged", Duration::from_secs(10), || async {
        ours(&g).len() >= total
    })
    .await;
    let logged: Vec<Value> = ours(&g);
    all.unwrap_or_else(|e| panic!("{e}: {} of {total}", logged.len()));
    assert_eq!(logged.len(), total, "one line per request, no more");
    let mut counted: BTreeMap<(String, u16), usize> = BTreeMap::new();
    for l in &logged {
        let path = l["path"].as_str().unwrap_or_default().to_string();
        let status = l["status"].as_u64().unwrap_or_default() as u16;
        *counted.entry((path, status)).or_default() += 1;
        for field in ["time", "method", "host", "protocol", "gateway", "listener"] {
            assert!(l[field].is_string(), "{field} in {l}");
        }
        assert!(l["duration_ms"].as_f64().is_some_and(|d| d >= 0.0), "{l}");
        let id = l["request_id"].as_str().unwrap_or_default();
        assert!(
            id.starts_with("given-") || id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{l}"
        );
        assert_eq!(l["gateway"], "default/gw");
        if status == 200 {
            assert!(
                l["upstream"].is_string() && l["upstream_ms"].is_f64(),
                "{l}"
            );
            assert!(
                l["route"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("HTTPRoute default/")),
                "{l}"
            );
            assert!(l["bytes_out"].as_u64().is_some_and(|b| b > 0), "{l}");
            assert_eq!(l["user_agent"], Value::Null, "reqwest sends none: {l}");
        }
    }
    let expected: BTreeMap<(String, u16), usize> = sent
        .iter()
        .map(|((p, s), n)| ((p.to_string(), *s), *n))
        .collect();
    assert_eq!(counted, expected);
    // Per request path: both write the same fields.
    let direct = logged
        .iter()
        .find(|l| l["path"] == "/direct/a")
        .cloned()
        .unwrap_or_default();
    let pingora = logged
        .iter()
        .find(|l| l["path"] == "/filtered/b")
        .cloned()
        .unwrap_or_default();
    let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    assert_eq!(keys(&direct), keys(&pingora));
    // The id the backend got is the one logged; ids the client sent are kept.
    assert_eq!(
        echoed_id.len(),
        32,
        "the backend got a generated X-Request-ID"
    );
    assert!(logged.iter().any(|l| l["request_id"] == echoed_id.as_str()));
    for i in 0..3 {
        assert!(
            logged
                .iter()
                .any(|l| l["request_id"] == format!("given-{i}"))
        );
    }
    let over_tls: Vec<&Value> = logged
        .iter()
        .filter(|l| l["path"] == "/direct/tls")
        .collect();
    assert!(
        over_tls
            .iter()
            .all(|l| l["sni"] == "metrics.test" && l["tls_version"].is_string()),
        "{over_tls:?}"
    );
    let h2_lines: Vec<&Value> = logged
        .iter()
        .filter(|l| l["path"] == "/filtered/h2")
        .collect();
    assert!(
        h2_lines.iter().all(|l| l["protocol"] == "HTTP/2"),
        "{h2_lines:?}"
    );
    assert!(
        logged
            .iter()
            .filter(|l| l["path"] == "/direct/a")
            .all(|l| l["protocol"] == "HTTP/1.1")
    );
}

#[tokio::test]
async fn a_gateway_without_access_logs_writes_none() {
    let g = start_standalone(&[]).await;
    for _ in 0..5 {
        let r = client()
            .get(format!("http://{}:8080/direct/a", g.ip))
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), 200);
    }
    // The lines of a logging Gateway appear within milliseconds (the test above waits for
    // them); none here after the requests and a scrape's round trip.
    crate::metrics::scrape(g.admin).await;
    let out = g.stdout.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(out.is_empty(), "{out:?}");
}
