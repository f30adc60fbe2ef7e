//! ingress-nginx annotations through the real data plane: each test sends the requests
//! whose answers nginx documents (docs/ingress.md has the reference).

use crate::support::*;

pub(crate) const PORT: u16 = 8080;

/// A Gateway with HTTP on 8080 and HTTPS on 8443, an IngressClass naming it, and one echo
/// backend `app`.
pub(crate) async fn setup() -> Gatehouse {
    let gh = Gatehouse::start().await;
    let (cert, _) = tls_secret("site-tls", &["*.example.com"]);
    gh.write("cert.yaml", &cert);
    gh.write(
        "gateway.yaml",
        &gateway(
            "  - name: http
    protocol: HTTP
    port: 8080
  - name: https
    protocol: HTTPS
    port: 8443
    tls: {certificateRefs: [{name: site-tls}]}
",
        ),
    );
    gh.write(
        "class.yaml",
        "apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec:
  controller: gatehouse.dev/ingress-controller
  parameters: {apiGroup: gateway.networking.k8s.io, kind: Gateway, name: gw, namespace: default, scope: Namespace}
",
    );
    gh.backend("app").await;
    gh
}

/// An Ingress for `host` with path `/` to `app`, these annotations, and TLS if asked.
fn ingress(name: &str, host: &str, tls: bool, annotations: &[(&str, &str)]) -> String {
    let annotations: String = annotations
        .iter()
        .map(|(k, v)| format!("    nginx.ingress.kubernetes.io/{k}: '{v}'\n"))
        .collect();
    let tls = if tls {
        format!("  tls: [{{hosts: [{host}], secretName: site-tls}}]\n")
    } else {
        String::new()
    };
    format!(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: default
  annotations:
    x: y
{annotations}spec:
  ingressClassName: nginx
{tls}  rules:
  - host: {host}
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}
"
    )
}

async fn location(gh: &Gatehouse, path: &str, host: &str) -> (u16, String) {
    let (code, _, headers) = get(&gh.url(PORT, path), host).await;
    let location = headers
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (code, location)
}

#[tokio::test]
async fn redirect_annotations_answer_as_nginx() {
    let gh = setup().await;
    let ingresses = [
        ingress(
            "moved",
            "moved.example.com",
            false,
            &[("permanent-redirect", "https://new.example.org/landing")],
        ),
        ingress(
            "moved-308",
            "moved308.example.com",
            false,
            &[
                ("permanent-redirect", "https://new.example.org/"),
                ("permanent-redirect-code", "308"),
            ],
        ),
        ingress(
            "temporary",
            "temp.example.com",
            false,
            &[
                ("temporal-redirect", "https://maintenance.example.org/"),
                ("permanent-redirect", "https://ignored.example.org/"),
            ],
        ),
        ingress("rooted", "root.example.com", false, &[("app-root", "/app")]),
        ingress("secure", "secure.example.com", true, &[]),
        ingress(
            "plain-ok",
            "plain.example.com",
            true,
            &[("ssl-redirect", "false")],
        ),
        ingress(
            "forced",
            "forced.example.com",
            false,
            &[("force-ssl-redirect", "true")],
        ),
        ingress(
            "www",
            "shop.example.com",
            false,
            &[("from-to-www-redirect", "true")],
        ),
    ];
    gh.write("ingresses.yaml", &ingresses.join("---\n"));
    gh.wait_programmed("default/gw").await;
    wait_for("the Ingresses", || async {
        location(&gh, "/", "moved.example.com").await.0 == 301
    })
    .await
    .unwrap();

    // permanent-redirect: 301 to exactly the URL, path and query not carried over.
    assert_eq!(
        location(&gh, "/some/path?q=1", "moved.example.com").await,
        (301, "https://new.example.org/landing".into())
    );
    assert_eq!(
        location(&gh, "/", "moved308.example.com").await,
        (308, "https://new.example.org/".into())
    );
    // temporal-redirect wins over permanent-redirect: 302.
    assert_eq!(
        location(&gh, "/x", "temp.example.com").await,
        (302, "https://maintenance.example.org/".into())
    );
    // app-root: only "/" moves (302, query dropped); other paths reach the backend.
    let (code, to) = location(&gh, "/?q=1", "root.example.com").await;
    assert_eq!(code, 302);
    assert!(to.ends_with("root.example.com:8080/app"), "{to}");
    assert_eq!(pod(&gh.url(PORT, "/app"), "root.example.com").await, "app");
    // ssl-redirect (on by default for a host with TLS): 308 to https, one trailing slash
    // dropped, query kept; the HTTPS listener serves.
    assert_eq!(
        location(&gh, "/a/?b=1", "secure.example.com").await,
        (308, "https://secure.example.com/a?b=1".into())
    );
    assert_eq!(pod(&gh.url(PORT, "/"), "plain.example.com").await, "app");
    assert_eq!(
        location(&gh, "/", "forced.example.com").await,
        (308, "https://forced.example.com".into())
    );
    // from-to-www-redirect: www. of the host answers 308 to the host (one trailing slash
    // dropped); the host itself is served.
    assert_eq!(
        location(&gh, "/a/?b=1", "www.shop.example.com").await,
        (308, "http://shop.example.com:8080/a?b=1".into())
    );
    assert_eq!(pod(&gh.url(PORT, "/"), "shop.example.com").await, "app");
}

