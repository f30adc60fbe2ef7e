//! The file source: every YAML document under a directory, parsed into typed objects.
//!
//! Errors name the file, the line and the field. A file that fails to parse keeps its last
//! good objects in the store, so a half-saved edit never takes routes down.

use crate::store::{Object, Store, for_each_kind};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SourceError {
    pub file: PathBuf,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
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
fn documents(text: &str) -> Vec<(usize, String)> {
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
        match parse_document(&doc) {
            Ok(object) => objects.push(object),
            Err((line, message)) => {
                // An error found at end of input points past the last line; clamp it.
                let last = doc.lines().count().max(1);
                let line = line.unwrap_or(1).clamp(1, last);
                errors.push(SourceError {
                    file: file.to_path_buf(),
                    line: Some(first_line + line - 1),
                    message,
                })
            }
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

/// The directory source with its per-file memory of the last good parse.
#[derive(Debug)]
pub struct FileSource {
    root: PathBuf,
    last_good: BTreeMap<PathBuf, Parsed>,
    /// Each file's last parse by a hash of its text: an unchanged file is not parsed again
    /// (with thousands of routes, parsing every file on every change dominated the time a
    /// change took to reach the data plane), nor are its objects' specs hashed again.
    parsed: BTreeMap<PathBuf, (u64, Parsed, Vec<SourceError>)>,
    /// (kind, key) -> (hash of spec, generation): files have no API server to count
    /// generations, so the source does, bumping one whenever a spec changes.
    generations: Generations,
}

/// The objects of one file, each with the hash of its spec; shared, not copied, between
/// loads.
type Parsed = Arc<Vec<(Object, u64)>>;

/// What one load of the directory produced.
#[derive(Debug, Default)]
pub struct Loaded {
    pub store: Store,
    pub errors: Vec<SourceError>,
}

impl FileSource {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileSource {
            root: root.into(),
            last_good: BTreeMap::new(),
            parsed: BTreeMap::new(),
            generations: Generations::new(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Reads every `.yaml`/`.yml` file under the root (recursively).
    pub fn load(&mut self) -> Loaded {
        let mut errors = Vec::new();
        let mut files = Vec::new();
        collect_files(&self.root, &mut files, &mut errors);
        files.sort();

        // Parses of files that are gone are forgotten.
        self.parsed.retain(|f, _| files.contains(f));
        let mut current = BTreeMap::new();
        for file in files {
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(SourceError {
                        file: file.clone(),
                        line: None,
                        message: format!("cannot read: {e}"),
                    });
                    if let Some(prev) = self.last_good.get(&file) {
                        current.insert(file, prev.clone());
                    }
                    continue;
                }
            };
            let hash = {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                text.hash(&mut h);
                h.finish()
            };
            let (objects, file_errors) = match self.parsed.get(&file) {
                Some((h, objects, errors)) if *h == hash => (objects.clone(), errors.clone()),
                _ => {
                    let (objects, errors) = parse_file(&file, &text);
                    let objects: Parsed = Arc::new(
                        objects
                            .into_iter()
                            .map(|o| {
                                // Only the kinds whose generations are counted need it.
                                let h = if COUNTED_GENERATIONS.contains(&o.kind()) {
                                    o.spec_hash()
                                } else {
                                    0
                                };
                                (o, h)
                            })
                            .collect(),
                    );
                    self.parsed
                        .insert(file.clone(), (hash, objects.clone(), errors.clone()));
                    (objects, errors)
                }
            };
            if file_errors.is_empty() {
                current.insert(file, objects);
            } else {
                let kept = self.last_good.get(&file).cloned();
                errors.extend(file_errors.into_iter().map(|mut e| {
                    if kept.is_some() {
                        e.message
                            .push_str(" (the file's previous version keeps serving)");
                    }
                    e
                }));
                match kept {
                    Some(prev) => drop(current.insert(file, prev)),
                    // A new file with a bad document still contributes its good documents.
                    None => drop(current.insert(file, objects)),
                }
            }
        }
        self.last_good = current;

        let mut store = Store::default();
        let mut origin: HashMap<(&'static str, crate::store::ObjectKey), &Path> = HashMap::new();
        let mut generations = Generations::new();
        for (file, objects) in &self.last_good {
            for (object, spec_hash) in objects.iter() {
                let mut object = object.clone();
                let id = (object.kind(), object.key());
                // Files have no API server to count generations, so the source does,
                // bumping one whenever a spec changes.
                if COUNTED_GENERATIONS.contains(&id.0) {
                    let generation = match self.generations.get(&id) {
                        Some((prev, g)) if prev == spec_hash => *g,
                        Some((_, g)) => g + 1,
                        None => 1,
                    };
                    object.meta_mut().generation = Some(generation);
                    generations.insert(id.clone(), (*spec_hash, generation));
                }
                store.insert(object);
                if let Some(first) = origin.insert(id.clone(), file) {
                    errors.push(SourceError {
                        file: file.clone(),
                        line: None,
                        message: format!(
                            "{} {} is also defined in {}; this definition wins",
                            id.0,
                            id.1,
                            first.display()
                        ),
                    });
                }
            }
        }
        self.generations = generations;
        Loaded { store, errors }
    }
}

/// Kinds whose status reports observedGeneration.
const COUNTED_GENERATIONS: [&str; 4] = ["GatewayClass", "Gateway", "HTTPRoute", "Ingress"];

type Generations = HashMap<(&'static str, crate::store::ObjectKey), (u64, i64)>;

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<SourceError>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(SourceError {
                file: dir.to_path_buf(),
                line: None,
                message: format!("cannot read directory: {e}"),
            });
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        // Editors' swap and backup files start with a dot.
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect_files(&path, files, errors);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            files.push(path);
        }
    }
}

/// Watches the root and sends a unit after each burst of changes. A burst is cut after
/// 20 ms, not when it goes quiet, so a stream of edits still reloads every ~20 ms and the
/// promise (re-applied within one second) holds however busy the directory is.
pub fn watch(root: &Path) -> anyhow::Result<(notify::RecommendedWatcher, mpsc::Receiver<()>)> {
    use notify::Watcher;
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !event.kind.is_access()
        {
            let _ = raw_tx.send(());
        }
    })?;
    watcher
        .watch(root, notify::RecursiveMode::Recursive)
        .map_err(|e| anyhow::anyhow!("watching {}: {e}", root.display()))?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            while raw_rx.try_recv().is_ok() {}
            if tx.send(()).await.is_err() {
                return;
            }
        }
    });
    Ok((watcher, rx))
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
