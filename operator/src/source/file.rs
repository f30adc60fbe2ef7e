//! The file source: every YAML document under a directory, parsed into typed objects
//! (`gatehouse_translate::yaml`), and a watch on the directory.
//!
//! Errors name the file, the line and the field. A file that fails to parse keeps its last
//! good objects in the store, so a half-saved edit never takes routes down.

use super::{Loaded, Source};
use gatehouse_translate::store::{Object, Store};
use gatehouse_translate::yaml::{
    COUNTED_GENERATIONS, DocParse, SourceError, documents, parse_counted,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// What the source knows of one file.
#[derive(Debug, Default)]
struct FileState {
    /// Hash of the text last read; an unchanged file is not parsed again.
    text: Option<u64>,
    /// Whether the file was ever read, so `good` is what it serves.
    served: bool,
    /// Each document of the text last read: its hash, first line and parse.
    docs: Vec<(u64, usize, DocParse)>,
    /// The objects served from this file: its last parse without errors (or, for a file
    /// never read without errors, the documents that did parse).
    good: Vec<(Object, u64)>,
    errors: Vec<SourceError>,
}

/// (kind, key): an object's identity in the store.
type Id = (&'static str, gatehouse_translate::store::ObjectKey);

/// The directory source. It keeps what it read: a change reads only the files it touched,
/// parses only their documents whose text changed, and replaces only the objects those
/// yield, so every other object keeps its identity and translation skips it.
#[derive(Debug)]
pub struct FileSource {
    root: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
    /// Files to read again; None: the whole directory (first load, or the watcher lost
    /// track).
    dirty: Option<BTreeSet<PathBuf>>,
    /// Errors of the last walk of the directory.
    walk_errors: Vec<SourceError>,
    store: Arc<Store>,
    /// Each object's definitions, (file, document) in path order: the last one wins.
    defined: HashMap<Id, Vec<(PathBuf, usize)>>,
    /// Each stored object's parse before its generation was stamped, its spec hash and
    /// generation: files have no API server to count generations, so the source does,
    /// bumping one whenever a spec changes.
    stamped: HashMap<Id, (Object, u64, i64)>,
}

impl FileSource {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileSource {
            root: root.into(),
            files: BTreeMap::new(),
            dirty: None,
            walk_errors: Vec::new(),
            store: Arc::default(),
            defined: HashMap::new(),
            stamped: HashMap::new(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Paths changed on disk (files or directories, existing or gone): the next load reads
    /// them again.
    pub fn touched(&mut self, paths: impl IntoIterator<Item = PathBuf>) {
        if let Some(dirty) = &mut self.dirty {
            dirty.extend(paths);
        }
    }

    /// The next load reads the whole directory again.
    pub fn rescan(&mut self) {
        self.dirty = None;
    }

    /// Reads the `.yaml`/`.yml` files under the root (recursively) that changed since the
    /// last load (all of them the first time).
    pub fn load(&mut self) -> Loaded {
        let (read, gone) = match self.dirty.replace(BTreeSet::new()) {
            None => {
                let mut walk_errors = Vec::new();
                let mut files = Vec::new();
                collect_files(&self.root, &mut files, &mut walk_errors);
                self.walk_errors = walk_errors;
                let gone: Vec<PathBuf> = self
                    .files
                    .keys()
                    .filter(|f| !files.contains(f))
                    .cloned()
                    .collect();
                (files, gone)
            }
            Some(dirty) => self.expand(dirty),
        };

        let mut changed: BTreeSet<PathBuf> = BTreeSet::new();
        let mut affected: BTreeSet<Id> = BTreeSet::new();
        for file in gone {
            if let Some(state) = self.files.remove(&file) {
                self.forget(&file, &state.good, &mut affected);
            }
        }
        for file in read {
            if let Some(old) = self.read(&file) {
                self.forget(&file, &old, &mut affected);
                changed.insert(file);
            }
        }
        if !affected.is_empty() || !changed.is_empty() {
            self.restock(&changed, affected);
        }

        let mut errors = self.walk_errors.clone();
        errors.extend(self.files.values().flat_map(|f| f.errors.iter().cloned()));
        errors.extend(self.duplicates());
        Loaded {
            store: self.store.clone(),
            errors,
            unwatched: Default::default(),
        }
    }

    /// The files to read and the files gone, for a set of changed paths.
    fn expand(&self, dirty: BTreeSet<PathBuf>) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let (mut read, mut gone) = (Vec::new(), Vec::new());
        for path in dirty {
            if !path.starts_with(&self.root) || hidden(&self.root, &path) {
                continue;
            }
            if path.is_dir() {
                // A directory appeared (or was moved in): everything in it.
                let mut ignored = Vec::new();
                collect_files(&path, &mut read, &mut ignored);
            } else if path.is_file() && is_yaml(&path) {
                read.push(path);
            } else {
                // Gone: the file, or every file under a directory that went.
                gone.extend(self.files.keys().filter(|f| f.starts_with(&path)).cloned());
            }
        }
        read.sort();
        read.dedup();
        (read, gone)
    }

    /// Reads one file; returns the objects it served until now when they changed.
    fn read(&mut self, file: &Path) -> Option<Vec<(Object, u64)>> {
        let state = self.files.entry(file.to_path_buf()).or_default();
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                // The last good objects keep serving.
                state.text = None;
                state.errors = vec![SourceError {
                    file: file.to_path_buf(),
                    line: None,
                    message: format!("cannot read: {e}"),
                }];
                return None;
            }
        };
        let hash = hash_of(&text);
        if state.text == Some(hash) {
            return None;
        }
        state.text = Some(hash);
        // Documents whose text did not change keep their parse (and their objects'
        // identity): editing one route of a file of thousands parses one.
        let mut known: HashMap<u64, DocParse> = std::mem::take(&mut state.docs)
            .into_iter()
            .map(|(h, _, p)| (h, p))
            .collect();
        for (first_line, doc) in documents(&text) {
            let h = hash_of(&doc);
            let parse = known.remove(&h).unwrap_or_else(|| parse_counted(&doc));
            state.docs.push((h, first_line, parse));
        }
        state.errors = state
            .docs
            .iter()
            .filter_map(|(_, first_line, p)| {
                p.as_ref().err().map(|(line, message)| SourceError {
                    file: file.to_path_buf(),
                    line: Some(first_line + line - 1),
                    message: message.clone(),
                })
            })
            .collect();
        if !state.errors.is_empty() && state.served {
            for e in &mut state.errors {
                e.message
                    .push_str(" (the file's previous version keeps serving)");
            }
            return None;
        }
        // A new file with a bad document still contributes its good documents.
        state.served = true;
        let parsed: Vec<(Object, u64)> = state
            .docs
            .iter()
            .filter_map(|(_, _, p)| p.as_ref().ok().cloned())
            .collect();
        let same = state.good.len() == parsed.len()
            && state
                .good
                .iter()
                .zip(&parsed)
                .all(|((a, _), (b, _))| a.same(b));
        if same {
            return None;
        }
        Some(std::mem::replace(&mut state.good, parsed))
    }

    /// Drops a file's definitions of `objects`, noting them as affected.
    fn forget(&mut self, file: &Path, objects: &[(Object, u64)], affected: &mut BTreeSet<Id>) {
        for (object, _) in objects {
            let id = (object.kind(), object.key());
            if let Some(defs) = self.defined.get_mut(&id) {
                defs.retain(|(f, _)| f != file);
            }
            affected.insert(id);
        }
    }

    /// Records the definitions of the changed files and puts each affected object's
    /// winning definition (the last in path order) into the store, stamped with its
    /// generation.
    fn restock(&mut self, changed: &BTreeSet<PathBuf>, mut affected: BTreeSet<Id>) {
        for file in changed {
            let Some(state) = self.files.get(file) else {
                continue;
            };
            for (i, (object, _)) in state.good.iter().enumerate() {
                let id = (object.kind(), object.key());
                let defs = self.defined.entry(id.clone()).or_default();
                defs.push((file.clone(), i));
                defs.sort();
                affected.insert(id);
            }
        }
        let store = Arc::make_mut(&mut self.store);
        for id in affected {
            let winner = self
                .defined
                .get(&id)
                .and_then(|defs| defs.last())
                .and_then(|(f, i)| self.files.get(f)?.good.get(*i));
            let Some((object, spec_hash)) = winner else {
                self.defined.remove(&id);
                self.stamped.remove(&id);
                store.remove(id.0, &id.1);
                continue;
            };
            if let Some((parsed, _, _)) = self.stamped.get(&id)
                && parsed.same(object)
            {
                continue; // The same definition: the store has it.
            }
            let mut stored = object.clone();
            let mut generation = 0;
            if COUNTED_GENERATIONS.contains(&id.0) {
                generation = match self.stamped.get(&id) {
                    Some((_, prev, g)) if prev == spec_hash => *g,
                    Some((_, _, g)) => g + 1,
                    None => 1,
                };
                stored.meta_mut().generation = Some(generation);
            }
            self.stamped
                .insert(id, (object.clone(), *spec_hash, generation));
            store.insert(stored);
        }
    }

    /// An error for each definition of an object after its first: the last one wins.
    fn duplicates(&self) -> Vec<SourceError> {
        let mut dups: Vec<(&PathBuf, usize, String)> = Vec::new();
        for (id, defs) in &self.defined {
            for pair in defs.windows(2) {
                let ((first, _), (file, i)) = (&pair[0], &pair[1]);
                dups.push((
                    file,
                    *i,
                    format!(
                        "{} {} is also defined in {}; this definition wins",
                        id.0,
                        id.1,
                        first.display()
                    ),
                ));
            }
        }
        dups.sort();
        dups.into_iter()
            .map(|(file, _, message)| SourceError {
                file: file.clone(),
                line: None,
                message,
            })
            .collect()
    }
}

fn hash_of(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// Whether a path under `root` is, or is inside, a hidden file or directory (editors'
/// swap and backup files start with a dot).
fn hidden(root: &Path, path: &Path) -> bool {
    path.strip_prefix(root).is_ok_and(|rel| {
        rel.components()
            .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
    })
}

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
        } else if is_yaml(&path) {
            files.push(path);
        }
    }
    files.sort();
}

