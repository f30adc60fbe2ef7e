//! The set-up `gatehouse convert` does itself, so that a directory of plain ingress-nginx
//! Ingresses converts as it is: nothing of Gatehouse's in it, no Gateway.
//!
//! Which Ingresses: those of the classes named with `--ingress-class`; else those of
//! ingress-nginx's classes (an IngressClass whose controller is `k8s.io/ingress-nginx`);
//! else, when the files hold no IngressClass at all, those of class `nginx` (by
//! `ingressClassName` or the `kubernetes.io/ingress.class` annotation) and the unclassed
//! ones, as an ingress-nginx installed with its chart's defaults serves them. Files that
//! already carry Gatehouse's own classes (its controller) are converted as they are.
//!
//! Where their routes attach: the Gateway `--gateway NS/NAME[:SECTION]` names; without
//! one, a placeholder, `gateway-placeholder/replace-me`, that the report says to replace.
//! A Gateway the files do not hold is assumed, for `--verify`, with the listeners
//! ingress-nginx has: HTTP on 80 and, when some Ingress asks for TLS, HTTPS on 443 with
//! the TLS Secrets the files hold, both open to every namespace.
//!
//! The chosen classes are pointed at that Gateway (an IngressClassParameters
//! `gatewayRef`, in the copy of the store that conversion and verification read), so the
//! Ingress front-end serves them on it and the converted routes attach to it: both sides of
//! `--verify` see the same Gateway. Pure: store in, store and report out.

use gatehouse_translate::ingress::{DEFAULT_CLASS_ANNOTATION, class_name};
use gatehouse_translate::store::{ObjectKey, Store};
use gatehouse_translate::{GATEWAY_GROUP, Settings};
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// ingress-nginx's IngressClass controller.
pub const INGRESS_NGINX_CONTROLLER: &str = "k8s.io/ingress-nginx";
/// The class ingress-nginx's chart makes, and serves unclassed Ingresses with when the
/// files hold no IngressClass.
pub const INGRESS_NGINX_CLASS: &str = "nginx";
/// The Gateway the routes attach to when none is named.
pub const PLACEHOLDER_GATEWAY: (&str, &str) = ("gateway-placeholder", "replace-me");

/// What the command line chose.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `--ingress-class`: these classes' Ingresses.
    pub classes: Vec<String>,
    /// `--gateway NS/NAME[:SECTION]`.
    pub gateway: Option<GatewayTarget>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayTarget {
    pub namespace: String,
    pub name: String,
    pub section: Option<String>,
}

impl std::str::FromStr for GatewayTarget {
    type Err = String;

    /// `NS/NAME` or `NS/NAME:SECTION`, each part a DNS label (a name of 1 to 253
    /// characters for NAME).
    fn from_str(s: &str) -> Result<Self, String> {
        let (gateway, section) = match s.split_once(':') {
            Some((g, sec)) => (g, Some(sec)),
            None => (s, None),
        };
        let Some((namespace, name)) = gateway.split_once('/') else {
            return Err(format!("{s:?}: give NAMESPACE/NAME[:SECTION]"));
        };
        let label = |v: &str, max: usize| {
            !v.is_empty()
                && v.len() <= max
                && v.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
                && !v.starts_with('-')
                && !v.ends_with('-')
        };
        if !label(namespace, 63) || namespace.contains('.') || !label(name, 253) {
            return Err(format!(
                "{s:?}: the namespace and name must be lower-case DNS names"
            ));
        }
        if section.is_some_and(|sec| !label(sec, 253)) {
            return Err(format!("{s:?}: the section must be a listener's name"));
        }
        Ok(GatewayTarget {
            namespace: namespace.into(),
            name: name.into(),
            section: section.map(str::to_string),
        })
    }
}

/// The store as conversion reads it, and what the set-up assumed.
#[derive(Debug)]
pub struct Prepared {
    pub store: Store,
    /// Lines for the report (each said once, before the notes).
    pub report: Vec<String>,
}

