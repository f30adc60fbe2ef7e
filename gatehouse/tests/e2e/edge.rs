//! The data plane at the edge, tried as an attacker, a careless tenant and a misbehaving
//! backend would: path spellings, one answer per route whichever request path serves it,
//! poisoned upstream connections, slow and idle clients, tenant isolation. Requests are
//! written as raw bytes, so no client library tidies them up first.

use crate::support::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(crate) const PORT: u16 = 8080;

/// Sends `request` on a new connection and reads until the proxy closes it (5 s at
/// most). Returns the status code (0 when there is no answer) and the whole answer.
pub(crate) async fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    if s.write_all(request).await.is_err() {
        return (0, String::new());
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    (status_of(&text), text)
}

/// The status code of an HTTP/1 answer's first line; 0 when there is none.
pub(crate) fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// GET `target` for `host` as HTTP/1.1 (the direct path takes it first) or HTTP/1.0
/// (pingora's alone), closing after the answer.
fn get_as(version: &str, target: &str, host: &str) -> Vec<u8> {
    format!("GET {target} {version}\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

/// An Ingress serving `/` from `app` and `/admin` with a source range no test client is in
/// (the Ingress from the edge-safety report), on Gatehouse's Ingress setup.
async fn protected_admin() -> Gatehouse {
    let gh = crate::nginx::setup().await;
    gh.write(
        "ingress.yaml",
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: site, namespace: default}
spec:
  ingressClassName: nginx
  rules:
  - host: site.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: admin
  namespace: default
  annotations: {nginx.ingress.kubernetes.io/whitelist-source-range: 10.0.0.0/8}
spec:
  ingressClassName: nginx
  rules:
  - host: site.example.com
    http:
      paths:
      - {path: /admin, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}
",
    );
    let addr = SocketAddr::new(gh.ip, PORT);
    wait_for("the admin rule", || async {
        raw(addr, &get_as("HTTP/1.1", "/admin", "site.example.com"))
            .await
            .0
            == 403
    })
    .await
    .unwrap();
    gh
}

/// Every spelling of a protected prefix gets the protected prefix's answer (403) or 400,
/// never the `/` route's backend, on both request paths; and the backend gets the path
/// the request was routed on.
#[tokio::test]
async fn path_spellings_of_a_protected_prefix_never_reach_the_other_route() {
    let gh = protected_admin().await;
    let addr = SocketAddr::new(gh.ip, PORT);
    let host = "site.example.com";
    let spellings = [
        ("/admin", 403),
        ("/x/../admin", 403),
        ("/x/./../admin/", 403),
        ("/%61dmin", 403),
        ("/%61%64%6D%69%6E/panel", 403),
        ("//admin", 403),
        ("/./admin", 403),
        ("/x/%2e%2e/admin", 403),
        ("/x%2F..%2Fadmin", 400),
        ("/x%2f..%2fadmin", 400),
        ("/x%5C..%5Cadmin", 400),
        ("/x\\..\\admin", 400),
        ("/../admin", 400),
        ("/admin%00", 400),
        ("/x%zz", 400),
        ("/x/..;/admin", 400),
        ("/x/%2e%2e;v=1/admin", 400),
    ];
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        for (path, want) in spellings {
            let (code, answer) = raw(addr, &get_as(version, path, host)).await;
            assert_eq!(code, want, "{version} {path}: {answer}");
        }
        // The backend gets the normalised path.
        let (code, answer) = raw(addr, &get_as(version, "/a/./b/../c//d?q=%2F", host)).await;
        assert_eq!(code, 200, "{answer}");
        assert!(
            answer.contains("\"path\":\"/a/c/d?q=%2F\""),
            "{version}: the backend saw another path: {answer}"
        );
    }
}

