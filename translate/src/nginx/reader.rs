//! Reading one Ingress's annotations: values by name (trimmed, empty ones absent), and what
//! reading found wrong, in the order it was found.

use super::parsed::PREFIX;
use std::collections::BTreeMap;

/// An Ingress's annotations under reading, with what was found wrong so far.
pub struct Reader<'a> {
    annotations: &'a BTreeMap<String, String>,
    /// Values ignored (their default applies) and annotations not supported.
    pub warnings: Vec<String>,
    /// Why the whole Ingress is refused: the first reason found.
    pub refused: Option<String>,
    /// Why every path of the Ingress answers 503: the first reason found.
    pub denied: Option<String>,
}

impl<'a> Reader<'a> {
    pub fn new(annotations: &'a BTreeMap<String, String>) -> Self {
        Reader {
            annotations,
            warnings: Vec::new(),
            refused: None,
            denied: None,
        }
    }

    /// Every annotation, by its full key.
    pub fn keys(&self) -> impl Iterator<Item = &'a String> + use<'a> {
        self.annotations.keys()
    }

    /// The trimmed value of `nginx.ingress.kubernetes.io/<name>`, unless absent or empty.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.annotations
            .get(&format!("{PREFIX}{name}"))
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The value is ignored and the default applies.
    pub fn warn(&mut self, name: &str, value: &str, why: &str) {
        self.warnings.push(format!(
            "annotation {PREFIX}{name}: {value:?} {why}; ignored"
        ));
    }

    /// The Ingress is not served (the first reason is kept).
    pub fn refuse(&mut self, why: String) {
        self.refused.get_or_insert(why);
    }

    /// Every path of the Ingress answers 503 (the first reason is kept).
    pub fn deny(&mut self, why: String) {
        self.denied.get_or_insert(why);
    }
}