#[tokio::test]
async fn snippets_refuse_the_ingress_and_unsupported_annotations_are_reported() {
    let gh = setup().await;
    gh.write(
        "ingresses.yaml",
        &[
            ingress(
                "snippet",
                "snippet.example.com",
                false,
                &[("configuration-snippet", "return 200 owned;")],
            ),
            ingress(
                "limited",
                "limited.example.com",
                false,
                &[("limit-rate", "10"), ("ssl-redirect", "maybe")],
            ),
        ]
        .join("---\n"),
    );
    gh.wait_programmed("default/gw").await;
    let limited = gh
        .wait_status("Ingress default/limited", |s| {
            condition(s, "Annotations").is_some()
        })
        .await;
    let c = condition(&limited, "Annotations").unwrap();
    assert_eq!(
        (&c["status"], &c["reason"]),
        (&"False".into(), &"Ignored".into())
    );
    let message = c["message"].as_str().unwrap();
    assert!(
        message.contains("limit-rate") && message.contains("\"maybe\""),
        "{message}"
    );
    // Served all the same.
    assert_eq!(pod(&gh.url(PORT, "/"), "limited.example.com").await, "app");

    let snippet = gh
        .wait_status("Ingress default/snippet", |s| {
            condition(s, "Accepted").is_some()
        })
        .await;
    let accepted = condition(&snippet, "Accepted").unwrap();
    assert_eq!(accepted["status"], "False");
    assert!(
        accepted["message"]
            .as_str()
            .unwrap()
            .contains("configuration-snippet")
    );
    assert_eq!(pod(&gh.url(PORT, "/"), "snippet.example.com").await, "404");
}

#[tokio::test]
async fn proxy_annotations_answer_as_nginx() {
    let gh = setup().await;
    let pki = crate::backend_tls::issue_pki();
    let (tls_backend, _) = crate::backend_tls::tls_backend(gh.ip, &pki).await;
    gh.write(
        "svc-secure.yaml",
        &service("secure-app", gh.ip, &[tls_backend.port()]),
    );
    gh.write(
        "ingresses.yaml",
        &[
            ingress(
                "small",
                "small.example.com",
                false,
                &[("proxy-body-size", "1k")],
            ),
            ingress(
                "slow",
                "slow.example.com",
                false,
                &[("proxy-read-timeout", "1")],
            ),
            ingress(
                "grpc",
                "grpc.example.com",
                false,
                &[("backend-protocol", "GRPC")],
            ),
            ingress(
                "tls",
                "tls.example.com",
                false,
                &[("backend-protocol", "HTTPS")],
            )
            .replace("name: app,", "name: secure-app,"),
        ]
        .join("---\n"),
    );
    gh.wait_programmed("default/gw").await;
    wait_for("the Ingresses", || async {
        get(&gh.url(PORT, "/"), "grpc.example.com").await.0 == 200
    })
    .await
    .unwrap();

    // proxy-body-size: a body over the limit is refused with 413, by its length or, when
    // chunked, as soon as it passes the limit.
    let post = |body: reqwest::Body| {
        client()
            .post(gh.url(PORT, "/"))
            .header("host", "small.example.com")
            .body(body)
            .send()
    };
    assert_eq!(post(vec![b'x'; 500].into()).await.unwrap().status(), 200);
    assert_eq!(post(vec![b'x'; 2000].into()).await.unwrap().status(), 413);
    let frames = futures::stream::iter((0..2).map(|_| {
        Ok::<_, std::io::Error>(hyper::body::Frame::data(bytes::Bytes::from(vec![
            b'x';
            800
        ])))
    }));
    let chunked = reqwest::Body::wrap(http_body_util::StreamBody::new(frames));
    assert_eq!(post(chunked).await.unwrap().status(), 413);

    // proxy-read-timeout: a backend silent for longer answers 504.
    assert_eq!(
        get(&gh.url(PORT, "/slow/2500"), "slow.example.com").await.0,
        504
    );
    assert_eq!(
        get(&gh.url(PORT, "/slow/100"), "slow.example.com").await.0,
        200
    );

    // backend-protocol GRPC: HTTP/2 in cleartext to the backend.
    let (_, seen, _) = get(&gh.url(PORT, "/"), "grpc.example.com").await;
    assert_eq!(seen["proto"], "HTTP/2.0");
    // backend-protocol HTTPS: TLS, the certificate not checked and no SNI (as nginx).
    let (code, seen, _) = get(&gh.url(PORT, "/"), "tls.example.com").await;
    assert_eq!((code, &seen["sni"]), (200, &serde_json::Value::Null));
}

