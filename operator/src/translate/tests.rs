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
fn listener_sets() {
    case("listenersets");
}

#[test]
fn backend_tls() {
    case("backendtls");
}

#[test]
fn translation_is_deterministic() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/translate/attachment");
    let a = translate(&FileSource::new(&dir).load().store, &Settings::default());
    let b = translate(&FileSource::new(&dir).load().store, &Settings::default());
    assert_eq!(a, b);
}

/// Kubernetes mode: a Gateway's static address must be the one its load balancer gave.
#[test]
fn static_addresses_the_load_balancer_did_not_give_are_not_usable() {
    use crate::status::reason;
    use crate::store::Object;
    let settings = Settings {
        infrastructure: super::Infrastructure::Kubernetes,
        ..Settings::default()
    };
    let yaml = |addresses: &str, assigned: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: gatehouse}}
spec: {{controllerName: gatehouse.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default, generation: 1}}
spec:
  gatewayClassName: gatehouse
  addresses: {addresses}
  listeners: [{{name: http, protocol: HTTP, port: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: gatehouse-gw, namespace: default}}
spec: {{type: LoadBalancer, loadBalancerIP: 198.51.100.7}}
status: {{loadBalancer: {{ingress: [{{ip: {assigned}}}]}}}}
"
        )
    };
    let programmed = |addresses: &str, assigned: &str| {
        let mut store = crate::store::Store::default();
        for doc in serde_yaml::Deserializer::from_str(&yaml(addresses, assigned)) {
            let v = serde_yaml::Value::deserialize(doc).unwrap();
            let obj = match v["kind"].as_str() {
                Some("GatewayClass") => Object::GatewayClass(serde_yaml::from_value(v).unwrap()),
                Some("Gateway") => Object::Gateway(serde_yaml::from_value(v).unwrap()),
                _ => Object::Service(serde_yaml::from_value(v).unwrap()),
            };
            store.insert(obj);
        }
        let out = translate(&store, &settings);
        let st = &out.status.objects["Gateway default/gw"];
        let c = st.condition(reason::PROGRAMMED).unwrap();
        let a = st.condition(reason::ACCEPTED).unwrap();
        (a.reason.clone(), c.reason.clone(), st.addresses.clone())
    };
    use serde::Deserialize;
    assert_eq!(
        programmed("[{value: 198.51.100.7}]", "198.19.0.4"),
        ("Accepted".into(), "AddressNotUsable".into(), vec![])
    );
    assert_eq!(
        programmed("[{value: 198.51.100.7}]", "198.51.100.7"),
        (
            "Accepted".into(),
            "Pending".into(),
            vec!["198.51.100.7".to_string()]
        )
    );
    assert_eq!(
        programmed("[{type: test/fake, value: x}]", "198.19.0.4").0,
        "UnsupportedAddress"
    );
}