/// A route whose only backend has weight 0 answers 500 on every request path: HTTP/1.1
/// (the direct path, which once answered 200 from the backend), HTTP/1.0 and HTTP/2.
#[tokio::test]
async fn a_route_with_no_weight_answers_500_on_every_path() {
    let gh = Gatehouse::start().await;
    gh.write("gateway.yaml", &http_gateway(&[PORT]));
    gh.backend("app").await;
    gh.write(
        "route.yaml",
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: zero, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [zero.example.com]
  rules:
  - backendRefs: [{name: app, port: 80, weight: 0}]
",
    );
    gh.wait_programmed("default/gw").await;
    let addr = SocketAddr::new(gh.ip, PORT);
    let host = "zero.example.com";
    wait_for("the route", || async {
        raw(addr, &get_as("HTTP/1.0", "/", host)).await.0 == 500
    })
    .await
    .unwrap();
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        for _ in 0..3 {
            let (code, answer) = raw(addr, &get_as(version, "/", host)).await;
            assert_eq!(code, 500, "{version}: {answer}");
        }
    }
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .resolve(host, addr)
        .build()
        .expect("h2 client");
    let resp = h2
        .get(format!("http://{host}:{PORT}/"))
        .send()
        .await
        .expect("h2 answer");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 500);
}

/// A backend out of step: it answers HEAD with a body, and after `/late` it sends a whole
/// second answer nobody asked for (then signals `stray_sent`). Every other request gets
/// its own path back as the body. Keep-alive, one request at a time per connection.
async fn misbehaving_backend(ip: std::net::IpAddr) -> (u16, std::sync::Arc<tokio::sync::Notify>) {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let stray_sent = std::sync::Arc::new(tokio::sync::Notify::new());
    let notify = stray_sent.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let notify = notify.clone();
            // Each write on the wire at once (no Nagle): the stray answer has reached the
            // proxy when `stray_sent` fires. Bytes that come after the proxy reused the
            // connection are that request's answer to any proxy.
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end + 4);
                    let mut line = head.split(' ');
                    let (method, path) = (line.next().unwrap_or(""), line.next().unwrap_or(""));
                    let answer = |body: &str| {
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                    };
                    let out = if method == "HEAD" {
                        answer("HEAD-BODY-THAT-MUST-NOT-BE-HERE")
                    } else {
                        answer(path)
                    };
                    if s.write_all(out.as_bytes()).await.is_err() {
                        return;
                    }
                    if path == "/late" {
                        // After the answer went out: a whole answer of its own.
                        tokio::task::yield_now().await;
                        let _ = s.write_all(answer("/stray").as_bytes()).await;
                        notify.notify_one();
                    }
                }
            });
        }
    });
    (port, stray_sent)
}

/// The body of an HTTP/1 answer read to its end (the connection closes after it).
fn body_of(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// With a backend that sends bytes after its answers, no client ever receives bytes of
/// another request's answer: on the direct path (HTTP/1.1) and pingora's (HTTP/1.0).
#[tokio::test]
async fn a_backend_out_of_step_never_hands_one_client_another_answer() {
    let gh = Gatehouse::start().await;
    gh.write("gateway.yaml", &http_gateway(&[PORT]));
    let (port, stray_sent) = misbehaving_backend(gh.ip).await;
    gh.write("svc.yaml", &service("odd", gh.ip, &[port]));
    gh.write(
        "route.yaml",
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: odd, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [odd.example.com]
  rules:
  - backendRefs: [{name: odd, port: 80}]
",
    );
    let addr = SocketAddr::new(gh.ip, PORT);
    let host = "odd.example.com";
    wait_for("the route", || async {
        raw(addr, &get_as("HTTP/1.1", "/ready", host)).await.0 == 200
    })
    .await
    .unwrap();
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        let head = format!("HEAD / {version}\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        for round in 0..3 {
            let (code, answer) = raw(addr, head.as_bytes()).await;
            assert_eq!(code, 200, "{version} HEAD: {answer}");
            assert_eq!(body_of(&answer), "", "{version}: a HEAD answer has no body");
            for i in 0..4 {
                let path = format!("/p/{round}/{i}");
                let (code, answer) = raw(addr, &get_as(version, &path, host)).await;
                assert_eq!(
                    (code, body_of(&answer)),
                    (200, path.as_str()),
                    "{version}: another request's bytes: {answer:?}"
                );
            }
        }
        for round in 0..3 {
            let (code, answer) = raw(addr, &get_as(version, "/late", host)).await;
            assert_eq!((code, body_of(&answer)), (200, "/late"), "{version}");
            stray_sent.notified().await;
            for i in 0..4 {
                let path = format!("/q/{round}/{i}");
                let (code, answer) = raw(addr, &get_as(version, &path, host)).await;
                assert_eq!(
                    (code, body_of(&answer)),
                    (200, path.as_str()),
                    "{version}: another request's bytes: {answer:?}"
                );
            }
        }
    }
}

