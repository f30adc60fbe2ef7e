//! Client certificate validation on HTTPS listeners (Gateway `spec.tls.frontend`): which
//! CAs a port asks client certificates to chain to, read from ConfigMaps (`ca.crt`).

use crate::gwapi::gateways::{
    Gateway, GatewayTlsFrontendDefaultValidationMode, GatewayTlsFrontendPerPortTlsValidationMode,
};
use crate::status::reason;
use crate::store::{ObjectKey, Store};
use gatehouse_model::ir::ClientValidation;

/// A CA reference, from the default or a per-port entry.
struct CaRef {
    group: String,
    kind: String,
    namespace: Option<String>,
    name: String,
}

/// What `spec.tls.frontend` asks of one port.
pub struct PortValidation {
    refs: Vec<CaRef>,
    pub insecure_fallback: bool,
}

/// The default and per-port validations are two generated types of one shape; read both
/// the same way.
macro_rules! port_validation {
    ($v:expr, $fallback:pat) => {
        PortValidation {
            refs: $v
                .ca_certificate_refs
                .iter()
                .map(|r| CaRef {
                    group: r.group.clone(),
                    kind: r.kind.clone(),
                    namespace: r.namespace.clone(),
                    name: r.name.clone(),
                })
                .collect(),
            insecure_fallback: matches!($v.mode, Some($fallback)),
        }
    };
}

/// The validation for `port`: its perPort entry, else the default; None when neither asks
/// for client certificates.
pub fn for_port(gateway: &Gateway, port: i32) -> Option<PortValidation> {
    let frontend = gateway.spec.tls.as_ref()?.frontend.as_ref()?;
    let per_port = frontend.per_port.iter().flatten().find(|p| p.port == port);
    match per_port {
        Some(p) => p.tls.validation.as_ref().map(|v| {
            port_validation!(
                v,
                GatewayTlsFrontendPerPortTlsValidationMode::AllowInsecureFallback
            )
        }),
        None => frontend.default.validation.as_ref().map(|v| {
            port_validation!(
                v,
                GatewayTlsFrontendDefaultValidationMode::AllowInsecureFallback
            )
        }),
    }
}

/// Resolves the CA references: the validation from those that resolve (None when none
/// does), and a (reason, message) per reference that does not.
pub fn resolve(
    store: &Store,
    gateway: &ObjectKey,
    v: &PortValidation,
) -> (Option<ClientValidation>, Vec<(&'static str, String)>) {
    let mut pem = String::new();
    let mut problems = Vec::new();
    for (i, r) in v.refs.iter().enumerate() {
        let at = format!("spec.tls.frontend caCertificateRefs[{i}]");
        let ns = r.namespace.as_deref().unwrap_or(&gateway.namespace);
        if !(r.group.is_empty() || r.group == "core") || r.kind != "ConfigMap" {
            problems.push((
                reason::INVALID_CA_CERTIFICATE_KIND,
                format!("{at}: {}/{} is not a ConfigMap", r.group, r.kind),
            ));
            continue;
        }
        if let Err(e) =
            crate::references::may_read(store, "Gateway", gateway, "ConfigMap", ns, &r.name)
        {
            problems.push((reason::REF_NOT_PERMITTED, format!("{at}: {e}")));
            continue;
        }
        match crate::tls_material::ca_pem(store, ns, &r.name) {
            Ok(p) => {
                pem.push_str(&p);
                if !p.ends_with('\n') {
                    pem.push('\n');
                }
            }
            Err(e) => problems.push((reason::INVALID_CA_CERTIFICATE_REF, format!("{at}: {e}"))),
        }
    }
    let validation = (!pem.is_empty()).then_some(ClientValidation {
        ca_pem: pem,
        insecure_fallback: v.insecure_fallback,
    });
    (validation, problems)
}
