//! A serving certificate and its key, loaded as the data plane loads them (rustls with
//! ring): PEM certificates (the leaf first), a PEM private key of a type rustls can sign
//! with (RSA, ECDSA P-256/P-384, Ed25519), and the key matching the leaf's public key.
//!
//! The operator loads every Secret it puts into the model through this function, so a
//! certificate the data plane would refuse (a key of another certificate, an unsupported
//! key type) is reported on the object that named it and never reaches a data plane, where
//! it would have been refused with every other tenant's changes.

use rustls::sign::CertifiedKey;
use std::sync::Arc;

/// The certified key of a chain and private key in PEM; the error says which part is wrong.
pub fn load(chain_pem: &str, private_key_pem: &str) -> Result<Arc<CertifiedKey>, String> {
    let chain = rustls_pemfile::certs(&mut chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("chain: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate in chain".into());
    }
    let key = rustls_pemfile::private_key(&mut private_key_pem.as_bytes())
        .map_err(|e| format!("private key: {e}"))?
        .ok_or("no private key")?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            "the private key does not belong to the certificate".to_string()
        }
        other => other.to_string(),
    })?;
    Ok(Arc::new(certified))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let a = rcgen::generate_simple_self_signed(vec!["a.example".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.example".into()]).unwrap();
        assert!(load(&a.cert.pem(), &a.key_pair.serialize_pem()).is_ok());
        let e = load(&a.cert.pem(), &b.key_pair.serialize_pem())
            .err()
            .unwrap();
        assert_eq!(e, "the private key does not belong to the certificate");
        assert_eq!(
            load("", &a.key_pair.serialize_pem()).err().unwrap(),
            "no certificate in chain"
        );
        assert_eq!(load(&a.cert.pem(), "").err().unwrap(), "no private key");
    }
}