/// The store with the chosen classes served by the chosen Gateway; why nothing can be
/// converted when no Ingress is of a chosen class.
pub fn prepare(
    store: &Store,
    selection: &Selection,
    settings: &Settings,
) -> Result<Prepared, String> {
    let ours_already = store
        .ingress_classes
        .values()
        .any(|c| controller(c) == Some(settings.ingress_controller.as_str()));
    if selection.classes.is_empty() && selection.gateway.is_none() && ours_already {
        return Ok(Prepared {
            store: store.clone(),
            report: vec![],
        });
    }
    let (classes, default_class) = chosen_classes(store, selection);
    let unclassed = default_class.is_some();
    let ingresses: Vec<&Arc<Ingress>> = store
        .ingresses
        .values()
        .filter(|i| match class_name(i, None) {
            Some(c) => classes.contains(c),
            None => unclassed,
        })
        .collect();
    if ingresses.is_empty() {
        return Err(nothing_to_convert(store, &classes, unclassed));
    }
    let mut out = store.clone();
    let mut report = Vec::new();
    let target = selection.gateway.clone().unwrap_or(GatewayTarget {
        namespace: PLACEHOLDER_GATEWAY.0.into(),
        name: PLACEHOLDER_GATEWAY.1.into(),
        section: None,
    });
    let gateway_key = ObjectKey::new(target.namespace.as_str(), target.name.as_str());
    if !store.gateways.contains_key(&gateway_key) {
        assume_gateway(&mut out, &target, &ingresses, settings, &mut report)?;
    }
    // Every class of ours that is not chosen is left alone by pointing it nowhere: only
    // the chosen ones are converted.
    for c in store.ingress_classes.values() {
        let name = c.metadata.name.clone().unwrap_or_default();
        if controller(c) == Some(settings.ingress_controller.as_str()) && !classes.contains(&name) {
            insert(
                &mut out,
                ingress_class(&name, "not-chosen.gatehouse.dev/convert", None, false),
            )?;
        }
    }
    for name in &classes {
        let parameters = format!("convert-{name}");
        insert(
            &mut out,
            json!({
                "apiVersion": "gatehouse.dev/v1alpha1",
                "kind": "IngressClassParameters",
                "metadata": {"name": parameters, "generation": 1},
                "spec": {"gatewayRef": {
                    "namespace": target.namespace,
                    "name": target.name,
                    "sectionNames": target.section.iter().collect::<Vec<_>>(),
                }},
            }),
        )?;
        let default = default_class.as_deref() == Some(name.as_str());
        insert(
            &mut out,
            ingress_class(
                name,
                &settings.ingress_controller,
                Some(&parameters),
                default,
            ),
        )?;
    }
    let counted: BTreeMap<String, usize> = ingresses.iter().fold(BTreeMap::new(), |mut m, i| {
        let class = class_name(i, None).unwrap_or("(none)").to_string();
        *m.entry(class).or_default() += 1;
        m
    });
    let counted: Vec<String> = counted.iter().map(|(c, n)| format!("{c}: {n}")).collect();
    report.insert(
        0,
        format!(
            "converting {} Ingresses of class {} onto Gateway {}{}",
            ingresses.len(),
            counted.join(", "),
            gateway_key,
            target
                .section
                .as_deref()
                .map(|s| format!(" listener {s}"))
                .unwrap_or_default()
        ),
    );
    Ok(Prepared { store: out, report })
}

/// The chosen class names, and the one of them unclassed Ingresses go to (the default
/// class), if any.
fn chosen_classes(store: &Store, selection: &Selection) -> (BTreeSet<String>, Option<String>) {
    let chosen_default = |classes: &BTreeSet<String>| {
        store
            .ingress_classes
            .values()
            .filter(|c| is_default(c))
            .filter_map(|c| c.metadata.name.clone())
            .find(|n| classes.contains(n))
    };
    if !selection.classes.is_empty() {
        let classes: BTreeSet<String> = selection.classes.iter().cloned().collect();
        let default = chosen_default(&classes);
        return (classes, default);
    }
    if store.ingress_classes.is_empty() {
        let nginx = INGRESS_NGINX_CLASS.to_string();
        return (BTreeSet::from([nginx.clone()]), Some(nginx));
    }
    let classes: BTreeSet<String> = store
        .ingress_classes
        .values()
        .filter(|c| controller(c) == Some(INGRESS_NGINX_CONTROLLER))
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    let default = chosen_default(&classes);
    (classes, default)
}

