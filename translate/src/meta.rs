//! What translation reads of every object's metadata: its age, which orders precedence and
//! conflicts (oldest first, then namespace/name), and its "namespace/name".

/// "namespace/name".
pub(crate) fn join(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Creation time and identity of an object, for precedence and conflict ordering:
/// oldest first, then namespace/name alphabetically.
pub(crate) type Age = (Option<k8s_openapi::jiff::Timestamp>, String, String);

pub(crate) fn age(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Age {
    (
        meta.creation_timestamp.as_ref().map(|t| t.0),
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}
