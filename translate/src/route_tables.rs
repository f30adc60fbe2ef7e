//! Route tables: the routes attached to each listener, grouped into virtual hosts and kept
//! in the spec's precedence order, so the data plane takes the first match.
//!
//! Every translated object (an HTTPRoute; the Ingresses, together) hands in a
//! `Contribution`. `Tables` keeps each listener's entries by hostname across translations,
//! so replacing one object's contribution rebuilds only the virtual hosts it touches, and a
//! virtual host that comes out equal keeps its `Arc` (nothing downstream sees a change).

use crate::meta::Age;
use crate::status::StatusReport;
use crate::store::ObjectKey;
use gatehouse_model::ir::{HostMatch, PathMatch, Route, RouteTable, SniCertificate, VirtualHost};
use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Ties between routes of different objects, after the match itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Order {
    /// Ingress defaultBackend: behind every other route of its virtual host.
    pub fallback: bool,
    pub age: Age,
    /// HTTPRoute before Ingress when everything else ties.
    pub kind_rank: u8,
    pub rule: usize,
    pub match_index: usize,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub hostname: HostMatch,
    /// Shared: entries are pushed, sorted and grouped by the thousand, a Route is large,
    /// and the model's virtual hosts share it.
    pub route: Arc<Route>,
    pub order: Order,
}

/// The unit translation recomputes: one HTTPRoute, or every Ingress at once (Ingresses
/// share hosts, canaries and regex mode across objects). Ordered as full translation
/// visits them, so ties in precedence fall the same way.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Unit {
    HttpRoute(ObjectKey),
    Ingresses,
}

/// What one unit adds to the model.
#[derive(Debug, Clone, Default)]
pub struct Contribution {
    /// Listener keys attached to, once per attachment (a listener's attachedRoutes).
    pub attached: Vec<String>,
    /// Route table entries, by listener key, in the order the unit made them.
    pub entries: Vec<(String, Entry)>,
    /// Certificates offered on listeners (an Ingress's spec.tls), by listener key.
    pub certificates: Vec<(String, SniCertificate)>,
    /// The statuses of the unit's objects.
    pub status: StatusReport,
    /// Keys of the clusters the unit resolved.
    pub clusters: Vec<String>,
}

impl Contribution {
    pub fn attach(&mut self, listener: &str) {
        self.attached.push(listener.to_string());
    }

    pub fn push(&mut self, listener: &str, entry: Entry) {
        self.entries.push((listener.to_string(), entry));
    }
}

/// Gateway API precedence: Exact path, then (our choice) RegularExpression, then the longest
/// PathPrefix; then a method match, most header matches, most query matches; then the
/// oldest object, namespace/name, rule order and match order.
type Precedence = (
    bool,
    u8,
    Reverse<usize>,
    bool,
    Reverse<usize>,
    Reverse<usize>,
    Order,
);

fn precedence(e: &Entry) -> Precedence {
    let m = &e.route.matcher;
    let (rank, len) = match &m.path {
        PathMatch::Exact(p) => (0, p.len()),
        PathMatch::Regex(p) => (1, p.len()),
        PathMatch::Prefix(p) => (2, p.len()),
    };
    (
        e.order.fallback,
        rank,
        Reverse(len),
        m.method.is_none(),
        Reverse(m.headers.len()),
        Reverse(m.query.len()),
        e.order.clone(),
    )
}

/// A hostname ordered as virtual hosts are in a table (`VirtualHost::precedence`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostOrder(HostMatch);

impl Ord for HostOrder {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        VirtualHost::precedence(&self.0, &other.0)
    }
}

