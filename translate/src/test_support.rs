//! Stores for tests: YAML text or a directory of YAML files in, a store out, as the
//! operator's file source would load them on its first read (`yaml::store_of`).

use crate::store::Store;
use crate::yaml::store_of;
use std::path::{Path, PathBuf};

/// The objects of one YAML text (several documents); panics on any parse error.
pub fn store_from(yaml: &str) -> Store {
    let (store, errors) = store_of(&[(PathBuf::from("test.yaml"), yaml.to_string())]);
    assert!(errors.is_empty(), "{errors:?}");
    store
}

/// Every `.yaml`/`.yml` file under `dir` (hidden ones skipped); panics on any error.
pub fn load_dir(dir: &Path) -> Store {
    let mut files = Vec::new();
    collect(dir, &mut files);
    files.sort();
    let texts: Vec<(PathBuf, String)> = files
        .into_iter()
        .map(|f| {
            let text =
                std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            (f, text)
        })
        .collect();
    let (store, errors) = store_of(&texts);
    assert!(errors.is_empty(), "{errors:?}");
    store
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect(&path, files);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            files.push(path);
        }
    }
}
