//! TLS to backends (BackendTLSPolicy): the policy's CA, SNI and subjectAltNames, the
//! Gateway's client certificate, and a policy without a usable CA refusing to send
//! cleartext. The backend is a TLS server of this test that reports what it saw.

use crate::support::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

/// A CA and certificates it issued: the backend's (DNS `backend.internal`, URI
/// `spiffe://test/backend`) and a client certificate for the Gateway.
pub(crate) struct Pki {
    ca_pem: String,
    pub(crate) server: (Vec<u8>, Vec<u8>),
    client_pem: (String, String),
}

pub(crate) fn issue_pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(vec![]).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "backend ca");
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let server_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["backend.internal".into()]).unwrap();
    params.subject_alt_names.push(rcgen::SanType::URI(
        "spiffe://test/backend".try_into().unwrap(),
    ));
    let server = params.signed_by(&server_key, &ca, &ca_key).unwrap();

    let client_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client = params.signed_by(&client_key, &ca, &ca_key).unwrap();
    Pki {
        ca_pem: ca.pem(),
        server: (server.der().to_vec(), server_key.serialize_der()),
        client_pem: (client.pem(), client_key.serialize_pem()),
    }
}

/// An HTTPS backend answering every request with JSON naming the SNI it was sent and
/// whether the client presented a certificate (one its CA issued). Counts connections
/// that did not complete a TLS handshake (e.g. cleartext).
pub(crate) async fn tls_backend(ip: std::net::IpAddr, pki: &Pki) -> (SocketAddr, Arc<AtomicU64>) {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pki.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()
        .unwrap();
    let config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![pki.server.0.clone().into()],
            rustls::pki_types::PrivateKeyDer::try_from(pki.server.1.clone()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let failed = Arc::new(AtomicU64::new(0));
    let failures = failed.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let failures = failures.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    failures.fetch_add(1, Ordering::SeqCst);
                    return;
                };
                let (_, session) = tls.get_ref();
                let body = serde_json::json!({
                    "sni": session.server_name(),
                    "client_certificate": session.peer_certificates().is_some(),
                })
                .to_string();
                let mut buf = vec![0u8; 16 * 1024];
                let mut head = Vec::new();
                // Keep-alive: one answer per request head.
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                    while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                        head.drain(..end + 4);
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if tls.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, failed)
}

fn policy(name: &str, ca: &str, hostname: &str, sans: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: {name}, namespace: default}}
spec:
  targetRefs: [{{group: '', kind: Service, name: {name}}}]
  validation:
    caCertificateRefs: [{{group: '', kind: ConfigMap, name: {ca}}}]
    hostname: {hostname}
{sans}"
    )
}

#[tokio::test]
async fn backend_tls_policies_verify_the_backend_and_present_the_gateway_certificate() {
    let gh = Gatehouse::start().await;
    let pki = issue_pki();
    let other = issue_pki();
    let (backend, handshake_failures) = tls_backend(gh.ip, &pki).await;
    let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    for (name, pem) in [("ca", &pki.ca_pem), ("other-ca", &other.ca_pem)] {
        gh.write(
            &format!("{name}.yaml"),
            &format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: default}}\ndata:\n  ca.crt: |\n{}",
                indent(pem)
            ),
        );
    }
    gh.write(
        "client.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: backend-client, namespace: default}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
            indent(&pki.client_pem.0),
            indent(&pki.client_pem.1)
        ),
    );
    // Six Services on the one TLS backend, each with its own policy.
    let cases = [
        ("valid", "ca", "backend.internal", ""),
        ("other-ca", "other-ca", "backend.internal", ""),
        ("wrong-name", "ca", "other.internal", ""),
        (
            "san-uri",
            "ca",
            "sni.example",
            "    subjectAltNames: [{type: URI, uri: 'spiffe://test/backend'}]\n",
        ),
        (
            "san-mismatch",
            "ca",
            "backend.internal",
            "    subjectAltNames: [{type: Hostname, hostname: nope.internal}]\n",
        ),
        ("no-ca", "missing", "backend.internal", ""),
    ];
    let mut rules = String::new();
    for (name, ca, hostname, sans) in cases {
        gh.write(
            &format!("svc-{name}.yaml"),
            &service(name, gh.ip, &[backend.port()]),
        );
        gh.write(
            &format!("policy-{name}.yaml"),
            &policy(name, ca, hostname, sans),
        );
        rules.push_str(&format!(
            "  - matches: [{{path: {{type: PathPrefix, value: /{name}}}}}]\n    backendRefs: [{{name: {name}, port: 80}}]\n"
        ));
    }
    gh.write(
        "route.yaml",
        &format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: app, namespace: default}}\nspec:\n  parentRefs: [{{name: gw}}]\n  rules:\n{rules}"
        ),
    );
    gh.write(
        "gateway.yaml",
        &http_gateway(&[8080]).replace(
            "  gatewayClassName: gatehouse\n",
            "  gatewayClassName: gatehouse\n  tls: {backend: {clientCertificateRef: {name: backend-client}}}\n",
        ),
    );
    gh.wait_programmed("default/gw").await;

    let url = |path: &str| gh.url(8080, path);
    wait_for("the valid policy to serve", || async {
        get(&url("/valid"), "app.test").await.0 == 200
    })
    .await
    .unwrap();
    let (_, seen, _) = get(&url("/valid"), "app.test").await;
    assert_eq!(seen["sni"], "backend.internal");
    assert_eq!(
        seen["client_certificate"], true,
        "the Gateway's client certificate"
    );
    // subjectAltNames: the certificate need not name the SNI, only carry one of them.
    let (code, seen, _) = get(&url("/san-uri"), "app.test").await;
    assert_eq!((code, &seen["sni"]), (200, &"sni.example".into()));
    // Refused: a chain from another CA, a name the certificate lacks, no listed SAN. The
    // connection pool must not hand a connection verified under one policy to another.
    for path in ["/other-ca", "/wrong-name", "/san-mismatch"] {
        assert_eq!(get(&url(path), "app.test").await.0, 502, "{path}");
        assert_eq!(get(&url("/valid"), "app.test").await.0, 200);
    }
    // No usable CA: 503 from the gateway; nothing (cleartext or not) reaches the backend.
    let failures_before = handshake_failures.load(Ordering::SeqCst);
    assert_eq!(get(&url("/no-ca"), "app.test").await.0, 503);
    assert_eq!(handshake_failures.load(Ordering::SeqCst), failures_before);

    let status = gh
        .wait_status("BackendTLSPolicy default/no-ca", |p| {
            !p["parents"].is_null()
        })
        .await;
    let accepted = &status["parents"][0]["conditions"][0];
    assert_eq!(
        (&accepted["status"], &accepted["reason"]),
        (&"False".into(), &"NoValidCACertificate".into())
    );
}