/// What the watcher saw: paths changed, or too much to say (read everything again).
#[derive(Debug)]
pub enum Change {
    Paths(BTreeSet<PathBuf>),
    Rescan,
}

/// How long a burst of events may go quiet before it is handed on, unless every file it
/// opened was closed (written and done: handed on at once); and the longest a burst is
/// held, so a stream of edits still reloads every 20 ms.
const QUIET: Duration = Duration::from_millis(3);
const LONGEST: Duration = Duration::from_millis(20);

/// Watches the root and sends what changed after each burst of events.
pub fn watch(root: &Path) -> anyhow::Result<(notify::RecommendedWatcher, mpsc::Receiver<Change>)> {
    use notify::Watcher;
    use notify::event::{AccessKind, AccessMode, EventKind};
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<Option<notify::Event>>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // An error (the kernel's queue overflowed, say) loses track: read everything.
        let _ = raw_tx.send(event.ok());
    })?;
    watcher
        .watch(root, notify::RecursiveMode::Recursive)
        .map_err(|e| anyhow::anyhow!("watching {}: {e}", root.display()))?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while let Some(first) = raw_rx.recv().await {
            let started = tokio::time::Instant::now();
            let mut paths = BTreeSet::new();
            let mut rescan = false;
            // Files written to and not yet closed.
            let mut open: BTreeSet<PathBuf> = BTreeSet::new();
            let mut next = Some(first);
            loop {
                match next.take() {
                    Some(Some(event)) => {
                        if event.need_rescan() {
                            rescan = true;
                        }
                        match event.kind {
                            EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                                for p in &event.paths {
                                    open.remove(p);
                                }
                                paths.extend(event.paths);
                            }
                            EventKind::Access(_) => {}
                            EventKind::Create(_) | EventKind::Modify(_) => {
                                open.extend(event.paths.iter().cloned());
                                paths.extend(event.paths);
                            }
                            _ => paths.extend(event.paths),
                        }
                    }
                    Some(None) => rescan = true,
                    None => {}
                }
                // Take whatever else is already there.
                if let Ok(e) = raw_rx.try_recv() {
                    next = Some(e);
                    continue;
                }
                if (open.is_empty() && (rescan || !paths.is_empty()))
                    || started.elapsed() >= LONGEST
                {
                    break;
                }
                match tokio::time::timeout(QUIET, raw_rx.recv()).await {
                    Ok(Some(e)) => next = Some(e),
                    Ok(None) => return,
                    Err(_) => break, // Quiet: whatever was written is done.
                }
            }
            let change = if rescan {
                Change::Rescan
            } else if paths.is_empty() {
                continue;
            } else {
                Change::Paths(paths)
            };
            if tx.send(change).await.is_err() {
                return;
            }
        }
    });
    Ok((watcher, rx))
}

