//! A data plane process's life as the kubelet sees it (`dataplane/src/lifecycle.rs`):
//! unready until it serves, and on SIGTERM unready at once, serving through the drain
//! delay, then listeners closed, requests in flight finished, and the process gone.

use crate::edge;
use crate::lifecycle::gatehouse;
use crate::support::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The status of `/readyz` (0 when nothing answers).
async fn readiness(health: &str) -> u16 {
    client()
        .get(format!("http://{health}/readyz"))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// Sends `request` on a new connection and reads until the peer closes it.
async fn exchange_to_close(addr: SocketAddr, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn sigterm_drains_without_failing_a_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ip = next_ip();
    let backend_port = spawn_echo(ip, 0, "app").await.port();
    std::fs::write(dir.path().join("gateway.yaml"), http_gateway(&[8080])).expect("write");
    std::fs::write(
        dir.path().join("svc.yaml"),
        service("app", ip, &[backend_port]),
    )
    .expect("write");
    std::fs::write(dir.path().join("route.yaml"), ROUTE_TO_APP).expect("write");
    let (config, admin, health) = (
        format!("{ip}:9901"),
        format!("{ip}:9900"),
        format!("{ip}:9902"),
    );
    let operator_url = format!("http://{config}");

    // The data plane first, with no operator yet: alive, not ready.
    let mut dataplane = gatehouse(&[
        "dataplane",
        "--operator",
        &operator_url,
        "--health-address",
        &health,
        "--drain-delay-seconds",
        "2",
        "--drain-timeout-seconds",
        "10",
    ]);
    wait_for("health endpoint", || async {
        readiness(&health).await != 0
    })
    .await
    .expect("health endpoint");
    assert_eq!(readiness(&health).await, 503, "ready with no version");
    let live = client()
        .get(format!("http://{health}/healthz"))
        .send()
        .await
        .map(|r| r.status().as_u16());
    assert_eq!(live.ok(), Some(200));

    let dir_s = dir.path().to_str().expect("utf-8 path").to_string();
    let ip_s = ip.to_string();
    let _operator = gatehouse(&[
        "operator",
        "--file",
        &dir_s,
        "--address",
        &ip_s,
        "--config-address",
        &config,
        "--admin-address",
        &admin,
    ]);
    wait_for("ready", || async { readiness(&health).await == 200 })
        .await
        .expect("ready");
    let addr = SocketAddr::new(ip, 8080);
    let url = format!("http://{addr}/");
    assert_eq!(get(&url, "x").await.0, 200, "ready means serving");

    // Steady load on kept-alive connections, and a slow request in flight.
    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = (0..2)
        .map(|_| load(url.clone(), "x", stop.clone()))
        .collect();
    let slow = tokio::spawn(exchange_to_close(
        addr,
        "GET /slow/2500 HTTP/1.1\r\nHost: x\r\n\r\n",
    ));
    wait_for("the slow request is in flight", || async {
        get(&format!("http://{ip}:{backend_port}/seen/slow/2500"), "x")
            .await
            .1
            == 1
    })
    .await
    .expect("slow request reached the backend");

    // A kept-alive connection with one answer behind it, idle at the SIGTERM.
    let mut kept = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let one = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    kept.write_all(one.as_bytes()).await.expect("write");
    let mut first = vec![0u8; 16 * 1024];
    let n = kept.read(&mut first).await.expect("first answer");
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));

    let pid = dataplane.0.id().to_string();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(term.success());
    let termed = tokio::time::Instant::now();
    wait_for("unready", || async { readiness(&health).await == 503 })
        .await
        .expect("unready after SIGTERM");
    // Within the drain delay a new connection is still served (the load balancer may not
    // know yet); the load stops here, as it does when the endpoint is removed.
    assert_eq!(get(&url, "x").await.0, 200, "served during the drain delay");
    let (ok, failed) = stop_load(&stop, loads).await;
    // A version applied during the delay (endpoints change mid-rollout) serves, and does
    // not make the data plane ready again. The new route's backend does not exist: its
    // 500 shows the version applied.
    std::fs::write(
        dir.path().join("late.yaml"),
        ROUTE_TO_APP
            .replace("name: app\n", "name: late\n")
            .replace("spec:\n", "spec:\n  hostnames: [late.example.com]\n")
            .replace("{name: app, port: 80}", "{name: nothing, port: 80}"),
    )
    .expect("write");
    wait_for("the late route", || async {
        get(&url, "late.example.com").await.0 == 500
    })
    .await
    .expect("a version applied during the delay");
    assert_eq!(readiness(&health).await, 503, "ready again after a version");
    assert!(
        termed.elapsed() < Duration::from_secs(2),
        "the delay is 2 s"
    );
    assert!(ok > 0);
    assert_eq!(failed, 0, "requests failed during the drain delay");

    // Then the listener closes: no new connection.
    wait_for("listener closed", || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await
    .expect("listener closed after the delay");
    // The kept-alive connection's next request is answered, with `Connection: close`,
    // and the connection then ends.
    kept.write_all(one.as_bytes()).await.expect("write");
    let mut last = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), kept.read_to_end(&mut last)).await;
    let last = String::from_utf8_lossy(&last).to_ascii_lowercase();
    assert_eq!(edge::status_of(&last), 200, "{last}");
    assert!(last.contains("\r\nconnection: close\r\n"), "{last}");
    // The slow request, in flight throughout, is answered whole; then its connection ends.
    let answer = slow.await.expect("slow task");
    assert_eq!(edge::status_of(&answer), 200, "{answer}");
    // And the process exits with it, long before the 10 s drain timeout.
    let exited = wait_for("exit", || {
        let done = matches!(dataplane.0.try_wait(), Ok(Some(_)));
        async move { done }
    })
    .await;
    assert!(
        exited.is_ok(),
        "still running after its last connection ended"
    );
    assert!(
        termed.elapsed() < Duration::from_secs(5),
        "exit took {:?}",
        termed.elapsed()
    );
}
