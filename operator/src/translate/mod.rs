//! Translation: store in, (model config, status report) out.
//!
//! A pure function: no I/O, no clock, no randomness. Gateway API and Ingress are two
//! front-ends that attach routes to the same planned listeners, so both APIs meet in one
//! route table per listener. Tested with YAML in and model plus conditions out.

mod backend_tls;
mod backends;
mod frontend;
mod gateways;
mod hostnames;
mod httproute;
mod ingress;
pub mod nginx;
pub mod policy;
mod tables;

use crate::status::StatusReport;
use crate::store::{ObjectKey, Store};
use gatehouse_api::GatewayParametersSpec;
use gatehouse_model::ir::Config;
use std::collections::BTreeMap;
use std::net::IpAddr;

pub use hostnames::intersect;
pub use ingress::convert;

#[derive(Debug, Clone)]
pub struct Settings {
    /// GatewayClasses with this controllerName are ours.
    pub gateway_controller: String,
    /// IngressClasses with this controller are ours.
    pub ingress_controller: String,
    /// Address Gateway listeners bind when a Gateway has no spec.addresses.
    pub default_address: IpAddr,
    /// HTTP and HTTPS ports of the default Gateway made for an IngressClass without
    /// parameters.
    pub ingress_ports: (u16, u16),
    /// Where data planes run, which decides addresses.
    pub infrastructure: Infrastructure,
}

/// Where data planes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Infrastructure {
    /// On this machine (standalone): listeners bind the Gateway's address, and all
    /// Gateways share one host, so two cannot use one address and port.
    #[default]
    Host,
    /// One data plane Deployment per Gateway behind a LoadBalancer Service: listeners bind
    /// every address of their pod, and the Gateway's address is the Service's.
    Kubernetes,
}

/// Name of the Deployment, Service and ServiceAccount of a Gateway's data planes.
pub fn infrastructure_name(gateway: &str) -> String {
    format!("gatehouse-{gateway}")
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            gateway_controller: GATEWAY_CONTROLLER.into(),
            ingress_controller: INGRESS_CONTROLLER.into(),
            default_address: IpAddr::from([127, 0, 0, 1]),
            ingress_ports: (80, 443),
            infrastructure: Infrastructure::Host,
        }
    }
}

pub const GATEWAY_CONTROLLER: &str = "gatehouse.dev/gateway-controller";
pub const INGRESS_CONTROLLER: &str = "gatehouse.dev/ingress-controller";
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    pub config: Config,
    pub status: StatusReport,
    /// The data planes every accepted Gateway (an API object) should have.
    pub dataplanes: BTreeMap<ObjectKey, DataPlanePlan>,
}

/// What a Gateway's data planes look like: its resolved parameters, and the ports its
/// listeners (its own and its ListenerSets') use.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct DataPlanePlan {
    pub parameters: GatewayParametersSpec,
    pub ports: Vec<u16>,
}

/// Translates everything in the store.
pub fn translate(store: &Store, settings: &Settings) -> Output {
    let mut status = StatusReport::default();
    let mut backends = backends::Backends::new(store);

    // Ingresses may need a default Gateway per class; plan those with the real ones.
    let ingress_plan = ingress::plan_classes(store, settings, &mut status);
    let mut gateways = gateways::plan(store, settings, &ingress_plan.default_gateways, &mut status);

    let mut entries = tables::Entries::default();
    let policies = policy::TrafficPolicies::plan(store);
    httproute::attach_all(
        store,
        &policies,
        &mut gateways,
        &mut backends,
        &mut entries,
        &mut status,
    );
    ingress::attach_all(
        store,
        &ingress_plan,
        &mut gateways,
        &mut backends,
        &mut entries,
        &mut status,
    );

    policies.report(store, &gateways, &mut status);
    let mut config = Config::default();
    gateways::finish(&gateways, &mut config, &mut status, store);
    config.route_tables = tables::build(&gateways, entries);
    backends.report_tls(&config, &mut status);
    config.clusters = backends.finish();
    config.certificates = certificates(store, &config);
    let dataplanes = gateways
        .values()
        .filter(|g| g.accepted && !g.synthetic)
        .map(|g| {
            let ports: std::collections::BTreeSet<u16> = g
                .listeners
                .iter()
                .filter(|l| l.served)
                .map(|l| l.port)
                .collect();
            let plan = DataPlanePlan {
                parameters: g.dataplane.clone(),
                ports: ports.into_iter().collect(),
            };
            (g.key.clone(), plan)
        })
        .collect();
    Output {
        config,
        status,
        dataplanes,
    }
}

/// The material of every certificate a listener offers, each once.
fn certificates(store: &Store, config: &Config) -> Vec<gatehouse_model::ir::Certificate> {
    let keys: std::collections::BTreeSet<&str> = config
        .listeners
        .iter()
        .flat_map(|l| {
            l.certificates
                .iter()
                .map(|c| c.certificate.as_str())
                .chain(l.backend_client_certificate.as_deref())
        })
        .collect();
    keys.into_iter()
        .filter_map(|k| {
            let (ns, name) = k.split_once('/')?;
            backends::certificate_material(store, ns, name).ok()
        })
        .collect()
}

/// "namespace/name".
pub(crate) fn join(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Creation time and identity of an object, for precedence and conflict ordering:
/// oldest first, then namespace/name alphabetically.
pub(crate) type Age = (Option<k8s_openapi::jiff::Timestamp>, String, String);

pub(crate) fn age(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Age {
    (
        meta.creation_timestamp.as_ref().map(|t| t.0),
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests;
