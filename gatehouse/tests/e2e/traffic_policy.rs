//! TrafficPolicy on HTTPRoutes through the real data plane: the policies ingress-nginx
//! annotations give an Ingress, attached to routes by targetRef.

use crate::nginx::{PORT, setup};
use crate::support::*;
use std::net::SocketAddr;

/// An HTTPRoute on the Gateway `gw` for `host`, with rules (name, path prefix) to `app`.
fn route(name: &str, host: &str, rules: &[(&str, &str)]) -> String {
    let rules: String = rules
        .iter()
        .map(|(rule, path)| {
            format!(
                "  - name: {rule}
    matches: [{{path: {{type: PathPrefix, value: {path}}}}}]
    backendRefs: [{{name: app, port: 80}}]
"
            )
        })
        .collect();
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

/// A TrafficPolicy on one route (or one rule of it) with this spec body.
fn policy(name: &str, route: &str, rule: Option<&str>, body: &str) -> String {
    let section = rule
        .map(|r| format!(", sectionName: {r}"))
        .unwrap_or_default();
    format!(
        "apiVersion: gatehouse.dev/v1alpha1
kind: TrafficPolicy
metadata: {{name: {name}, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: {route}{section}}}]
{body}"
    )
}

/// A client reaching `host` over TLS at `addr` (SNI and :authority from the URL).
fn https_client(host: &str, addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .resolve(host, addr)
        .build()
        .unwrap()
}

#[tokio::test]
async fn traffic_policies_give_httproutes_what_annotations_give_ingresses() {
    let gh = setup().await;
    let objects = [
        route("limited", "limited.example.com", &[("all", "/")]),
        policy(
            "limit",
            "limited",
            None,
            "  rateLimit: {requestsPerSecond: 1, burstMultiplier: 2}\n",
        ),
        route(
            "split",
            "split.example.com",
            &[("open", "/open"), ("closed", "/closed")],
        ),
        policy(
            "closed-rule",
            "split",
            Some("closed"),
            "  sourceAccess: {deny: [0.0.0.0/0, '::/0']}\n",
        ),
        policy(
            "small-bodies",
            "split",
            None,
            "  maxRequestBodyBytes: 100\n",
        ),
        route("secure", "secure.example.com", &[("all", "/")]),
        policy(
            "secure",
            "secure",
            None,
            "  httpsRedirect: true
  hsts: {maxAge: 600, preload: true}
  sessionAffinity: {cookie: {name: route, path: /}}
",
        ),
        policy("lost", "no-such-route", None, "  maxRequestBodyBytes: 1\n"),
        policy(
            "typo",
            "split",
            None,
            "  sourceAccess: {allow: [300.1.2.3]}\n",
        ),
    ];
    gh.write("objects.yaml", &objects.join("---\n"));
    gh.wait_programmed("default/gw").await;
    wait_for("the routes", || async {
        get(&gh.url(PORT, "/open"), "split.example.com").await.0 == 200
    })
    .await
    .unwrap();

    // Status: in force, target missing, invalid value (the rest keeps serving).
    let gh = &gh;
    let accepted = |name: &str| {
        let object = format!("TrafficPolicy default/{name}");
        async move {
            let st = gh
                .wait_status(&object, |s| !s["parents"][0]["conditions"].is_null())
                .await;
            let c = &st["parents"][0]["conditions"][0];
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
            )
        }
    };
    assert_eq!(accepted("limit").await, ("True".into(), "Accepted".into()));
    assert_eq!(
        accepted("lost").await,
        ("False".into(), "TargetNotFound".into())
    );
    assert_eq!(accepted("typo").await, ("False".into(), "Invalid".into()));

    // rateLimit: 1/s with burst multiplier 2 admits 2 + 1 at once, then 503.
    let mut ok = 0;
    for _ in 0..8 {
        if get(&gh.url(PORT, "/"), "limited.example.com").await.0 == 200 {
            ok += 1;
        }
    }
    assert!((3..=4).contains(&ok), "admitted {ok} of 8");

    // A rule policy applies to its rule only; the route policy to both.
    assert_eq!(
        get(&gh.url(PORT, "/open"), "split.example.com").await.0,
        200
    );
    assert_eq!(
        get(&gh.url(PORT, "/closed"), "split.example.com").await.0,
        403
    );
    let post = |size: usize| {
        client()
            .post(gh.url(PORT, "/open"))
            .header("host", "split.example.com")
            .body(vec![b'x'; size])
            .send()
    };
    assert_eq!(post(50).await.unwrap().status(), 200);
    assert_eq!(post(500).await.unwrap().status(), 413);

    // httpsRedirect on plain HTTP (trailing slash dropped, as nginx); HSTS and the
    // affinity cookie on HTTPS.
    let (code, _, headers) = get(&gh.url(PORT, "/a/?q=1"), "secure.example.com").await;
    assert_eq!(code, 308);
    assert_eq!(
        headers["location"].to_str().unwrap(),
        "https://secure.example.com/a?q=1"
    );
    assert!(headers.get("strict-transport-security").is_none());
    let https = https_client("secure.example.com", SocketAddr::new(gh.ip, 8443));
    let resp = https
        .get("https://secure.example.com:8443/x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["strict-transport-security"],
        "max-age=600; includeSubDomains; preload"
    );
    let cookie = resp.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("route="), "{cookie}");
}

/// An Ingress with TLS gets nginx's default HSTS on HTTPS answers, and none on HTTP.
#[tokio::test]
async fn ingress_hosts_with_tls_send_hsts_as_nginx() {
    let gh = setup().await;
    gh.write(
        "ingress.yaml",
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: site, namespace: default, annotations: {nginx.ingress.kubernetes.io/ssl-redirect: 'false'}}
spec:
  ingressClassName: nginx
  tls: [{hosts: [site.example.com], secretName: site-tls}]
  rules:
  - host: site.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}
",
    );
    gh.wait_programmed("default/gw").await;
    wait_for("the Ingress", || async {
        get(&gh.url(PORT, "/"), "site.example.com").await.0 == 200
    })
    .await
    .unwrap();
    let (_, _, headers) = get(&gh.url(PORT, "/"), "site.example.com").await;
    assert!(headers.get("strict-transport-security").is_none());
    let https = https_client("site.example.com", SocketAddr::new(gh.ip, 8443));
    let resp = https
        .get("https://site.example.com:8443/")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
}
