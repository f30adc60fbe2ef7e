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
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

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

/// Translates everything in the store, from scratch.
pub fn translate(store: &Store, settings: &Settings) -> Output {
    Translator::new(settings.clone()).translate(store)
}

/// Translation across versions of the store. The output is always what `translate` computes
/// from scratch (the golden tests and `incremental_equals_full` hold both to it); the work
/// is what changed. Objects are compared by identity (the store shares unchanged ones):
/// - HTTPRoutes changed: only they are translated again, and only the virtual hosts
///   they touch are rebuilt;
/// - Ingresses or their classes changed: the Ingresses are translated again (they share
///   hosts, canaries and regex mode), not the HTTPRoutes;
/// - EndpointSlices changed: only the clusters are built again;
/// - anything else (Gateways, Services, grants, policies, namespaces, Secrets...):
///   everything is translated again, and virtual hosts that come out equal stay shared.
pub struct Translator {
    settings: Settings,
    memo: Memo,
}

/// What the last translation computed, per unit, and its inputs.
#[derive(Default)]
struct Memo {
    /// The store last translated, without HTTPRoutes (`routes` has those); None at first.
    store: Option<Store>,
    /// Planned Gateways before any route attached: HTTPRoutes depend on them.
    gateways: BTreeMap<ObjectKey, gateways::PlannedGateway>,
    routes: BTreeMap<ObjectKey, (Arc<crate::gwapi::httproutes::HttpRoute>, Kept)>,
    ingresses: Option<Kept>,
    tables: tables::Tables,
    /// How many units use each cluster, and the cluster as last built.
    cluster_refs: BTreeMap<String, usize>,
    clusters: BTreeMap<String, backends::BuiltCluster>,
    /// Statuses of every unit's objects.
    status: BTreeMap<String, Arc<crate::status::ObjectStatus>>,
    /// Attachments per listener key (attachedRoutes).
    attached: HashMap<String, i32>,
}

/// A unit's contribution as the memo keeps it: its entries live in `Tables`.
#[derive(Default)]
struct Kept {
    attached: Vec<String>,
    placed: tables::Placements,
    certificates: Vec<(String, gatehouse_model::ir::SniCertificate)>,
    status: Vec<String>,
    clusters: Vec<String>,
}

/// Kinds whose change does not translate every HTTPRoute again: routes reach GatewayClasses,
/// Gateways and ListenerSets (and Ingresses, through the Gateways of their classes) only
/// as planned Gateways, which are compared as such. So a status written to a Gateway (a
/// new object, the same plan) costs no route a translation.
const ROUTE_CONTEXT_EXEMPT: [&str; 8] = [
    "HTTPRoute",
    "EndpointSlice",
    "GatewayClass",
    "Gateway",
    "ListenerSet",
    "Ingress",
    "IngressClass",
    "IngressClassParameters",
];
const INGRESS_INPUTS: [&str; 3] = ["Ingress", "IngressClass", "IngressClassParameters"];

impl Translator {
    pub fn new(settings: Settings) -> Self {
        Translator {
            settings,
            memo: Memo::default(),
        }
    }

