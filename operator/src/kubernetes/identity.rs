//! Identities on the config channel (Kubernetes mode).
//!
//! The operator runs its own CA, kept in a Secret so every replica signs and trusts the same
//! one. It serves the channel with a certificate from that CA, and issues each Gateway's data
//! planes a client certificate whose URI SAN names the Gateway
//! (`spiffe://gatehouse.dev/ns/<ns>/gateway/<name>`). The config server then lets a data plane
//! subscribe to that Gateway only: a pod of one team's Gateway cannot read another's routes
//! or certificates.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use std::collections::BTreeMap;
use time::{Duration, OffsetDateTime};

/// The Secret (in the operator's namespace) holding the CA.
pub const CA_SECRET: &str = "gatehouse-ca";
/// The name data planes verify the config server by (the operator Service's DNS name)
/// when the operator runs in `gatehouse-system`.
pub const SERVER_NAME: &str = "gatehouse-operator.gatehouse-system.svc";

/// The operator Service's DNS name in `namespace`, the name its certificate carries and
/// data planes verify (the Service is `gatehouse-operator` in whatever namespace the chart
/// installs into).
pub fn server_name(namespace: &str) -> String {
    format!("gatehouse-operator.{namespace}.svc")
}
/// Keys of the files a data plane's identity Secret holds (the kubernetes.io/tls layout
/// plus the CA).
pub const CA_FILE: &str = "ca.crt";
pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";

const IDENTITY_PREFIX: &str = "spiffe://gatehouse.dev/ns/";
/// Client certificates live a year and are reissued when less than 30 days remain.
const LEAF_DAYS: i64 = 365;
const RENEW_DAYS: i64 = 30;

/// The identity a data plane of Gateway `namespace/name` presents.
pub fn gateway_identity(namespace: &str, name: &str) -> String {
    format!("{IDENTITY_PREFIX}{namespace}/gateway/{name}")
}

/// The Gateway ("namespace/name") a client certificate (DER) was issued for.
pub fn gateway_of_certificate(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::URI(uri) => {
            let rest = uri.strip_prefix(IDENTITY_PREFIX)?;
            let (ns, name) = rest.split_once("/gateway/")?;
            (!ns.is_empty() && !name.is_empty() && !name.contains('/'))
                .then(|| format!("{ns}/{name}"))
        }
        _ => None,
    })
}

/// Whether a certificate expires within `days`.
fn expires_within(cert: &x509_parser::certificate::X509Certificate<'_>, days: i64) -> bool {
    let not_after = cert.validity().not_after.timestamp();
    not_after < (OffsetDateTime::now_utc() + Duration::days(days)).unix_timestamp()
}

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

pub struct Ca {
    cert_pem: String,
    issuer: Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

impl Ca {
    /// A new self-signed CA, valid ten years.
    pub fn generate() -> anyhow::Result<Ca> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Gatehouse");
        dn.push(DnType::CommonName, "Gatehouse config channel CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(3650);
        let cert = params.self_signed(&key)?;
        Ca::from_pem(&cert.pem(), &key.serialize_pem())
    }

    pub fn from_pem(cert_pem: &str, key_pem: &str) -> anyhow::Result<Ca> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| anyhow::anyhow!("CA key: {e}"))?;
        // Signing needs the CA as an rcgen Certificate: rebuilt from the stored one (same
        // name and key, so what it signs verifies against the stored certificate).
        let issuer = CertificateParams::from_ca_cert_pem(cert_pem)
            .map_err(|e| anyhow::anyhow!("CA certificate: {e}"))?
            .self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert_pem.to_string(),
            issuer,
            key,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA from the Secret in `namespace`, created there by the first replica to start
    /// (a replica losing the creation race reads the winner's).
    pub async fn load_or_create(client: &kube::Client, namespace: &str) -> anyhow::Result<Ca> {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        for _ in 0..3 {
            if let Some(secret) = secrets.get_opt(CA_SECRET).await? {
                let field = |k: &str| {
                    secret
                        .data
                        .as_ref()
                        .and_then(|d| d.get(k))
                        .and_then(|b| String::from_utf8(b.0.clone()).ok())
                        .ok_or_else(|| anyhow::anyhow!("Secret {namespace}/{CA_SECRET}: no {k}"))
                };
                return Ca::from_pem(&field(CERT_FILE)?, &field(KEY_FILE)?);
            }
            let ca = Ca::generate()?;
            let secret = Secret {
                metadata: kube::api::ObjectMeta {
                    name: Some(CA_SECRET.into()),
                    namespace: Some(namespace.into()),
                    ..Default::default()
                },
                data: Some(BTreeMap::from([
                    (
                        CERT_FILE.into(),
                        ByteString(ca.cert_pem.clone().into_bytes()),
                    ),
                    (
                        KEY_FILE.into(),
                        ByteString(ca.key.serialize_pem().into_bytes()),
                    ),
                ])),
                ..Default::default()
            };
            match secrets.create(&PostParams::default(), &secret).await {
                Ok(_) => {
                    tracing::info!(secret = %format!("{namespace}/{CA_SECRET}"), "created the config channel CA");
                    return Ok(ca);
                }
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(e.into()),
            }
        }
        anyhow::bail!("Secret {namespace}/{CA_SECRET}: could not read or create it")
    }

