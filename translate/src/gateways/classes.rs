//! GatewayClasses: which are ours and accepted, and the data plane parameters a
//! `parametersRef` names (a class's defaults, a Gateway's overrides).

use crate::settings::Settings;
use crate::status::{Condition, StatusReport, reason};
use crate::store::{ObjectKey, Store};
use gatehouse_api::GatewayParametersSpec;
use std::collections::BTreeMap;

/// GatewayClasses whose controllerName is ours and that are accepted, with the data plane
/// parameters their `parametersRef` names (defaults for their Gateways).
pub fn classes(
    store: &Store,
    settings: &Settings,
    status: &mut StatusReport,
) -> BTreeMap<String, GatewayParametersSpec> {
    let mut ours = BTreeMap::new();
    for class in store.gateway_classes.values() {
        if class.spec.controller_name != settings.gateway_controller {
            continue;
        }
        let name = class.metadata.name.clone().unwrap_or_default();
        let generation = class.metadata.generation.unwrap_or(0);
        let st = status.entry("GatewayClass", "", &name, generation);
        let parameters = match &class.spec.parameters_ref {
            None => Ok(GatewayParametersSpec::default()),
            Some(p) => match p.namespace.as_deref() {
                None if p.group == gatehouse_api::GROUP && p.kind == "GatewayParameters" => Err(
                    "parametersRef: GatewayParameters are namespaced; set parametersRef.namespace"
                        .to_string(),
                ),
                namespace => parameters(store, &p.group, &p.kind, namespace.unwrap_or(""), &p.name),
            },
        };
        match parameters {
            Err(message) => st.set(Condition::new(
                reason::ACCEPTED,
                false,
                reason::INVALID_PARAMETERS,
                message,
            )),
            Ok(parameters) => {
                st.set(Condition::new(
                    reason::ACCEPTED,
                    true,
                    reason::ACCEPTED,
                    "Accepted by Gatehouse",
                ));
                ours.insert(name, parameters);
            }
        }
    }
    ours
}

/// The GatewayParameters a parametersRef names, or why it cannot be used.
pub fn parameters(
    store: &Store,
    group: &str,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<GatewayParametersSpec, String> {
    if group != gatehouse_api::GROUP || kind != "GatewayParameters" {
        return Err(format!(
            "parametersRef: {group}/{kind} is not supported; name a {}/GatewayParameters",
            gatehouse_api::GROUP
        ));
    }
    store
        .gateway_parameters
        .get(&ObjectKey::new(namespace, name))
        .map(|p| p.spec.clone())
        .ok_or_else(|| format!("parametersRef: GatewayParameters {namespace}/{name} not found"))
}
