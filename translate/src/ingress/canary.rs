//! Canary Ingresses (ingress-nginx `canary: "true"`): each rule joins the route of the
//! Ingress with the same host, path and pathType on the same Gateway, as header, cookie and
//! weighted variants in nginx's order.

use super::classes::ServedIngress;
use crate::backends::Backends;
use crate::nginx;
use crate::status::{Condition, StatusReport, reason};
use crate::store::ObjectKey;
use gatehouse_model::ir::{
    BackendTarget, Route, RouteMatch, StringMatch, ValueMatch, WeightedBackend,
};
use k8s_openapi::api::networking::v1::{Ingress, IngressServiceBackend};
use std::collections::{BTreeMap, BTreeSet};

/// Where a canary Ingress applies: (Gateway, host, path as written, pathType).
pub type CanaryKey = (ObjectKey, String, String, String);

/// The Service path of the canary Ingress that joins each (Gateway, host, path, pathType):
/// the first in store order, as ingress-nginx uses one. Paths without a Service join
/// nothing. Translation and `convert` both read canaries from here.
#[allow(clippy::type_complexity)]
pub fn canary_paths<'a>(
    ingresses: &'a [ServedIngress<'a>],
) -> BTreeMap<
    CanaryKey,
    (
        &'a ServedIngress<'a>,
        &'a nginx::Canary,
        &'a IngressServiceBackend,
    ),
> {
    let mut out = BTreeMap::new();
    for o in ingresses {
        let Some(settings) = &o.annotations.ingress.canary else {
            continue;
        };
        for rule in o.ingress.spec.iter().flat_map(|s| s.rules.iter().flatten()) {
            let host = rule.host.clone().unwrap_or_default().to_ascii_lowercase();
            for p in rule.http.iter().flat_map(|h| &h.paths) {
                let Some(svc) = &p.backend.service else {
                    continue;
                };
                let path = p.path.clone().unwrap_or_else(|| "/".into());
                out.entry((o.gateway.clone(), host.clone(), path, p.path_type.clone()))
                    .or_insert((o, settings, svc));
            }
        }
    }
    out
}

/// A canary Ingress's rule: its settings and its backend, resolved.
pub struct CanaryRule {
    ingress: ObjectKey,
    settings: nginx::Canary,
    backends: Vec<WeightedBackend>,
}

/// Canary Ingresses (ingress-nginx `canary: "true"`): each rule joins the route of the
/// Ingress with the same host, path and pathType on the same Gateway.
#[derive(Default)]
pub struct Canaries {
    rules: BTreeMap<CanaryKey, CanaryRule>,
    all: BTreeSet<ObjectKey>,
    /// Canary Ingress -> the Ingresses it joined.
    joined: BTreeMap<ObjectKey, BTreeSet<ObjectKey>>,
    generations: BTreeMap<ObjectKey, i64>,
}

impl Canaries {
    pub fn collect(ingresses: &[ServedIngress], backends: &mut Backends<'_>) -> Canaries {
        let mut c = Canaries::default();
        for o in ingresses
            .iter()
            .filter(|o| o.annotations.ingress.canary.is_some())
        {
            let key = ObjectKey::of(o.ingress);
            c.generations
                .insert(key.clone(), o.ingress.metadata.generation.unwrap_or(0));
            c.all.insert(key);
        }
        for (rule_key, (o, settings, svc)) in canary_paths(ingresses) {
            let ns = o.ingress.metadata.namespace.as_deref().unwrap_or_default();
            let target = match backends.resolve(
                ("networking.k8s.io", "Ingress", ns),
                super::service_backend::service_ref(ns, svc),
            ) {
                Ok(cluster) => BackendTarget::Cluster(cluster),
                Err((_, m)) => BackendTarget::Invalid(m),
            };
            c.rules.insert(
                rule_key,
                CanaryRule {
                    ingress: ObjectKey::of(o.ingress),
                    settings: settings.clone(),
                    backends: vec![WeightedBackend {
                        weight: 1,
                        target,
                        filters: vec![],
                    }],
                },
            );
        }
        c
    }

