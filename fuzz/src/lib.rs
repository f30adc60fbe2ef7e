//! What the fuzz targets share (the seeds example too).

use std::path::PathBuf;

/// Reads `yaml` as standalone mode reads a file, translates the objects, and compiles
/// what translation emits as the data plane does: nothing may panic.
pub fn translate_and_compile(yaml: &str) {
    let files = [(PathBuf::from("fuzz.yaml"), yaml.to_string())];
    let (store, _errors) = gatehouse_translate::yaml::store_of(&files);
    let out = gatehouse_translate::translate(&store, &gatehouse_translate::Settings::default());
    let _ = gatehouse_dataplane::runtime::compile(&out.config, 1);
}
