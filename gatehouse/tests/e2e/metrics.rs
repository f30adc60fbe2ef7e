//! Metrics over real sockets: `gatehouse standalone` (the binary, its data plane a child
//! process) serves a direct-path route and a pingora-path route, and after exactly N
//! requests its `/metrics` (the operator's page, followed by the data plane's) shows each
//! route's request counter and duration histogram risen by exactly N, with the right code;
//! requests no route took count on their listener.

use crate::support::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

/// A port free now on 127.0.0.1 (the OS's pick, released for the child to bind).
pub(crate) fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("its address")
}

/// Samples of a Prometheus text page: "name{labels}" -> value.
pub(crate) fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The value of the sample named `name` whose labels include every one of `labels`
/// (0 when none: a series not yet seen).
pub(crate) fn value(samples: &BTreeMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| {
            series.strip_prefix(name).is_some_and(|rest| {
                (rest.is_empty() && labels.is_empty())
                    || rest.starts_with('{')
                        && labels
                            .iter()
                            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
            })
        })
        .map(|(_, v)| *v)
        .sum()
}

pub(crate) async fn scrape(admin: SocketAddr) -> BTreeMap<String, f64> {
    let text = client()
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("a text page");
    samples(&text)
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `gatehouse standalone` (the binary) on a directory with Gateway `default/gw` (HTTP on
/// 8080, HTTPS on 8443 with a self-signed certificate for metrics.test), an echo backend
/// `app`, HTTPRoutes `direct` (/direct, the direct path) and `filtered` (/filtered, a header
/// filter: the pingora path), and the `extra` YAML documents. Returns its address, its admin
/// endpoint and the process, once both routes serve.
pub(crate) async fn start_standalone(extra: &[&str]) -> Standalone {
    start_standalone_with(extra, None).await
}

/// As `start_standalone`, the Gateway's parameters named by `parameters` (a
/// GatewayParameters in `extra`) when given.
pub(crate) async fn start_standalone_with(extra: &[&str], parameters: Option<&str>) -> Standalone {
    let ip = next_ip();
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = spawn_echo(ip, 0, "app").await;
    let yaml = format!(
        "{}---
{}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: direct
  namespace: default
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /direct}}}}]
    backendRefs: [{{name: app, port: 80}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: filtered
  namespace: default
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /filtered}}}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {{set: [{{name: x-through, value: pingora}}]}}
    backendRefs: [{{name: app, port: 80}}]
",
        gateway(
            "  - name: http-8080
    protocol: HTTP
    port: 8080
  - name: https
    protocol: HTTPS
    port: 8443
    tls: {certificateRefs: [{name: cert}]}
"
        ),
        service("app", ip, &[backend.port()])
    );
    let yaml = format!("{yaml}---\n{}", tls_secret("cert", &["metrics.test"]).0);
    let yaml = match parameters {
        Some(name) => yaml.replacen(
            "  gatewayClassName: gatehouse\n",
            &format!("  gatewayClassName: gatehouse\n  infrastructure: {{parametersRef: {{group: gatehouse.dev, kind: GatewayParameters, name: {name}}}}}\n"),
            1,
        ),
        None => yaml,
    };
    let yaml = extra.iter().fold(yaml, |y, e| format!("{y}---\n{e}"));
    std::fs::write(dir.path().join("all.yaml"), yaml).expect("YAML written");
    let (config, admin, dataplane_admin) = (free_port(), free_port(), free_port());
    let mut child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .arg("standalone")
            .arg(dir.path())
            .args(["--address", &ip.to_string()])
            .args(["--config-address", &config.to_string()])
            .args(["--admin-address", &admin.to_string()])
            .args(["--dataplane-admin-address", &dataplane_admin.to_string()])
            .stdout(Stdio::piped())
            // GATEHOUSE_TEST_STDERR=1 shows its log, to see why a test's Gateway is not served.
            .stderr(if std::env::var_os("GATEHOUSE_TEST_STDERR").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("gatehouse standalone starts"),
    );
    // Its standard output (access log lines), line by line as they come.
    let stdout = Arc::new(Mutex::new(Vec::new()));
    if let Some(out) = child.0.stdout.take() {
        let lines = stdout.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(mut l) = lines.lock() {
                    l.push(line);
                }
            }
        });
    }
    let url = |path: &str| format!("http://{ip}:8080{path}");
    wait_up_to(
        "both routes serve",
        std::time::Duration::from_secs(20),
        || async {
            let ok = |p: String| async move {
                client()
                    .get(p)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
            };
            ok(url("/direct")).await && ok(url("/filtered")).await
        },
    )
    .await
    .expect("both routes serve");
    Standalone {
        ip,
        admin,
        stdout,
        _dir: dir,
        _process: child,
    }
}

