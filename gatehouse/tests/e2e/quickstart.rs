//! The quickstart of README.md, as written in examples/quickstart, gives the documented
//! answers. Backends move from 127.0.0.1 to this test's own address.

use crate::support::*;
use std::net::SocketAddr;

#[tokio::test]
async fn quickstart_gives_the_documented_answers() {
    let gh = Gatehouse::start().await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_str().unwrap();
            gh.write(name, &text.replace("127.0.0.1", &gh.ip.to_string()));
        }
    }
    for (pod, port) in [("app-v1", 9101), ("app-v2", 9102), ("legacy", 9103)] {
        spawn_echo(gh.ip, port, pod).await;
    }
    gh.wait_programmed("default/quickstart").await;
    let http = |p: &str| gh.url(8080, p);
    wait_for("quickstart", || async {
        get(&http("/api"), "app.example.com").await.0 == 200
    })
    .await
    .unwrap();

    // curl -s -H 'Host: app.example.com' http://127.0.0.1:8080/api
    let pod_api = pod(&http("/api"), "app.example.com").await;
    assert!(pod_api == "app-v1" || pod_api == "app-v2", "{pod_api}");
    // curl -s -o /dev/null -w '%{http_code} %{redirect_url}' -H 'Host: legacy.example.com'
    //   http://127.0.0.1:8080/a?b=1
    let (code, _, headers) = get(&http("/a?b=1"), "legacy.example.com").await;
    assert_eq!(
        (code, headers["location"].to_str().unwrap()),
        (308, "https://legacy.example.com/a?b=1")
    );
    // curl -s -o /dev/null -w '%{http_code}' -H 'Host: nope.example.com' http://127.0.0.1:8080/
    assert_eq!(pod(&http("/"), "nope.example.com").await, "404");

    // curl -sk --resolve app.example.com:8443:127.0.0.1 https://app.example.com:8443/docs
    let tls = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .resolve("app.example.com", SocketAddr::new(gh.ip, 8443))
        .resolve("legacy.example.com", SocketAddr::new(gh.ip, 8443))
        .build()
        .unwrap();
    let resp = tls
        .get("https://app.example.com:8443/docs")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-served-by"], "app-v2");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["pod"], "app-v2");
    // The Ingress is served on the same HTTPS listener.
    let body: serde_json::Value = tls
        .get("https://legacy.example.com:8443/")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["pod"], "legacy");

    // Status names every object as healthy.
    let status = gh.status().await;
    assert!(
        status["errors"].as_array().unwrap().is_empty(),
        "{status:#}"
    );
    for key in ["HTTPRoute default/app", "Ingress default/legacy"] {
        let st = &status["objects"][key];
        let accepted =
            condition(st, "Accepted").or_else(|| condition(&st["parents"][0], "Accepted"));
        assert_eq!(accepted.unwrap()["status"], "True", "{key}: {st:#}");
    }
}

/// Started with a relative directory (the README's `./examples/quickstart/run.sh` runs
/// `gatehouse standalone examples/quickstart`), an edit of a file applies within a second.
#[tokio::test]
async fn an_edit_applies_when_the_directory_was_given_relative() {
    let gh = Gatehouse::start_relative().await;
    gh.write("gateway.yaml", &http_gateway(&[8080]));
    gh.backend("app").await;
    let route = |path: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [rel.example.com]
  rules:
  - matches: [{{path: {{value: {path}}}}}]
    backendRefs: [{{name: app, port: 80}}]
"
        )
    };
    gh.write("route.yaml", &route("/before"));
    gh.wait_programmed("default/gw").await;
    let url = |p: &str| gh.url(8080, p);
    wait_for("the route", || async {
        get(&url("/before"), "rel.example.com").await.0 == 200
    })
    .await
    .unwrap();
    gh.write("route.yaml", &route("/after"));
    wait_up_to("the edit", std::time::Duration::from_secs(1), || async {
        get(&url("/after"), "rel.example.com").await.0 == 200
    })
    .await
    .unwrap();
}
