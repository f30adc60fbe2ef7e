//! An Ingress's Service backend as a reference to resolve, for its rules and its canaries.

use crate::backends::{BackendRef, PortRef};
use k8s_openapi::api::networking::v1::IngressServiceBackend;

/// An Ingress's Service backend as a reference to resolve: its port by name when named,
/// else by number.
pub fn service_ref<'a>(namespace: &'a str, svc: &'a IngressServiceBackend) -> BackendRef<'a> {
    let port = svc.port.as_ref().and_then(|p| match (&p.name, p.number) {
        (Some(name), _) if !name.is_empty() => Some(PortRef::Name(name.as_str())),
        (_, Some(n)) => Some(PortRef::Number(n)),
        _ => None,
    });
    BackendRef {
        group: "",
        kind: "Service",
        namespace,
        name: &svc.name,
        port,
    }
}