    pub fn translate(&mut self, store: &Store) -> Output {
        let mut status = StatusReport::default();
        let mut backends = backends::Backends::new(store);

        // Ingresses may need a default Gateway per class; plan those with the real ones.
        let ingress_plan = ingress::plan_classes(store, &self.settings, &mut status);
        let mut gateways = gateways::plan(
            store,
            &self.settings,
            &ingress_plan.default_gateways,
            &mut status,
        );
        let policies = policy::TrafficPolicies::plan(store);

        let changed = match &self.memo.store {
            Some(previous) => store.changed_kinds(previous),
            None => vec!["everything"],
        };
        let everything = self.memo.gateways != gateways
            || changed.iter().any(|k| !ROUTE_CONTEXT_EXEMPT.contains(k));
        let ingresses_changed = everything || changed.iter().any(|k| INGRESS_INPUTS.contains(k));
        let endpoints_changed = everything || changed.contains(&"EndpointSlice");

        // HTTPRoutes: take out the contributions of those gone or changed, add the new.
        if everything {
            for (key, (_, kept)) in std::mem::take(&mut self.memo.routes) {
                self.retract(&tables::Unit::HttpRoute(key), &kept);
            }
        }
        // Both maps are in key order: one walk over both finds the routes gone, new and
        // replaced, comparing objects by pointer.
        let (mut gone, mut recompute) = (Vec::new(), Vec::new());
        let mut known = self.memo.routes.iter().peekable();
        for (key, route) in &store.http_routes {
            // The same object has the same key: no need to compare keys.
            if known
                .next_if(|(_, (seen, _))| Arc::ptr_eq(seen, route))
                .is_some()
            {
                continue;
            }
            while let Some((k, _)) = known.next_if(|(k, _)| *k < key) {
                gone.push(k.clone());
            }
            match known.next_if(|(k, _)| *k == key) {
                Some((_, (seen, _))) if Arc::ptr_eq(seen, route) => {}
                _ => recompute.push((key, route)),
            }
        }
        gone.extend(known.map(|(k, _)| k.clone()));
        for key in gone {
            if let Some((_, kept)) = self.memo.routes.remove(&key) {
                self.retract(&tables::Unit::HttpRoute(key), &kept);
            }
        }
        for (key, route) in recompute {
            let unit = tables::Unit::HttpRoute(key.clone());
            if let Some((_, kept)) = self.memo.routes.remove(key) {
                self.retract(&unit, &kept);
            }
            let mut out = tables::Contribution::default();
            httproute::attach(store, &policies, route, &gateways, &mut backends, &mut out);
            out.clusters = backends.take_used();
            let kept = self.add(&unit, out);
            self.memo.routes.insert(key.clone(), (route.clone(), kept));
        }

        // Ingresses, all together.
        if ingresses_changed {
            if let Some(kept) = self.memo.ingresses.take() {
                self.retract(&tables::Unit::Ingresses, &kept);
            }
            let mut out = tables::Contribution::default();
            ingress::attach_all(store, &ingress_plan, &gateways, &mut backends, &mut out);
            out.clusters = backends.take_used();
            self.memo.ingresses = Some(self.add(&tables::Unit::Ingresses, out));
        }

        // Clusters in use: built in this translation, remembered, or built again from
        // their recipes when endpoints changed.
        let mut built = backends.take_built();
        self.memo
            .clusters
            .retain(|k, _| self.memo.cluster_refs.contains_key(k));
        for key in self.memo.cluster_refs.keys() {
            if built.contains_key(key) {
                continue;
            }
            match self.memo.clusters.get(key) {
                Some(c) if endpoints_changed => backends.rebuild(&c.recipe),
                Some(c) => drop(built.insert(key.clone(), c.clone())),
                None => {}
            }
        }
        built.extend(backends.take_built());
        built.retain(|k, _| self.memo.cluster_refs.contains_key(k));
        self.memo.clusters = built;

        self.memo.gateways = gateways.clone();
        self.memo.store = Some(store.without(&["HTTPRoute"]));

        // What the units attached and offered, onto the planned listeners.
        let ingress_certificates = self
            .memo
            .ingresses
            .as_ref()
            .map(|k| k.certificates.as_slice())
            .unwrap_or_default();
        for l in gateways.values_mut().flat_map(|g| g.listeners.iter_mut()) {
            l.attached_routes = self.memo.attached.get(&l.key).copied().unwrap_or(0);
            l.certificates.extend(
                ingress_certificates
                    .iter()
                    .filter(|(key, _)| *key == l.key)
                    .map(|(_, c)| c.clone()),
            );
        }

        policies.report(store, &gateways, &mut status);
        let mut config = Config::default();
        gateways::finish(&gateways, &mut config, &mut status, store);
        config.route_tables = self.memo.tables.build(
            gateways
                .values()
                .flat_map(|g| &g.listeners)
                .filter(|l| l.served)
                .map(|l| l.key.as_str()),
        );
        backends.report_tls(&self.memo.clusters, &config, &mut status);
        config.clusters = self
            .memo
            .clusters
            .values()
            .map(|c| c.cluster.clone())
            .collect();
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
        let mut objects = self.memo.status.clone();
        objects.append(&mut status.objects);
        Output {
            config,
            status: StatusReport { objects },
            dataplanes,
        }
    }

    /// Puts a unit's contribution into the memo.
    fn add(&mut self, unit: &tables::Unit, out: tables::Contribution) -> Kept {
        for l in &out.attached {
            *self.memo.attached.entry(l.clone()).or_default() += 1;
        }
        for c in &out.clusters {
            *self.memo.cluster_refs.entry(c.clone()).or_default() += 1;
        }
        let status: Vec<String> = out.status.objects.keys().cloned().collect();
        self.memo.status.extend(out.status.objects);
        Kept {
            placed: self.memo.tables.add(unit, out.entries),
            attached: out.attached,
            certificates: out.certificates,
            status,
            clusters: out.clusters,
        }
    }

    /// Takes a unit's contribution out of the memo.
    fn retract(&mut self, unit: &tables::Unit, kept: &Kept) {
        self.memo.tables.retract(unit, &kept.placed);
        for l in &kept.attached {
            if let Some(n) = self.memo.attached.get_mut(l) {
                *n -= 1;
                if *n == 0 {
                    self.memo.attached.remove(l);
                }
            }
        }
        for c in &kept.clusters {
            if let Some(n) = self.memo.cluster_refs.get_mut(c) {
                *n -= 1;
                if *n == 0 {
                    self.memo.cluster_refs.remove(c);
                }
            }
        }
        for key in &kept.status {
            self.memo.status.remove(key);
        }
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
