//! The translator: store in, (model config, status report, data planes wanted) out, from
//! scratch (`translate`) or across versions of the store (`Translator`), computing again
//! only what changed. Both give the same output; `incremental_equals_full` holds them to it.

use crate::settings::Settings;
use crate::status::StatusReport;
use crate::store::{ObjectKey, Store};
use crate::{backends, gateways, httproute, ingress, policy, route_tables};
use gatehouse_api::GatewayParametersSpec;
use gatehouse_model::ir::Config;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What translation gives.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    /// The model every data plane compiles (each is sent what its Gateways use).
    pub config: Config,
    /// Every object's status, before data planes report (Programmed pending).
    pub status: StatusReport,
    /// The data planes every accepted Gateway (an API object) should have.
    pub dataplanes: BTreeMap<ObjectKey, DataPlanePlan>,
}

/// What a Gateway's data planes look like: its resolved parameters, and the ports its
/// listeners (its own and its ListenerSets') use.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct DataPlanePlan {
    /// The class's parameters, overridden field by field by the Gateway's.
    pub parameters: GatewayParametersSpec,
    /// The ports of its served listeners, each once, in order.
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
    last: LastTranslation,
}

/// What the last translation computed, per unit, and its inputs.
#[derive(Default)]
struct LastTranslation {
    /// The store last translated, without HTTPRoutes (`routes` has those); None at first.
    store: Option<Store>,
    /// Planned Gateways before any route attached: HTTPRoutes depend on them.
    gateways: BTreeMap<ObjectKey, gateways::PlannedGateway>,
    routes: BTreeMap<
        ObjectKey,
        (
            Arc<crate::gwapi::httproutes::HttpRoute>,
            RecordedContribution,
        ),
    >,
    ingresses: Option<RecordedContribution>,
    tables: route_tables::Tables,
    /// How many units use each cluster, and the cluster as last built.
    cluster_refs: BTreeMap<String, usize>,
    clusters: BTreeMap<String, backends::BuiltCluster>,
    /// Statuses of every unit's objects.
    status: BTreeMap<String, Arc<crate::status::ObjectStatus>>,
    /// Attachments per listener key (attachedRoutes).
    attached: HashMap<String, i32>,
}

/// A unit's contribution as the last translation recorded it: its entries live in `Tables`.
#[derive(Default)]
struct RecordedContribution {
    attached: Vec<String>,
    placed: route_tables::Placements,
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
    /// A translator that has translated nothing yet.
    pub fn new(settings: Settings) -> Self {
        Translator {
            settings,
            last: LastTranslation::default(),
        }
    }

    /// Translates a version of the store, computing again only what changed since the
    /// last version this translator saw.
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

        let changed = match &self.last.store {
            Some(previous) => store.changed_kinds(previous),
            None => vec!["everything"],
        };
        let everything = self.last.gateways != gateways
            || changed.iter().any(|k| !ROUTE_CONTEXT_EXEMPT.contains(k));
        let ingresses_changed = everything || changed.iter().any(|k| INGRESS_INPUTS.contains(k));
        let endpoints_changed = everything || changed.contains(&"EndpointSlice");

        // HTTPRoutes: take out the contributions of those gone or changed, add the new.
        if everything {
            for (key, (_, kept)) in std::mem::take(&mut self.last.routes) {
                self.retract(&route_tables::Unit::HttpRoute(key), &kept);
            }
        }
        let (gone, recompute) = self.changed_routes(store);
        for key in gone {
            if let Some((_, kept)) = self.last.routes.remove(&key) {
                self.retract(&route_tables::Unit::HttpRoute(key), &kept);
            }
        }
        for (key, route) in recompute {
            let unit = route_tables::Unit::HttpRoute(key.clone());
            if let Some((_, kept)) = self.last.routes.remove(key) {
                self.retract(&unit, &kept);
            }
            let mut out = route_tables::Contribution::default();
            httproute::attach(store, &policies, route, &gateways, &mut backends, &mut out);
            out.clusters = backends.take_used();
            let kept = self.add(&unit, out);
            self.last.routes.insert(key.clone(), (route.clone(), kept));
        }

        // Ingresses, all together.
        if ingresses_changed {
            if let Some(kept) = self.last.ingresses.take() {
                self.retract(&route_tables::Unit::Ingresses, &kept);
            }
            let mut out = route_tables::Contribution::default();
            ingress::attach_all(store, &ingress_plan, &gateways, &mut backends, &mut out);
            out.clusters = backends.take_used();
            self.last.ingresses = Some(self.add(&route_tables::Unit::Ingresses, out));
        }