/// Why no Ingress was chosen: the classes looked for and those the files have.
fn nothing_to_convert(store: &Store, classes: &BTreeSet<String>, unclassed: bool) -> String {
    let mut found: BTreeMap<String, usize> = BTreeMap::new();
    for i in store.ingresses.values() {
        *found
            .entry(class_name(i, None).unwrap_or("(no class)").to_string())
            .or_default() += 1;
    }
    let looked_for = if classes.is_empty() {
        format!("no IngressClass has controller {INGRESS_NGINX_CONTROLLER}")
    } else {
        let mut l: Vec<String> = classes.iter().cloned().collect();
        if unclassed {
            l.push("(no class)".into());
        }
        format!("looked for class {}", l.join(", "))
    };
    if found.is_empty() {
        return format!("nothing to convert: no Ingress in the files ({looked_for})");
    }
    let found: Vec<String> = found.iter().map(|(c, n)| format!("{c} ({n})")).collect();
    format!(
        "nothing to convert: {looked_for}; the files' Ingresses are of class {}. Choose with --ingress-class NAME",
        found.join(", ")
    )
}

/// The Gateway the files lack, as ingress-nginx's listeners: HTTP 80 and, for TLS, HTTPS
/// 443 with the TLS Secrets the files hold (ReferenceGrants for other namespaces').
fn assume_gateway(
    out: &mut Store,
    target: &GatewayTarget,
    ingresses: &[&Arc<Ingress>],
    settings: &Settings,
    report: &mut Vec<String>,
) -> Result<(), String> {
    let mut secrets: BTreeSet<(String, String)> = BTreeSet::new();
    let mut missing: BTreeSet<String> = BTreeSet::new();
    let mut tls_wanted = false;
    for i in ingresses {
        let ns = i
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        for t in i.spec.iter().flat_map(|s| s.tls.iter().flatten()) {
            tls_wanted = true;
            let Some(name) = &t.secret_name else { continue };
            if out
                .secrets
                .contains_key(&ObjectKey::new(ns.as_str(), name.as_str()))
            {
                secrets.insert((ns.clone(), name.clone()));
            } else {
                missing.insert(format!("{ns}/{name}"));
            }
        }
    }
    let class_name = out
        .gateway_classes
        .values()
        .find(|c| c.spec.controller_name == settings.gateway_controller)
        .and_then(|c| c.metadata.name.clone());
    let class_name = match class_name {
        Some(n) => n,
        None => {
            insert(
                out,
                json!({
                    "apiVersion": "gateway.networking.k8s.io/v1",
                    "kind": "GatewayClass",
                    "metadata": {"name": "gatehouse-convert", "generation": 1},
                    "spec": {"controllerName": settings.gateway_controller},
                }),
            )?;
            "gatehouse-convert".to_string()
        }
    };
    let open = json!({"namespaces": {"from": "All"}});
    let mut listeners = vec![json!({
        "name": "http", "protocol": "HTTP", "port": settings.ingress_ports.0, "allowedRoutes": open.clone(),
    })];
    if !secrets.is_empty() {
        let refs: Vec<_> = secrets
            .iter()
            .map(|(ns, name)| json!({"kind": "Secret", "group": "", "namespace": ns, "name": name}))
            .collect();
        listeners.push(json!({
            "name": "https", "protocol": "HTTPS", "port": settings.ingress_ports.1,
            "tls": {"mode": "Terminate", "certificateRefs": refs}, "allowedRoutes": open,
        }));
        let namespaces: BTreeSet<&String> = secrets
            .iter()
            .map(|(ns, _)| ns)
            .filter(|ns| **ns != target.namespace)
            .collect();
        for ns in namespaces {
            insert(
                out,
                json!({
                    "apiVersion": "gateway.networking.k8s.io/v1beta1",
                    "kind": "ReferenceGrant",
                    "metadata": {"name": "gatehouse-convert", "namespace": ns, "generation": 1},
                    "spec": {
                        "from": [{"group": GATEWAY_GROUP, "kind": "Gateway", "namespace": target.namespace}],
                        "to": [{"group": "", "kind": "Secret"}],
                    },
                }),
            )?;
        }
    }
    insert(
        out,
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": target.name, "namespace": target.namespace, "generation": 1},
            "spec": {"gatewayClassName": class_name, "listeners": listeners},
        }),
    )?;
    let https = if secrets.is_empty() {
        String::new()
    } else {
        let names: Vec<String> = secrets.iter().map(|(ns, n)| format!("{ns}/{n}")).collect();
        format!(
            " and https (port {}, certificates {})",
            settings.ingress_ports.1,
            names.join(", ")
        )
    };
    let placeholder = (target.namespace.as_str(), target.name.as_str()) == PLACEHOLDER_GATEWAY;
    report.push(format!(
        "Gateway {}/{} is {}: it is assumed to have listeners http (port {}){https}, open to routes from every namespace; {}",
        target.namespace,
        target.name,
        if placeholder { "a placeholder" } else { "not in the files" },
        settings.ingress_ports.0,
        if placeholder {
            "replace its name in the parentRefs with your Gateway's, or rerun with --gateway NAMESPACE/NAME[:SECTION]"
        } else {
            "make sure the real one has them"
        }
    ));
    if tls_wanted && !missing.is_empty() {
        let missing: Vec<String> = missing.into_iter().collect();
        report.push(format!(
            "TLS Secrets not in the files: {} (cert-manager's, or made elsewhere): the Gateway's HTTPS listener needs them in its certificateRefs; --verify compares HTTPS only for the hosts whose Secrets it has",
            missing.join(", ")
        ));
    }
    Ok(())
}

