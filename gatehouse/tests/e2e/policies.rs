//! Rule policies and filters beyond matching, through the real data plane: timeouts, the
//! retry policy (status codes, backend timeouts, dropped connections), CORS and request
//! mirrors. The echo backend's `/flaky/...` and `/seen/...` paths make failures and
//! mirrored copies observable.

use crate::support::*;
use std::time::{Duration, Instant};

const PORT: u16 = 8080;

/// An HTTPRoute named `name` for `host`, with these rules.
fn route(name: &str, host: &str, rules: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [{host}]
  rules:
{rules}"
    )
}

async fn setup(backends: &[&str]) -> (Gatehouse, Vec<u16>) {
    let gh = Gatehouse::start().await;
    gh.write("gateway.yaml", &http_gateway(&[PORT]));
    let mut ports = Vec::new();
    for b in backends {
        ports.push(gh.backend(b).await);
    }
    (gh, ports)
}

/// Waits until `host` answers on the route (any status but 404).
async fn wait_routed(gh: &Gatehouse, host: &str, path: &str) {
    let url = gh.url(PORT, path);
    wait_for(host, || async {
        let s = pod(&url, host).await;
        s != "404" && !s.starts_with("error")
    })
    .await
    .unwrap();
}

/// How many requests for `path` the echo backend on `port` has had.
async fn seen(gh: &Gatehouse, port: u16, path: &str) -> u64 {
    let url = gh.url(port, &format!("/seen{path}"));
    match client().get(url).send().await {
        Ok(r) => r.text().await.unwrap_or_default().parse().unwrap_or(0),
        Err(_) => 0,
    }
}

#[tokio::test]
async fn request_and_backend_timeouts_answer_504_and_zero_turns_them_off() {
    let (gh, _) = setup(&["a"]).await;
    gh.write(
        "route.yaml",
        &route(
            "timeouts",
            "t.example.com",
            "  - matches: [{path: {value: /slow/}}]
    timeouts: {request: 300ms}
    backendRefs: [{name: a, port: 80}]
  - matches: [{path: {value: /slow/}, headers: [{name: x-limit, value: backend}]}]
    timeouts: {backendRequest: 300ms}
    backendRefs: [{name: a, port: 80}]
  - matches: [{path: {value: /slow/}, headers: [{name: x-limit, value: none}]}]
    timeouts: {request: 0s}
    backendRefs: [{name: a, port: 80}]
",
        ),
    );
    gh.wait_programmed("default/gw").await;
    let host = "t.example.com";
    wait_routed(&gh, host, "/slow/0").await;
    let c = client();
    let u = gh.url(PORT, "/slow/1000");

    for limit in ["request", "backend"] {
        let started = Instant::now();
        let (s, _, _) = request(&c, reqwest::Method::GET, &u, host, &[("x-limit", limit)]).await;
        let took = started.elapsed();
        assert_eq!(s, 504, "{limit} timeout: a 1 s answer past a 300 ms limit");
        assert!(
            took < Duration::from_millis(900),
            "{limit} timeout answered after {took:?}"
        );
    }
    let (s, _, _) = request(&c, reqwest::Method::GET, &u, host, &[("x-limit", "none")]).await;
    assert_eq!(s, 200, "timeout 0s means no limit");
    let (s, _, _) = get(&gh.url(PORT, "/slow/50"), host).await;
    assert_eq!(s, 200, "an answer within the limit passes");
}

#[tokio::test]
async fn retry_policy_retries_its_codes_timeouts_and_dropped_connections() {
    let (gh, ports) = setup(&["a"]).await;
    gh.write(
        "route.yaml",
        &route(
            "retry",
            "r.example.com",
            "  - matches: [{path: {value: /flaky}}]
    retry: {codes: [500, 504], attempts: 2}
    timeouts: {backendRequest: 200ms}
    backendRefs: [{name: a, port: 80}]
  - matches: [{path: {value: /flaky}, headers: [{name: x-policy, value: none}]}]
    backendRefs: [{name: a, port: 80}]
",
        ),
    );
    gh.wait_programmed("default/gw").await;
    let host = "r.example.com";
    wait_routed(&gh, host, "/flaky/warmup/0/500").await;
    let a = ports[0];
    let status = |path: &'static str, headers: &'static [(&'static str, &'static str)]| {
        let url = gh.url(PORT, path);
        async move {
            // A POST with a body: retries must replay it.
            let mut req = client().post(&url).header("host", host).body("payload");
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.send().await.map_or(0, |r| r.status().as_u16())
        }
    };

    // Two failures, two retries: the third attempt answers.
    assert_eq!(status("/flaky/k1/2/500", &[]).await, 200);
    assert_eq!(seen(&gh, a, "/flaky/k1/2/500").await, 3);
    // Three failures are one more than two retries cover: the last answer passes through.
    assert_eq!(status("/flaky/k2/3/500", &[]).await, 500);
    assert_eq!(seen(&gh, a, "/flaky/k2/3/500").await, 3);
    // A code the policy does not name is not retried.
    assert_eq!(status("/flaky/k3/1/503", &[]).await, 503);
    assert_eq!(seen(&gh, a, "/flaky/k3/1/503").await, 1);
    // A backend timeout (past backendRequest) is retried (HTTPRouteRetryBackendTimeout).
    assert_eq!(status("/flaky/k4/1/slow1000", &[]).await, 200);
    assert_eq!(seen(&gh, a, "/flaky/k4/1/slow1000").await, 2);
    // A connection dropped without an answer is retried, even for a POST
    // (HTTPRouteRetryConnectionError): the body is replayed.
    assert_eq!(status("/flaky/k5/1/close", &[]).await, 200);
    assert_eq!(seen(&gh, a, "/flaky/k5/1/close").await, 2);
    // Without a policy nothing is retried.
    assert_eq!(
        status("/flaky/k6/1/500", &[("x-policy", "none")]).await,
        500
    );
    assert_eq!(seen(&gh, a, "/flaky/k6/1/500").await, 1);
}