/// A directory of YAML and the watch on it: the standalone operator's source.
pub struct WatchedDirectory {
    source: FileSource,
    changes: mpsc::Receiver<Change>,
    _watcher: notify::RecommendedWatcher,
}

impl WatchedDirectory {
    /// Reads `dir` and watches it for changes. A relative `dir` is made absolute first: the
    /// watcher reports absolute paths, and a change under a root it did not recognise as
    /// its own was once never read (`gatehouse standalone examples/quickstart`).
    pub fn new(dir: &Path) -> anyhow::Result<Self> {
        let dir = std::fs::canonicalize(dir)
            .map_err(|e| anyhow::anyhow!("directory {}: {e}", dir.display()))?;
        let (watcher, changes) = watch(&dir)?;
        Ok(WatchedDirectory {
            source: FileSource::new(&dir),
            changes,
            _watcher: watcher,
        })
    }
}

impl Source for WatchedDirectory {
    fn load(&mut self) -> Loaded {
        self.source.load()
    }

    async fn changed(&mut self) -> anyhow::Result<()> {
        match self.changes.recv().await {
            Some(Change::Paths(paths)) => self.source.touched(paths),
            Some(Change::Rescan) => self.source.rescan(),
            None => anyhow::bail!("file watcher stopped"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, host: &str) -> String {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}}}\nspec:\n  hostnames: [{host}]\n"
        )
    }

    fn stored(
        source: &mut FileSource,
        name: &str,
    ) -> Option<Arc<gatehouse_translate::gwapi::httproutes::HttpRoute>> {
        source
            .load()
            .store
            .http_routes
            .get(&gatehouse_translate::store::ObjectKey::new("default", name))
            .cloned()
    }

    /// A change reads the files it touched and parses the documents whose text changed:
    /// every other object keeps its identity, and generations count spec changes.
    #[test]
    fn a_change_replaces_only_what_it_touched() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
        std::fs::write(
            &a,
            format!("{}---\n{}", route("a1", "one"), route("a2", "two")),
        )
        .unwrap();
        std::fs::write(&b, route("b1", "three")).unwrap();
        let mut source = FileSource::new(dir.path());
        let (a1, a2, b1) = (
            stored(&mut source, "a1").unwrap(),
            stored(&mut source, "a2").unwrap(),
            stored(&mut source, "b1").unwrap(),
        );
        assert_eq!(a1.metadata.generation, Some(1));

        // The second document of a.yaml changes; the watcher says a.yaml changed.
        std::fs::write(
            &a,
            format!("{}---\n{}", route("a1", "one"), route("a2", "deux")),
        )
        .unwrap();
        source.touched([a.clone()]);
        let loaded = source.load();
        let get = |n: &str| {
            loaded.store.http_routes[&gatehouse_translate::store::ObjectKey::new("default", n)]
                .clone()
        };
        assert!(
            Arc::ptr_eq(&get("a1"), &a1),
            "an unchanged document keeps its object"
        );
        assert!(
            Arc::ptr_eq(&get("b1"), &b1),
            "an untouched file keeps its objects"
        );
        assert!(!Arc::ptr_eq(&get("a2"), &a2));
        assert_eq!(get("a2").metadata.generation, Some(2));
        assert_eq!(
            get("a2").spec.hostnames.as_deref(),
            Some(&["deux".to_string()][..])
        );

        // A file written but not reported is not read until a rescan.
        std::fs::write(&b, route("b1", "trois")).unwrap();
        assert!(Arc::ptr_eq(&stored(&mut source, "b1").unwrap(), &b1));
        source.rescan();
        assert_eq!(
            stored(&mut source, "b1").unwrap().metadata.generation,
            Some(2)
        );

        // A file removed takes its objects; a new directory brings its files.
        std::fs::remove_file(&a).unwrap();
        let sub = dir.path().join("team");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("c.yml"), route("c1", "four")).unwrap();
        source.touched([a.clone(), sub.clone()]);
        assert!(stored(&mut source, "a1").is_none());
        assert!(stored(&mut source, "c1").is_some());
        // Put back, an object counts generations from one again.
        std::fs::write(&a, route("a1", "one")).unwrap();
        source.touched([a.clone()]);
        assert_eq!(
            stored(&mut source, "a1").unwrap().metadata.generation,
            Some(1)
        );
    }

    /// Two files defining one object: the later one (path order) wins and the duplicate is
    /// reported; when it goes, the earlier definition serves again. A bad edit reports its
    /// line and keeps the previous version serving.
    #[test]
    fn duplicates_and_bad_edits() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
        std::fs::write(&a, route("r", "from-a")).unwrap();
        std::fs::write(&b, route("r", "from-b")).unwrap();
        let mut source = FileSource::new(dir.path());
        let loaded = source.load();
        assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
        assert_eq!(loaded.errors[0].file, b);
        assert!(loaded.errors[0].message.contains("also defined in"));
        let host =
            |s: &mut FileSource| stored(s, "r").unwrap().spec.hostnames.clone().unwrap()[0].clone();
        assert_eq!(host(&mut source), "from-b");

        std::fs::remove_file(&b).unwrap();
        source.touched([b.clone()]);
        assert_eq!(host(&mut source), "from-a");
        assert!(source.load().errors.is_empty());

        std::fs::write(&a, "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n  hostnames: 7\n").unwrap();
        source.touched([a.clone()]);
        let loaded = source.load();
        assert_eq!(loaded.errors.len(), 1);
        assert_eq!(loaded.errors[0].line, Some(5), "{}", loaded.errors[0]);
        assert!(loaded.errors[0].message.contains("keeps serving"));
        assert_eq!(host(&mut source), "from-a");
    }
}