/// A tenant's unusable Secret (a key of another certificate) leaves its own Ingress with a
/// precise condition and is left out of the model; another namespace's route edit applies
/// within a second. Once, the data plane refused every later version over that Secret.
#[tokio::test]
async fn one_tenants_unusable_secret_holds_back_nobody_else() {
    let gh = crate::nginx::setup().await;
    // The platform's Gateway, open to every team's namespace.
    gh.write(
        "gateway.yaml",
        &gateway(
            "  - name: http
    protocol: HTTP
    port: 8080
    allowedRoutes: {namespaces: {from: All}}
  - name: https
    protocol: HTTPS
    port: 8443
    allowedRoutes: {namespaces: {from: All}}
    tls: {certificateRefs: [{name: site-tls}]}
",
        ),
    );
    let addr = SocketAddr::new(gh.ip, PORT);
    gh.write(
        "team-b.yaml",
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: b, namespace: team-b}
spec:
  parentRefs: [{name: gw, namespace: default}]
  hostnames: [b.example.com]
  rules:
  - matches: [{path: {value: /v1}}]
    backendRefs: [{name: app, namespace: default, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: b-to-app, namespace: default}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: team-b}]
  to: [{group: '', kind: Service}]
",
    );
    let ok = |path: &'static str| async move {
        raw(addr, &get_as("HTTP/1.0", path, "b.example.com"))
            .await
            .0
            == 200
    };
    wait_for("team b's route", || ok("/v1")).await.unwrap();

    let (secret, _) = tls_secret_in("team-a", "a-tls", &["a.example.com"], true);
    gh.write("team-a-secret.yaml", &secret);
    gh.write(
        "team-a.yaml",
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: a, namespace: team-a}
spec:
  ingressClassName: nginx
  tls: [{hosts: [a.example.com], secretName: a-tls}]
  rules:
  - host: a.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}
",
    );
    let st = gh
        .wait_status("Ingress team-a/a", |s| {
            condition(s, "ResolvedRefs").is_some_and(|c| c["status"] == "False")
        })
        .await;
    let c = condition(&st, "ResolvedRefs").expect("ResolvedRefs");
    assert_eq!(c["reason"], "InvalidCertificateRef", "{st:#}");
    assert!(
        c["message"]
            .as_str()
            .is_some_and(|m| m.contains("a-tls") && m.contains("does not belong")),
        "{st:#}"
    );

    // Team b edits its route: served within a second.
    gh.write(
        "team-b.yaml",
        &std::fs::read_to_string(gh.path("team-b.yaml"))
            .expect("team b's file")
            .replace("value: /v1}", "value: /v2}"),
    );
    let took = wait_up_to("team b's edit", Duration::from_secs(1), || ok("/v2"))
        .await
        .unwrap();
    assert!(took < Duration::from_secs(1));
    // And the rest of team a's Ingress is served (over HTTP), without the certificate.
    assert_eq!(
        raw(addr, &get_as("HTTP/1.0", "/", "a.example.com")).await.0,
        308,
        "plain HTTP redirected to HTTPS, as an Ingress with TLS is"
    );
}