#[tokio::test]
async fn canary_ingresses_split_as_nginx() {
    let gh = setup().await;
    gh.backend("next").await;
    let canary = |name: &str, host: &str, annotations: &[(&str, &str)]| {
        let mut all = vec![("canary", "true")];
        all.extend_from_slice(annotations);
        ingress(name, host, false, &all).replace("name: app,", "name: next,")
    };
    gh.write(
        "ingresses.yaml",
        &[
            ingress("main", "canary.example.com", false, &[]),
            canary(
                "main-canary",
                "canary.example.com",
                &[
                    ("canary-by-header", "X-Canary"),
                    ("canary-by-cookie", "beta"),
                ],
            ),
            ingress("split", "split.example.com", false, &[]),
            canary(
                "split-canary",
                "split.example.com",
                &[
                    ("canary-by-header", "X-Env"),
                    ("canary-by-header-value", "v2"),
                    ("canary-weight", "30"),
                ],
            ),
            canary("orphan", "nobody.example.com", &[("canary-weight", "100")]),
        ]
        .join("---\n"),
    );
    gh.wait_programmed("default/gw").await;
    let who = |host: &'static str, headers: Vec<(&'static str, &'static str)>| {
        let url = gh.url(PORT, "/");
        async move {
            let (_, body, _) = request(&client(), reqwest::Method::GET, &url, host, &headers).await;
            body["pod"].as_str().unwrap_or("none").to_string()
        }
    };
    wait_for("the canary", || async {
        who("canary.example.com", vec![("x-canary", "always")]).await == "next"
    })
    .await
    .unwrap();

    // Header first: "always" and "never"; any other value falls through to the cookie.
    assert_eq!(who("canary.example.com", vec![]).await, "app");
    assert_eq!(
        who(
            "canary.example.com",
            vec![("x-canary", "never"), ("cookie", "beta=always")]
        )
        .await,
        "app",
        "never stops at the header"
    );
    assert_eq!(
        who(
            "canary.example.com",
            vec![("x-canary", "maybe"), ("cookie", "a=1; beta=always")]
        )
        .await,
        "next"
    );
    assert_eq!(
        who("canary.example.com", vec![("cookie", "beta=never")]).await,
        "app"
    );
    // A header value: only that value; others go to the weight (30 of 100).
    assert_eq!(
        who("split.example.com", vec![("x-env", "v2")]).await,
        "next"
    );
    let mut next = 0;
    for _ in 0..400 {
        if who("split.example.com", vec![("x-env", "v3")]).await == "next" {
            next += 1;
        }
    }
    assert!(
        (90..=150).contains(&next),
        "30% of 400 went to the canary: {next}"
    );

    let status = gh.status().await;
    let objects = &status["objects"];
    let main = condition(&objects["Ingress default/main-canary"], "Accepted").unwrap();
    assert_eq!(main["status"], "True");
    assert!(main["message"].as_str().unwrap().contains("default/main"));
    let orphan = condition(&objects["Ingress default/orphan"], "Accepted").unwrap();
    assert_eq!(orphan["status"], "False");
    assert_eq!(who("nobody.example.com", vec![]).await, "none");
}

/// An Ingress with these paths (pathType ImplementationSpecific unless given) to `app`.
fn ingress_paths(
    name: &str,
    host: &str,
    paths: &[(&str, &str)],
    annotations: &[(&str, &str)],
) -> String {
    let paths: String = paths
        .iter()
        .map(|(p, t)| {
            format!("      - {{path: '{p}', pathType: {t}, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}\n")
        })
        .collect();
    ingress(name, host, false, annotations)
        .replace(
            "      - {path: /, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}\n",
            &paths,
        )
}