    pub fn is_canary(&self, ingress: &Ingress) -> bool {
        self.all.contains(&ObjectKey::of(ingress))
    }

    /// The canary rule joining a primary's (host, path, pathType), noted as used.
    pub fn take(&mut self, key: &CanaryKey, primary: &ObjectKey) -> Option<&CanaryRule> {
        let rule = self.rules.get(key)?;
        if rule.ingress == *primary {
            return None;
        }
        self.joined
            .entry(rule.ingress.clone())
            .or_default()
            .insert(primary.clone());
        Some(rule)
    }

    pub fn report(&self, status: &mut StatusReport) {
        for key in &self.all {
            let generation = self.generations.get(key).copied().unwrap_or(0);
            let st = status.entry("Ingress", &key.namespace, &key.name, generation);
            match self.joined.get(key) {
                Some(primaries) => st.set(Condition::new(
                    reason::ACCEPTED,
                    true,
                    reason::ACCEPTED,
                    format!(
                        "canary of {}",
                        primaries
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )),
                None => st.set(Condition::new(
                    reason::ACCEPTED,
                    false,
                    reason::NO_MATCHING_PARENT,
                    "canary: no other Ingress of the class has a rule with the same host, path and pathType",
                )),
            }
        }
    }
}

/// The routes of a primary rule joined by a canary, most specific first (ingress-nginx's
/// order: header, then cookie, then weight), each with its place among them.
pub fn canary_routes(primary: &Route, canary: &CanaryRule) -> Vec<(Route, usize)> {
    let c = &canary.settings;
    let with = |name: &str, value: StringMatch, backends: Vec<WeightedBackend>| Route {
        matcher: RouteMatch {
            headers: vec![ValueMatch {
                name: name.into(),
                value,
            }],
            ..primary.matcher.clone()
        },
        backends,
        ..primary.clone()
    };
    let to_canary = canary.backends.clone();
    let to_primary = primary.backends.clone();
    let mut out = Vec::new();
    if let Some(header) = &c.by_header {
        if let Some(v) = &c.by_header_value {
            out.push((
                with(header, StringMatch::Exact(v.clone()), to_canary.clone()),
                0,
            ));
        } else if let Some(p) = &c.by_header_pattern {
            // nginx matches the pattern anywhere in the value.
            out.push((
                with(
                    header,
                    StringMatch::Regex(format!(".*(?:{p}).*")),
                    to_canary.clone(),
                ),
                0,
            ));
        } else {
            out.push((
                with(
                    header,
                    StringMatch::Exact("always".into()),
                    to_canary.clone(),
                ),
                0,
            ));
            out.push((
                with(
                    header,
                    StringMatch::Exact("never".into()),
                    to_primary.clone(),
                ),
                1,
            ));
        }
    }
    if let Some(cookie) = &c.by_cookie {
        let is = |v: &str| {
            StringMatch::Regex(format!("(?:.*;\\s*)?{}={v}(?:;.*)?", regex::escape(cookie)))
        };
        out.push((with("cookie", is("always"), to_canary.clone()), 2));
        out.push((with("cookie", is("never"), to_primary.clone()), 3));
    }
    // Weight: canary weight out of the total (at least 100).
    let total = c.weight_total.max(100);
    let canary_weight = c.weight.min(total);
    let mut weighted = primary.clone();
    weighted.backends = primary
        .backends
        .iter()
        .map(|b| WeightedBackend {
            weight: b.weight * (total - canary_weight),
            ..b.clone()
        })
        .filter(|b| b.weight > 0)
        .chain(
            canary
                .backends
                .iter()
                .map(|b| WeightedBackend {
                    weight: canary_weight,
                    ..b.clone()
                })
                .filter(|b| b.weight > 0),
        )
        .collect();
    out.push((weighted, 4));
    out
}
