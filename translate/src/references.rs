//! What an object may refer to across namespaces: ReferenceGrants.

use crate::store::{ObjectKey, Store};

/// Whether an object of kind `from_kind` (a Gateway or a ListenerSet) may read a core
/// object (`kind` Secret or ConfigMap) `ns/name`: in its own namespace always, elsewhere
/// when a ReferenceGrant allows that kind. Grants are per kind: one for Gateways does not
/// cover ListenerSets.
pub fn may_read(
    store: &Store,
    from_kind: &str,
    from: &ObjectKey,
    kind: &str,
    ns: &str,
    name: &str,
) -> Result<(), String> {
    if ns == from.namespace
        || grant_allows(
            store,
            (crate::settings::GATEWAY_GROUP, from_kind, &from.namespace),
            ("", kind, ns, name),
        )
    {
        Ok(())
    } else {
        Err(format!(
            "{kind} {ns}/{name} is in another namespace and no ReferenceGrant allows it"
        ))
    }
}

/// Whether a ReferenceGrant in the target namespace lets `from` (group, kind, namespace)
/// refer to `to` (group, kind, namespace, name).
pub fn grant_allows(store: &Store, from: (&str, &str, &str), to: (&str, &str, &str, &str)) -> bool {
    let (from_group, from_kind, from_ns) = from;
    let (to_group, to_kind, to_ns, to_name) = to;
    let core = |g: &str| if g == "core" { "" } else { g }.to_string();
    store
        .reference_grants
        .iter()
        .filter(|(k, _)| k.namespace == to_ns)
        .any(|(_, grant)| {
            grant.spec.from.iter().any(|f| {
                core(&f.group) == core(from_group) && f.kind == from_kind && f.namespace == from_ns
            }) && grant.spec.to.iter().any(|t| {
                core(&t.group) == core(to_group)
                    && t.kind == to_kind
                    && t.name
                        .as_deref()
                        .is_none_or(|n| n.is_empty() || n == to_name)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::store_from;

    /// A grant for Gateways covers Gateways only, and the names it lists.
    #[test]
    fn grants_are_per_kind_and_name() {
        let store = store_from(
            "apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: g, namespace: certs}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: infra}]
  to: [{group: '', kind: Secret, name: shared}]
",
        );
        let gw = ObjectKey::new("infra", "gw");
        assert!(may_read(&store, "Gateway", &gw, "Secret", "certs", "shared").is_ok());
        assert!(may_read(&store, "Gateway", &gw, "Secret", "certs", "other").is_err());
        assert!(may_read(&store, "ListenerSet", &gw, "Secret", "certs", "shared").is_err());
        assert!(may_read(&store, "Gateway", &gw, "Secret", "infra", "own").is_ok());
    }
}
