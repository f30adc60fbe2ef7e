//! Route tables: the routes attached to each listener, grouped into virtual hosts and kept
//! in the spec's precedence order, so the data plane takes the first match.

use super::Age;
use super::gateways::PlannedGateway;
use crate::store::ObjectKey;
use gatehouse_model::ir::{HostMatch, PathMatch, Route, RouteTable, VirtualHost};
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

/// Entries per listener key.
#[derive(Debug, Default)]
pub struct Entries {
    by_listener: BTreeMap<String, Vec<Entry>>,
}

impl Entries {
    pub fn push(&mut self, listener: &str, entry: Entry) {
        self.by_listener
            .entry(listener.to_string())
            .or_default()
            .push(entry);
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

pub fn build(
    gateways: &BTreeMap<ObjectKey, PlannedGateway>,
    mut entries: Entries,
) -> Vec<RouteTable> {
    let mut tables = Vec::new();
    for l in gateways
        .values()
        .flat_map(|g| &g.listeners)
        .filter(|l| l.served)
    {
        let mut hosts: BTreeMap<HostMatch, Vec<Entry>> = BTreeMap::new();
        for e in entries.by_listener.remove(&l.key).unwrap_or_default() {
            hosts.entry(e.hostname.clone()).or_default().push(e);
        }
        let mut virtual_hosts: Vec<Arc<VirtualHost>> = hosts
            .into_iter()
            .map(|(hostname, mut es)| {
                es.sort_by_cached_key(precedence);
                Arc::new(VirtualHost {
                    hostname,
                    routes: es.into_iter().map(|e| e.route).collect(),
                })
            })
            .collect();
        virtual_hosts.sort_by(|a, b| VirtualHost::precedence(&a.hostname, &b.hostname));
        tables.push(RouteTable {
            listener: l.key.clone(),
            virtual_hosts,
        });
    }
    tables
}