#[tokio::test]
async fn rewrite_target_and_use_regex_follow_nginx() {
    let gh = setup().await;
    gh.write(
        "ingresses.yaml",
        &[
            ingress_paths(
                "api",
                "rw.example.com",
                &[("/api(/|$)(.*)", "ImplementationSpecific")],
                &[("rewrite-target", "/$2")],
            ),
            // No annotations, but on a host in regex mode: its paths become
            // case-insensitive prefix regexes too.
            ingress_paths("web", "rw.example.com", &[("/static", "Prefix")], &[]),
            ingress_paths("plain", "plain.example.com", &[("/static", "Prefix")], &[]),
            ingress_paths(
                "versions",
                "re.example.com",
                &[("/v[0-9]+/items", "ImplementationSpecific")],
                &[("use-regex", "true")],
            ),
        ]
        .join("---\n"),
    );
    gh.wait_programmed("default/gw").await;
    let path_seen = |path: &'static str, host: &'static str| {
        let url = gh.url(PORT, path);
        async move {
            let (code, body, _) = get(&url, host).await;
            match code {
                200 => body["path"].as_str().unwrap_or_default().to_string(),
                c => c.to_string(),
            }
        }
    };
    wait_for("the rewrite", || async {
        path_seen("/api/users", "rw.example.com").await == "/users"
    })
    .await
    .unwrap();

    // rewrite-target: the path becomes the target with the captured groups; the query stays.
    let (_, body, _) = get(&gh.url(PORT, "/api/users?page=2"), "rw.example.com").await;
    assert_eq!(body["path"], "/users?page=2");
    assert_eq!(
        path_seen("/API/Users", "rw.example.com").await,
        "/Users",
        "case-insensitive"
    );
    assert_eq!(path_seen("/api", "rw.example.com").await, "/");
    // The other Ingress on the host: a prefix regex, case-insensitive, unchanged path.
    assert_eq!(
        path_seen("/staticfiles", "rw.example.com").await,
        "/staticfiles"
    );
    assert_eq!(
        path_seen("/STATIC/a.css", "rw.example.com").await,
        "/STATIC/a.css"
    );
    // A host not in regex mode keeps element-wise prefixes.
    assert_eq!(path_seen("/staticfiles", "plain.example.com").await, "404");
    assert_eq!(
        path_seen("/static/a.css", "plain.example.com").await,
        "/static/a.css"
    );
    // use-regex alone: matched as a regex, path unchanged.
    assert_eq!(
        path_seen("/v2/items/3", "re.example.com").await,
        "/v2/items/3"
    );
    assert_eq!(path_seen("/vx/items", "re.example.com").await, "404");
}

#[tokio::test]
async fn enable_cors_answers_as_nginx() {
    let gh = setup().await;
    gh.write(
        "ingresses.yaml",
        &[
            ingress(
                "open",
                "open.example.com",
                false,
                &[("enable-cors", "true")],
            ),
            ingress(
                "listed",
                "listed.example.com",
                false,
                &[
                    ("enable-cors", "true"),
                    (
                        "cors-allow-origin",
                        "https://app.example.org, https://*.example.net",
                    ),
                    ("cors-allow-credentials", "false"),
                    ("cors-max-age", "600"),
                ],
            ),
        ]
        .join("---\n"),
    );
    gh.wait_programmed("default/gw").await;
    let send = |method: reqwest::Method, host: &'static str, origin: Option<&'static str>| {
        let url = gh.url(PORT, "/");
        async move {
            let headers: Vec<(&str, &str)> = origin.into_iter().map(|o| ("origin", o)).collect();
            let (code, body, h) = request(&client(), method, &url, host, &headers).await;
            let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
            (
                code,
                body["pod"].as_str().map(str::to_string),
                get("access-control-allow-origin"),
                get("access-control-allow-credentials"),
                get("access-control-max-age"),
                get("access-control-allow-methods"),
            )
        }
    };
    wait_for("CORS", || async {
        send(reqwest::Method::GET, "open.example.com", None).await.0 == 200
    })
    .await
    .unwrap();

    // Defaults: any origin as "*", credentials true, 1728000 s, nginx's method list; even a
    // request without Origin gets them.
    let (code, pod, origin, creds, age, methods) =
        send(reqwest::Method::GET, "open.example.com", None).await;
    assert_eq!((code, pod.as_deref()), (200, Some("app")));
    assert_eq!(origin.as_deref(), Some("*"));
    assert_eq!(creds.as_deref(), Some("true"));
    assert_eq!(age.as_deref(), Some("1728000"));
    assert_eq!(
        methods.as_deref(),
        Some("GET, PUT, POST, DELETE, PATCH, OPTIONS")
    );
    // Any OPTIONS is a preflight, answered here with 204.
    let (code, pod, ..) = send(reqwest::Method::OPTIONS, "open.example.com", None).await;
    assert_eq!((code, pod), (204, None));

    // A list: the origin echoed; "*." is one label; others get nothing and OPTIONS goes to
    // the backend.
    let (_, _, origin, creds, age, _) = send(
        reqwest::Method::GET,
        "listed.example.com",
        Some("https://app.example.org"),
    )
    .await;
    assert_eq!(origin.as_deref(), Some("https://app.example.org"));
    assert_eq!((creds, age.as_deref()), (None, Some("600")));
    let (code, _, origin, ..) = send(
        reqwest::Method::OPTIONS,
        "listed.example.com",
        Some("https://a.example.net"),
    )
    .await;
    assert_eq!(
        (code, origin.as_deref()),
        (204, Some("https://a.example.net"))
    );
    let (code, pod, origin, ..) = send(
        reqwest::Method::OPTIONS,
        "listed.example.com",
        Some("https://a.b.example.net"),
    )
    .await;
    assert_eq!((code, pod.as_deref(), origin), (200, Some("app"), None));
    let (_, _, origin, ..) = send(
        reqwest::Method::GET,
        "listed.example.com",
        Some("https://evil.example.com"),
    )
    .await;
    assert_eq!(origin, None);
}