impl PartialOrd for HostOrder {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The entries of one hostname of one listener, and the virtual host last built from them.
#[derive(Debug, Default)]
struct Group {
    /// By unit and the entry's place in its contribution (the order of full translation),
    /// kept sorted: most groups hold one entry, and a vector of one is small.
    entries: Vec<((Unit, usize), Entry)>,
    built: Option<Arc<VirtualHost>>,
    dirty: bool,
}

/// Where a unit's entries went, to take them out again.
pub type Placements = Vec<(String, HostMatch)>;

/// Every listener's entries by hostname, kept across translations.
#[derive(Debug, Default)]
pub struct Tables {
    listeners: BTreeMap<String, Listener>,
}

/// One listener's groups by hostname, and its table as last built.
#[derive(Debug, Default)]
struct Listener {
    hosts: BTreeMap<HostOrder, Group>,
    /// Hostnames whose entries changed since the last build.
    dirty: Vec<HostMatch>,
    built: Vec<Arc<VirtualHost>>,
}

impl Tables {
    /// Adds a unit's entries; returns where they went.
    pub fn add(&mut self, unit: &Unit, entries: Vec<(String, Entry)>) -> Placements {
        let mut placed = Vec::with_capacity(entries.len());
        for (i, (listener, entry)) in entries.into_iter().enumerate() {
            let table = self.listeners.entry(listener.clone()).or_default();
            table.dirty.push(entry.hostname.clone());
            let group = table
                .hosts
                .entry(HostOrder(entry.hostname.clone()))
                .or_default();
            placed.push((listener, entry.hostname.clone()));
            let key = (unit.clone(), i);
            match group.entries.binary_search_by(|(k, _)| k.cmp(&key)) {
                Ok(at) => group.entries[at] = (key, entry),
                Err(at) => group.entries.insert(at, (key, entry)),
            }
            group.dirty = true;
        }
        placed
    }

    /// Takes a unit's entries out.
    pub fn retract(&mut self, unit: &Unit, placed: &Placements) {
        for (i, (listener, hostname)) in placed.iter().enumerate() {
            let Some(table) = self.listeners.get_mut(listener) else {
                continue;
            };
            table.dirty.push(hostname.clone());
            let group = table.hosts.get_mut(&HostOrder(hostname.clone()));
            if let Some(group) = group {
                if let Ok(at) = group
                    .entries
                    .binary_search_by(|((u, j), _)| (u, *j).cmp(&(unit, i)))
                {
                    group.entries.remove(at);
                }
                group.dirty = true;
            }
        }
    }

    /// The route table of each listener named (served listeners, in order), rebuilding
    /// the virtual hosts whose entries changed since the last build.
    pub fn build<'a>(&mut self, listeners: impl Iterator<Item = &'a str>) -> Vec<RouteTable> {
        for table in self.listeners.values_mut() {
            if table.dirty.is_empty() {
                continue;
            }
            for hostname in std::mem::take(&mut table.dirty) {
                let key = HostOrder(hostname);
                let Some(group) = table.hosts.get_mut(&key) else {
                    continue; // Already rebuilt or dropped: named twice.
                };
                if group.entries.is_empty() {
                    table.hosts.remove(&key);
                    continue;
                }
                if !group.dirty {
                    continue;
                }
                let mut entries: Vec<&Entry> = group.entries.iter().map(|(_, e)| e).collect();
                entries.sort_by_cached_key(|e| precedence(e));
                let host = VirtualHost {
                    hostname: key.0.clone(),
                    routes: entries.into_iter().map(|e| e.route.clone()).collect(),
                };
                // Equal to what was built before: keep it, so it stays the same `Arc`.
                if group.built.as_deref() != Some(&host) {
                    group.built = Some(Arc::new(host));
                }
                group.dirty = false;
            }
            table.built = table
                .hosts
                .values()
                .filter_map(|g| g.built.clone())
                .collect();
        }
        self.listeners.retain(|_, table| !table.hosts.is_empty());
        listeners
            .map(|l| RouteTable {
                listener: l.to_string(),
                virtual_hosts: self
                    .listeners
                    .get(l)
                    .map(|t| t.built.clone())
                    .unwrap_or_default(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::{HTTP_ALL, gateway_with, routes, translated};
    use gatehouse_model::ir::PathMatch;

    /// Exact first, then the longest prefix, whatever order the rules were written in.
    #[test]
    fn exact_then_longest_prefix_first() {
        let yaml = gateway_with(HTTP_ALL)
            + "---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: apps}
spec:
  parentRefs: [{name: gw, namespace: infra}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: web, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /a/b}}]
    backendRefs: [{name: web, port: 80}]
  - matches: [{path: {type: Exact, value: /a}}]
    backendRefs: [{name: web, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /a}}]
    backendRefs: [{name: web, port: 80}]
";
        let out = translated(&yaml);
        let paths: Vec<PathMatch> = routes(&out)
            .into_iter()
            .map(|(_, r)| r.matcher.path)
            .collect();
        assert_eq!(
            paths,
            [
                PathMatch::Exact("/a".into()),
                PathMatch::Prefix("/a/b".into()),
                PathMatch::Prefix("/a".into()),
                PathMatch::Prefix("/".into()),
            ]
        );
    }
}
