//! Config compile on the data plane: updates as the config channel carries them (resources
//! whose bodies are JSON of the model) are applied in turn to what the data plane received
//! and compiled by one `Compiler` (the incremental path: kept clusters and hosts, last good
//! forms, refusals). Whatever the bodies hold, nothing panics.
//!
//! Input: JSON, `[[{"kind": K, "key": K, "body": JSON}|{"remove": K, "key": K}, ...], ...]`,
//! one array per update, the first a full one (`seeds` writes examples of it).

#![no_main]

use gatehouse_dataplane::channel::received::Received;
use gatehouse_dataplane::runtime::Compiler;
use gatehouse_model::proto;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Array(updates)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let mut received = Received::default();
    let mut compiler = Compiler::default();
    for (i, update) in updates.iter().take(8).enumerate() {
        let Value::Array(items) = update else {
            continue;
        };
        let text = |v: &Value, k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let mut message = proto::ConfigUpdate {
            version: i as u64 + 1,
            full: i == 0,
            ..Default::default()
        };
        for item in items {
            if let Some(kind) = item.get("remove").and_then(Value::as_str) {
                message.removals.push(proto::ResourceKey {
                    kind: kind.to_string(),
                    key: text(item, "key"),
                });
            } else {
                message.upserts.push(proto::Resource {
                    kind: text(item, "kind"),
                    key: text(item, "key"),
                    body: item
                        .get("body")
                        .map(Value::to_string)
                        .unwrap_or_default()
                        .into_bytes()
                        .into(),
                });
            }
        }
        received.apply(&message);
        let _ = compiler.compile(&received, message.version);
        received.compiled();
    }
});