#[tokio::test]
async fn source_ranges_and_rate_limits_answer_as_nginx() {
    let gh = setup().await;
    // Learn the address this test's requests come from (the backend sees it in
    // X-Forwarded-For).
    gh.write(
        "probe.yaml",
        &ingress("probe", "probe.example.com", false, &[]),
    );
    gh.wait_programmed("default/gw").await;
    wait_for("the probe", || async {
        get(&gh.url(PORT, "/"), "probe.example.com").await.0 == 200
    })
    .await
    .unwrap();
    let (_, seen, _) = get(&gh.url(PORT, "/"), "probe.example.com").await;
    let client = seen["headers"]["X-Forwarded-For"][0]
        .as_str()
        .unwrap()
        .to_string();
    let me = format!("{client}/32");
    gh.write(
        "ingresses.yaml",
        &[
            ingress(
                "mine",
                "mine.example.com",
                false,
                &[("whitelist-source-range", &me)],
            ),
            ingress(
                "others",
                "others.example.com",
                false,
                &[("allowlist-source-range", "192.0.2.0/24")],
            ),
            ingress(
                "denied",
                "denied.example.com",
                false,
                &[("denylist-source-range", &me)],
            ),
            ingress(
                "typo",
                "typo.example.com",
                false,
                &[("denylist-source-range", "300.1.2.3")],
            ),
            ingress("rps", "rps.example.com", false, &[("limit-rps", "2")]),
            ingress(
                "exempt",
                "exempt.example.com",
                false,
                &[
                    ("limit-rps", "1"),
                    ("limit-burst-multiplier", "1"),
                    ("limit-whitelist", &me),
                ],
            ),
            ingress(
                "conns",
                "conns.example.com",
                false,
                &[("limit-connections", "1")],
            ),
            ingress(
                "rpm",
                "rpm.example.com",
                false,
                &[("limit-rpm", "2"), ("limit-burst-multiplier", "2")],
            ),
        ]
        .join("---\n"),
    );
    wait_for("the Ingresses", || async {
        get(&gh.url(PORT, "/"), "conns.example.com").await.0 == 200
    })
    .await
    .unwrap();

    // Source ranges: 403 outside the allow list or inside the deny list; an invalid range
    // closes the Ingress with 503 rather than opening it.
    assert_eq!(get(&gh.url(PORT, "/"), "mine.example.com").await.0, 200);
    assert_eq!(get(&gh.url(PORT, "/"), "others.example.com").await.0, 403);
    assert_eq!(get(&gh.url(PORT, "/"), "denied.example.com").await.0, 403);
    assert_eq!(get(&gh.url(PORT, "/"), "typo.example.com").await.0, 503);

    // limit-rps 2 with the default burst multiplier 5: a quiet client gets 10 + 1 at once,
    // then 503 (a few ms of draining may let one more through).
    let mut ok = 0;
    for _ in 0..20 {
        if get(&gh.url(PORT, "/"), "rps.example.com").await.0 == 200 {
            ok += 1;
        }
    }
    assert!((11..=12).contains(&ok), "admitted {ok} of 20");
    assert_eq!(get(&gh.url(PORT, "/"), "rps.example.com").await.0, 503);
    // limit-rpm 2 with burst multiplier 2: a burst of 4 + 1, then 503 (a request drains
    // only every 30 s).
    let mut ok = 0;
    for _ in 0..8 {
        if get(&gh.url(PORT, "/"), "rpm.example.com").await.0 == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 5, "limit-rpm 2 x 2 admitted {ok} of 8");
    // limit-whitelist: never limited.
    for _ in 0..10 {
        assert_eq!(get(&gh.url(PORT, "/"), "exempt.example.com").await.0, 200);
    }
    // limit-connections 1: a second request while one is in progress is refused.
    let slow = tokio::spawn({
        let url = gh.url(PORT, "/slow/800");
        async move { get(&url, "conns.example.com").await.0 }
    });
    wait_for("the slow request to start", || async {
        get(&gh.url(PORT, "/"), "conns.example.com").await.0 == 503
    })
    .await
    .unwrap();
    assert_eq!(slow.await.unwrap(), 200);
    assert_eq!(get(&gh.url(PORT, "/"), "conns.example.com").await.0, 200);
}

