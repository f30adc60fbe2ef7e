//! Routing through the real data plane: match types, precedence, hostnames, Ingress paths,
//! weighted splits, filters, and the answers Gatehouse gives itself.

use crate::support::*;

const PORT: u16 = 8080;

fn route(name: &str, extra_meta: &str, hostnames: &str, rules: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: {name}
  namespace: default
{extra_meta}spec:
  parentRefs:
  - name: gw
  hostnames: {hostnames}
  rules:
{rules}"
    )
}

async fn setup(backends: &[&str]) -> Gatehouse {
    let gh = Gatehouse::start().await;
    gh.write("gateway.yaml", &http_gateway(&[PORT]));
    for b in backends {
        gh.backend(b).await;
    }
    gh
}

#[tokio::test]
async fn every_match_type() {
    let gh = setup(&["a", "b", "c"]).await;
    gh.write(
        "route.yaml",
        &route(
            "matches",
            "",
            "[m.example.com]",
            "  - matches: [{path: {type: Exact, value: /exact}}]
    backendRefs: [{name: a, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /prefix}}]
    backendRefs: [{name: b, port: 80}]
  - matches: [{path: {type: RegularExpression, value: '/re/[0-9]+'}}]
    backendRefs: [{name: c, port: 80}]
  - matches: [{path: {value: /h}, headers: [{name: X-Env, value: canary}]}]
    backendRefs: [{name: a, port: 80}]
  - matches: [{path: {value: /h}, headers: [{type: RegularExpression, name: x-ver, value: 'v[0-9]+'}]}]
    backendRefs: [{name: b, port: 80}]
  - matches: [{path: {value: /q}, queryParams: [{name: env, value: prod}]}]
    backendRefs: [{name: a, port: 80}]
  - matches: [{path: {value: /q}, queryParams: [{type: RegularExpression, name: id, value: '[a-f]+'}]}]
    backendRefs: [{name: b, port: 80}]
  - matches: [{path: {value: /m}, method: POST}]
    backendRefs: [{name: a, port: 80}]
",
        ),
    );
    gh.wait_programmed("default/gw").await;
    let host = "m.example.com";
    let u = |p: &str| gh.url(PORT, p);
    wait_for("route", || async { pod(&u("/exact"), host).await == "a" })
        .await
        .unwrap();

    assert_eq!(pod(&u("/exact"), host).await, "a");
    assert_eq!(pod(&u("/exact/"), host).await, "404");
    assert_eq!(pod(&u("/prefix"), host).await, "b");
    assert_eq!(pod(&u("/prefix/x/y"), host).await, "b");
    assert_eq!(pod(&u("/prefixes"), host).await, "404");
    assert_eq!(pod(&u("/re/123"), host).await, "c");
    assert_eq!(
        pod(&u("/re/12a"), host).await,
        "404",
        "regex must match the whole path"
    );

    let c = client();
    let hdr = |h: &'static [(&'static str, &'static str)]| {
        let c = c.clone();
        let url = u("/h");
        async move {
            let (s, b, _) = request(&c, reqwest::Method::GET, &url, host, h).await;
            if s == 200 {
                b["pod"].as_str().unwrap_or_default().to_string()
            } else {
                s.to_string()
            }
        }
    };
    assert_eq!(
        hdr(&[("x-env", "canary")]).await,
        "a",
        "header names are case-insensitive"
    );
    assert_eq!(hdr(&[("X-Ver", "v42")]).await, "b");
    assert_eq!(hdr(&[("X-Ver", "v42x")]).await, "404");
    assert_eq!(hdr(&[("X-Env", "prod")]).await, "404");

    assert_eq!(pod(&u("/q?env=prod"), host).await, "a");
    assert_eq!(pod(&u("/q?x=1&env=prod"), host).await, "a");
    assert_eq!(pod(&u("/q?id=cafe"), host).await, "b");
    assert_eq!(pod(&u("/q?id=cafe1"), host).await, "404");
    assert_eq!(pod(&u("/q?env=dev"), host).await, "404");

    let (s, b, _) = request(&c, reqwest::Method::POST, &u("/m"), host, &[]).await;
    assert_eq!((s, b["pod"].as_str()), (200, Some("a")));
    let (s, _, _) = request(&c, reqwest::Method::GET, &u("/m"), host, &[]).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn precedence_within_and_across_routes() {
    let gh = setup(&["a", "b"]).await;
    let old = "  creationTimestamp: \"2020-01-01T00:00:00Z\"\n";
    let new = "  creationTimestamp: \"2021-01-01T00:00:00Z\"\n";
    // The newer route is written first (file order must not matter).
    gh.write(
        "1-newer.yaml",
        &route(
            "newer",
            new,
            "[p.example.com]",
            "  - matches: [{path: {value: /same}}]
    backendRefs: [{name: b, port: 80}]
  - matches: [{path: {type: Exact, value: /exact}}]
    backendRefs: [{name: b, port: 80}]
  - matches: [{path: {value: /x/y}}]
    backendRefs: [{name: b, port: 80}]
  - matches: [{path: {value: /m}, method: GET}]
    backendRefs: [{name: b, port: 80}]
  - matches: [{path: {value: /hd}, headers: [{name: h1, value: '1'}, {name: h2, value: '2'}]}]
    backendRefs: [{name: b, port: 80}]
  - matches: [{path: {value: /qp}, queryParams: [{name: q1, value: '1'}, {name: q2, value: '2'}]}]
    backendRefs: [{name: b, port: 80}]
",
        ),
    );
    gh.write(
        "2-older.yaml",
        &route(
            "older",
            old,
            "[p.example.com]",
            "  - matches: [{path: {value: /same}}]
    backendRefs: [{name: a, port: 80}]
  - matches: [{path: {value: /exact}}]
    backendRefs: [{name: a, port: 80}]
  - matches: [{path: {value: /x}}]
    backendRefs: [{name: a, port: 80}]
  - matches: [{path: {value: /m}}]
    backendRefs: [{name: a, port: 80}]
  - matches: [{path: {value: /hd}, headers: [{name: h1, value: '1'}]}]
    backendRefs: [{name: a, port: 80}]
  - matches: [{path: {value: /qp}, queryParams: [{name: q1, value: '1'}]}]
    backendRefs: [{name: a, port: 80}]
  - matches: [{path: {value: /first}}]
    backendRefs: [{name: a, port: 80}]
  - matches: [{path: {value: /first}}]
    backendRefs: [{name: b, port: 80}]
",
        ),
    );
    // Same age, names decide: "alpha" before "beta".
    let same = "  creationTimestamp: \"2022-01-01T00:00:00Z\"\n";
    gh.write(
        "3-beta.yaml",
        &route(
            "beta",
            same,
            "[p.example.com]",
            "  - matches: [{path: {value: /tie}}]\n    backendRefs: [{name: b, port: 80}]\n",
        ),
    );
    gh.write(
        "4-alpha.yaml",
        &route(
            "alpha",
            same,
            "[p.example.com]",
            "  - matches: [{path: {value: /tie}}]\n    backendRefs: [{name: a, port: 80}]\n",
        ),
    );
    gh.wait_programmed("default/gw").await;
    let host = "p.example.com";
    let u = |p: &str| gh.url(PORT, p);
    wait_for("routes", || async { pod(&u("/tie"), host).await == "a" })
        .await
        .unwrap();

    assert_eq!(pod(&u("/same"), host).await, "a", "oldest route wins a tie");
    assert_eq!(pod(&u("/exact"), host).await, "b", "Exact beats PathPrefix");
    assert_eq!(pod(&u("/x/y/z"), host).await, "b", "longest prefix wins");
    assert_eq!(pod(&u("/x/z"), host).await, "a");
    assert_eq!(pod(&u("/m"), host).await, "b", "a method match beats none");
    let c = client();
    let (_, body, _) = request(&c, reqwest::Method::POST, &u("/m"), host, &[]).await;
    assert_eq!(body["pod"], "a");
    let (_, body, _) = request(
        &c,
        reqwest::Method::GET,
        &u("/hd"),
        host,
        &[("h1", "1"), ("h2", "2")],
    )
    .await;
    assert_eq!(body["pod"], "b", "more header matches win");
    let (_, body, _) = request(&c, reqwest::Method::GET, &u("/hd"), host, &[("h1", "1")]).await;
    assert_eq!(body["pod"], "a");
    assert_eq!(
        pod(&u("/qp?q1=1&q2=2"), host).await,
        "b",
        "more query matches win"
    );
    assert_eq!(pod(&u("/qp?q1=1"), host).await, "a");
    assert_eq!(
        pod(&u("/first"), host).await,
        "a",
        "first rule wins within a route"
    );
    assert_eq!(
        pod(&u("/tie"), host).await,
        "a",
        "namespace/name order breaks age ties"
    );
}