        self.keep_clusters(&mut backends, endpoints_changed);

        self.last.gateways = gateways.clone();
        self.last.store = Some(store.without(&["HTTPRoute"]));

        // What the units attached and offered, onto the planned listeners.
        let ingress_certificates = self
            .last
            .ingresses
            .as_ref()
            .map(|k| k.certificates.as_slice())
            .unwrap_or_default();
        for l in gateways.values_mut().flat_map(|g| g.listeners.iter_mut()) {
            l.attached_routes = self.last.attached.get(&l.key).copied().unwrap_or(0);
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
        config.route_tables = self.last.tables.build(
            gateways
                .values()
                .flat_map(|g| &g.listeners)
                .filter(|l| l.served)
                .map(|l| l.key.as_str()),
        );
        backends.report_tls(&self.last.clusters, &config, &mut status);
        config.clusters = self
            .last
            .clusters
            .values()
            .map(|c| c.cluster.clone())
            .collect();
        config.certificates = certificates(store, &config);
        let dataplanes = dataplanes(&gateways);
        let mut objects = self.last.status.clone();
        objects.append(&mut status.objects);
        Output {
            config,
            status: StatusReport { objects },
            dataplanes,
        }
    }

    /// The HTTPRoutes gone since the last translation, and those new or replaced. Both maps
    /// are in key order: one walk over both finds them, comparing objects by pointer.
    #[allow(clippy::type_complexity)]
    fn changed_routes<'s>(
        &self,
        store: &'s Store,
    ) -> (
        Vec<ObjectKey>,
        Vec<(&'s ObjectKey, &'s Arc<crate::gwapi::httproutes::HttpRoute>)>,
    ) {
        let (mut gone, mut recompute) = (Vec::new(), Vec::new());
        let mut known = self.last.routes.iter().peekable();
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
        (gone, recompute)
    }

    /// Clusters in use: built in this translation, remembered, or built again from their
    /// recipes when endpoints changed.
    fn keep_clusters(&mut self, backends: &mut backends::Backends<'_>, endpoints_changed: bool) {
        let mut built = backends.take_built();
        self.last
            .clusters
            .retain(|k, _| self.last.cluster_refs.contains_key(k));
        for key in self.last.cluster_refs.keys() {
            if built.contains_key(key) {
                continue;
            }
            match self.last.clusters.get(key) {
                Some(c) if endpoints_changed => backends.rebuild(&c.recipe),
                Some(c) => drop(built.insert(key.clone(), c.clone())),
                None => {}
            }
        }
        built.extend(backends.take_built());
        built.retain(|k, _| self.last.cluster_refs.contains_key(k));
        self.last.clusters = built;
    }

    /// Records a unit's contribution.
    fn add(
        &mut self,
        unit: &route_tables::Unit,
        out: route_tables::Contribution,
    ) -> RecordedContribution {
        for l in &out.attached {
            *self.last.attached.entry(l.clone()).or_default() += 1;
        }
        for c in &out.clusters {
            *self.last.cluster_refs.entry(c.clone()).or_default() += 1;
        }
        let status: Vec<String> = out.status.objects.keys().cloned().collect();
        self.last.status.extend(out.status.objects);
        RecordedContribution {
            placed: self.last.tables.add(unit, out.entries),
            attached: out.attached,
            certificates: out.certificates,
            status,
            clusters: out.clusters,
        }
    }

    /// Takes a unit's recorded contribution back out.
    fn retract(&mut self, unit: &route_tables::Unit, kept: &RecordedContribution) {
        self.last.tables.retract(unit, &kept.placed);
        for l in &kept.attached {
            if let Some(n) = self.last.attached.get_mut(l) {
                *n -= 1;
                if *n == 0 {
                    self.last.attached.remove(l);
                }
            }
        }
        for c in &kept.clusters {
            if let Some(n) = self.last.cluster_refs.get_mut(c) {
                *n -= 1;
                if *n == 0 {
                    self.last.cluster_refs.remove(c);
                }
            }
        }
        for key in &kept.status {
            self.last.status.remove(key);
        }
    }
}

/// The data planes every accepted Gateway (an API object) should have: its parameters and
/// the ports its served listeners use.
fn dataplanes(
    gateways: &BTreeMap<ObjectKey, gateways::PlannedGateway>,
) -> BTreeMap<ObjectKey, DataPlanePlan> {
    gateways
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
        .collect()
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
            crate::tls_material::certificate_material(store, ns, name).ok()
        })
        .collect()
}
