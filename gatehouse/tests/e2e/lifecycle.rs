//! Change while serving: listeners opened and closed at runtime, config churn under load,
//! the operator killed and restarted, bad input next to good.

use crate::support::*;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const ROUTE: &str = ROUTE_TO_APP;

#[tokio::test]
async fn listener_added_and_removed_while_another_serves_a_slow_request() {
    let gh = Gatehouse::start().await;
    gh.backend("app").await;
    gh.write("route.yaml", ROUTE);
    gh.write("gateway.yaml", &http_gateway(&[8081, 8083]));
    gh.wait_programmed("default/gw").await;
    let u = |port: u16, p: &str| gh.url(port, p);
    wait_for("8081", || async { get(&u(8081, "/"), "x").await.0 == 200 })
        .await
        .unwrap();
    wait_for("8083", || async { get(&u(8083, "/"), "x").await.0 == 200 })
        .await
        .unwrap();

    // A slow request on 8083 is in flight while 8081 goes and 8082 comes.
    let slow_url = u(8083, "/slow/1500");
    let slow = tokio::spawn(async move { get(&slow_url, "x").await.0 });
    tokio::time::sleep(Duration::from_millis(200)).await;
    gh.write("gateway.yaml", &http_gateway(&[8082, 8083]));
    wait_for("8082 serving", || async {
        client()
            .get(u(8082, "/"))
            .header("host", "x")
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await
    .unwrap();
    wait_for("8081 closed", || async {
        tokio::net::TcpStream::connect(SocketAddr::new(gh.ip, 8081))
            .await
            .is_err()
    })
    .await
    .unwrap();
    assert!(
        !slow.is_finished(),
        "the slow request should still be running"
    );
    assert_eq!(
        slow.await.unwrap(),
        200,
        "the slow request on the untouched listener finished"
    );
    assert_eq!(get(&u(8083, "/"), "x").await.0, 200);
}

#[tokio::test]
async fn config_change_every_10ms_under_load_fails_no_request() {
    let gh = Gatehouse::start().await;
    gh.backend("app").await;
    gh.backend("other").await;
    gh.write("gateway.yaml", &http_gateway(&[8080]));
    gh.write("route.yaml", ROUTE);
    gh.wait_programmed("default/gw").await;
    let url = gh.url(8080, "/steady");
    wait_for("route", || async { get(&url, "x").await.0 == 200 })
        .await
        .unwrap();
    let version_before = gh.status().await["version"].as_u64().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = (0..4)
        .map(|_| load(url.clone(), "churn.example.com", stop.clone()))
        .collect();
    // 200 edits, one every 10 ms: a second route appears, changes and goes, while the
    // steady route stays.
    for i in 0..200 {
        let extra = match i % 3 {
            0 => String::new(),
            n => format!(
                "  - matches: [{{path: {{value: /extra-{n}-{i}}}}}]\n    backendRefs: [{{name: other, port: 80}}]\n"
            ),
        };
        gh.write("route.yaml", &format!("{ROUTE}{extra}"));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (ok, failed) = stop_load(&stop, loads).await;
    let published = gh.status().await["version"].as_u64().unwrap() - version_before;
    eprintln!("churn: {ok} ok, {failed} failed, {published} versions published");
    assert_eq!(failed, 0);
    assert!(ok > 100, "the load ran ({ok} requests)");
    assert!(
        published >= 20,
        "config kept changing ({published} versions)"
    );
}

#[tokio::test]
async fn editing_a_route_file_reroutes_within_one_second() {
    let gh = Gatehouse::start().await;
    gh.backend("a").await;
    gh.backend("b").await;
    gh.write("gateway.yaml", &http_gateway(&[8080]));
    let route = |svc: &str| ROUTE.replace("name: app, port", &format!("name: {svc}, port"));
    gh.write("route.yaml", &route("a"));
    gh.wait_programmed("default/gw").await;
    let url = gh.url(8080, "/");
    wait_for("a", || async { pod(&url, "x").await == "a" })
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let l = load(url.clone(), "x", stop.clone());
    let edited = Instant::now();
    gh.write("route.yaml", &route("b"));
    wait_for("b", || async { pod(&url, "x").await == "b" })
        .await
        .unwrap();
    let took = edited.elapsed();
    let (_, failed) = stop_load(&stop, vec![l]).await;
    eprintln!("edit to new routing: {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(failed, 0);
}

pub(crate) struct Killed(pub(crate) Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn gatehouse(args: &[&str]) -> Killed {
    Killed(
        Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start gatehouse"),
    )
}

/// Operator and data plane as separate processes; the operator is killed (SIGKILL) and
/// started again while traffic flows.
#[tokio::test]
async fn operator_killed_and_restarted_while_traffic_flows() {
    let dir = tempfile::tempdir().unwrap();
    let ip = next_ip();
    let backend_port = spawn_echo(ip, 0, "app").await.port();
    std::fs::write(dir.path().join("gateway.yaml"), http_gateway(&[8080])).unwrap();
    std::fs::write(
        dir.path().join("svc.yaml"),
        service("app", ip, &[backend_port]),
    )
    .unwrap();
    std::fs::write(dir.path().join("route.yaml"), ROUTE).unwrap();

    // Fixed ports on this test's own address: a port picked by binding :0 and releasing it
    // can be taken by an outgoing connection's ephemeral port before the operator binds it
    // (other tests open thousands of connections).
    let dir_s = dir.path().to_str().unwrap().to_string();
    let ip_s = ip.to_string();
    let config_addr = format!("{ip}:9901");
    let admin_addr = format!("{ip}:9900");
    let operator_args = [
        "operator",
        "--file",
        &dir_s,
        "--address",
        &ip_s,
        "--config-address",
        &config_addr,
        "--admin-address",
        &admin_addr,
    ];
    let mut operator = Some(gatehouse(&operator_args));
    let _dataplane = gatehouse(&["dataplane", "--operator", &format!("http://{config_addr}")]);
    let url = format!("http://{ip}:8080/");
    wait_for("traffic", || async {
        client()
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await
    .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = (0..2)
        .map(|_| load(url.clone(), "x", stop.clone()))
        .collect();
    let served_while_down = Arc::new(AtomicU64::new(0));
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(operator.take()); // SIGKILL
    let probe = client();
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(1) {
        if probe
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            served_while_down.fetch_add(1, Ordering::Relaxed);
        }
    }
    operator = Some(gatehouse(&operator_args));
    // The data plane reconnects (with backoff) and is sent the current snapshot.
    let status_url = format!("http://{admin_addr}/status");
    wait_for("re-programmed", || async {
        let Ok(r) = client().get(&status_url).send().await else {
            return false;
        };
        let s: serde_json::Value = r.json().await.unwrap_or_default();
        condition(&s["objects"]["Gateway default/gw"], "Programmed")
            .is_some_and(|c| c["status"] == "True")
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, failed) = stop_load(&stop, loads).await;
    drop(operator);
    eprintln!("operator restart: {ok} ok, {failed} failed");
    assert!(
        served_while_down.load(Ordering::Relaxed) > 0,
        "traffic flowed while the operator was down"
    );
    assert_eq!(failed, 0);
}

#[tokio::test]
async fn bad_input_is_reported_and_the_rest_keeps_serving() {
    let gh = Gatehouse::start().await;
    gh.backend("app").await;
    gh.write("gateway.yaml", &http_gateway(&[8080]));
    gh.write("route.yaml", ROUTE);
    gh.wait_programmed("default/gw").await;
    let url = gh.url(8080, "/");
    wait_for("route", || async { get(&url, "x").await.0 == 200 })
        .await
        .unwrap();

    gh.write(
        "malformed.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: [broken\n",
    );
    gh.write(
        "unknown.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n",
    );
    gh.write(
        "regex.yaml",
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bad-regex, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [regex.example.com]
  rules:
  - matches: [{path: {type: RegularExpression, value: '/(unclosed'}}]
    backendRefs: [{name: app, port: 80}]
",
    );
    gh.write(
        "missing-secret.yaml",
        &format!(
            "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: tls-gw, namespace: default}}
spec:
  gatewayClassName: gatehouse
  addresses: [{{type: IPAddress, value: '{}'}}]
  listeners:
  - name: https
    protocol: HTTPS
    port: 9443
    tls: {{certificateRefs: [{{name: no-such-secret}}]}}
",
            gh.ip
        ),
    );
    gh.write(
        "same-port.yaml",
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw2, namespace: default}
spec:
  gatewayClassName: gatehouse
  listeners:
  - {name: http, protocol: HTTP, port: 8080}
",
    );
    gh.write(
        "missing-service.yaml",
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: to-nowhere, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [nowhere.example.com]
  rules:
  - backendRefs: [{name: no-such-service, port: 80}]
",
    );

    let route = gh
        .wait_status("HTTPRoute default/bad-regex", |s| {
            !s["parents"][0].is_null()
        })
        .await;
    let accepted = condition(&route["parents"][0], "Accepted").unwrap();
    assert_eq!(accepted["status"], "False");
    assert_eq!(accepted["reason"], "UnsupportedValue");
    let msg = accepted["message"].as_str().unwrap();
    assert!(
        msg.contains("spec.rules[0]") && msg.contains("path.value"),
        "{msg}"
    );

    let tls_gw = gh
        .wait_status("Gateway default/tls-gw", |s| !s["listeners"][0].is_null())
        .await;
    let resolved = condition(&tls_gw["listeners"][0], "ResolvedRefs").unwrap();
    assert_eq!(resolved["reason"], "InvalidCertificateRef");
    assert!(
        resolved["message"]
            .as_str()
            .unwrap()
            .contains("no-such-secret")
    );

    let gw2 = gh
        .wait_status("Gateway default/gw2", |s| !s["listeners"][0].is_null())
        .await;
    let accepted = condition(&gw2["listeners"][0], "Accepted").unwrap();
    assert_eq!(accepted["reason"], "PortUnavailable");
    assert!(accepted["message"].as_str().unwrap().contains("default/gw"));

    let nowhere = gh
        .wait_status("HTTPRoute default/to-nowhere", |s| {
            !s["parents"][0].is_null()
        })
        .await;
    let resolved = condition(&nowhere["parents"][0], "ResolvedRefs").unwrap();
    assert_eq!(resolved["reason"], "BackendNotFound");
    assert!(
        resolved["message"]
            .as_str()
            .unwrap()
            .contains("backendRefs[0]")
    );
    assert_eq!(get(&url, "nowhere.example.com").await.0, 500);

    let errors = gh.status().await["errors"].clone();
    let errors: Vec<&str> = errors
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("malformed.yaml:4:") && e.contains("malformed YAML")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("unknown.yaml:1:") && e.contains("Widget")),
        "{errors:?}"
    );

    // The good route never stopped.
    assert_eq!(get(&url, "x").await.0, 200);
    // A later good edit still applies, bad files and all.
    gh.write(
        "route.yaml",
        &ROUTE.replace("name: app\n", "name: app\n  labels: {edited: \"yes\"}\n"),
    );
    assert_eq!(get(&url, "x").await.0, 200);
}

/// The data plane itself, without the operator's coalescing: a new version applied every
/// 10 ms (routes added and removed, backends reweighted) while load runs on the stable route.
#[tokio::test]
async fn dataplane_applies_a_version_every_10ms_under_load() {
    use gatehouse_model::ir::PathMatch;
    let ip = next_ip();
    let backend_addr = spawn_echo(ip, 0, "app").await;
    let config = |i: u32| {
        let extra =
            (0..i % 50).map(|n| route_to_app(PathMatch::Prefix(format!("/extra/{n}")), 1 + i % 7));
        let routes = extra
            .chain([route_to_app(PathMatch::Prefix("/".into()), 1 + i % 5)])
            .collect();
        one_listener_config(ip, backend_addr, routes, i64::from(i))
    };
    let dataplane = gatehouse_dataplane::DataPlane::new();
    dataplane.apply(&config(0), 1).unwrap();
    let url = format!("http://{ip}:8080/steady");
    wait_for("listener", || async { get(&url, "x").await.0 == 200 })
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = (0..4)
        .map(|_| load(url.clone(), "x", stop.clone()))
        .collect();
    for i in 1..300u32 {
        dataplane.apply(&config(i), u64::from(i) + 1).unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (ok, failed) = stop_load(&stop, loads).await;
    eprintln!("data plane swaps: 299 versions, {ok} ok, {failed} failed");
    assert_eq!(dataplane.version(), 300);
    assert_eq!(failed, 0);
    assert!(ok > 100);
}
