//! TLS material from Secrets (certificate chains and private keys) and ConfigMaps (CA
//! bundles), checked when translation reads it, so what the model carries is what the data
//! plane can load.

use crate::store::{ObjectKey, Store};
use gatehouse_model::ir::Certificate;

/// Checks that `pem` (named by `at`, e.g. "Secret ns/name: tls.crt") holds PEM
/// certificates, at least one.
pub fn pem_certificates(pem: &str, at: &str) -> Result<(), String> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{at} is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{at} holds no certificate"));
    }
    Ok(())
}

/// Reads and checks the PEM material of a TLS Secret.
pub fn certificate_material(
    store: &Store,
    namespace: &str,
    name: &str,
) -> Result<Certificate, String> {
    let secret = store
        .secrets
        .get(&ObjectKey::new(namespace, name))
        .ok_or_else(|| format!("Secret {namespace}/{name} not found"))?;
    let data = secret.data.as_ref();
    let field = |k: &str| {
        data.and_then(|d| d.get(k))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .ok_or_else(|| format!("Secret {namespace}/{name} has no {k}"))
    };
    let chain_pem = field("tls.crt")?;
    let private_key_pem = field("tls.key")?;
    pem_certificates(&chain_pem, &format!("Secret {namespace}/{name}: tls.crt"))?;
    match rustls_pemfile::private_key(&mut private_key_pem.as_bytes()) {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(format!(
                "Secret {namespace}/{name}: tls.key holds no private key"
            ));
        }
        Err(e) => {
            return Err(format!(
                "Secret {namespace}/{name}: tls.key is not PEM: {e}"
            ));
        }
    }
    // Loaded as the data plane will load it: a key of another certificate, or of a type
    // it cannot sign with, is this Secret's problem, not every tenant's.
    gatehouse_model::certificate::load(&chain_pem, &private_key_pem)
        .map_err(|e| format!("Secret {namespace}/{name}: {e}"))?;
    Ok(Certificate {
        key: format!("{namespace}/{name}"),
        chain_pem,
        private_key_pem,
    })
}

/// The PEM certificates in a ConfigMap's `ca.crt`, checked to parse.
pub fn ca_pem(store: &Store, namespace: &str, name: &str) -> Result<String, String> {
    let cm = store
        .config_maps
        .get(&ObjectKey::new(namespace, name))
        .ok_or_else(|| format!("ConfigMap {namespace}/{name} not found"))?;
    let pem = cm
        .data
        .as_ref()
        .and_then(|d| d.get("ca.crt"))
        .ok_or_else(|| format!("ConfigMap {namespace}/{name} has no ca.crt"))?;
    pem_certificates(pem, &format!("ConfigMap {namespace}/{name}: ca.crt"))?;
    Ok(pem.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::store_from;

    fn secret(crt: &str, key: &str) -> Store {
        store_from(&format!(
            "apiVersion: v1
kind: Secret
metadata: {{name: tls, namespace: apps}}
type: kubernetes.io/tls
stringData: {{tls.crt: {crt:?}, tls.key: {key:?}}}
"
        ))
    }

    #[test]
    fn a_secret_without_pem_says_which_field() {
        let e = certificate_material(&secret("not pem", "not pem"), "apps", "tls")
            .expect_err("not PEM");
        assert_eq!(e, "Secret apps/tls: tls.crt holds no certificate");
        let e = certificate_material(&store_from(""), "apps", "tls").expect_err("missing");
        assert_eq!(e, "Secret apps/tls not found");
    }
}
