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

#[tokio::test]
async fn a_host_of_another_listener_than_the_server_name_is_misdirected() {
    let (gh, _) = setup().await;
    let addr = SocketAddr::new(gh.ip, 8443);
    // HTTP/1.1 so the Host header can differ from the name the connection was made for.
    let c = |sni: &str| {
        reqwest::Client::builder()
            .no_proxy()
            .danger_accept_invalid_certs(true)
            .http1_only()
            .resolve(sni, addr)
            .build()
            .unwrap()
    };
    let status = |sni: &'static str, host: &'static str| {
        let client = c(sni);
        async move {
            client
                .get(format!("https://{sni}:8443/"))
                .header("host", host)
                .send()
                .await
                .map_or(0, |r| r.status().as_u16())
        }
    };
    wait_for("route", || async {
        status("a.example.com", "a.example.com").await == 200
    })
    .await
    .unwrap();
    // SNI picks the exact listener; a Host of the wildcard or default listener is 421.
    assert_eq!(status("a.example.com", "b.example.com").await, 421);
    assert_eq!(status("a.example.com", "other.org").await, 421);
    // SNI and Host on the same (wildcard) listener: served.
    assert_eq!(status("b.example.com", "c.example.com").await, 200);
    assert_eq!(status("b.example.com", "a.example.com").await, 421);
    // The default listener's names stay together too.
    assert_eq!(status("other.org", "another.org").await, 200);
}

/// A CA and a client certificate it issued, as (CA PEM, client identity PEM).
fn client_ca_and_identity(ca_name: &str) -> (String, Vec<u8>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(vec![]).unwrap();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let client_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["client.test".into()]).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client = params.signed_by(&client_key, &ca, &ca_key).unwrap();
    let identity = format!("{}{}", client.pem(), client_key.serialize_pem());
    (ca.pem(), identity.into_bytes())
}

#[tokio::test]
async fn client_certificates_are_checked_per_port_with_an_insecure_fallback() {
    let gh = Gatehouse::start().await;
    let (cert, _) = tls_secret("server", &["app.example.com"]);
    gh.write("server.yaml", &cert);
    let (ca1, id1) = client_ca_and_identity("ca one");
    let (ca2, id2) = client_ca_and_identity("ca two");
    let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    for (name, pem) in [("ca-one", &ca1), ("ca-two", &ca2)] {
        gh.write(
            &format!("{name}.yaml"),
            &format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: default}}\ndata:\n  ca.crt: |\n{}",
                indent(pem)
            ),
        );
    }
    let listener = |name: &str, port: u16| {
        format!(
            "  - name: {name}
    protocol: HTTPS
    port: {port}
    tls: {{certificateRefs: [{{name: server}}]}}
"
        )
    };
    let gw = gateway(&format!(
        "{}{}",
        listener("strict", 8443),
        listener("fallback", 9443)
    ))
    .replace(
        "  gatewayClassName: gatehouse\n",
        "  gatewayClassName: gatehouse
  tls:
    frontend:
      default:
        validation:
          caCertificateRefs: [{kind: ConfigMap, group: '', name: ca-one}]
      perPort:
      - port: 9443
        tls:
          validation:
            mode: AllowInsecureFallback
            caCertificateRefs: [{kind: ConfigMap, group: '', name: ca-two}]
",
    );
    gh.write("gateway.yaml", &gw);
    gh.backend("app").await;
    gh.write("route.yaml", ROUTE_TO_APP);
    gh.wait_programmed("default/gw").await;
    let status = gh
        .wait_status("Gateway default/gw", |g| {
            condition(g, "InsecureFrontendValidationMode").is_some()
        })
        .await;
    let c = condition(&status, "InsecureFrontendValidationMode").unwrap();
    assert_eq!(
        (&c["status"], &c["reason"]),
        (&"True".into(), &"ConfigurationChanged".into())
    );

    let get = |port: u16, identity: Option<&[u8]>| {
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .danger_accept_invalid_certs(true)
            .resolve("app.example.com", SocketAddr::new(gh.ip, port));
        if let Some(pem) = identity {
            b = b.identity(reqwest::Identity::from_pem(pem).unwrap());
        }
        let client = b.build().unwrap();
        async move {
            client
                .get(format!("https://app.example.com:{port}/"))
                .send()
                .await
                .map_or(0, |r| r.status().as_u16())
        }
    };
    wait_for("strict port with a valid client certificate", || async {
        get(8443, Some(&id1)).await == 200
    })
    .await
    .unwrap();
    assert_eq!(get(8443, None).await, 0, "no client certificate: refused");
    assert_eq!(
        get(8443, Some(&id2)).await,
        0,
        "a certificate of another CA: refused"
    );
    // The per-port entry wins on 9443: its own CA, and the fallback lets anyone in.
    assert_eq!(get(9443, Some(&id2)).await, 200);
    assert_eq!(get(9443, Some(&id1)).await, 200);
    assert_eq!(get(9443, None).await, 200);
}
