//! TLS termination: certificates chosen by SNI from a resolver built once per certificate
//! set. One rustls ServerConfig per set, reused across config versions while the set is
//! unchanged, never one per connection. The server name a handshake saw is carried into
//! the connection digest (`Sni`), where the proxy checks it against the Host.

use gatehouse_model::ir::{Certificate, ClientValidation, HostMatch, SniCertificate};
use pingora_core::listeners::TlsAccept;
use pingora_core::listeners::tls::Acceptor;
use pingora_core::protocols::tls::TlsRef;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

/// Picks a certificate by SNI: exact name, then the most specific wildcard, then the default.
#[derive(Debug)]
pub struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Most specific first.
    wildcards: Vec<(HostMatch, Arc<CertifiedKey>)>,
    default: Option<Arc<CertifiedKey>>,
}

impl SniResolver {
    /// The certificate for a server name (none sent: the default).
    pub fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = sni.map(|s| s.to_ascii_lowercase()) else {
            return self.default.clone();
        };
        self.exact
            .get(&name)
            .or_else(|| {
                self.wildcards
                    .iter()
                    .find(|(h, _)| h.matches(&name))
                    .map(|(_, c)| c)
            })
            .or(self.default.as_ref())
            .cloned()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name())
    }
}

/// Acceptors by certificate-set fingerprint, kept while some bind uses them.
#[derive(Default)]
pub struct TlsCache {
    /// By fingerprint of what went in: the acceptor and what it left out.
    acceptors: HashMap<u64, (Arc<Acceptor>, Vec<Unloadable>)>,
}

impl TlsCache {
    /// Drops the acceptors no bind uses any more.
    pub fn retain(&mut self, used: &[u64]) {
        self.acceptors.retain(|k, _| used.contains(k));
    }
}

fn load_key(cert: &Certificate) -> Result<Arc<CertifiedKey>, String> {
    gatehouse_model::certificate::load(&cert.chain_pem, &cert.private_key_pem)
        .map_err(|e| format!("Certificate {}: {e}", cert.key))
}

/// Checks client certificates against the listener's CAs. With insecure fallback, a
/// missing or failing certificate is let through (and logged); the handshake still asks.
#[derive(Debug)]
struct ClientCheck {
    inner: Arc<dyn ClientCertVerifier>,
    insecure_fallback: bool,
}

impl ClientCertVerifier for ClientCheck {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        !self.insecure_fallback
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            Err(e) if self.insecure_fallback => {
                tracing::debug!(error = %e, "client certificate not valid; insecure fallback");
                Ok(ClientCertVerified::assertion())
            }
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn client_verifier(v: &ClientValidation) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut v.ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("client CA: {e}"))?;
        roots.add(cert).map_err(|e| format!("client CA: {e}"))?;
    }
    if roots.is_empty() {
        return Err("client CA: no certificate".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| format!("client CA: {e}"))?;
    Ok(Arc::new(ClientCheck {
        inner,
        insecure_fallback: v.insecure_fallback,
    }))
}

/// A certificate that could not be served on a bind: its key, the listeners that named it,
/// and why.
pub type Unloadable = (String, Vec<String>, String);

/// The acceptor for one bind's certificates (each with the listener that named it) and
/// client validation, from the cache when the set is unchanged: keys are parsed only for a
/// set not seen before (a version that changes a route re-parses no key). A certificate
/// that is missing or does not load is left out and returned: the bind serves the others.
pub fn acceptor(
    sni_certs: &[(&str, &SniCertificate)],
    certificates: &[Certificate],
    client: Option<&ClientValidation>,
    cache: &mut TlsCache,
) -> Result<(u64, Arc<Acceptor>, Vec<Unloadable>), String> {
    let material: HashMap<&str, &Certificate> =
        certificates.iter().map(|c| (c.key.as_str(), c)).collect();
    // The fingerprint of everything the acceptor and its left-out list depend on.
    let mut hasher = DefaultHasher::new();
    for (listener, s) in sni_certs {
        listener.hash(&mut hasher);
        s.certificate.hash(&mut hasher);
        s.server_names.hash(&mut hasher);
        match material.get(s.certificate.as_str()) {
            Some(c) => {
                c.chain_pem.hash(&mut hasher);
                c.private_key_pem.hash(&mut hasher);
            }
            None => 0u8.hash(&mut hasher),
        }
    }
    client.hash(&mut hasher);
    let fingerprint = hasher.finish();
    if let Some((a, unloadable)) = cache.acceptors.get(&fingerprint) {
        return Ok((fingerprint, a.clone(), unloadable.clone()));
    }
    let mut unloadable: Vec<Unloadable> = Vec::new();
    let mut fail = |cert: &str, listener: &str, e: String| match unloadable
        .iter_mut()
        .find(|(c, _, _)| c == cert)
    {
        Some((_, listeners, _)) => listeners.push(listener.to_string()),
        None => unloadable.push((cert.to_string(), vec![listener.to_string()], e)),
    };
    // The certificates that load, each loaded once, with the names they serve.
    let mut keys: HashMap<&str, Arc<CertifiedKey>> = HashMap::new();
    let mut served: Vec<(&SniCertificate, Arc<CertifiedKey>)> = Vec::new();
    for (listener, s) in sni_certs {
        let Some(c) = material.get(s.certificate.as_str()) else {
            fail(&s.certificate, listener, "missing".into());
            continue;
        };
        let key = match keys.get(s.certificate.as_str()) {
            Some(k) => k.clone(),
            None => match load_key(c) {
                Ok(k) => {
                    keys.insert(&s.certificate, k.clone());
                    k
                }
                Err(e) => {
                    fail(&s.certificate, listener, e);
                    continue;
                }
            },
        };
        served.push((s, key));
    }

    let mut resolver = SniResolver {
        exact: HashMap::new(),
        wildcards: Vec::new(),
        default: None,
    };
    let mut first = None;
    for (s, key) in served {
        if s.server_names.is_empty() {
            resolver.default.get_or_insert(key.clone());
        }
        for name in &s.server_names {
            match name {
                HostMatch::Exact(h) => {
                    resolver
                        .exact
                        .entry(h.clone())
                        .or_insert_with(|| key.clone());
                }
                HostMatch::Any => {
                    resolver.default.get_or_insert(key.clone());
                }
                wildcard => resolver.wildcards.push((wildcard.clone(), key.clone())),
            }
        }
        first.get_or_insert(key);
    }
    // A client without SNI (or with an unknown name) still gets a certificate: the explicit
    // default, else the first one listed.
    if resolver.default.is_none() {
        resolver.default = first;
    }
    resolver
        .wildcards
        .sort_by_key(|(h, _)| std::cmp::Reverse(h.specificity()));

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?;
    let builder = match client {
        None => builder.with_no_client_auth(),
        Some(v) => builder.with_client_cert_verifier(client_verifier(v)?),
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = Arc::new(Acceptor::from_server_config(Arc::new(config)));
    cache
        .acceptors
        .insert(fingerprint, (acceptor.clone(), unloadable.clone()));
    Ok((fingerprint, acceptor, unloadable))
}

/// The TLS server name a client sent, as the handshake saw it; carried in the connection
/// digest, where the proxy can read it for HTTP/2 too.
#[derive(Debug, Clone)]
pub struct Sni(pub Option<String>);

/// Carries the SNI into the connection digest, where the proxy can read it for HTTP/2 too.
pub(crate) struct SniCapture;

#[async_trait::async_trait]
impl TlsAccept for SniCapture {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        Some(Arc::new(Sni(tls.server_name().map(str::to_owned))))
    }
}
