//! The config channel on its own: a resource the data plane cannot apply is refused alone
//! (its last good form keeps serving, the rest of the version applies) and reported in the
//! ACK; the next good version applies.

use crate::support::*;
use gatehouse_model::ir::*;
use gatehouse_operator::config_server::{AckEvent, ConfigServer, Published};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

fn config(ip: std::net::IpAddr, backend: std::net::SocketAddr, path: PathMatch) -> Config {
    one_listener_config(ip, backend, vec![route_to_app(path, 1)], 1)
}

async fn next_ack(acks: &mut mpsc::Receiver<AckEvent>, version: u64) -> AckEvent {
    loop {
        let ack = tokio::time::timeout(Duration::from_secs(10), acks.recv())
            .await
            .expect("ack in time")
            .expect("ack channel open");
        if ack.version == version {
            return ack;
        }
    }
}

/// A config server on a port of its own and a data plane dialled to it: where to publish
/// snapshots, the acknowledgements, and the data plane's task.
async fn serve_config() -> (
    watch::Sender<Published>,
    mpsc::Receiver<AckEvent>,
    tokio::task::JoinHandle<()>,
) {
    let (snapshots, rx) = watch::channel(Published::default());
    let (ack_tx, acks) = mpsc::channel(64);
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = grpc.local_addr().unwrap();
    let service = ConfigServer::new(rx, ack_tx).into_service();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(grpc))
            .await
    });
    (snapshots, acks, spawn_dataplane(addr))
}

#[tokio::test]
async fn a_refused_resource_keeps_its_last_good_form_serving() {
    let ip = next_ip();
    let backend_addr = spawn_echo(ip, 0, "app").await;

    let (snapshots, mut acks, _dataplane) = serve_config().await;

    let good = config(ip, backend_addr, PathMatch::Prefix("/".into()));
    snapshots
        .send(Published {
            version: 1,
            config: Arc::new(good.clone()),
        })
        .unwrap();
    assert!(next_ack(&mut acks, 1).await.accepted);
    let url = format!("http://{ip}:8080/x");
    wait_for("v1", || async { get(&url, "x").await.0 == 200 })
        .await
        .unwrap();

    // Version 2 has a regex the data plane cannot compile (the operator would never send
    // it; this test bypasses the operator's own validation).
    let bad = config(ip, backend_addr, PathMatch::Regex("/(".into()));
    snapshots
        .send(Published {
            version: 2,
            config: Arc::new(bad),
        })
        .unwrap();
    let ack = next_ack(&mut acks, 2).await;
    assert!(ack.accepted, "the rest of the version applies");
    let [(resource, listeners, error)] = ack.refused.as_slice() else {
        panic!("one resource refused: {:?}", ack.refused);
    };
    assert!(
        resource.starts_with("VirtualHost default/gw/http"),
        "{resource}"
    );
    assert_eq!(listeners, &["default/gw/http"]);
    assert!(error.contains("invalid regex"), "{error}");
    assert_eq!(
        get(&url, "x").await.0,
        200,
        "its version 1 form still serves"
    );

    // Version 3 only narrows the prefix: it applies on top of what was received.
    let next = config(ip, backend_addr, PathMatch::Prefix("/only".into()));
    snapshots
        .send(Published {
            version: 3,
            config: Arc::new(next),
        })
        .unwrap();
    assert!(next_ack(&mut acks, 3).await.accepted);
    assert_eq!(get(&url, "x").await.0, 404);
    assert_eq!(get(&format!("http://{ip}:8080/only/x"), "x").await.0, 200);
}

/// A snapshot far over gRPC's default message limit (4 MiB): 30,000 hostnames, each with
/// a route, arrive, apply, and serve; an edit to one then travels as one small delta.
#[tokio::test]
async fn a_snapshot_of_thirty_thousand_hosts_applies() {
    let ip = next_ip();
    let backend_addr = spawn_echo(ip, 0, "app").await;
    let (snapshots, mut acks, _dataplane) = serve_config().await;

    let mut big = config(ip, backend_addr, PathMatch::Prefix("/".into()));
    let route = big.route_tables[0].virtual_hosts[0].routes[0].clone();
    let hosts = |n: usize, path: &str| -> Vec<Arc<VirtualHost>> {
        (0..n)
            .map(|i| {
                let mut r = (*route).clone();
                r.matcher = RouteMatch::path_only(PathMatch::Prefix(path.into()));
                Arc::new(VirtualHost {
                    hostname: HostMatch::Exact(format!("h{i}.example.com")),
                    routes: vec![Arc::new(r)],
                })
            })
            .collect()
    };
    let mut table = hosts(30_000, "/");
    table.sort_by(|a, b| VirtualHost::precedence(&a.hostname, &b.hostname));
    big.route_tables[0].virtual_hosts = table.clone();
    snapshots
        .send(Published {
            version: 1,
            config: Arc::new(big.clone()),
        })
        .unwrap();
    let ack = next_ack(&mut acks, 1).await;
    assert!(ack.accepted, "{}", ack.error);
    let url = format!("http://{ip}:8080/x");
    assert_eq!(get(&url, "h29999.example.com").await.0, 200);

    // One host changes: it serves the new route, the others stay.
    let mut edited = big.clone();
    let at = table
        .iter()
        .position(|h| h.hostname == HostMatch::Exact("h7.example.com".into()))
        .unwrap();
    // hosts(8, ..) ends with h7.
    edited.route_tables[0].virtual_hosts[at] = hosts(8, "/only").pop().unwrap();
    snapshots
        .send(Published {
            version: 2,
            config: Arc::new(edited),
        })
        .unwrap();
    assert!(next_ack(&mut acks, 2).await.accepted);
    assert_eq!(get(&url, "h7.example.com").await.0, 404);
    assert_eq!(
        get(&format!("http://{ip}:8080/only/x"), "h7.example.com")
            .await
            .0,
        200
    );
    assert_eq!(get(&url, "h8.example.com").await.0, 200);
}
