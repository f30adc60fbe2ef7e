//! A real Prometheus (Debian's package; scripts/test installs it) scrapes `gatehouse
//! standalone` under load, with the chart's recording rules loaded: every rule gives a
//! series, so an alert or dashboard on an nginx_ingress_controller_* name has data after a
//! move to Gatehouse, and every query of the Grafana dashboard
//! (charts/gatehouse/dashboards/gatehouse.json) has data too. `promtool check rules` passes
//! on the same rules file.

use crate::metrics::{free_port, start_standalone};
use crate::support::*;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const RULES: &str = "charts/gatehouse/rules/ingress-nginx-compat.yaml";
const DASHBOARD: &str = "charts/gatehouse/dashboards/gatehouse.json";

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The names the rules file records.
fn recorded_names() -> Vec<String> {
    let text = std::fs::read_to_string(crate::chart::repo().join(RULES)).expect("the rules file");
    let rules: serde_yaml::Value = serde_yaml::from_str(&text).expect("YAML");
    rules["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|r| r["record"].as_str().map(str::to_string))
        .collect()
}

/// Every query of every panel of the dashboard.
fn dashboard_queries() -> Vec<String> {
    let text =
        std::fs::read_to_string(crate::chart::repo().join(DASHBOARD)).expect("the dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect()
}

/// How many series Prometheus's instant query `q` returns (0 on any failure).
async fn series_count(prometheus: std::net::SocketAddr, q: &str) -> usize {
    let Ok(r) = client()
        .get(format!("http://{prometheus}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .await
    else {
        return 0;
    };
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    body["data"]["result"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn every_recording_rule_and_dashboard_query_has_data_in_a_real_prometheus() {
    let rules = crate::chart::repo().join(RULES);
    let check = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&rules)
        .output()
        .expect("promtool runs (scripts/test installs Debian's prometheus package)");
    assert!(
        check.status.success(),
        "promtool check rules: {}",
        String::from_utf8_lossy(&check.stdout)
    );

    let ingress = "apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: gatehouse
spec:
  controller: gatehouse.dev/ingress-controller
  parameters: {apiGroup: gateway.networking.k8s.io, kind: Gateway, name: gw, namespace: default, scope: Namespace}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: legacy
  namespace: default
spec:
  ingressClassName: gatehouse
  rules:
  - host: legacy.test
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: app, port: {number: 80}}}
";
    // A Service whose only endpoint refuses connections: upstream connect errors and 5xx.
    let closed = free_port();
    let down = format!(
        "{}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: down
  namespace: default
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /down}}}}]
    backendRefs: [{{name: down, port: 80}}]
",
        service("down", closed.ip(), &[closed.port()])
    );
    let gatehouse = start_standalone(&[ingress, &down]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: [{}]
scrape_configs:
- job_name: gatehouse
  static_configs: [{{targets: ['{}']}}]
",
            rules.display(),
            gatehouse.admin
        ),
    )
    .expect("prometheus.yml written");
    let listen = free_port();
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );

    // Steady load on the Ingress (plain and over TLS) and on an HTTPRoute.
    let stop = Arc::new(AtomicBool::new(false));
    let ip = gatehouse.ip;
    let load = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .resolve("metrics.test", std::net::SocketAddr::new(ip, 8443))
                .build()
                .expect("a client");
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = http
                    .get(format!("http://{ip}:8080/"))
                    .header("host", "legacy.test")
                    .send()
                    .await;
                let _ = http.get(format!("http://{ip}:8080/direct")).send().await;
                let _ = http.get(format!("http://{ip}:8080/down")).send().await;
                let _ = http.get("https://metrics.test:8443/filtered").send().await;
                sent += 4;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            sent
        })
    };

    let rules = recorded_names();
    assert!(rules.len() >= 16, "{rules:?}");
    let panels = dashboard_queries();
    assert!(panels.len() >= 14, "{panels:?}");
    let names: Vec<String> = rules.iter().chain(&panels).cloned().collect();
    let missing = std::sync::Mutex::new(names.clone());
    let found = wait_up_to(
        "every recording rule and dashboard query has a series",
        Duration::from_secs(60),
        || async {
            let mut still = vec![];
            for n in &names {
                if series_count(listen, n).await == 0 {
                    still.push(n.clone());
                }
            }
            let done = still.is_empty();
            if let Ok(mut m) = missing.lock() {
                *m = still;
            }
            done
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let sent = load.await.expect("load task");
    found.unwrap_or_else(|e| panic!("{e}: no data for {:?}", missing.lock().map(|m| m.clone())));
    // The renamed request counter carries ingress-nginx's labels and counts the Ingress's
    // requests.
    let q = r#"sum(nginx_ingress_controller_requests{ingress="legacy",namespace="default",status="200"})"#;
    assert_eq!(series_count(listen, q).await, 1);
    eprintln!(
        "Prometheus: {} recording rules and {} dashboard queries with data, {sent} requests sent meanwhile",
        rules.len(),
        panels.len()
    );
}