#[tokio::test]
async fn affinity_and_upstream_hash_by_keep_clients_on_one_endpoint() {
    let gh = setup().await;
    let p1 = spawn_echo(gh.ip, 0, "pod-1").await.port();
    let p2 = spawn_echo(gh.ip, 0, "pod-2").await.port();
    gh.write("svc-pair.yaml", &service("pair", gh.ip, &[p1, p2]));
    let to_pair = |name: &str, host: &str, annotations: &[(&str, &str)]| {
        ingress(name, host, false, annotations).replace("name: app,", "name: pair,")
    };
    gh.write(
        "ingresses.yaml",
        &[
            to_pair("sticky", "sticky.example.com", &[("affinity", "cookie")]),
            to_pair(
                "pinned",
                "pinned.example.com",
                &[
                    ("affinity", "cookie"),
                    ("affinity-mode", "persistent"),
                    ("session-cookie-name", "route"),
                    ("session-cookie-max-age", "3600"),
                    ("session-cookie-samesite", "Lax"),
                ],
            ),
            to_pair(
                "hashed",
                "hashed.example.com",
                &[("upstream-hash-by", "$arg_user")],
            ),
        ]
        .join("---\n"),
    );
    gh.wait_programmed("default/gw").await;
    let send = |host: &'static str, path: &'static str, cookie: Option<String>| {
        let url = gh.url(PORT, path);
        async move {
            let headers: Vec<(&str, &str)> = match &cookie {
                Some(c) => vec![("cookie", c.as_str())],
                None => vec![],
            };
            let (_, body, h) = request(&client(), reqwest::Method::GET, &url, host, &headers).await;
            let set = h
                .get("set-cookie")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            (body["pod"].as_str().unwrap_or("none").to_string(), set)
        }
    };
    wait_for("the Ingresses", || async {
        send("hashed.example.com", "/", None)
            .await
            .0
            .starts_with("pod-")
    })
    .await
    .unwrap();

    // Without a cookie requests spread; the cookie set on the first answer keeps the
    // client on its endpoint.
    for host in ["sticky.example.com", "pinned.example.com"] {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..20 {
            seen.insert(send(host, "/", None).await.0);
        }
        assert_eq!(seen.len(), 2, "{host}: both endpoints without a cookie");
        let (first, set) = send(host, "/", None).await;
        let set = set.expect("a Set-Cookie");
        let pair = set.split(';').next().unwrap().to_string();
        for _ in 0..20 {
            let (pod, again) = send(host, "/", Some(pair.clone())).await;
            assert_eq!(pod, first, "{host}");
            assert_eq!(again, None, "no new cookie while the endpoint stays");
        }
        if host == "sticky.example.com" {
            assert!(
                set.starts_with("INGRESSCOOKIE=")
                    && set.contains("Path=/")
                    && set.contains("HttpOnly"),
                "{set}"
            );
        } else {
            assert!(
                set.starts_with("route=")
                    && set.contains("Max-Age=3600")
                    && set.contains("SameSite=Lax"),
                "{set}"
            );
        }
    }
    // upstream-hash-by $arg_user: one user, one endpoint; users spread.
    let mut by_user = std::collections::BTreeMap::new();
    for user in [
        "ann", "bob", "cy", "dee", "eve", "fay", "gus", "hal", "ivy", "jo", "kim", "lu", "max",
        "ned", "oz", "pat",
    ] {
        let url: &'static str = Box::leak(format!("/?user={user}").into_boxed_str());
        let first = send("hashed.example.com", url, None).await.0;
        for _ in 0..5 {
            assert_eq!(
                send("hashed.example.com", url, None).await.0,
                first,
                "{user}"
            );
        }
        by_user.insert(user, first);
    }
    let pods: std::collections::BTreeSet<_> = by_user.values().collect();
    assert_eq!(
        pods.len(),
        2,
        "eight users over both endpoints: {by_user:?}"
    );
}

