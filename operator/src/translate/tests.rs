//! Golden tests: YAML in, model and conditions out.
//!
//! Each directory under testdata/translate/ (and examples/quickstart) holds input YAML and
//! `expected.json`. Run with `UPDATE_GOLDEN=1` to rewrite the expectations, then review the
//! diff: the files are the specification of translation.

use super::{Settings, translate};
use crate::source::file::FileSource;
use std::path::{Path, PathBuf};

fn golden(input: &Path, expected: &Path) {
    let loaded = FileSource::new(input).load();
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let out = translate(&loaded.store, &Settings::default());
    let c = &out.config;
    let actual = serde_json::to_string_pretty(&serde_json::json!({
        "gateways": c.gateways,
        "listeners": c.listeners,
        "routeTables": c.route_tables,
        "clusters": c.clusters,
        "certificates": c.certificates.iter().map(|c| &c.key).collect::<Vec<_>>(),
        "status": out.status.objects,
        "dataplanes": out
            .dataplanes
            .iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<std::collections::BTreeMap<_, _>>(),
    }))
    .expect("json")
        + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(expected, &actual).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(expected)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", expected.display()));
    if want != actual {
        let first = want
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "{} differs from translation at line {}:\n  want: {}\n  got:  {}\n(run with UPDATE_GOLDEN=1 and review the diff)",
            expected.display(),
            first + 1,
            want.lines().nth(first).unwrap_or(""),
            actual.lines().nth(first).unwrap_or("")
        );
    }
    // The model translation emits must always pass the data plane's validation.
    gatehouse_model::validate::validate(c).expect("translation output validates");
}

fn case(name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/translate")
        .join(name);
    golden(&dir, &dir.join("expected.json"));
}

#[test]
fn quickstart() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    golden(
        &root.join("../examples/quickstart"),
        &root.join("testdata/translate/quickstart.expected.json"),
    );
}

#[test]
fn listeners() {
    case("listeners");
}

#[test]
fn attachment() {
    case("attachment");
}

#[test]
fn ingress() {
    case("ingress");
}

#[test]
fn parameters() {
    case("parameters");
}

#[test]
fn policies() {
    case("policies");
}

#[test]
fn translation_is_deterministic() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/translate/attachment");
    let a = translate(&FileSource::new(&dir).load().store, &Settings::default());
    let b = translate(&FileSource::new(&dir).load().store, &Settings::default());
    assert_eq!(a, b);
}
