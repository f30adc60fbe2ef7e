//! Writes the seed corpora made from the repository's own configurations: every example and
//! translation test input as YAML (`corpus/yaml_source`), and what it translates to as
//! config channel updates (`corpus/config_compile`): a full update, then the same config
//! again with its first virtual host removed. Run from `fuzz/`: `cargo run --example seeds`.

use gatehouse_model::channel::Sent;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn main() -> std::io::Result<()> {
    // (seed name, file)
    let mut inputs: Vec<(String, PathBuf)> = Vec::new();
    for dir in [
        "../examples/quickstart",
        "../examples/kubernetes",
        "../examples/migration",
    ] {
        let dir = Path::new(dir);
        let mut yaml = String::new();
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        names.sort();
        for n in names {
            yaml.push_str(&std::fs::read_to_string(n)?);
            yaml.push_str("\n---\n");
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = PathBuf::from(format!("target/seed-{name}.yaml"));
        std::fs::create_dir_all("target")?;
        std::fs::write(&path, yaml)?;
        inputs.push((format!("examples-{name}"), path));
    }
    for entry in std::fs::read_dir("../translate/testdata")? {
        let dir = entry?.path();
        let input = dir.join("input.yaml");
        if input.exists() {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            inputs.push((format!("translate-{name}"), input));
        }
    }
    std::fs::create_dir_all("corpus/yaml_source")?;
    std::fs::create_dir_all("corpus/config_compile")?;
    for (name, input) in inputs {
        let text = std::fs::read_to_string(&input)?;
        std::fs::write(format!("corpus/yaml_source/{name}.yaml"), &text)?;
        let files = [(input.clone(), text)];
        let (store, _) = gatehouse_translate::yaml::store_of(&files);
        let out = gatehouse_translate::translate(&store, &gatehouse_translate::Settings::default());
        let mut sent = Sent::default();
        let Some(full) = sent.update(&out.config, 1) else {
            continue;
        };
        let items = |u: &gatehouse_model::proto::ConfigUpdate| -> Vec<Value> {
            let mut v: Vec<Value> = u
                .upserts
                .iter()
                .map(|r| {
                    json!({
                        "kind": r.kind,
                        "key": r.key,
                        "body": serde_json::from_slice::<Value>(&r.body).unwrap_or(Value::Null),
                    })
                })
                .collect();
            v.extend(
                u.removals
                    .iter()
                    .map(|r| json!({"remove": r.kind, "key": r.key})),
            );
            v
        };
        let first = items(&full);
        let second: Vec<Value> = first
            .iter()
            .find(|i| i["kind"] == "VirtualHost")
            .map(|h| vec![json!({"remove": "VirtualHost", "key": h["key"]})])
            .unwrap_or_default();
        let seed =
            serde_json::to_string_pretty(&json!([first, second])).map_err(std::io::Error::other)?;
        std::fs::write(format!("corpus/config_compile/{name}.json"), seed)?;
    }
    Ok(())
}