/// An auth service: `Authorization: Bearer good` -> 200 with `X-User: alice` and a
/// cookie; `Bearer nobody` -> 200 without X-User; `Bearer forbidden` -> 403;
/// `Bearer broken` -> 500; none -> 401 with WWW-Authenticate. Returns its address and
/// the X-Original-URL values it saw.
async fn auth_service(
    ip: std::net::IpAddr,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut head = Vec::new();
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                    while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                        let text = String::from_utf8_lossy(&head[..end]).to_lowercase();
                        head.drain(..end + 4);
                        let header = |name: &str| {
                            text.lines()
                                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                                .map(str::to_string)
                        };
                        if let Some(u) = header("x-original-url") {
                            log.lock().unwrap().push(u);
                        }
                        let resp = match header("authorization").as_deref() {
                            Some("bearer good") => {
                                "HTTP/1.1 200 OK\r\nx-user: alice\r\nset-cookie: session=1\r\ncontent-length: 0\r\n\r\n"
                            }
                            Some("bearer nobody") => "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
                            Some("bearer forbidden") => {
                                "HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n"
                            }
                            Some("bearer broken") => {
                                "HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n"
                            }
                            _ => {
                                "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer realm=\"test\"\r\ncontent-length: 0\r\n\r\n"
                            }
                        };
                        if conn.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn external_auth_decides_as_nginx() {
    let gh = setup().await;
    let (auth, seen) = auth_service(gh.ip).await;
    gh.write("svc-auth.yaml", &service("authsvc", gh.ip, &[auth.port()]));
    gh.write(
        "ingresses.yaml",
        &[
            ingress(
                "guarded",
                "guarded.example.com",
                false,
                &[
                    ("auth-url", "http://authsvc.default.svc.cluster.local/check"),
                    ("auth-response-headers", "X-User"),
                ],
            ),
            ingress(
                "signin",
                "signin.example.com",
                false,
                &[
                    ("auth-url", &format!("http://{auth}/check")),
                    ("auth-signin", "https://login.example.com/start"),
                ],
            ),
            ingress(
                "closed",
                "closed.example.com",
                false,
                &[("auth-url", "https://auth.example.com/")],
            ),
        ]
        .join("---\n"),
    );
    gh.wait_programmed("default/gw").await;
    let send = |host: &'static str, auth: Option<&'static str>| {
        let url = gh.url(PORT, "/page?x=1");
        async move {
            let mut headers = vec![("x-user", "mallory")];
            if let Some(a) = auth {
                headers.push(("authorization", a));
            }
            request(&client(), reqwest::Method::GET, &url, host, &headers).await
        }
    };
    wait_for("the guarded Ingress", || async {
        send("guarded.example.com", Some("Bearer good")).await.0 == 200
    })
    .await
    .unwrap();

    // Allowed: the backend gets the auth answer's X-User in place of the client's, and the
    // client the auth answer's cookie.
    let (code, body, headers) = send("guarded.example.com", Some("Bearer good")).await;
    assert_eq!(code, 200);
    assert_eq!(body["headers"]["X-User"][0], "alice");
    assert_eq!(headers["set-cookie"], "session=1");
    let (_, body, _) = send("guarded.example.com", Some("Bearer nobody")).await;
    assert!(
        body["headers"]["X-User"].is_null(),
        "absent in the answer: removed"
    );
    // Refused: 401 with the challenge, 403; an auth error is 500.
    let (code, _, headers) = send("guarded.example.com", None).await;
    assert_eq!(
        (code, headers["www-authenticate"].to_str().unwrap()),
        (401, "Bearer realm=\"test\"")
    );
    assert_eq!(
        send("guarded.example.com", Some("Bearer forbidden"))
            .await
            .0,
        403
    );
    assert_eq!(
        send("guarded.example.com", Some("Bearer broken")).await.0,
        500
    );
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|u| u == "http://guarded.example.com/page?x=1"),
        "X-Original-URL"
    );
    // auth-signin: a 401 becomes a redirect carrying the original URL.
    let (code, _, headers) = send("signin.example.com", None).await;
    assert_eq!(code, 302);
    assert_eq!(
        headers["location"],
        "https://login.example.com/start?rd=http%3A%2F%2Fsignin.example.com%2Fpage%3Fx%3D1"
    );
    // An auth-url Gatehouse cannot call closes the Ingress (503), never opens it.
    assert_eq!(send("closed.example.com", Some("Bearer good")).await.0, 503);
}

