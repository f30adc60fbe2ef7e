//! The migration, live: examples/migration's Ingresses served on one listener pair of a
//! Gateway and their `gatehouse convert` output on another pair of the same Gateway, both
//! answering the verifier's whole request set through the real data plane.

use crate::support::*;
use gatehouse_migrate::convert::convert;
use gatehouse_operator::source::file::FileSource;
use gatehouse_translate::{Settings, translate};
use std::collections::HashMap;
use std::net::SocketAddr;

/// The Ingress listeners' ports and, for each, the port of its twin serving the routes.
const TWINS: [(u16, u16); 2] = [(8080, 9080), (8443, 9443)];

/// What a client sees of an answer (the echo backend says who served it and what path it
/// was sent); the affinity cookie by name only, its value being per answer.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    pod: String,
    path: String,
    location: String,
    hsts: String,
    cookie: String,
}

#[tokio::test]
async fn ingresses_and_their_conversion_answer_alike_side_by_side() {
    let gh = Gatehouse::start().await;
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/migration");
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        let mut text = std::fs::read_to_string(&path).unwrap();
        if path.ends_with("00-platform.yaml") {
            // A second listener pair for the converted routes; Ingresses keep the first.
            text = text.replace(
                "---\napiVersion: gatehouse.dev/v1alpha1",
                "  - name: routes-http
    protocol: HTTP
    port: 9080
    allowedRoutes: {namespaces: {from: All}}
  - name: routes-https
    protocol: HTTPS
    port: 9443
    tls: {certificateRefs: [{name: example-com-tls}]}
    allowedRoutes: {namespaces: {from: All}}
---
apiVersion: gatehouse.dev/v1alpha1",
            );
            text = text.replace(
                "    name: public\n---\napiVersion: networking.k8s.io/v1",
                "    name: public\n    sectionNames: [http, https]\n---\napiVersion: networking.k8s.io/v1",
            );
            assert!(text.contains("sectionNames") && text.contains("routes-https"));
        }
        gh.write(path.file_name().unwrap().to_str().unwrap(), &text);
    }
    // An echo backend behind every Service of the examples.
    let services = FileSource::new(gh.path("")).load().store.services.clone();
    for (key, svc) in &services {
        let port = spawn_echo(gh.ip, 0, &key.name).await.port();
        let port_name = svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0]
            .name
            .clone()
            .unwrap();
        gh.write(
            &format!("eps-{}.yaml", key.name),
            &format!(
                "apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}
  namespace: {ns}
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: {port_name}, port: {port}}}]
endpoints: [{{addresses: ['{ip}']}}]
",
                name = key.name,
                ns = key.namespace,
                ip = gh.ip,
            ),
        );
    }
    gh.wait_programmed("infra/public").await;

    // Convert what is served, onto the second listener pair.
    let store = FileSource::new(gh.path("")).load().store;
    let conversion = convert(&store, &Settings::default());
    let yaml = gatehouse_migrate::to_yaml(&conversion)
        .unwrap()
        .replace("sectionName: http\n", "sectionName: routes-http\n")
        .replace("sectionName: https\n", "sectionName: routes-https\n");
    gh.write("zz-converted.yaml", &yaml);
    wait_for("the converted routes", || async {
        get(&gh.url(9080, "/two"), "two.example.com").await.0 == 200
    })
    .await
    .unwrap();

    let config = translate(&store, &Settings::default()).config;
    let probes = gatehouse_migrate::probes(&store, &config);
    let mut tls_clients: HashMap<(String, u16), reqwest::Client> = HashMap::new();
    let mut compared = 0;
    // (served by a backend, redirected, refused by a policy): the set must exercise all.
    let mut kinds = (0, 0, 0);
    let mut differences = Vec::new();
    for probe in probes
        .iter()
        .filter(|p| TWINS.iter().any(|t| t.0 == p.port))
    {
        let twin = TWINS.iter().find(|t| t.0 == probe.port).unwrap().1;
        let mut seen = Vec::new();
        for port in [probe.port, twin] {
            let (client, url) = if probe.tls {
                let client = tls_clients
                    .entry((probe.host.clone(), port))
                    .or_insert_with(|| {
                        reqwest::Client::builder()
                            .no_proxy()
                            .redirect(reqwest::redirect::Policy::none())
                            .danger_accept_invalid_certs(true)
                            .resolve(&probe.host, SocketAddr::new(gh.ip, port))
                            .build()
                            .unwrap()
                    })
                    .clone();
                (
                    client,
                    format!("https://{}:{port}{}", probe.host, probe.target),
                )
            } else {
                (client(), gh.url(port, &probe.target))
            };
            // Over TLS the URL names the host (SNI and :authority); a Host header on top
            // is refused by HTTP/2.
            let mut req = client.get(&url);
            if !probe.tls {
                req = req.header("host", &probe.host);
            }
            for (k, v) in &probe.headers {
                req = req.header(k, v);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                // No certificate for the name, on both sides alike (checked below).
                Err(e) => {
                    seen.push(Seen {
                        status: 0,
                        pod: format!("connect error: {}", e.is_connect()),
                        path: String::new(),
                        location: String::new(),
                        hsts: String::new(),
                        cookie: String::new(),
                    });
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let h = resp.headers().clone();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            let header = |name: &str| {
                h.get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            seen.push(Seen {
                status,
                pod: body["pod"].as_str().unwrap_or_default().to_string(),
                path: body["path"].as_str().unwrap_or_default().to_string(),
                // The Location names the listener's port when the redirect keeps it.
                location: header("location").replace(&format!(":{port}"), ":PORT"),
                hsts: header("strict-transport-security"),
                cookie: header("set-cookie")
                    .split('=')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            });
        }
        compared += 1;
        let (a, b) = (&seen[0], &seen[1]);
        match a.status {
            200 if !a.pod.is_empty() => kinds.0 += 1,
            301..=308 => kinds.1 += 1,
            403 | 503 => kinds.2 += 1,
            _ => {}
        }
        // A weighted canary picks at random: only the status must agree.
        let alike = if probe.host == "cw.example.com" && probe.headers.is_empty() {
            a.status == b.status
        } else {
            a == b
        };
        if !alike {
            differences.push(format!("{probe}\n  Ingress:   {a:?}\n  converted: {b:?}"));
        }
    }
    assert!(compared > 500, "only {compared} requests compared");
    assert!(
        kinds.0 > 500 && kinds.1 > 30 && kinds.2 >= 10,
        "served, redirected, refused: {kinds:?}"
    );
    assert!(
        differences.is_empty(),
        "{} of {compared} differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
}

/// `gatehouse convert DIR --verify` as an ingress-nginx user first runs it: on plain
/// Ingresses of class nginx (nothing of Gatehouse's, no Gateway) it converts them onto a
/// placeholder Gateway the report names, with no difference; on a directory with nothing
/// of ingress-nginx's it fails and says why.
#[test]
fn convert_takes_plain_ingress_nginx_ingresses_and_says_why_when_there_are_none() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ingress = |name: &str, class: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: {name}, namespace: apps}}
spec:
  ingressClassName: {class}
  rules:
  - host: {name}.example.org
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: {name}, port: {{number: 80}}}}}}}}
"
        )
    };
    std::fs::write(dir.path().join("a.yaml"), ingress("a", "nginx")).expect("written");
    std::fs::write(dir.path().join("b.yaml"), ingress("b", "nginx")).expect("written");
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .arg("convert")
            .arg(dir.path())
            .arg("--verify")
            .output()
            .expect("gatehouse convert runs")
    };
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("verify: 2 Ingresses") && stderr.contains(" 0 differences"),
        "{stderr}"
    );
    assert!(stderr.contains("placeholder"), "{stderr}");
    assert_eq!(stdout.matches("kind: HTTPRoute").count(), 2, "{stdout}");

    std::fs::write(dir.path().join("a.yaml"), ingress("a", "traefik")).expect("written");
    std::fs::remove_file(dir.path().join("b.yaml")).expect("removed");
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("nothing to convert") && stderr.contains("traefik (1)"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
