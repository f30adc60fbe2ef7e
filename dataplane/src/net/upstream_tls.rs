//! TLS to backends (BackendTLSPolicy): the CA a backend's chain must lead to, the server
//! name sent, subjectAltName checks, and the Gateway's client certificate.
//!
//! Pingora's rustls connector verifies the chain against a per-peer CA and the certificate
//! against the SNI, but takes no verifier of ours. So for a policy with subjectAltNames the
//! connector checks the chain only, and each connection's leaf certificate (by its SHA-256,
//! which Pingora reports) must be one this module fetched from the same endpoint and found
//! to carry one of the names. Verified leaves are remembered, so pooled connections stay
//! cheap.

use gatehouse_model::ir::{Certificate, SubjectAltName, UpstreamTls, UpstreamTrust};
use pingora_core::protocols::tls::CaType;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::utils::tls::{CertKey, WrappedX509, parse_x509};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A cluster's compiled TLS settings.
#[derive(Debug)]
pub struct BackendTls {
    pub sni: String,
    /// Certificates are not verified (ingress-nginx backend-protocol HTTPS).
    insecure: bool,
    /// None: the system's trust store.
    ca: Option<Arc<CaType>>,
    /// Why requests cannot be sent (the policy has no usable CA).
    pub unusable: Option<String>,
    pub subject_alt_names: Vec<SubjectAltName>,
    /// Separates connection pools: connections verified under one policy are never
    /// reused under another (Pingora's pool key ignores the CA).
    group_key: u64,
}

impl BackendTls {
    /// Loads the policy's CA certificates and notes its names.
    pub fn compile(tls: &UpstreamTls) -> Result<BackendTls, String> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        tls.hash(&mut hasher);
        let (ca, unusable) = match &tls.trust {
            UpstreamTrust::CaPem(pem) => (Some(ca_certificates(pem)?), None),
            UpstreamTrust::System => (None, None),
            UpstreamTrust::Unusable(why) => (None, Some(why.clone())),
            UpstreamTrust::Insecure => (None, None),
        };
        Ok(BackendTls {
            sni: tls.hostname.clone(),
            insecure: tls.trust == UpstreamTrust::Insecure,
            ca,
            unusable,
            subject_alt_names: tls.subject_alt_names.clone(),
            group_key: hasher.finish(),
        })
    }

    /// Makes `peer` (at `addr`) speak TLS as this policy says, presenting `client` when
    /// asked.
    pub fn apply(&self, peer: &mut HttpPeer, addr: SocketAddr, client: Option<&Arc<CertKey>>) {
        peer.scheme = pingora_core::upstreams::peer::Scheme::HTTPS;
        peer.sni = self.sni.clone();
        if self.sni.is_empty() {
            // No SNI (nginx's default towards backends): Pingora's rustls path needs a
            // name, and rustls sends none for an IP address.
            peer.sni = addr.ip().to_string();
        }
        peer.options.verify_cert = !self.insecure;
        // With subjectAltNames the certificate need not name the SNI; the names are
        // checked after the handshake (`check_leaf`).
        peer.options.verify_hostname = !self.insecure && self.subject_alt_names.is_empty();
        peer.options.ca = self.ca.clone();
        peer.client_cert_key = client.cloned();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.group_key.hash(&mut hasher);
        client
            .map(|c| c.leaf().borrow_raw_cert().clone())
            .hash(&mut hasher);
        peer.group_key = hasher.finish();
    }
}

/// PEM CA certificates as Pingora wants them, each checked to parse (Pingora's own
/// parsing panics on a bad one).
fn ca_certificates(pem: &str) -> Result<Arc<CaType>, String> {
    let ders = pem_certificates(pem)?;
    if ders.is_empty() {
        return Err("backend TLS: no CA certificate in PEM".into());
    }
    Ok(ders
        .into_iter()
        .map(|der| WrappedX509::new(der, parse_x509))
        .collect::<Vec<_>>()
        .into())
}

fn pem_certificates(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    let ders = rustls_pemfile::certs(&mut pem.as_bytes())
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("backend TLS: bad PEM certificate: {e}"))?;
    for der in &ders {
        x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("backend TLS: bad certificate: {e}"))?;
    }
    Ok(ders)
}