/// Should a certificate the data plane cannot load reach it anyway (an operator of another
/// version, a bug), the data plane leaves that certificate out and applies the rest of the
/// version: another listener's routes and the listener's other certificates serve on.
#[tokio::test]
async fn the_data_plane_leaves_out_what_it_cannot_load_and_applies_the_rest() {
    use gatehouse_model::ir::*;
    let ip = next_ip();
    let backend = spawn_echo(ip, 0, "app").await;
    let pem = |names: &[&str], wrong_key: bool| {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let cert = rcgen::generate_simple_self_signed(names.clone()).expect("certificate");
        let key = if wrong_key {
            rcgen::generate_simple_self_signed(names)
                .expect("certificate")
                .key_pair
        } else {
            cert.key_pair
        };
        (
            cert.cert.pem(),
            key.serialize_pem(),
            cert.cert.der().to_vec(),
        )
    };
    let (good_chain, good_key, good_der) = pem(&["good.example.com"], false);
    let (bad_chain, bad_key, _) = pem(&["bad.example.com"], true);
    let mut config = one_listener_config(
        ip,
        backend,
        vec![route_to_app(PathMatch::Prefix("/v1".into()), 1)],
        1,
    );
    let https = Listener {
        key: "default/gw/https".into(),
        name: "https".into(),
        port: 8443,
        protocol: Protocol::Https,
        certificates: vec![
            SniCertificate {
                server_names: vec![HostMatch::Exact("good.example.com".into())],
                certificate: "default/good".into(),
            },
            SniCertificate {
                server_names: vec![HostMatch::Exact("bad.example.com".into())],
                certificate: "default/bad".into(),
            },
        ],
        ..config.listeners[0].clone()
    };
    config.listeners.push(https);
    config.route_tables.push(RouteTable {
        listener: "default/gw/https".into(),
        virtual_hosts: config.route_tables[0].virtual_hosts.clone(),
    });
    config.certificates = vec![
        Certificate {
            key: "default/good".into(),
            chain_pem: good_chain,
            private_key_pem: good_key,
        },
        Certificate {
            key: "default/bad".into(),
            chain_pem: bad_chain,
            private_key_pem: bad_key,
        },
    ];
    let dataplane = gatehouse_dataplane::DataPlane::new();
    let applied = dataplane.apply(&config, 1).expect("the version applies");
    assert_eq!(applied.refused.len(), 1, "{:?}", applied.refused);
    let refused = &applied.refused[0];
    assert_eq!(refused.resource, "Certificate default/bad");
    assert_eq!(refused.listeners, ["default/gw/https"]);
    assert!(
        refused.error.contains("does not belong"),
        "{}",
        refused.error
    );
    assert_eq!(dataplane.version(), 1);

    // Plain HTTP serves; HTTPS serves the good certificate.
    let http = SocketAddr::new(ip, 8080);
    wait_for("http", || async {
        raw(http, &get_as("HTTP/1.0", "/v1", "any.example.com"))
            .await
            .0
            == 200
    })
    .await
    .unwrap();
    let served = served_certificate(SocketAddr::new(ip, 8443), Some("good.example.com")).await;
    assert_eq!(served, good_der, "the good certificate is served");
}

/// A Gateway `default/gw` on PORT whose clients get these GatewayParameters `clients`
/// (YAML flow mapping), with a route for `slow.example.com` to an echo backend.
pub(crate) async fn limited(clients: &str) -> Gatehouse {
    let gh = Gatehouse::start().await;
    gh.write(
        "gateway.yaml",
        &http_gateway(&[PORT]).replace(
            "  gatewayClassName: gatehouse\n",
            "  gatewayClassName: gatehouse\n  infrastructure:\n    parametersRef: {group: gatehouse.dev, kind: GatewayParameters, name: edge}\n",
        ),
    );
    gh.write(
        "params.yaml",
        &format!(
            "apiVersion: gatehouse.dev/v1alpha1
kind: GatewayParameters
metadata: {{name: edge, namespace: default}}
spec:
  clients: {clients}
"
        ),
    );
    gh.backend("app").await;
    gh.write(
        "route.yaml",
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: slow, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [slow.example.com]
  rules:
  - backendRefs: [{name: app, port: 80}]
",
    );
    let addr = SocketAddr::new(gh.ip, PORT);
    // A port that reads PROXY headers first answers only requests that have one.
    let prefix = if clients.contains("proxyProtocol: true") {
        format!("PROXY TCP4 203.0.113.9 {} 40000 {PORT}\r\n", gh.ip)
    } else {
        String::new()
    };
    let request = [
        prefix.as_bytes(),
        &get_as("HTTP/1.1", "/", "slow.example.com"),
    ]
    .concat();
    wait_for("the route", || async { raw(addr, &request).await.0 == 200 })
        .await
        .unwrap();
    gh
}