/// A running `gatehouse standalone`, stopped when dropped.
pub(crate) struct Standalone {
    pub(crate) ip: std::net::IpAddr,
    pub(crate) admin: SocketAddr,
    /// Lines written to its standard output so far.
    pub(crate) stdout: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
    _process: Child,
}

#[tokio::test]
async fn after_n_requests_each_routes_counters_rose_by_n() {
    let gatehouse = start_standalone(&[]).await;
    let (ip, admin) = (gatehouse.ip, gatehouse.admin);
    let url = |path: &str| format!("http://{ip}:8080{path}");

    let before = scrape(admin).await;
    let (n_direct, n_filtered, n_unrouted) = (37, 23, 5);
    let http = client();
    for _ in 0..n_direct {
        let r = http.get(url("/direct/a")).send().await.expect("answer");
        assert_eq!(r.status(), 200);
        r.bytes().await.expect("body");
    }
    for _ in 0..n_filtered {
        let r = http.get(url("/filtered/b")).send().await.expect("answer");
        assert_eq!(r.status(), 200);
        r.bytes().await.expect("body");
    }
    for _ in 0..n_unrouted {
        let r = http.get(url("/nowhere")).send().await.expect("answer");
        assert_eq!(r.status(), 404);
    }
    // The answer's last byte is sent before the request is counted: wait for the count.
    let mut after = scrape(admin).await;
    let requests = |s: &BTreeMap<String, f64>, route: &str, code: &str| {
        value(
            s,
            "gatehouse_requests_total",
            &[
                ("gateway", "default/gw"),
                ("listener", "http-8080"),
                ("route_name", route),
                ("method", "GET"),
                ("code", code),
            ],
        )
    };
    for _ in 0..100 {
        if requests(&after, "filtered", "200") - requests(&before, "filtered", "200")
            >= n_filtered as f64
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        after = scrape(admin).await;
    }
    let rose = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert_eq!(
        requests(&after, "direct", "200") - requests(&before, "direct", "200"),
        n_direct as f64
    );
    assert_eq!(
        requests(&after, "filtered", "200") - requests(&before, "filtered", "200"),
        n_filtered as f64
    );
    assert_eq!(
        requests(&after, "", "404") - requests(&before, "", "404"),
        n_unrouted as f64
    );
    for (route, n) in [("direct", n_direct), ("filtered", n_filtered)] {
        let labels = [("listener", "http-8080"), ("route_name", route)];
        assert_eq!(
            rose("gatehouse_request_duration_seconds_count", &labels),
            n as f64,
            "{route}"
        );
        assert_eq!(
            rose("gatehouse_upstream_first_byte_seconds_count", &labels),
            n as f64,
            "{route}"
        );
        assert!(
            rose("gatehouse_response_body_bytes_total", &labels) > 0.0,
            "{route}"
        );
        assert_eq!(
            rose(
                "gatehouse_request_duration_seconds_bucket",
                &[("route_name", route), ("le", "+Inf")]
            ),
            n as f64,
            "{route}"
        );
    }
    // Connections and TLS: three HTTPS clients, three handshakes on 8443; the served
    // certificate's expiry (rcgen's default notAfter is in 4096).
    let before = scrape(admin).await;
    for _ in 0..3 {
        let tls = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .resolve("metrics.test", SocketAddr::new(ip, 8443))
            .build()
            .expect("a client");
        let r = tls
            .get("https://metrics.test:8443/direct/tls")
            .send()
            .await
            .expect("an HTTPS answer");
        assert_eq!(r.status(), 200);
    }
    let after = scrape(admin).await;
    let socket = [("gateway", "default/gw"), ("port", "8443")];
    let rose = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert_eq!(rose("gatehouse_tls_handshakes_total", &socket), 3.0);
    assert_eq!(rose("gatehouse_connections_accepted_total", &socket), 3.0);
    let expiry = value(
        &after,
        "gatehouse_tls_certificate_expiry_timestamp_seconds",
        &[("listener", "https"), ("certificate", "default/cert")],
    );
    assert!(expiry > 4_000_000_000.0, "{expiry}");
    assert_eq!(
        value(&after, "gatehouse_config_last_version_accepted", &[]),
        1.0
    );

    // One page, both processes: the operator's own series and its ACKs are there too.
    assert!(
        value(
            &after,
            "gatehouse_operator_config_acks_total",
            &[("accepted", "true")]
        ) >= 1.0
    );
    assert!(
        value(
            &after,
            "gatehouse_operator_objects",
            &[("kind", "HTTPRoute")]
        ) == 2.0
    );
    assert!(after.contains_key("gatehouse_config_versions_applied_total"));
}
