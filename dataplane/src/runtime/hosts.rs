//! A listener's virtual hosts (`HostTable`) and each virtual host's routes
//! (`CompiledVirtualHost`), in the order a request tries them.

use super::route::CompiledRoute;
use gatehouse_model::ir::HostMatch;
use std::collections::HashMap;
use std::sync::Arc;

/// A listener's virtual hosts as a request finds them: exact hostnames by hash (10k
/// hostnames cost what 10 do), the others (wildcards, any) walked in precedence order.
/// Exact hostnames come first in a table's order, so an exact hit is what a walk over the
/// whole table would find.
#[derive(Default, Clone)]
pub struct HostTable {
    exact: HashMap<Arc<str>, Arc<CompiledVirtualHost>>,
    /// In `VirtualHost::precedence` order.
    others: Vec<Arc<CompiledVirtualHost>>,
}

impl HostTable {
    /// The first virtual host whose hostname matches `host` (lower-case, no port).
    pub fn find(&self, host: &str) -> Option<&Arc<CompiledVirtualHost>> {
        self.exact
            .get(host)
            .or_else(|| self.others.iter().find(|v| v.hostname.matches(host)))
    }

    /// Puts a virtual host in its place, replacing one with the same hostname.
    pub fn insert(&mut self, host: Arc<CompiledVirtualHost>) {
        match &host.hostname {
            HostMatch::Exact(h) => drop(self.exact.insert(h.as_str().into(), host)),
            hostname => {
                let at = self
                    .others
                    .binary_search_by(|v| {
                        gatehouse_model::ir::VirtualHost::precedence(&v.hostname, hostname)
                    })
                    .unwrap_or_else(|at| at);
                match self.others.get(at) {
                    Some(v) if v.hostname == *hostname => self.others[at] = host,
                    _ => self.others.insert(at, host),
                }
            }
        }
    }

    /// Takes out the virtual host with this hostname, if any.
    pub fn remove(&mut self, hostname: &HostMatch) {
        match hostname {
            HostMatch::Exact(h) => drop(self.exact.remove(h.as_str())),
            _ => self.others.retain(|v| v.hostname != *hostname),
        }
    }

    /// How many virtual hosts the table has.
    pub fn len(&self) -> usize {
        self.exact.len() + self.others.len()
    }

    /// Whether the table has no virtual host.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One virtual host: its hostname and its routes, in precedence order.
pub struct CompiledVirtualHost {
    pub hostname: HostMatch,
    pub routes: Vec<Arc<CompiledRoute>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host table answers what walking the table in precedence order answers,
    /// whatever order the hosts were put in.
    #[test]
    fn host_table_finds_what_a_walk_finds() {
        let names = [
            HostMatch::gateway("a.example.com"),
            HostMatch::gateway("b.example.com"),
            HostMatch::gateway("*.deep.example.com"),
            HostMatch::ingress("*.example.com"),
            HostMatch::gateway("*.example.com"),
            HostMatch::gateway("c.other.com"),
            HostMatch::Any,
        ];
        let host = |h: &HostMatch| {
            Arc::new(CompiledVirtualHost {
                hostname: h.clone(),
                routes: vec![],
            })
        };
        let mut sorted = names.to_vec();
        sorted.sort_by(gatehouse_model::ir::VirtualHost::precedence);
        for order in [names.to_vec(), names.iter().rev().cloned().collect()] {
            let mut table = HostTable::default();
            for h in &order {
                table.insert(host(h));
            }
            // Put in twice: replaced, not added.
            table.insert(host(&HostMatch::gateway("*.example.com")));
            assert_eq!(table.len(), names.len());
            for name in [
                "a.example.com",
                "b.example.com",
                "x.deep.example.com",
                "x.y.example.com",
                "x.example.com",
                "c.other.com",
                "example.com",
                "nothing.org",
            ] {
                let walk = sorted.iter().find(|v| v.matches(name));
                assert_eq!(table.find(name).map(|v| &v.hostname), walk, "{name}");
            }
            table.remove(&HostMatch::Any);
            table.remove(&HostMatch::gateway("a.example.com"));
            assert!(table.find("nothing.org").is_none());
            assert_eq!(
                table.find("a.example.com").map(|v| v.hostname.clone()),
                Some(HostMatch::ingress("*.example.com"))
            );
        }
    }
}