fn controller(c: &k8s_openapi::api::networking::v1::IngressClass) -> Option<&str> {
    c.spec.as_ref().and_then(|s| s.controller.as_deref())
}

fn is_default(c: &k8s_openapi::api::networking::v1::IngressClass) -> bool {
    c.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
        .is_some_and(|v| v == "true")
}

fn ingress_class(
    name: &str,
    controller: &str,
    parameters: Option<&str>,
    default: bool,
) -> serde_json::Value {
    let mut class = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": name, "generation": 1},
        "spec": {"controller": controller},
    });
    if let Some(p) = parameters {
        class["spec"]["parameters"] = json!({
            "apiGroup": "gatehouse.dev", "kind": "IngressClassParameters", "name": p, "scope": "Cluster",
        });
    }
    if default {
        let mut annotations = serde_json::Map::new();
        annotations.insert(DEFAULT_CLASS_ANNOTATION.into(), "true".into());
        class["metadata"]["annotations"] = serde_json::Value::Object(annotations);
    }
    class
}

/// Inserts an object given as its JSON (made here from names already checked, never from
/// text spliced into YAML).
fn insert(out: &mut Store, value: serde_json::Value) -> Result<(), String> {
    let text = serde_json::to_string(&value).map_err(|e| e.to_string())?;
    let (objects, errors) =
        gatehouse_translate::yaml::parse_file(std::path::Path::new("convert-setup.json"), &text);
    if let Some(e) = errors.first() {
        return Err(format!("the set-up's own object does not load: {e}"));
    }
    for o in objects {
        out.insert(o);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{converted_store, to_yaml, verify};

    /// Ingresses as ingress-nginx users write them, with nothing of Gatehouse's: a class
    /// by `ingressClassName`, one by the old annotation, one with none, one of another
    /// controller's class; a Service with a named port and a TLS Secret.
    const PLAIN: &str = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: shop
  namespace: shop
  annotations: {nginx.ingress.kubernetes.io/proxy-body-size: 8m}
spec:
  ingressClassName: nginx
  tls: [{hosts: [shop.example.org], secretName: shop-tls}]
  rules:
  - host: shop.example.org
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}
      - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {number: 8080}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: blog
  namespace: blog
  annotations: {kubernetes.io/ingress.class: nginx}
spec:
  rules:
  - host: blog.example.org
    http:
      paths:
      - {path: /, pathType: ImplementationSpecific, backend: {service: {name: blog, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: wiki, namespace: wiki}
spec:
  rules:
  - host: wiki.example.org
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: wiki, port: {number: 3000}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: other, namespace: wiki}
spec:
  ingressClassName: traefik
  rules:
  - host: other.example.org
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: wiki, port: {number: 3000}}}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{name: http, port: 80, targetPort: 8080}]}
";

    /// The files: `yaml` and the TLS Secret `shop/shop-tls` (the migration example's
    /// self-signed certificate).
    fn store(yaml: &str) -> Store {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/migration");
        let secret = std::fs::read_to_string(dir.join("01-tls-secret.yaml"))
            .expect("the example's Secret")
            .replace(
                "name: example-com-tls\n  namespace: infra",
                "name: shop-tls\n  namespace: shop",
            );
        assert!(secret.contains("name: shop-tls"));
        let (store, errors) = gatehouse_translate::yaml::store_of(&[
            (std::path::PathBuf::from("plain.yaml"), yaml.into()),
            (std::path::PathBuf::from("secret.yaml"), secret),
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        store
    }

    /// Prepares, converts and verifies: the report, the conversion's YAML and the verdict.
    fn run(
        files: &Store,
        selection: &Selection,
    ) -> (
        Vec<String>,
        crate::convert::Conversion,
        String,
        crate::Verdict,
    ) {
        let settings = Settings::default();
        let prepared = prepare(files, selection, &settings).expect("something to convert");
        let conversion = crate::convert::convert(&prepared.store, &settings);
        let yaml = to_yaml(&conversion).expect("YAML");
        let converted = converted_store(&prepared.store, &conversion, &yaml).expect("loads");
        let verdict = verify(&prepared.store, &converted, &settings).expect("compiles");
        (prepared.report, conversion, yaml, verdict)
    }

    #[test]
    fn plain_ingress_nginx_ingresses_convert_without_set_up() {
        let (report, conversion, yaml, verdict) = run(&store(PLAIN), &Selection::default());
        let names: BTreeSet<String> = conversion.replaced.iter().map(|k| k.to_string()).collect();
        assert_eq!(
            names,
            BTreeSet::from(["shop/shop".into(), "blog/blog".into(), "wiki/wiki".into()]),
            "class nginx (either way of naming it) and the unclassed; not traefik's"
        );
        assert!(report[0].contains("3 Ingresses"), "{report:?}");
        assert!(
            report.iter().any(
                |l| l.contains("gateway-placeholder/replace-me is a placeholder")
                    && l.contains("--gateway")
            ),
            "{report:?}"
        );
        assert!(
            yaml.contains("name: replace-me") && yaml.contains("namespace: gateway-placeholder"),
            "{yaml}"
        );
        assert!(verdict.probes > 20, "{} probes", verdict.probes);
        assert!(verdict.differences.is_empty(), "{}", verdict.describe());
    }

    #[test]
    fn with_nothing_of_ingress_nginx_it_says_why() {
        let only_traefik: String = PLAIN
            .split("---\n")
            .filter(|d| !d.contains("kind: Ingress\n") || d.contains("traefik"))
            .collect::<Vec<_>>()
            .join("---\n");
        let e = prepare(
            &store(&only_traefik),
            &Selection::default(),
            &Settings::default(),
        )
        .expect_err("nothing to convert");
        assert!(
            e.contains("traefik (1)") && e.contains("--ingress-class"),
            "{e}"
        );
        let e = prepare(
            &Store::default(),
            &Selection::default(),
            &Settings::default(),
        )
        .expect_err("nothing to convert");
        assert!(e.contains("no Ingress"), "{e}");
        // Chosen by name, the other class converts.
        let selection = Selection {
            classes: vec!["traefik".into()],
            gateway: None,
        };
        let (_, conversion, _, verdict) = run(&store(&only_traefik), &selection);
        assert_eq!(conversion.replaced.len(), 1);
        assert!(verdict.differences.is_empty(), "{}", verdict.describe());
    }

    #[test]
    fn a_named_gateway_and_listener_take_the_routes() {
        let with_gateway = format!(
            "{PLAIN}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: public, namespace: infra}}
spec:
  gatewayClassName: gatehouse
  listeners:
  - {{name: web, protocol: HTTP, port: 80, allowedRoutes: {{namespaces: {{from: All}}}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: gatehouse}}
spec: {{controllerName: gatehouse.dev/gateway-controller}}
"
        );
        let selection = Selection {
            classes: vec![],
            gateway: Some("infra/public:web".parse().expect("a Gateway")),
        };
        let (report, conversion, yaml, _) = run(&store(&with_gateway), &selection);
        assert_eq!(conversion.replaced.len(), 3);
        assert!(
            !report.iter().any(|l| l.contains("placeholder")),
            "{report:?}"
        );
        assert!(
            yaml.contains("name: public") && yaml.contains("sectionName: web"),
            "{yaml}"
        );
        for bad in [
            "public",
            "infra/",
            "Infra/public",
            "infra/public:",
            "infra/pub lic",
        ] {
            assert!(bad.parse::<GatewayTarget>().is_err(), "{bad}");
        }
    }
}
