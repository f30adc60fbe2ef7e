//! Golden tests: YAML in, model and conditions out.
//!
//! Each directory under testdata/ (and examples/quickstart) holds input YAML and
//! `expected.json`. Run with `UPDATE_GOLDEN=1` to rewrite the expectations, then review the
//! diff: the files are the specification of translation.

use crate::store::ObjectKey;
use crate::test_support::load_dir;
use crate::{Settings, translate};
use std::path::{Path, PathBuf};

fn golden(input: &Path, expected: &Path) {
    let store = load_dir(input);
    let out = translate(&store, &Settings::default());
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
        let (line, want, got) = first_difference(&want, &actual);
        panic!(
            "{} differs from translation at line {line}:\n  want: {want}\n  got:  {got}\n(run with UPDATE_GOLDEN=1 and review the diff)",
            expected.display(),
        );
    }
    // The model translation emits must always pass the data plane's validation.
    gatehouse_model::validate::validate(c).expect("translation output validates");
}

/// The first line (1-based) where two texts differ, and that line of each.
fn first_difference<'a>(a: &'a str, b: &'a str) -> (usize, &'a str, &'a str) {
    let at = a
        .lines()
        .zip(b.lines())
        .position(|(x, y)| x != y)
        .unwrap_or(0);
    (
        at + 1,
        a.lines().nth(at).unwrap_or(""),
        b.lines().nth(at).unwrap_or(""),
    )
}

fn case(name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    golden(&dir, &dir.join("expected.json"));
}

#[test]
fn quickstart() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    golden(
        &root.join("../examples/quickstart"),
        &root.join("testdata/quickstart.expected.json"),
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
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/attachment");
    let a = translate(&load_dir(&dir), &Settings::default());
    let b = translate(&load_dir(&dir), &Settings::default());
    assert_eq!(a, b);
}

/// Kubernetes mode: a Gateway's static address must be the one its load balancer gave.
#[test]
fn static_addresses_the_load_balancer_did_not_give_are_not_usable() {
    use crate::status::reason;
    use crate::store::Object;
    let settings = Settings {
        infrastructure: crate::Infrastructure::Kubernetes,
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
status: {{loadBalancer: {{ingress: [{{{assigned}}}]}}}}
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
        programmed("[{value: 198.51.100.7}]", "ip: 198.19.0.4"),
        ("Accepted".into(), "AddressNotUsable".into(), vec![])
    );
    assert_eq!(
        programmed("[{value: 198.51.100.7}]", "ip: 198.51.100.7"),
        (
            "Accepted".into(),
            "Pending".into(),
            vec!["198.51.100.7".to_string()]
        )
    );
    assert_eq!(
        programmed("[{type: test/fake, value: x}]", "ip: 198.19.0.4").0,
        "UnsupportedAddress"
    );
    // A cloud load balancer that gives a hostname (AWS's): the Gateway's address is it.
    assert_eq!(
        programmed("[]", "hostname: a1b2.elb.us-east-1.amazonaws.com").2,
        vec!["a1b2.elb.us-east-1.amazonaws.com".to_string()]
    );
}

/// Every input directory of the golden tests, the quickstart and the migration example.
fn all_inputs() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("testdata"))
        .expect("testdata")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.push(root.join("../examples/quickstart"));
    dirs.push(root.join("../examples/migration"));
    dirs
}

