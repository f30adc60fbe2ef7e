//! TLS termination: certificate selection by SNI, live certificate swap, HTTP/2 by ALPN.

use crate::support::*;
use std::net::SocketAddr;
use std::time::Duration;

fn https_gateway() -> String {
    let listener = |name: &str, hostname: Option<&str>, secret: &str| {
        format!(
            "  - name: {name}
    protocol: HTTPS
    port: 8443
{}    tls:
      certificateRefs: [{{name: {secret}}}]
",
            hostname
                .map(|h| format!("    hostname: '{h}'\n"))
                .unwrap_or_default()
        )
    };
    gateway(&format!(
        "{}{}{}  - name: plain
    protocol: HTTP
    port: 8080
",
        listener("exact", Some("a.example.com"), "cert-a"),
        listener("wild", Some("*.example.com"), "cert-wild"),
        listener("default", None, "cert-default"),
    ))
}

/// A Gateway with three HTTPS listeners on one port (exact, wildcard and default
/// certificates) plus plaintext 8080, and a route to an echo backend. Returns the DER of
/// the exact, wildcard and default certificates.
async fn setup() -> (Gatehouse, [Vec<u8>; 3]) {
    let gh = Gatehouse::start().await;
    let mut ders = Vec::new();
    for (secret, name) in [
        ("cert-a", "a.example.com"),
        ("cert-wild", "*.example.com"),
        ("cert-default", "default.test"),
    ] {
        let (yaml, der) = tls_secret(secret, &[name]);
        gh.write(&format!("{secret}.yaml"), &yaml);
        ders.push(der);
    }
    gh.write("gateway.yaml", &https_gateway());
    gh.backend("app").await;
    gh.write("route.yaml", ROUTE_TO_APP);
    gh.wait_programmed("default/gw").await;
    let [a, wild, default] = <[Vec<u8>; 3]>::try_from(ders).expect("three certificates");
    (gh, [a, wild, default])
}

#[tokio::test]
async fn sni_selection_and_live_certificate_swap() {
    let (gh, [a_der, wild_der, default_der]) = setup().await;
    let addr = SocketAddr::new(gh.ip, 8443);

    assert!(
        served_certificate(addr, Some("a.example.com")).await == a_der,
        "exact name first"
    );
    assert!(
        served_certificate(addr, Some("b.example.com")).await == wild_der,
        "then the wildcard"
    );
    assert!(
        served_certificate(addr, Some("x.y.example.com")).await == wild_der,
        "wildcards cover any depth"
    );
    assert!(
        served_certificate(addr, Some("other.org")).await == default_der,
        "unknown names get the default"
    );
    assert!(
        served_certificate(addr, None).await == default_der,
        "no SNI gets the default"
    );

    // A request over TLS reaches the backend, HTTP/2 negotiated by ALPN.
    let c = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .resolve("a.example.com", addr)
        .build()
        .unwrap();
    let resp = c
        .get("https://a.example.com:8443/tls")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["pod"], "app");
    assert_eq!(
        body["headers"]["X-Forwarded-Proto"],
        serde_json::json!(["https"])
    );

    // Swap cert-a live: an open connection keeps working, new handshakes get the new one.
    let keep = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .http1_only()
        .resolve("a.example.com", addr)
        .build()
        .unwrap();
    assert_eq!(
        keep.get("https://a.example.com:8443/")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let (a2, a2_der) = tls_secret("cert-a", &["a.example.com"]);
    gh.write("cert-a.yaml", &a2);
    let took = wait_for("new certificate", || async {
        served_certificate(addr, Some("a.example.com")).await == a2_der
    })
    .await
    .unwrap();
    assert!(
        took < Duration::from_secs(2),
        "certificate swap took {took:?}"
    );
    assert_eq!(
        keep.get("https://a.example.com:8443/")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn http2_over_tls_and_prior_knowledge_cleartext() {
    let (gh, _) = setup().await;

    let h2c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let url = gh.url(8080, "/h2c");
    wait_for("route", || async {
        h2c.get(&url).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await
    .unwrap();
    let resp = h2c.get(&url).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);

    let tls = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .resolve("b.example.com", SocketAddr::new(gh.ip, 8443))
        .build()
        .unwrap();
    // Many concurrent streams over one HTTP/2 connection.
    let requests = (0..50).map(|i| {
        let tls = tls.clone();
        async move {
            let r = tls
                .get(format!("https://b.example.com:8443/stream/{i}"))
                .send()
                .await
                .unwrap();
            (r.version(), r.status().as_u16())
        }
    });
    for (version, status) in futures::future::join_all(requests).await {
        assert_eq!((version, status), (reqwest::Version::HTTP_2, 200));
    }
}