#[tokio::test]
async fn gateway_wildcards_any_depth_ingress_wildcards_one_label() {
    let gh = setup(&["a", "b"]).await;
    gh.write(
        "route.yaml",
        &route(
            "wild",
            "",
            "['*.wild.com']",
            "  - backendRefs: [{name: a, port: 80}]\n",
        ),
    );
    gh.write(
        "ingress.yaml",
        "apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: gatehouse
spec:
  controller: gatehouse.dev/ingress-controller
  parameters: {apiGroup: gateway.networking.k8s.io, kind: Gateway, name: gw, namespace: default, scope: Namespace}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: one
  namespace: default
spec:
  ingressClassName: gatehouse
  rules:
  - host: '*.one.com'
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: b, port: {number: 80}}}}
",
    );
    gh.wait_programmed("default/gw").await;
    let u = gh.url(PORT, "/");
    wait_for("ingress", || async { pod(&u, "x.one.com").await == "b" })
        .await
        .unwrap();
    assert_eq!(pod(&u, "x.wild.com").await, "a");
    assert_eq!(
        pod(&u, "x.y.wild.com").await,
        "a",
        "Gateway API wildcard: any depth"
    );
    assert_eq!(pod(&u, "wild.com").await, "404");
    assert_eq!(
        pod(&u, "X.Wild.Com:8080").await,
        "a",
        "host is case-insensitive, port ignored"
    );
    assert_eq!(pod(&u, "x.one.com").await, "b");
    assert_eq!(
        pod(&u, "x.y.one.com").await,
        "404",
        "Ingress wildcard: one label only"
    );
    assert_eq!(pod(&u, "one.com").await, "404");
}

