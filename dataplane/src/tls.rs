//! TLS termination: certificates chosen by SNI from a resolver built once per certificate
//! set. One rustls ServerConfig per set, reused across config versions while the set is
//! unchanged, never one per connection.

use gatehouse_model::ir::{Certificate, HostMatch, SniCertificate};
use pingora_core::listeners::tls::Acceptor;
use rustls::server::{ClientHello, ResolvesServerCert};
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
    acceptors: HashMap<u64, Arc<Acceptor>>,
}

impl TlsCache {
    pub fn retain(&mut self, used: &[u64]) {
        self.acceptors.retain(|k, _| used.contains(k));
    }
}

fn load_key(cert: &Certificate) -> Result<Arc<CertifiedKey>, String> {
    let chain = rustls_pemfile::certs(&mut cert.chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("Certificate {}: chain: {e}", cert.key))?;
    if chain.is_empty() {
        return Err(format!("Certificate {}: no certificate in chain", cert.key));
    }
    let key = rustls_pemfile::private_key(&mut cert.private_key_pem.as_bytes())
        .map_err(|e| format!("Certificate {}: private key: {e}", cert.key))?
        .ok_or_else(|| format!("Certificate {}: no private key", cert.key))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| format!("Certificate {}: {e}", cert.key))?;
    Ok(Arc::new(certified))
}

/// The acceptor for one bind's certificates, from the cache when the set is unchanged.
pub fn acceptor(
    sni_certs: &[&SniCertificate],
    certificates: &[Certificate],
    cache: &mut TlsCache,
) -> Result<(u64, Arc<Acceptor>), String> {
    let material: HashMap<&str, &Certificate> =
        certificates.iter().map(|c| (c.key.as_str(), c)).collect();
    let mut hasher = DefaultHasher::new();
    for s in sni_certs {
        s.server_names.hash(&mut hasher);
        let c = material
            .get(s.certificate.as_str())
            .ok_or_else(|| format!("unknown Certificate {}", s.certificate))?;
        c.chain_pem.hash(&mut hasher);
        c.private_key_pem.hash(&mut hasher);
    }
    let fingerprint = hasher.finish();
    if let Some(a) = cache.acceptors.get(&fingerprint) {
        return Ok((fingerprint, a.clone()));
    }

    let mut resolver = SniResolver {
        exact: HashMap::new(),
        wildcards: Vec::new(),
        default: None,
    };
    let mut first = None;
    for s in sni_certs {
        let key = load_key(material[s.certificate.as_str()])?;
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
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = Arc::new(Acceptor::from_server_config(Arc::new(config)));
    cache.acceptors.insert(fingerprint, acceptor.clone());
    Ok((fingerprint, acceptor))
}