/// Writes `pieces` on a new connection, `every` apart (a slow client's pace), and reads
/// until the proxy closes the connection (10 s at most): how long that took from the
/// connection's start, and what was read.
async fn held_open(addr: SocketAddr, pieces: &[&[u8]], every: Duration) -> (Duration, Vec<u8>) {
    let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let start = tokio::time::Instant::now();
    let (mut rd, mut wr) = tokio::io::split(s);
    let writer = async {
        for p in pieces {
            if wr.write_all(p).await.is_err() {
                break;
            }
            tokio::time::sleep(every).await;
        }
        std::future::pending::<()>().await
    };
    let read_all = async {
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return got,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let got = tokio::select! {
        got = read_all => got,
        () = writer => Vec::new(),
        _ = tokio::time::sleep(Duration::from_secs(10)) => b"still open after 10 s".to_vec(),
    };
    (start.elapsed(), got)
}

/// Half-sent heads, a slow drip, silence and idle kept-alive connections are closed at the
/// Gateway's timeouts (1 s here); a complete request on time is answered.
#[tokio::test]
async fn slow_and_idle_clients_are_closed_at_the_timeouts() {
    let gh = limited("{headerTimeoutSeconds: 1, idleTimeoutSeconds: 1}").await;
    let addr = SocketAddr::new(gh.ip, PORT);
    let within = |d: Duration| d >= Duration::from_millis(900) && d < Duration::from_secs(3);
    // Nothing at all.
    let (took, got) = held_open(addr, &[], Duration::ZERO).await;
    assert!(within(took), "silent: {took:?} {got:?}");
    // Half a head.
    let (took, got) = held_open(
        addr,
        &[b"GET / HTTP/1.1\r\nHost: slow.example.com\r\n"],
        Duration::ZERO,
    )
    .await;
    assert!(
        within(took) && got.is_empty(),
        "half a head: {took:?} {got:?}"
    );
    // A byte every 200 ms: the whole head is due in 1 s, not each read.
    let drip: Vec<&[u8]> = b"GET / HTTP/1.1\r\nHost: slow.example.com\r\nX-Slow: yes\r\n"
        .chunks(1)
        .collect();
    let (took, got) = held_open(addr, &drip, Duration::from_millis(200)).await;
    assert!(
        within(took) && got.is_empty(),
        "slow drip: {took:?} {got:?}"
    );
    // Parts of an HTTP/2 preface: the first line, the 18 bytes after which the direct path
    // hands the connection to HTTP/2, and the whole preface with no SETTINGS after it.
    for preface in [
        &b"PRI * HTTP/2.0\r\n"[..],
        b"PRI * HTTP/2.0\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ] {
        let (took, _) = held_open(addr, &[preface], Duration::ZERO).await;
        assert!(within(took), "h2c preface {preface:?}: {took:?}");
    }
    // A kept-alive connection after its answer, on the direct path (HTTP/1.1) and pingora's
    // (HTTP/1.0 keep-alive).
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        let request =
            format!("GET / {version}\r\nHost: slow.example.com\r\nConnection: keep-alive\r\n\r\n");
        let (took, got) = held_open(addr, &[request.as_bytes()], Duration::ZERO).await;
        let got = String::from_utf8_lossy(&got);
        assert_eq!(status_of(&got), 200, "{version}: {got}");
        assert!(within(took), "{version} idle after an answer: {took:?}");
    }
    // After an answer pingora gave (HTTP/1.0 keep-alive), the next head dripped a byte
    // every 200 ms is due whole within the header timeout too.
    let first = b"GET / HTTP/1.0\r\nHost: slow.example.com\r\nConnection: keep-alive\r\n\r\n";
    let mut pieces: Vec<&[u8]> = vec![first];
    pieces.extend(b"GET / HTTP/1.1\r\nHost: slow.example.com\r\nX-Slow: yes\r\n".chunks(1));
    let (took, got) = held_open(addr, &pieces, Duration::from_millis(200)).await;
    let got = String::from_utf8_lossy(&got);
    assert_eq!(status_of(&got), 200, "{got}");
    assert_eq!(got.matches(" 200 OK\r\n").count(), 1, "one answer: {got}");
    assert!(
        took < Duration::from_secs(3),
        "slow drip after a pingora answer: {took:?}"
    );
}

