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

/// A GatewayClass of ours, a Gateway `infra/gw` on 127.0.0.1 with `listeners` (a YAML
/// flow sequence), and a Service `apps/web` on port 80 with one ready endpoint.
pub fn gateway_with(listeners: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: gatehouse}}
spec: {{controllerName: gatehouse.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: infra}}
spec:
  gatewayClassName: gatehouse
  listeners: {listeners}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: apps}}
spec: {{ports: [{{name: http, port: 80, targetPort: 8080}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, namespace: apps, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
endpoints: [{{addresses: [10.0.0.1], conditions: {{ready: true}}}}]
ports: [{{name: http, port: 8080}}]
"
    )
}

/// An HTTP listener on port 80 open to every namespace.
pub const HTTP_ALL: &str =
    "[{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}]";

/// Translation of one YAML text with the default settings.
pub fn translated(yaml: &str) -> crate::Output {
    crate::translate(&store_from(yaml), &crate::Settings::default())
}

/// The (status, reason) of a condition of an object ("Kind ns/name"), of one of its
/// listeners (`listener` given) or of its first parent entry (`parent`).
pub fn condition(out: &crate::Output, object: &str, type_: &str) -> (String, String) {
    let st = out
        .status
        .objects
        .get(object)
        .unwrap_or_else(|| panic!("no status for {object}: {:?}", out.status.objects.keys()));
    let c = st
        .conditions
        .iter()
        .chain(st.parents.iter().flat_map(|p| &p.conditions))
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("{object} has no {type_}: {st:?}"));
    (c.status.clone(), c.reason.clone())
}

/// The (status, reason) of a condition of one listener of an object.
pub fn listener_condition(
    out: &crate::Output,
    object: &str,
    listener: &str,
    type_: &str,
) -> (String, String) {
    let st = &out.status.objects[object];
    let l = st
        .listeners
        .iter()
        .find(|l| l.name == listener)
        .unwrap_or_else(|| panic!("{object} has no listener {listener}"));
    let c = l
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("listener {listener} has no {type_}"));
    (c.status.clone(), c.reason.clone())
}

/// Every route of the model, in table order, with its virtual host's hostname.
pub fn routes(out: &crate::Output) -> Vec<(String, gatehouse_model::ir::Route)> {
    out.config
        .route_tables
        .iter()
        .flat_map(|t| &t.virtual_hosts)
        .flat_map(|h| {
            h.routes
                .iter()
                .map(|r| (h.hostname.to_string(), (**r).clone()))
        })
        .collect()
}

/// (status, reason) as the tests write them.
pub fn is(status: &str, reason: &str) -> (String, String) {
    (status.to_string(), reason.to_string())
}