/// The path cases of the Ingress conformance suite (../shared/reference/ingress.md).
#[tokio::test]
async fn ingress_path_rules() {
    let gh = setup(&["a", "b", "c", "d"]).await;
    let p = |path: &str, ty: &str, svc: &str| {
        format!(
            "      - {{path: '{path}', pathType: {ty}, backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}}}\n"
        )
    };
    let paths = [
        p("/foo", "Exact", "a"),
        p("/bar", "Prefix", "b"),
        p("/aaa", "Prefix", "c"),
        p("/aaa/bbb", "Prefix", "d"),
        p("/same", "Exact", "a"),
        p("/same", "Prefix", "b"),
        p("/ccc/ddd/", "Prefix", "c"),
        p("/eee/", "Exact", "d"),
        p("/impl", "ImplementationSpecific", "a"),
    ]
    .concat();
    gh.write(
        "ingress.yaml",
        &format!(
            "apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: gatehouse
  annotations: {{ingressclass.kubernetes.io/is-default-class: \"true\"}}
spec:
  controller: gatehouse.dev/ingress-controller
  parameters: {{apiGroup: gateway.networking.k8s.io, kind: Gateway, name: gw, namespace: default, scope: Namespace}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: paths
  namespace: default
spec:
  rules:
  - host: paths.example.com
    http:
      paths:
{paths}"
        ),
    );
    gh.wait_programmed("default/gw").await;
    let host = "paths.example.com";
    let u = |p: &str| gh.url(PORT, p);
    wait_for("ingress", || async { pod(&u("/foo"), host).await == "a" })
        .await
        .unwrap();
    let cases = [
        ("/foo", "a"),
        ("/foo/", "404"),
        ("/FOO", "404"),
        ("/bar", "b"),
        ("/bar/", "b"),
        ("/bar/baz", "b"),
        ("/barbaz", "404"),
        ("/aaa", "c"),
        ("/aaa/bbb", "d"),
        ("/aaa/bbb/ccc", "d"),
        ("/aaa/ccc", "c"),
        ("/aaaccc", "404"),
        ("/same", "a"),
        ("/same/x", "b"),
        ("/ccc/ddd", "c"),
        ("/ccc/ddd/", "c"),
        ("/eee/", "d"),
        ("/eee", "404"),
        ("/impl/x", "a"),
        ("/implx", "404"),
    ];
    for (path, want) in cases {
        assert_eq!(pod(&u(path), host).await, want, "path {path}");
    }
}

#[tokio::test]
async fn weighted_split_90_10() {
    let gh = setup(&["v1", "v2"]).await;
    gh.write(
        "route.yaml",
        &route(
            "split",
            "",
            "[s.example.com]",
            "  - backendRefs: [{name: v1, port: 80, weight: 90}, {name: v2, port: 80, weight: 10}]\n",
        ),
    );
    gh.wait_programmed("default/gw").await;
    let u = gh.url(PORT, "/");
    wait_for("route", || async {
        pod(&u, "s.example.com").await.starts_with('v')
    })
    .await
    .unwrap();
    let c = client();
    let mut v1 = 0;
    for _ in 0..2000 {
        let (s, b, _) = request(&c, reqwest::Method::GET, &u, "s.example.com", &[]).await;
        assert_eq!(s, 200);
        if b["pod"] == "v1" {
            v1 += 1;
        }
    }
    let share = v1 as f64 / 2000.0;
    assert!(
        (0.85..=0.95).contains(&share),
        "v1 got {share:.3} of traffic, want 0.90 ± 0.05"
    );
}

#[tokio::test]
async fn header_modifiers_redirects_and_rewrites() {
    let gh = setup(&["a"]).await;
    gh.write(
        "route.yaml",
        &route(
            "filters",
            "",
            "[f.example.com]",
            "  - matches: [{path: {value: /headers}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: X-Set, value: set-value}]
        add: [{name: X-Add, value: added}]
        remove: [X-Remove]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set: [{name: X-Resp-Set, value: one}]
        add: [{name: X-Resp-Add, value: two}]
        remove: [Content-Type]
    backendRefs: [{name: a, port: 80}]
  - matches: [{path: {value: /redirect-full}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https, hostname: example.org, statusCode: 301, path: {type: ReplaceFullPath, replaceFullPath: /new}}
  - matches: [{path: {value: /redirect-prefix}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {port: 9443, path: {type: ReplacePrefixMatch, replacePrefixMatch: /moved}}
  - matches: [{path: {value: /rewrite-prefix}}]
    filters:
    - type: URLRewrite
      urlRewrite: {hostname: rewritten.example.com, path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}
    backendRefs: [{name: a, port: 80}]
  - matches: [{path: {value: /rewrite-full}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /full}}
    backendRefs: [{name: a, port: 80}]
",
        ),
    );
    gh.wait_programmed("default/gw").await;
    let host = "f.example.com";
    let u = |p: &str| gh.url(PORT, p);
    wait_for("route", || async { pod(&u("/headers"), host).await == "a" })
        .await
        .unwrap();

    let c = client();
    let (s, body, headers) = request(
        &c,
        reqwest::Method::GET,
        &u("/headers"),
        host,
        &[
            ("x-set", "original"),
            ("x-add", "first"),
            ("x-remove", "gone"),
        ],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body["headers"]["X-Set"], serde_json::json!(["set-value"]));
    assert_eq!(
        body["headers"]["X-Add"],
        serde_json::json!(["first", "added"])
    );
    assert!(body["headers"]["X-Remove"].is_null());
    assert_eq!(
        body["headers"]["X-Forwarded-Proto"],
        serde_json::json!(["http"])
    );
    assert_eq!(headers["x-resp-set"], "one");
    assert_eq!(headers["x-resp-add"], "two");
    assert!(headers.get("content-type").is_none());

    let (s, _, headers) = get(&u("/redirect-full?a=1"), host).await;
    assert_eq!(s, 301);
    assert_eq!(headers["location"], "https://example.org/new?a=1");
    let (s, _, headers) = get(&u("/redirect-prefix/x/y"), host).await;
    assert_eq!(s, 302, "302 is the default redirect status");
    assert_eq!(headers["location"], "http://f.example.com:9443/moved/x/y");

    let (_, body, _) = get(&u("/rewrite-prefix/x?q=1"), host).await;
    assert_eq!(body["path"], "/v2/x?q=1");
    assert_eq!(body["host"], "rewritten.example.com");
    let (_, body, _) = get(&u("/rewrite-full/deep/path"), host).await;
    assert_eq!(body["path"], "/full");
    assert_eq!(body["host"], "f.example.com");
}

#[tokio::test]
async fn answers_404_500_503_502() {
    let gh = setup(&["a"]).await;
    // A port nothing listens on: bind one and let it go.
    let closed = {
        let l = std::net::TcpListener::bind((gh.ip, 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    gh.write("dead.yaml", &service("dead", gh.ip, &[closed]));
    let live = gh.backend("live").await;
    // One endpoint gone (a pod just deleted), one alive.
    gh.write("mixed.yaml", &service("mixed", gh.ip, &[closed, live]));
    gh.write("empty.yaml", &service("empty", gh.ip, &[]));
    gh.write(
        "route.yaml",
        &route(
            "errors",
            "",
            "[e.example.com]",
            "  - matches: [{path: {value: /ok}}]
    backendRefs: [{name: a, port: 80}]
  - matches: [{path: {value: /missing}}]
    backendRefs: [{name: does-not-exist, port: 80}]
  - matches: [{path: {value: /empty}}]
    backendRefs: [{name: empty, port: 80}]
  - matches: [{path: {value: /dead}}]
    backendRefs: [{name: dead, port: 80}]
  - matches: [{path: {value: /mixed}}]
    backendRefs: [{name: mixed, port: 80}]
",
        ),
    );
    gh.wait_programmed("default/gw").await;
    let host = "e.example.com";
    let u = |p: &str| gh.url(PORT, p);
    wait_for("route", || async { pod(&u("/ok"), host).await == "a" })
        .await
        .unwrap();
    assert_eq!(get(&u("/nothing-here"), host).await.0, 404);
    assert_eq!(get(&u("/ok"), "unknown.example.com").await.0, 404);
    assert_eq!(get(&u("/missing"), host).await.0, 500);
    assert_eq!(get(&u("/empty"), host).await.0, 503);
    assert_eq!(get(&u("/dead"), host).await.0, 502);
    // A failed connect is retried on another endpoint: no request fails.
    for _ in 0..20 {
        assert_eq!(pod(&u("/mixed"), host).await, "live");
    }
    // And the status says why the route's refs do not resolve.
    let st = gh
        .wait_status("HTTPRoute default/errors", |s| !s["parents"][0].is_null())
        .await;
    let resolved = condition(&st["parents"][0], "ResolvedRefs").unwrap();
    assert_eq!(resolved["status"], "False");
    assert_eq!(resolved["reason"], "BackendNotFound");
    assert!(
        resolved["message"]
            .as_str()
            .unwrap()
            .contains("does-not-exist")
    );
}

/// ListenerSets through the real data plane: a set's listeners serve on the Gateway's
/// address, including a port of their own; routes reach a set's listeners only through a
/// `kind: ListenerSet` parentRef; a listener colliding with the Gateway's loses; a set the
/// Gateway does not allow serves nothing.
#[tokio::test]
async fn listener_sets_serve_on_their_gateway() {
    let gh = Gatehouse::start().await;
    gh.write(
        "gateway.yaml",
        &http_gateway(&[PORT]).replace(
            "  gatewayClassName: gatehouse\n",
            "  gatewayClassName: gatehouse\n  allowedListeners: {namespaces: {from: Same}}\n",
        ),
    );
    gh.backend("a").await;
    gh.backend("b").await;
    gh.write(
        "sets.yaml",
        "apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: team, namespace: default}
spec:
  parentRef: {name: gw}
  listeners:
  - {name: shop, protocol: HTTP, port: 8080, hostname: shop.example.com}
  - {name: admin, protocol: HTTP, port: 8081, hostname: admin.example.com}
  - {name: clash, protocol: HTTPS, port: 8080, tls: {certificateRefs: [{name: none}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: via-set, namespace: default}
spec:
  parentRefs: [{kind: ListenerSet, name: team}]
  rules: [{backendRefs: [{name: a, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: via-gateway, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: b, port: 80}]}]
",
    );
    gh.wait_programmed("default/gw").await;
    let set = gh
        .wait_status("ListenerSet default/team", |s| {
            condition(s, "Programmed").is_some_and(|c| c["status"] == "True")
        })
        .await;
    let clash = &set["listeners"][2];
    assert_eq!(clash["name"], "clash");
    let conflicted = condition(clash, "Conflicted").unwrap();
    assert_eq!(conflicted["reason"], "ProtocolConflict");
    let gw = gh.wait_status("Gateway default/gw", |_| true).await;
    assert_eq!(gw["attachedListenerSets"], 1, "{gw}");

    // The set's hostnames get the set's route; the Gateway's listener (any host) the
    // Gateway's: the most specific listener takes a request, as within one Gateway.
    assert_eq!(pod(&gh.url(PORT, "/"), "shop.example.com").await, "a");
    assert_eq!(pod(&gh.url(PORT, "/"), "other.example.com").await, "b");
    assert_eq!(pod(&gh.url(8081, "/"), "admin.example.com").await, "a");
    // The set's own port has only the set's listener.
    assert_eq!(pod(&gh.url(8081, "/"), "other.example.com").await, "404");
}