/// A socket at its connection cap closes new connections at once, and serves again when
/// below it.
#[tokio::test]
async fn a_socket_at_its_cap_refuses_cleanly_and_serves_again_below_it() {
    let gh = limited("{maxConnections: 3}").await;
    let addr = SocketAddr::new(gh.ip, PORT);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    // The fourth is accepted and closed before any byte, at once.
    let start = tokio::time::Instant::now();
    let (code, answer) = raw(addr, &get_as("HTTP/1.1", "/", "slow.example.com")).await;
    assert_eq!((code, answer.as_str()), (0, ""), "refused at the cap");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "closed, not left waiting"
    );
    // One of the three goes: served again (the count goes down as the connection ends).
    drop(held.pop());
    wait_for("a slot", || async {
        raw(addr, &get_as("HTTP/1.1", "/", "slow.example.com"))
            .await
            .0
            == 200
    })
    .await
    .unwrap();
}

/// Heads over the limits are answered 431 on both request paths.
#[tokio::test]
async fn heads_over_the_limits_are_answered_431() {
    let gh = limited("{maxRequestHeaders: 20, maxRequestHeaderBytes: 4096}").await;
    let addr = SocketAddr::new(gh.ip, PORT);
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        let many: String = (0..25).map(|i| format!("X-H{i}: v\r\n")).collect();
        let request =
            format!("GET / {version}\r\nHost: slow.example.com\r\n{many}Connection: close\r\n\r\n");
        let (code, answer) = raw(addr, request.as_bytes()).await;
        assert_eq!(code, 431, "{version} 25 headers: {answer}");
        let big = "x".repeat(5000);
        let request = format!(
            "GET / {version}\r\nHost: slow.example.com\r\nX-Big: {big}\r\nConnection: close\r\n\r\n"
        );
        let (code, answer) = raw(addr, request.as_bytes()).await;
        assert_eq!(code, 431, "{version} 5 KB head: {answer}");
        let (code, _) = raw(addr, &get_as(version, "/", "slow.example.com")).await;
        assert_eq!(code, 200, "{version}: a head within the limits");
    }
}

/// The headers a backend saw, from the echo backend's answer body (names as the echo
/// server writes them: X-Forwarded-For).
fn seen_headers(answer: &str) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(body_of(answer))
        .map(|v| v["headers"].clone())
        .unwrap_or_default()
}

/// A client's X-Forwarded-*, X-Real-IP and underscored headers never reach a backend:
/// Gatehouse's own take their place, on both request paths.
#[tokio::test]
async fn client_sent_forwarding_headers_never_pass() {
    let gh = limited("{}").await;
    let addr = SocketAddr::new(gh.ip, PORT);
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        let request = format!(
            "GET / {version}\r\nHost: slow.example.com\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Port: 1\r\nX-Forwarded-Proto: https\r\nX_User: admin\r\nX-User: alice\r\nForwarded: for=6.6.6.6\r\nX-Original-URL: /admin\r\nX-Forwarded-Prefix: /evil\r\nConnection: close\r\n\r\n"
        );
        let (code, answer) = raw(addr, request.as_bytes()).await;
        assert_eq!(code, 200, "{answer}");
        let h = seen_headers(&answer);
        // Connections to 127.77.n.1 come from 127.0.0.1.
        let me = "127.0.0.1";
        assert_eq!(h["X-Real-Ip"], serde_json::json!([me]), "{version}: {h}");
        assert_eq!(
            h["X-Forwarded-For"],
            serde_json::json!([me]),
            "{version}: {h}"
        );
        assert_eq!(
            h["X-Forwarded-Host"],
            serde_json::json!(["slow.example.com"]),
            "{version}: {h}"
        );
        assert_eq!(
            h["X-Forwarded-Port"],
            serde_json::json!([PORT.to_string()]),
            "{version}: {h}"
        );
        assert_eq!(
            h["X-Forwarded-Proto"],
            serde_json::json!(["http"]),
            "{version}: {h}"
        );
        assert_eq!(h["X-User"], serde_json::json!(["alice"]), "{version}: {h}");
        for claim in ["Forwarded", "X-Original-Url", "X-Forwarded-Prefix"] {
            assert!(h[claim].is_null(), "{version}: {claim} passed: {h}");
        }
        let underscored: Vec<&String> = h
            .as_object()
            .map(|o| o.keys().filter(|k| k.contains('_')).collect())
            .unwrap_or_default();
        assert!(underscored.is_empty(), "{version}: {underscored:?}");
    }
}

