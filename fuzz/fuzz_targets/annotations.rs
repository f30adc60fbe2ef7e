//! ingress-nginx annotations, as a tenant writes them on an Ingress: `key=value` lines
//! (a key without `/` gets the nginx prefix) go on an Ingress with a Service and an
//! IngressClass, which is translated and compiled by the data plane. Nothing panics, and
//! what translation emits the data plane compiles (a refusal is a status, not a crash).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut annotations = serde_json::Map::new();
    for line in text.lines().take(64) {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = if key.contains('/') {
            key.to_string()
        } else {
            format!("nginx.ingress.kubernetes.io/{key}")
        };
        annotations.insert(key, value.into());
    }
    let map: std::collections::BTreeMap<String, String> = annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    let _ = gatehouse_translate::nginx::parse(&map);
    // JSON is YAML: the annotations go in as they are, whatever they hold.
    let annotations = serde_json::Value::Object(annotations);
    let yaml = format!(
        "apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {{name: gatehouse}}
spec: {{controller: gatehouse.dev/ingress-controller}}
---
apiVersion: v1
kind: Service
metadata: {{name: app, namespace: default}}
spec: {{ports: [{{name: http, port: 80}}], clusterIP: 10.0.0.10}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: app, namespace: default, annotations: {annotations}}}
spec:
  ingressClassName: gatehouse
  rules:
  - host: app.example.com
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}
      - {{path: /api, pathType: Prefix, backend: {{service: {{name: app, port: {{name: http}}}}}}}}
"
    );
    gatehouse_fuzz::translate_and_compile(&yaml);
});