/// A gRPC-style backend: HTTP/2 over TLS only (ALPN h2), answering with the protocol seen.
async fn h2_tls_backend(ip: std::net::IpAddr) -> std::net::SocketAddr {
    let pki = crate::backend_tls::issue_pki();
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![pki.server.0.clone().into()],
            rustls::pki_types::PrivateKeyDer::try_from(pki.server.1.clone()).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let body = serde_json::json!({"proto": format!("{:?}", req.version()), "tls": true});
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(body.to_string())),
                        ))
                    },
                );
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn connect_and_send_timeouts_and_grpcs_answer_as_nginx() {
    let gh = setup().await;
    // A backend whose accept queue is full: connection attempts hang (SYNs dropped).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((gh.ip, 0).into()).unwrap();
    let full = socket.listen(0).unwrap();
    let full_addr = full.local_addr().unwrap();
    let mut fillers = vec![];
    for _ in 0..4 {
        fillers.push(tokio::spawn(async move {
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(30),
                tokio::net::TcpStream::connect(full_addr),
            )
            .await;
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        }));
    }
    let grpcs = h2_tls_backend(gh.ip).await;
    // A backend that accepts and never reads what it is sent.
    let stuck = tokio::net::TcpListener::bind((gh.ip, 0)).await.unwrap();
    let stuck_addr = stuck.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = vec![];
        while let Ok((conn, _)) = stuck.accept().await {
            held.push(conn);
        }
    });
    gh.write(
        "svc-more.yaml",
        &[
            service("full", gh.ip, &[full_addr.port()]),
            service("grpcs", gh.ip, &[grpcs.port()]),
            service("stuck", gh.ip, &[stuck_addr.port()]),
        ]
        .join("---\n"),
    );
    gh.write(
        "ingresses.yaml",
        &[
            ingress(
                "connect",
                "connect.example.com",
                false,
                &[("proxy-connect-timeout", "1")],
            )
            .replace("name: app,", "name: full,"),
            ingress(
                "grpcs",
                "grpcs.example.com",
                false,
                &[("backend-protocol", "GRPCS")],
            )
            .replace("name: app,", "name: grpcs,"),
            ingress(
                "send",
                "send.example.com",
                false,
                &[("proxy-send-timeout", "1"), ("proxy-read-timeout", "30")],
            )
            .replace("name: app,", "name: stuck,"),
        ]
        .join("---\n"),
    );
    gh.wait_programmed("default/gw").await;
    wait_for("the Ingresses", || async {
        get(&gh.url(PORT, "/"), "grpcs.example.com").await.0 == 200
    })
    .await
    .unwrap();

    // backend-protocol GRPCS: HTTP/2 over TLS to the backend.
    let (_, seen, _) = get(&gh.url(PORT, "/"), "grpcs.example.com").await;
    assert_eq!(
        (&seen["proto"], &seen["tls"]),
        (&"HTTP/2.0".into(), &true.into())
    );

    // proxy-connect-timeout 1: a backend that does not accept answers 504 after about a
    // second (without it, Gatehouse's own 5 s connect limit and 502).
    let start = std::time::Instant::now();
    let (code, _, _) = get(&gh.url(PORT, "/"), "connect.example.com").await;
    let took = start.elapsed();
    assert_eq!(code, 504);
    assert!(
        took >= std::time::Duration::from_millis(900) && took < std::time::Duration::from_secs(4),
        "took {took:?}"
    );

    // proxy-send-timeout 1: a backend that takes nothing of a large body for a second
    // ends the request with 504 then, not at the 30 s read timeout.
    let start = std::time::Instant::now();
    let code = post_stuck_body(gh.url(PORT, "/"), "send.example.com").await;
    let took = start.elapsed();
    assert_eq!(code, 504);
    assert!(
        took >= std::time::Duration::from_millis(900) && took < std::time::Duration::from_secs(10),
        "took {took:?}"
    );

    for f in fillers {
        f.abort();
    }
    holder.abort();
}

/// POSTs 256 MiB (more than every socket buffer on the way holds) over a raw connection
/// and returns the answer's status, read while the body is still being written.
async fn post_stuck_body(url: String, host: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let conn = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let (mut read, mut write) = conn.into_split();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n",
        256 << 20
    );
    let writer = tokio::spawn(async move {
        write.write_all(head.as_bytes()).await?;
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..256 {
            write.write_all(&chunk).await?;
        }
        Ok::<_, std::io::Error>(write)
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(60), read.read(&mut buf))
            .await
            .expect("an answer within a minute")
            .unwrap();
        assert!(n > 0, "connection closed without an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    writer.abort();
    let status = String::from_utf8_lossy(&answer);
    status
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}