/// Behind a load balancer speaking the PROXY protocol (and proxies trusted for their
/// X-Forwarded-For), source ranges and the forwarded headers see the real client; a
/// connection without the header is closed.
#[tokio::test]
async fn proxy_protocol_and_trusted_proxies_give_the_real_client() {
    let gh = limited("{proxyProtocol: true, trustedProxies: [10.0.0.0/8]}").await;
    gh.write(
        "allow.yaml",
        "apiVersion: gatehouse.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: allow, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: slow}]
  sourceAccess: {allow: [203.0.113.0/24]}
",
    );
    let addr = SocketAddr::new(gh.ip, PORT);
    let from = |source: &str, xff: Option<&str>, version: &str| {
        let xff = xff
            .map(|x| format!("X-Forwarded-For: {x}\r\n"))
            .unwrap_or_default();
        format!(
            "PROXY TCP4 {source} {} 40000 {PORT}\r\nGET / {version}\r\nHost: slow.example.com\r\n{xff}Connection: close\r\n\r\n",
            gh.ip
        )
    };
    wait_for("the policy", || async {
        raw(addr, from("192.0.2.1", None, "HTTP/1.0").as_bytes())
            .await
            .0
            == 403
    })
    .await
    .unwrap();
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        // The PROXY header's source is the client.
        let (code, answer) = raw(addr, from("203.0.113.9", None, version).as_bytes()).await;
        assert_eq!(code, 200, "{version}: {answer}");
        let h = seen_headers(&answer);
        assert_eq!(
            h["X-Real-Ip"],
            serde_json::json!(["203.0.113.9"]),
            "{version}: {h}"
        );
        assert_eq!(
            h["X-Forwarded-For"],
            serde_json::json!(["203.0.113.9"]),
            "{h}"
        );
        // An untrusted source's X-Forwarded-For is not believed.
        let (code, _) = raw(
            addr,
            from("192.0.2.1", Some("203.0.113.9"), version).as_bytes(),
        )
        .await;
        assert_eq!(
            code, 403,
            "{version}: an untrusted peer cannot claim an address"
        );
        // A trusted proxy's is: the last untrusted hop is the client, the chain passes on.
        let (code, answer) = raw(
            addr,
            from("10.1.1.1", Some("198.51.100.1, 203.0.113.9"), version).as_bytes(),
        )
        .await;
        assert_eq!(code, 200, "{version}: {answer}");
        let h = seen_headers(&answer);
        assert_eq!(h["X-Real-Ip"], serde_json::json!(["203.0.113.9"]), "{h}");
        assert_eq!(
            h["X-Forwarded-For"],
            serde_json::json!(["198.51.100.1, 203.0.113.9, 10.1.1.1"]),
            "{h}"
        );
        // A chain over two lines is one chain: its right end decides, whatever the first
        // line says.
        let two_lines = format!(
            "PROXY TCP4 10.1.1.1 {} 40000 {PORT}\r\nGET / {version}\r\nHost: slow.example.com\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-For: 192.0.2.1\r\nConnection: close\r\n\r\n",
            gh.ip
        );
        let (code, answer) = raw(addr, two_lines.as_bytes()).await;
        assert_eq!(code, 403, "{version}: the client is 192.0.2.1: {answer}");
    }
    // No PROXY header: closed without an answer.
    let (code, answer) = raw(addr, &get_as("HTTP/1.1", "/", "slow.example.com")).await;
    assert_eq!((code, answer.as_str()), (0, ""));
}