    fn leaf(&self, sans: Vec<SanType>, purpose: ExtendedKeyUsagePurpose) -> anyhow::Result<Issued> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![purpose];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(LEAF_DAYS);
        let cert = params.signed_by(&key, &self.issuer, &self.key)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The config server's certificate, for `server_name` (`server_name(namespace)`).
    pub fn issue_server(&self, server_name: &str) -> anyhow::Result<Issued> {
        let names = [
            server_name.to_string(),
            format!("{server_name}.cluster.local"),
        ];
        let sans = names
            .into_iter()
            .map(|n| Ok(SanType::DnsName(n.try_into()?)))
            .collect::<Result<Vec<_>, rcgen::Error>>()?;
        self.leaf(sans, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate for the data planes of Gateway `namespace/name`.
    pub fn issue_gateway(&self, namespace: &str, name: &str) -> anyhow::Result<Issued> {
        let uri = gateway_identity(namespace, name).try_into()?;
        self.leaf(vec![SanType::URI(uri)], ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// Whether an identity Secret's data still serves: issued by this CA for this Gateway,
    /// and not about to expire.
    pub fn identity_is_current(
        &self,
        data: &BTreeMap<String, ByteString>,
        namespace: &str,
        name: &str,
    ) -> bool {
        let text = |k: &str| data.get(k).and_then(|b| std::str::from_utf8(&b.0).ok());
        let (Some(ca), Some(cert)) = (text(CA_FILE), text(CERT_FILE)) else {
            return false;
        };
        let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(cert.as_bytes()) else {
            return false;
        };
        let Ok(parsed) = pem.parse_x509() else {
            return false;
        };
        ca == self.cert_pem
            && gateway_of_certificate(&pem.contents).as_deref()
                == Some(format!("{namespace}/{name}").as_str())
            && !expires_within(&parsed, RENEW_DAYS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_certificate_names_its_gateway_and_verifies_against_the_stored_ca() {
        let ca = Ca::generate().unwrap();
        // A replica that loads the CA from its Secret signs certificates the first one's
        // CA certificate verifies.
        let reloaded = Ca::from_pem(ca.cert_pem(), &ca.key.serialize_pem()).unwrap();
        let issued = reloaded.issue_gateway("team-a", "web").unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(issued.cert_pem.as_bytes()).unwrap();
        assert_eq!(
            gateway_of_certificate(&pem.contents).as_deref(),
            Some("team-a/web")
        );
        let (_, ca_pem) = x509_parser::pem::parse_x509_pem(ca.cert_pem().as_bytes()).unwrap();
        let ca_cert = ca_pem.parse_x509().unwrap();
        let leaf = pem.parse_x509().unwrap();
        assert!(leaf.verify_signature(Some(ca_cert.public_key())).is_ok());

        let data = BTreeMap::from([
            (
                CA_FILE.to_string(),
                ByteString(ca.cert_pem().as_bytes().to_vec()),
            ),
            (
                CERT_FILE.to_string(),
                ByteString(issued.cert_pem.into_bytes()),
            ),
        ]);
        assert!(ca.identity_is_current(&data, "team-a", "web"));
        assert!(!ca.identity_is_current(&data, "team-a", "other"));
        let other_ca = Ca::generate().unwrap();
        assert!(!other_ca.identity_is_current(&data, "team-a", "web"));
    }

    #[test]
    fn server_certificates_name_no_gateway() {
        let ca = Ca::generate().unwrap();
        let issued = ca.issue_server(SERVER_NAME).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(issued.cert_pem.as_bytes()).unwrap();
        assert_eq!(gateway_of_certificate(&pem.contents), None);
    }
}