/// The Gateway's client certificate for backends, from a Certificate resource.
pub fn client_certificate(cert: &Certificate) -> Result<Arc<CertKey>, String> {
    let at = format!("Certificate {}", cert.key);
    let chain = pem_certificates(&cert.chain_pem).map_err(|e| format!("{at}: {e}"))?;
    if chain.is_empty() {
        return Err(format!("{at}: no certificate"));
    }
    let key = rustls_pemfile::private_key(&mut cert.private_key_pem.as_bytes())
        .map_err(|e| format!("{at}: bad private key: {e}"))?
        .ok_or_else(|| format!("{at}: no private key"))?;
    let der = key.secret_der().to_vec();
    // Pingora converts the key the same way and panics if it cannot.
    PrivateKeyDer::try_from(der.as_slice()).map_err(|e| format!("{at}: private key: {e}"))?;
    Ok(Arc::new(CertKey::new(chain, der)))
}

/// Leaf certificates (by SHA-256) found to carry a policy's subjectAltNames, per policy.
#[derive(Default)]
pub struct VerifiedLeaves {
    seen: Mutex<HashSet<(u64, Vec<u8>)>>,
}

impl VerifiedLeaves {
    /// Whether the connection whose leaf certificate has SHA-256 `digest` satisfies the
    /// policy's subjectAltNames. A leaf not seen before is fetched from `addr` (a second,
    /// short handshake) and checked; the connection's chain was verified by Pingora.
    pub async fn check_leaf(
        &self,
        tls: &BackendTls,
        addr: SocketAddr,
        digest: &[u8],
    ) -> Result<(), String> {
        let key = (tls.group_key, digest.to_vec());
        if self.seen.lock().is_ok_and(|s| s.contains(&key)) {
            return Ok(());
        }
        let leaf = fetch_leaf(addr, &tls.sni).await?;
        let leaf_digest = ring_sha256(&leaf);
        if leaf_digest != digest {
            return Err("backend presented another certificate on a second connection".into());
        }
        if !carries_one_of(&leaf, &tls.subject_alt_names)? {
            return Err(format!(
                "backend certificate carries none of the subjectAltNames {:?}",
                tls.subject_alt_names
            ));
        }
        if let Ok(mut s) = self.seen.lock() {
            if s.len() > 10_000 {
                s.clear(); // Bounded: rotated certificates leave old entries behind.
            }
            s.insert(key);
        }
        Ok(())
    }
}

/// The hash Pingora reports as a connection's certificate digest.
fn ring_sha256(der: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .to_vec()
}

/// Whether the certificate carries one of `names` (DNS names with certificate wildcard
/// rules, URIs exactly).
pub fn carries_one_of(der: &[u8], names: &[SubjectAltName]) -> Result<bool, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("backend certificate does not parse: {e}"))?;
    let end_entity = CertificateDer::from(der);
    let parsed = rustls::server::ParsedCertificate::try_from(&end_entity)
        .map_err(|e| format!("backend certificate: {e}"))?;
    let uris: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(names.iter().any(|n| match n {
        SubjectAltName::Hostname(h) => ServerName::try_from(h.as_str())
            .is_ok_and(|name| rustls::client::verify_server_name(&parsed, &name).is_ok()),
        SubjectAltName::Uri(u) => uris.iter().any(|x| x == u),
    }))
}

/// The leaf certificate `addr` presents for `sni`, without judging it.
async fn fetch_leaf(addr: SocketAddr, sni: &str) -> Result<Vec<u8>, String> {
    let captured = Arc::new(Capture::default());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .dangerous()
    .with_custom_certificate_verifier(captured.clone())
    .with_no_client_auth();
    let name = ServerName::try_from(sni.to_string()).map_err(|e| format!("SNI {sni:?}: {e}"))?;
    let connect = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
    };
    // A backend that wants a client certificate may refuse us after sending its own;
    // what matters is the certificate, so the handshake's outcome is not.
    let _ = tokio::time::timeout(Duration::from_secs(5), connect).await;
    captured
        .leaf
        .lock()
        .ok()
        .and_then(|l| l.clone())
        .ok_or_else(|| format!("{addr}: no certificate received"))
}

/// A verifier that records the leaf certificate and accepts it: used only to read the
/// certificate, never to carry traffic.
#[derive(Debug, Default)]
struct Capture {
    leaf: Mutex<Option<Vec<u8>>>,
}

impl rustls::client::danger::ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if let Ok(mut l) = self.leaf.lock() {
            *l = Some(end_entity.to_vec());
        }
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
