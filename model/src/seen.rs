//! Virtual hosts as a consumer last saw them, to tell what a new version changed without
//! looking inside what it shares: a host under the same pointer is unchanged; under a new
//! pointer it is compared by value. The config channel (what a data plane was sent) and
//! the operator's validation (what was last found valid) keep one each.

use crate::ir::{Config, HostMatch, VirtualHost};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// Virtual hosts by listener key and hostname.
#[derive(Debug, Default)]
pub struct SeenHosts {
    hosts: HashMap<String, HashMap<HostMatch, Arc<VirtualHost>>>,
    /// The address of every host held in `hosts`, with its listener: most hosts of a
    /// version are the ones seen before, found here with one cheap hash.
    addresses: HashMap<usize, String, BuildHasherDefault<AddressHasher>>,
    count: usize,
}

/// Hashes an address (already well spread) with one multiplication.
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// How a version's virtual hosts differ from what was seen.
#[derive(Debug, Default)]
pub struct HostChanges<'a> {
    /// New, or with other content: (listener, host).
    pub changed: Vec<(&'a str, &'a Arc<VirtualHost>)>,
    /// Equal content under another pointer: nothing to do but remember the new one.
    pub equal: Vec<(&'a str, &'a Arc<VirtualHost>)>,
    /// Seen before, not in this version: (listener, hostname).
    pub gone: Vec<(String, HostMatch)>,
}

impl SeenHosts {
    /// What `config`'s virtual hosts change; every one of them when `all`.
    pub fn changes<'a>(&self, config: &'a Config, all: bool) -> HostChanges<'a> {
        let mut out = HostChanges::default();
        let mut present = 0;
        for t in &config.route_tables {
            let known = self.hosts.get(t.listener.as_str());
            for vh in &t.virtual_hosts {
                let address = Arc::as_ptr(vh) as usize;
                if !all
                    && self
                        .addresses
                        .get(&address)
                        .is_some_and(|l| *l == t.listener)
                {
                    present += 1;
                    continue;
                }
                let seen = known.and_then(|k| k.get(&vh.hostname));
                if seen.is_some() {
                    present += 1;
                }
                match seen {
                    Some(prev) if !all && Arc::ptr_eq(prev, vh) => {}
                    Some(prev) if !all && **prev == **vh => out.equal.push((&t.listener, vh)),
                    _ => out.changed.push((&t.listener, vh)),
                }
            }
        }
        if present < self.count {
            let now: HashSet<(&str, &HostMatch)> = config
                .route_tables
                .iter()
                .flat_map(|t| {
                    t.virtual_hosts
                        .iter()
                        .map(|v| (t.listener.as_str(), &v.hostname))
                })
                .collect();
            for (listener, hosts) in &self.hosts {
                for hostname in hosts.keys() {
                    if !now.contains(&(listener.as_str(), hostname)) {
                        out.gone.push((listener.clone(), hostname.clone()));
                    }
                }
            }
        }
        out
    }

    /// Takes the changes as seen.
    pub fn record(&mut self, changes: &HostChanges<'_>) {
        for (listener, vh) in changes.changed.iter().chain(&changes.equal) {
            if !self.hosts.contains_key(*listener) {
                self.hosts.insert(listener.to_string(), HashMap::new());
            }
            let Some(hosts) = self.hosts.get_mut(*listener) else {
                continue;
            };
            match hosts.insert(vh.hostname.clone(), (*vh).clone()) {
                Some(old) => drop(self.addresses.remove(&(Arc::as_ptr(&old) as usize))),
                None => self.count += 1,
            }
            self.addresses
                .insert(Arc::as_ptr(vh) as usize, listener.to_string());
        }
        for (listener, hostname) in &changes.gone {
            if let Some(hosts) = self.hosts.get_mut(listener)
                && let Some(old) = hosts.remove(hostname)
            {
                self.addresses.remove(&(Arc::as_ptr(&old) as usize));
                self.count -= 1;
                if hosts.is_empty() {
                    self.hosts.remove(listener);
                }
            }
        }
    }
}