#[tokio::test]
async fn cors_answers_preflights_and_marks_allowed_answers() {
    let (gh, ports) = setup(&["a"]).await;
    gh.write(
        "route.yaml",
        &route(
            "cors",
            "c.example.com",
            "  - filters:
    - type: CORS
      cors:
        allowOrigins: [\"https://www.foo.com\", \"https://*.bar.com\"]
        allowMethods: [GET, OPTIONS]
        allowHeaders: [x-header-1, x-header-2]
        exposeHeaders: [x-header-3]
        allowCredentials: true
        maxAge: 3600
    backendRefs: [{name: a, port: 80}]
",
        ),
    );
    gh.wait_programmed("default/gw").await;
    let host = "c.example.com";
    wait_routed(&gh, host, "/").await;
    let c = client();
    let u = gh.url(PORT, "/cors");

    let (s, _, h) = request(
        &c,
        reqwest::Method::OPTIONS,
        &u,
        host,
        &[
            ("origin", "https://deep.www.bar.com"),
            ("access-control-request-method", "GET"),
        ],
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(h["access-control-allow-origin"], "https://deep.www.bar.com");
    assert_eq!(h["access-control-allow-methods"], "GET, OPTIONS");
    assert_eq!(h["access-control-allow-headers"], "x-header-1, x-header-2");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-max-age"], "3600");
    assert_eq!(
        seen(&gh, ports[0], "/cors").await,
        0,
        "a preflight is answered by the gateway, not the backend"
    );

    let (s, _, h) = request(
        &c,
        reqwest::Method::OPTIONS,
        &u,
        host,
        &[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "GET"),
        ],
    )
    .await;
    assert_eq!(s, 204);
    assert!(h.get("access-control-allow-origin").is_none());

    let (s, body, h) = request(
        &c,
        reqwest::Method::GET,
        &u,
        host,
        &[("origin", "https://www.foo.com")],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body["path"], "/cors");
    assert_eq!(h["access-control-allow-origin"], "https://www.foo.com");
    assert_eq!(h["access-control-expose-headers"], "x-header-3");
    let (_, _, h) = request(
        &c,
        reqwest::Method::GET,
        &u,
        host,
        &[("origin", "http://www.foo.com")],
    )
    .await;
    assert!(
        h.get("access-control-allow-origin").is_none(),
        "another scheme is another origin"
    );
}

#[tokio::test]
async fn mirrors_copy_requests_with_their_bodies_and_fractions() {
    let (gh, ports) = setup(&["a", "shadow", "half"]).await;
    gh.write(
        "route.yaml",
        &route(
            "mirror",
            "m.example.com",
            "  - matches: [{path: {value: /m}}]
    filters:
    - {type: RequestMirror, requestMirror: {backendRef: {name: shadow, port: 80}}}
    - {type: RequestMirror, requestMirror: {backendRef: {name: half, port: 80}, percent: 50}}
    backendRefs: [{name: a, port: 80}]
",
        ),
    );
    gh.wait_programmed("default/gw").await;
    let host = "m.example.com";
    wait_routed(&gh, host, "/m/warmup").await;
    let (shadow, half) = (ports[1], ports[2]);

    let (s, body, _) = get(&gh.url(PORT, "/m/one"), host).await;
    assert_eq!((s, body["pod"].as_str()), (200, Some("a")));
    wait_for("mirrored GET", || async {
        seen(&gh, shadow, "/m/one").await == 1
    })
    .await
    .unwrap();

    // A request with a body is mirrored once its body has been read.
    let resp = client()
        .post(gh.url(PORT, "/m/post"))
        .header("host", host)
        .body(vec![b'x'; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    wait_for("mirrored POST", || async {
        seen(&gh, shadow, "/m/post").await == 1
    })
    .await
    .unwrap();

    // percent: 50 mirrors about half: 200 requests, binomial bounds far outside noise.
    for _ in 0..200 {
        let (s, _, _) = get(&gh.url(PORT, "/m/fraction"), host).await;
        assert_eq!(s, 200);
    }
    wait_for("all 200 mirrored to shadow", || async {
        seen(&gh, shadow, "/m/fraction").await == 200
    })
    .await
    .unwrap();
    let halves = seen(&gh, half, "/m/fraction").await;
    assert!(
        (60..=140).contains(&halves),
        "percent 50 mirrored {halves} of 200"
    );
    assert_eq!(
        seen(&gh, ports[0], "/m/fraction").await,
        200,
        "the backend still gets every request"
    );
}