/// Changes to apply one after the other, each as a new version of the store: every kind
/// of object removed, put back, replaced by an equal copy, and (routes) edited and added.
fn changes(base: &crate::store::Store) -> Vec<(String, crate::store::Store)> {
    use std::sync::Arc;
    let mut versions = Vec::new();
    let mut store = base.clone();
    macro_rules! each {
        ($field:ident, $what:literal) => {
            for (key, object) in base.$field.iter().take(4) {
                store.$field.remove(key);
                versions.push((format!("{} {key} removed", $what), store.clone()));
                store.$field.insert(key.clone(), object.clone());
                versions.push((format!("{} {key} back", $what), store.clone()));
                store
                    .$field
                    .insert(key.clone(), Arc::new((**object).clone()));
                versions.push((format!("{} {key} copied", $what), store.clone()));
            }
        };
    }
    each!(http_routes, "HTTPRoute");
    each!(endpoint_slices, "EndpointSlice");
    each!(ingresses, "Ingress");
    each!(services, "Service");
    each!(gateways, "Gateway");
    each!(reference_grants, "ReferenceGrant");
    each!(traffic_policies, "TrafficPolicy");
    each!(namespaces, "Namespace");
    each!(secrets, "Secret");
    each!(ingress_classes, "IngressClass");
    each!(listener_sets, "ListenerSet");
    each!(backend_tls_policies, "BackendTLSPolicy");
    // Routes edited (another hostname, another path) and added under new names.
    for (key, route) in base.http_routes.iter().take(6) {
        let mut edited = (**route).clone();
        edited
            .spec
            .hostnames
            .get_or_insert_with(Vec::new)
            .push("edited.example.com".into());
        if let Some(m) = edited
            .spec
            .rules
            .as_mut()
            .and_then(|r| r.first_mut())
            .and_then(|r| r.matches.as_mut())
            .and_then(|m| m.first_mut())
            .and_then(|m| m.path.as_mut())
        {
            m.value = Some("/edited".into());
        }
        edited.metadata.generation = Some(edited.metadata.generation.unwrap_or(1) + 1);
        store.http_routes.insert(key.clone(), Arc::new(edited));
        versions.push((format!("HTTPRoute {key} edited"), store.clone()));
        let mut added = (**route).clone();
        added.metadata.name = Some(format!("{}-added", key.name));
        let added_key = ObjectKey::new(key.namespace.as_str(), format!("{}-added", key.name));
        store.http_routes.insert(added_key.clone(), Arc::new(added));
        versions.push((format!("HTTPRoute {added_key} added"), store.clone()));
    }
    // Ingresses edited: an annotation that changes routing.
    for (key, ingress) in base.ingresses.iter().take(4) {
        let mut edited = (**ingress).clone();
        edited
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(
                "nginx.ingress.kubernetes.io/ssl-redirect".into(),
                "false".into(),
            );
        store.ingresses.insert(key.clone(), Arc::new(edited));
        versions.push((format!("Ingress {key} edited"), store.clone()));
    }
    versions
}

/// A translator kept across versions gives exactly what translation from scratch gives,
/// whatever changed; and a version that changes one HTTPRoute shares every virtual host
/// it does not touch with the version before.
#[test]
fn incremental_equals_full() {
    for dir in all_inputs() {
        let base = load_dir(&dir);
        let mut translator = crate::Translator::new(Settings::default());
        let first = translator.translate(&base);
        assert_eq!(
            first,
            translate(&base, &Settings::default()),
            "{}",
            dir.display()
        );
        for (what, store) in changes(&base) {
            let incremental = translator.translate(&store);
            let full = translate(&store, &Settings::default());
            if incremental != full {
                let (a, b) = (format!("{incremental:#?}"), format!("{full:#?}"));
                let (line, a, b) = first_difference(&a, &b);
                panic!(
                    "{}: after {what}, incremental translation differs at line {line}:\n  incremental: {a}\n  full:        {b}",
                    dir.display(),
                );
            }
        }
    }
}

/// Editing one HTTPRoute rebuilds only the virtual hosts it is in: every other one is the
/// same `Arc` as before, so nothing downstream encodes or compiles it again.
#[test]
fn a_route_edit_shares_every_other_virtual_host() {
    use std::sync::Arc;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
    let mut store = load_dir(&dir);
    let mut translator = crate::Translator::new(Settings::default());
    let before = translator.translate(&store);
    let (key, route) = store
        .http_routes
        .iter()
        .next()
        .map(|(k, r)| (k.clone(), r.clone()))
        .expect("a route");
    let mut edited = (*route).clone();
    edited.metadata.generation = Some(7);
    store.http_routes.insert(key.clone(), Arc::new(edited));
    let after = translator.translate(&store);
    let hosts = |c: &gatehouse_model::ir::Config| -> Vec<Arc<gatehouse_model::ir::VirtualHost>> {
        c.route_tables
            .iter()
            .flat_map(|t| t.virtual_hosts.iter().cloned())
            .collect()
    };
    let (b, a) = (hosts(&before.config), hosts(&after.config));
    assert_eq!(b.len(), a.len());
    let shared = b.iter().zip(&a).filter(|(x, y)| Arc::ptr_eq(x, y)).count();
    let of_route = b
        .iter()
        .filter(|h| h.routes.iter().any(|r| r.source.name == key.name))
        .count();
    assert!(of_route > 0 && of_route < b.len());
    // A new generation changes nothing routes carry: every host comes out equal and stays.
    assert_eq!(shared, b.len(), "hosts rebuilt equal keep their Arc");
    assert_eq!(
        before.status.objects.len(),
        after.status.objects.len(),
        "same objects"
    );
    assert_ne!(
        before.status.objects[&format!("HTTPRoute {key}")],
        after.status.objects[&format!("HTTPRoute {key}")],
        "the route's status carries its new generation"
    );
}
