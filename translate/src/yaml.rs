//! YAML documents into typed objects: the parsing half of the file source (the operator's
//! `source::file` reads and watches the directory). Pure: text in, objects and errors out.
//!
//! Errors name the file, the line and the field, as `serde_path_to_error` finds them.

use crate::for_each_kind;
use crate::store::Object;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// A problem reading the source: the file, the line when known, and what.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SourceError {
    /// The file (or directory).
    pub file: PathBuf,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// What is wrong, naming the field.
    pub message: String,
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Splits a multi-document YAML text on `---` lines; yields (first line number, text).
pub fn documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut start = 1;
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let is_separator = line == "---" || line.starts_with("--- ") || line == "---\r";
        if is_separator {
            docs.push((start, std::mem::take(&mut current)));
            start = i + 2;
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs.push((start, current));
    docs.into_iter()
        .filter(|(_, d)| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

/// Parses one file's text into objects and errors.
pub fn parse_file(file: &Path, text: &str) -> (Vec<Object>, Vec<SourceError>) {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for (first_line, doc) in documents(text) {
        match parse_counted(&doc) {
            Ok((object, _)) => objects.push(object),
            Err((line, message)) => errors.push(SourceError {
                file: file.to_path_buf(),
                line: Some(first_line + line - 1),
                message,
            }),
        }
    }
    (objects, errors)
}

type DocError = (Option<usize>, String);

fn parse_document(doc: &str) -> Result<Object, DocError> {
    let value: serde_yaml::Value = serde_yaml::from_str(doc).map_err(|e| yaml_error(&e))?;
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).unwrap_or_default();
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    if api_version.is_empty() || kind.is_empty() {
        return Err((
            Some(1),
            "document has no apiVersion or kind: not a Kubernetes object".into(),
        ));
    }
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    let mut object = typed_object(group, kind, doc)?.ok_or_else(|| {
        (
            Some(1),
            format!("unknown kind {kind:?} of apiVersion {api_version:?}: not served by Gatehouse"),
        )
    })?;
    // The API server turns a Secret's `stringData` into `data`; so does the file source.
    if let Object::Secret(secret) = &mut object {
        string_data_into_data(std::sync::Arc::make_mut(secret));
    }
    normalise_metadata(&mut object).map_err(|m| (Some(1), format!("{kind}: {m}")))?;
    Ok(object)
}

macro_rules! typed_object {
    ($($variant:ident $field:ident $ty:ty, $group:literal $kind:literal $namespaced:literal;)*) => {
        /// The typed object of a group and kind the store holds, or None for other kinds.
        fn typed_object(group: &str, kind: &str, doc: &str) -> Result<Option<Object>, DocError> {
            Ok(Some(match (group, kind) {
                $(($group, $kind) => Object::$variant(typed(doc, kind)?),)*
                _ => return Ok(None),
            }))
        }
    };
}
for_each_kind!(typed_object);

/// Deserialises a document into a typed object, reporting the failing field's path.
fn typed<T: DeserializeOwned>(doc: &str, kind: &str) -> Result<T, DocError> {
    let de = serde_yaml::Deserializer::from_str(doc);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let line = inner.location().map(|l| l.line());
        // serde_yaml appends its own " at line L column C"; we report the line separately.
        let msg = inner.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        (line, format!("{kind}: field {path}: {msg}"))
    })
}

fn yaml_error(e: &serde_yaml::Error) -> DocError {
    let msg = e.to_string();
    let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
    (
        e.location().map(|l| l.line()),
        format!("malformed YAML: {msg}"),
    )
}

fn string_data_into_data(secret: &mut k8s_openapi::api::core::v1::Secret) {
    if let Some(string_data) = secret.string_data.take() {
        let data = secret.data.get_or_insert_with(Default::default);
        for (k, v) in string_data {
            data.insert(k, k8s_openapi::ByteString(v.into_bytes()));
        }
    }
}

/// Requires a name and gives namespaced objects the namespace `default` when they have none.
fn normalise_metadata(object: &mut Object) -> Result<(), String> {
    let namespaced = object.is_namespaced();
    let m = object.meta_mut();
    if m.name.as_deref().unwrap_or_default().is_empty() {
        return Err("field metadata.name: missing".into());
    }
    if namespaced && m.namespace.as_deref().unwrap_or_default().is_empty() {
        m.namespace = Some("default".into());
    }
    if !namespaced {
        m.namespace = None;
    }
    Ok(())
}

/// A parsed document: its object and the hash of its spec (for the kinds whose generations
/// are counted), or the error, its line counted from the document's first.
pub type DocParse = Result<(Object, u64), (usize, String)>;

/// Parses one document, hashing the spec of the kinds whose generations are counted.
pub fn parse_counted(doc: &str) -> DocParse {
    match parse_document(doc) {
        Ok(object) => {
            let h = if COUNTED_GENERATIONS.contains(&object.kind()) {
                object.spec_hash()
            } else {
                0
            };
            Ok((object, h))
        }
        Err((line, message)) => {
            // An error found at end of input points past the last line; clamp it.
            let last = doc.lines().count().max(1);
            Err((line.unwrap_or(1).clamp(1, last), message))
        }
    }
}

/// Kinds whose status reports observedGeneration.
pub const COUNTED_GENERATIONS: [&str; 4] = ["GatewayClass", "Gateway", "HTTPRoute", "Ingress"];

/// Files' texts as a store, as the operator's file source loads them on a first read: in
/// the order given (path order), the last definition of an object winning, generation 1 for
/// the kinds whose status reports observedGeneration. For one-shot loads (`gatehouse
/// convert`'s tests, translation's goldens); the file source itself is incremental.
pub fn store_of(files: &[(PathBuf, String)]) -> (crate::store::Store, Vec<SourceError>) {
    let mut store = crate::store::Store::default();
    let mut errors = Vec::new();
    for (file, text) in files {
        let (objects, mut problems) = parse_file(file, text);
        errors.append(&mut problems);
        for mut object in objects {
            if COUNTED_GENERATIONS.contains(&object.kind()) {
                object.meta_mut().generation = Some(1);
            }
            store.insert(object);
        }
    }
    (store, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_file_line_and_field() {
        let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: ok\n---\n# second\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: r\nspec:\n  rules:\n  - matches:\n    - path:\n        type: Prefixx\n";
        let (objects, errors) = parse_file(Path::new("routes.yaml"), text);
        assert_eq!(objects.len(), 1);
        assert_eq!(errors.len(), 1, "{errors:?}");
        let e = &errors[0];
        assert_eq!(e.line, Some(15), "{e}");
        assert!(
            e.message.contains("spec.rules[0].matches[0].path.type"),
            "{e}"
        );
        assert!(
            e.to_string().starts_with("routes.yaml:15: HTTPRoute"),
            "{e}"
        );
    }

    #[test]
    fn malformed_yaml_and_unknown_kind_are_errors() {
        let (_, errors) = parse_file(Path::new("a.yaml"), "kind: [\n");
        assert!(
            errors[0].message.starts_with("malformed YAML"),
            "{errors:?}"
        );
        let (_, errors) = parse_file(
            Path::new("a.yaml"),
            "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n",
        );
        assert!(errors[0].message.contains("unknown kind \"Widget\""));
    }

    #[test]
    fn namespace_defaults_and_string_data() {
        let (objects, errors) = parse_file(
            Path::new("s.yaml"),
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {a: b}\n",
        );
        assert!(errors.is_empty());
        let Object::Secret(s) = &objects[0] else {
            panic!("not a secret")
        };
        assert_eq!(s.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(s.data.as_ref().unwrap()["a"].0, b"b");
    }
}
