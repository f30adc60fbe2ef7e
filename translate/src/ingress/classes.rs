//! IngressClasses: which are ours, the Gateway serving each (named by the class's
//! parameters, or made for it), what the class decides when an Ingress's annotations do
//! not (HTTPS redirect, HSTS, listeners), and which Ingresses are ours to serve.

use crate::gwapi::gateways::{
    Gateway, GatewayListeners, GatewayListenersAllowedRoutes,
    GatewayListenersAllowedRoutesNamespaces, GatewayListenersAllowedRoutesNamespacesFrom,
    GatewaySpec,
};
use crate::meta::age;
use crate::nginx::{self, IngressSettings};
use crate::settings::{GATEWAY_GROUP, Settings};
use crate::status::{Condition, StatusReport, reason};
use crate::store::{ObjectKey, Store};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::{BTreeMap, BTreeSet};

/// An IngressClass with this annotation "true" serves Ingresses that name no class.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// The class an Ingress names by annotation (before spec.ingressClassName).
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// Namespace of the Gateways made for IngressClasses without parameters.
pub const DEFAULT_GATEWAY_NAMESPACE: &str = "gatehouse-system";

/// Our IngressClasses: the Gateway serving each, and what each decides by default.
#[derive(Debug, Default)]
pub struct IngressPlan {
    /// Our IngressClasses and the Gateway serving each.
    classes: BTreeMap<String, ObjectKey>,
    /// Classes whose IngressClassParameters turn the HTTPS redirect off by default.
    no_ssl_redirect: BTreeSet<String>,
    /// Classes whose IngressClassParameters set HSTS (others get nginx's defaults).
    hsts: BTreeMap<String, gatehouse_api::Hsts>,
    /// Classes whose Gateway serves them on some listeners only (by name).
    sections: BTreeMap<String, Vec<String>>,
    default_class: Option<String>,
    /// Gateways made for classes without parameters.
    pub default_gateways: Vec<Gateway>,
}

/// Plans every IngressClass of ours (status included), with a Gateway made for each class
/// whose parameters name none.
pub fn plan_classes(store: &Store, settings: &Settings, status: &mut StatusReport) -> IngressPlan {
    let mut plan = IngressPlan::default();
    let ours: Vec<_> = store
        .ingress_classes
        .values()
        .filter(|c| {
            c.spec.as_ref().and_then(|s| s.controller.as_deref())
                == Some(settings.ingress_controller.as_str())
        })
        .collect();
    // Several default classes: the oldest wins, deterministically.
    plan.default_class = ours
        .iter()
        .filter(|c| {
            c.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true")
        })
        .min_by_key(|c| age(&c.metadata))
        .and_then(|c| c.metadata.name.clone());

    for class in ours {
        let spec = class.spec.as_ref();
        let name = class.metadata.name.clone().unwrap_or_default();
        let st = status.entry(
            "IngressClass",
            "",
            &name,
            class.metadata.generation.unwrap_or(0),
        );
        let wants_tls = || {
            store.ingresses.values().any(|i| {
                class_name(i, plan.default_class.as_deref()) == Some(name.as_str())
                    && i.spec
                        .as_ref()
                        .and_then(|s| s.tls.as_ref())
                        .is_some_and(|t| !t.is_empty())
            })
        };
        let mut made = None;
        let gateway = match spec.and_then(|s| s.parameters.as_ref()) {
            Some(p) if p.api_group.as_deref() == Some(GATEWAY_GROUP) && p.kind == "Gateway" => {
                match p.namespace.as_deref() {
                    Some(ns) => ObjectKey::new(ns, p.name.as_str()),
                    None => {
                        st.set(Condition::new(
                            reason::ACCEPTED,
                            false,
                            reason::INVALID_PARAMETERS,
                            "spec.parameters: a Gateway needs scope Namespace and a namespace",
                        ));
                        continue;
                    }
                }
            }
            Some(p)
                if p.api_group.as_deref() == Some(gatehouse_api::GROUP)
                    && p.kind == "IngressClassParameters" =>
            {
                match store
                    .ingress_class_parameters
                    .get(&ObjectKey::new("", p.name.as_str()))
                {
                    Some(params) => {
                        if params.spec.ssl_redirect == Some(false) {
                            plan.no_ssl_redirect.insert(name.clone());
                        }
                        if let Some(h) = &params.spec.hsts {
                            plan.hsts.insert(name.clone(), h.clone());
                        }
                        match &params.spec.gateway_ref {
                            Some(g) => {
                                if !g.section_names.is_empty() {
                                    plan.sections.insert(name.clone(), g.section_names.clone());
                                }
                                ObjectKey::new(g.namespace.as_str(), g.name.as_str())
                            }
                            None => {
                                let gw = default_gateway(&name, wants_tls(), settings);
                                let key = ObjectKey::of(&gw);
                                made = Some(gw);
                                key
                            }
                        }
                    }
                    None => {
                        st.set(Condition::new(
                            reason::ACCEPTED,
                            false,
                            reason::INVALID_PARAMETERS,
                            format!(
                                "spec.parameters: IngressClassParameters {} not found",
                                p.name
                            ),
                        ));
                        continue;
                    }
                }
            }
            Some(p) => {
                st.set(Condition::new(
                    reason::ACCEPTED,
                    false,
                    reason::INVALID_PARAMETERS,
                    format!(
                        "spec.parameters: {}/{} is not supported; name a {}/IngressClassParameters or a {GATEWAY_GROUP}/Gateway",
                        p.api_group.as_deref().unwrap_or(""),
                        p.kind,
                        gatehouse_api::GROUP,
                    ),
                ));
                continue;
            }
            None => {
                let gw = default_gateway(&name, wants_tls(), settings);
                let key = ObjectKey::of(&gw);
                made = Some(gw);
                key
            }
        };
        plan.default_gateways.extend(made);
        st.set(Condition::new(
            reason::ACCEPTED,
            true,
            reason::ACCEPTED,
            format!("Ingresses of this class are served by Gateway {gateway}"),
        ));
        plan.classes.insert(name, gateway);
    }
    plan
}

/// The Gateway a class without parameters gets: HTTP on 80 (and HTTPS on 443 when any of
/// its Ingresses asks for TLS), open to every namespace.
fn default_gateway(class: &str, wants_tls: bool, settings: &Settings) -> Gateway {
    let listener = |name: &str, port: i32, protocol: &str| GatewayListeners {
        name: name.into(),
        port,
        protocol: protocol.into(),
        allowed_routes: Some(GatewayListenersAllowedRoutes {
            kinds: None,
            namespaces: Some(GatewayListenersAllowedRoutesNamespaces {
                from: Some(GatewayListenersAllowedRoutesNamespacesFrom::All),
                selector: None,
            }),
        }),
        ..Default::default()
    };
    let mut listeners = vec![listener("http", settings.ingress_ports.0.into(), "HTTP")];
    if wants_tls {
        listeners.push(listener("https", settings.ingress_ports.1.into(), "HTTPS"));
    }
    Gateway {
        metadata: ObjectMeta {
            name: Some(format!("ingress-{class}")),
            namespace: Some(DEFAULT_GATEWAY_NAMESPACE.into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: GatewaySpec {
            gateway_class_name: String::new(),
            listeners,
            ..Default::default()
        },
        status: None,
    }
}

/// The class an Ingress asks for: spec.ingressClassName, else the legacy annotation,
/// else the default class.
pub fn class_name<'a>(ingress: &'a Ingress, default_class: Option<&'a str>) -> Option<&'a str> {
    ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
        .or_else(|| {
            ingress
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
                .map(String::as_str)
        })
        .or(default_class)
}

/// The Ingresses of our classes with their Gateways. Ingresses of classes that are not
/// ours are not ours to touch, status included. Annotations are read once here; host
/// facts, canaries and attachment share them.
pub fn served<'a>(store: &'a Store, plan: &'a IngressPlan) -> Vec<ServedIngress<'a>> {
    store
        .ingresses
        .values()
        .filter_map(|i| {
            let class = class_name(i, plan.default_class.as_deref())?;
            Some(ServedIngress {
                ingress: i,
                gateway: plan.classes.get(class)?,
                annotations: nginx::parse(
                    i.metadata.annotations.as_ref().unwrap_or(&BTreeMap::new()),
                ),
            })
        })
        .collect()
}

impl IngressPlan {
    /// The class defaults of an Ingress: ssl-redirect on unless its IngressClassParameters
    /// turn it off; HSTS as they say, or nginx's default (on).
    pub fn defaults(&self, i: &Ingress) -> ClassDefaults {
        let class = class_name(i, self.default_class.as_deref());
        let h = class
            .and_then(|c| self.hsts.get(c))
            .cloned()
            .unwrap_or_default();
        ClassDefaults {
            hsts: crate::policy::hsts(&h),
            sections: class
                .and_then(|c| self.sections.get(c))
                .cloned()
                .unwrap_or_default(),
            ssl_redirect: class.is_none_or(|c| !self.no_ssl_redirect.contains(c)),
        }
    }
}

/// What an Ingress's class decides when its annotations do not.
pub struct ClassDefaults {
    /// The Gateway's listeners serving the class; all when empty.
    pub sections: Vec<String>,
    /// ssl-redirect when the Ingress does not say (true unless the parameters turn it off).
    pub ssl_redirect: bool,
    /// HSTS on answers over HTTPS to hosts with TLS; None when turned off.
    pub hsts: Option<gatehouse_model::ir::Hsts>,
}

impl ClassDefaults {
    /// Whether plain HTTP to a host is redirected to HTTPS: force-ssl-redirect, or
    /// ssl-redirect (the class's default when unset) for a host with TLS.
    pub fn to_https(&self, n: &IngressSettings, host_has_tls: bool) -> bool {
        n.force_ssl_redirect || (n.ssl_redirect.unwrap_or(self.ssl_redirect) && host_has_tls)
    }
}

/// An Ingress of one of our classes, the Gateway serving it, and its annotations read.
pub struct ServedIngress<'a> {
    /// The Ingress.
    pub ingress: &'a Ingress,
    /// The Gateway its class names (or was made for it).
    pub gateway: &'a ObjectKey,
    /// Its annotations, read once.
    pub annotations: nginx::Parsed,
}
