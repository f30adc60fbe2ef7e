//! Per-client limits: source address access lists and rate limits (ingress-nginx
//! allow-/denylist-source-range, limit-rps, limit-rpm, limit-connections).
//!
//! Rates follow nginx's `limit_req ... nodelay` leaky bucket: a client's excess drains at
//! the rate; a request is admitted while the excess stays within the burst, so a quiet
//! client may send burst + 1 requests at once. Counts are shared by every route of one
//! zone and survive config versions (the zone is the key), so an edit does not reset them.
//!
//! The counts are bounded: at most `MAX_CLIENTS` (zone, client) pairs, the least recently
//! seen forgotten first in O(1) (an LRU), so a flood of source addresses (one IPv6 /64
//! holds 2^64) costs memory up to the bound and never a scan under the lock. A forgotten
//! client starts afresh, as a new one does in nginx's zone when it is full.

use gatehouse_model::ir::{RateLimit, SourceAccess, parse_network};
use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A compiled access list.
#[derive(Debug)]
pub struct Access {
    deny: Vec<IpNet>,
    allow: Vec<IpNet>,
    pub status: u16,
}

impl Access {
    /// Parses the access list's networks.
    pub fn compile(a: &SourceAccess) -> Result<Access, String> {
        Ok(Access {
            deny: networks(&a.deny)?,
            allow: networks(&a.allow)?,
            status: a.status,
        })
    }

    /// nginx's order: the deny list first, then, when there is an allow list, only it.
    pub fn admits(&self, client: IpAddr) -> bool {
        let client = canonical(client);
        if self.deny.iter().any(|n| n.contains(&client)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&client))
    }
}

fn networks(v: &[String]) -> Result<Vec<IpNet>, String> {
    v.iter().map(|n| parse_network(n)).collect()
}

/// An IPv4 client seen on an IPv6 socket counts as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// (zone, client) pairs counted at once, in all zones.
const MAX_CLIENTS: usize = 100_000;

/// A compiled rate limit.
#[derive(Debug)]
pub struct Limit {
    pub zone: String,
    /// The zone's key in the counts (a hash of its name: no string per request).
    zone_key: u64,
    /// IPv6 clients counted by this prefix.
    ipv6_prefix: Option<u8>,
    /// (requests per second, burst), for each rate given.
    rates: Vec<(f64, f64)>,
    pub connections: Option<u32>,
    exempt: Vec<IpNet>,
    pub status: u16,
}

impl Limit {
    /// The rates per second with their bursts, and the exempt networks parsed.
    pub fn compile(l: &RateLimit) -> Result<Limit, String> {
        let mult = f64::from(l.burst_multiplier);
        let mut rates = Vec::new();
        if let Some(rps) = l.per_second {
            rates.push((f64::from(rps), f64::from(rps) * mult));
        }
        if let Some(rpm) = l.per_minute {
            rates.push((f64::from(rpm) / 60.0, f64::from(rpm) * mult));
        }
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        l.zone.hash(&mut h);
        Ok(Limit {
            zone: l.zone.clone(),
            zone_key: h.finish(),
            ipv6_prefix: l.ipv6_prefix.map(|p| p.min(128)),
            rates,
            connections: l.connections,
            exempt: networks(&l.exempt)?,
            status: l.status,
        })
    }

    /// Whether the client is in an exempt network.
    pub fn exempts(&self, client: IpAddr) -> bool {
        let client = canonical(client);
        self.exempt.iter().any(|n| n.contains(&client))
    }

    /// What a client is counted as: its address, an IPv6 one cut to the prefix.
    fn counted_as(&self, client: IpAddr) -> IpAddr {
        match (canonical(client), self.ipv6_prefix) {
            (IpAddr::V6(v6), Some(prefix)) => {
                let bits = u128::from(v6);
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6((bits & mask).into())
            }
            (ip, _) => ip,
        }
    }
}

/// One client's rate state in one zone: the excess per rate.
#[derive(Debug, Default)]
struct Bucket {
    excess: Vec<f64>,
    last: Option<Instant>,
}

/// (zone key, client counted as).
type Key = (u64, IpAddr);

/// Every zone's buckets, by (zone, client), the least recently seen evicted first; and the
/// requests in progress by (zone, client) apart from them: a count evicted while requests
/// run would let a client past its limit. That map holds only clients with a request
/// running, so it is bounded by the requests in flight.
#[derive(Debug)]
pub struct Limiter {
    buckets: Mutex<lru::LruCache<Key, Bucket>>,
    in_progress: Mutex<std::collections::HashMap<Key, u32>>,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::with_capacity(MAX_CLIENTS)
    }
}

impl Limiter {
    fn with_capacity(n: usize) -> Self {
        let n = std::num::NonZeroUsize::new(n).unwrap_or(std::num::NonZeroUsize::MIN);
        Limiter {
            buckets: Mutex::new(lru::LruCache::new(n)),
            in_progress: Mutex::default(),
        }
    }
}

/// A request a limit refused.
#[derive(Debug, PartialEq, Eq)]
pub struct Limited;

/// Holds a connection slot until dropped (the request ended).
pub struct Slot {
    limiter: Arc<Limiter>,
    key: Key,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut running) = self.limiter.in_progress.lock()
            && let Some(n) = running.get_mut(&self.key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                running.remove(&self.key);
            }
        }
    }
}

impl Limiter {
    /// Admits a request of `client` under `limit` at `now`; `Ok(Some(slot))` holds its
    /// connection slot while it runs. `Err(Limited)` when a limit refuses it.
    pub fn admit(
        self: &Arc<Self>,
        limit: &Limit,
        client: IpAddr,
        now: Instant,
    ) -> Result<Option<Slot>, Limited> {
        if limit.exempts(client) {
            return Ok(None);
        }
        let key = (limit.zone_key, limit.counted_as(client));
        // A poisoned lock never blocks traffic.
        let mut running = match limit.connections {
            Some(max) => {
                let Ok(running) = self.in_progress.lock() else {
                    return Ok(None);
                };
                if running.get(&key).is_some_and(|n| *n >= max) {
                    return Err(Limited);
                }
                Some(running)
            }
            None => None,
        };
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(None);
        };
        let bucket = buckets.get_or_insert_mut(key, Bucket::default);
        // nginx: a new client starts empty; later, excess = previous - drained + 1.
        let elapsed = bucket
            .last
            .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        bucket.excess.resize(limit.rates.len(), 0.0);
        let first = bucket.last.is_none();
        let next: Vec<f64> = limit
            .rates
            .iter()
            .zip(&bucket.excess)
            .map(|((rate, _), e)| {
                if first {
                    0.0
                } else {
                    (e - rate * elapsed + 1.0).max(0.0)
                }
            })
            .collect();
        if next
            .iter()
            .zip(&limit.rates)
            .any(|(e, (_, burst))| *e > *burst)
        {
            return Err(Limited);
        }
        bucket.excess = next;
        bucket.last = Some(now);
        drop(buckets);
        let Some(running) = running.as_mut() else {
            return Ok(None);
        };
        *running.entry(key).or_default() += 1;
        Ok(Some(Slot {
            limiter: self.clone(),
            key,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limit(rps: Option<u32>, rpm: Option<u32>, conns: Option<u32>) -> Limit {
        Limit::compile(&RateLimit {
            zone: "z".into(),
            per_second: rps,
            per_minute: rpm,
            burst_multiplier: 5,
            connections: conns,
            exempt: vec!["10.9.0.0/16".into()],
            status: 503,
            ipv6_prefix: Some(64),
        })
        .unwrap()
    }

    #[test]
    fn a_quiet_client_gets_burst_plus_one_then_the_rate() {
        let limiter = Arc::new(Limiter::default());
        let l = limit(Some(2), None, None);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        let admitted = (0..20)
            .filter(|_| limiter.admit(&l, ip, t0).is_ok())
            .count();
        assert_eq!(admitted, 11, "burst 10 + 1");
        // Half a second drains one request at 2 r/s.
        let t1 = t0 + Duration::from_millis(500);
        assert!(limiter.admit(&l, ip, t1).is_ok());
        assert!(limiter.admit(&l, ip, t1).is_err());
        // Another client and an exempt one are not affected.
        assert!(limiter.admit(&l, "192.0.2.2".parse().unwrap(), t1).is_ok());
        let exempt: IpAddr = "10.9.1.1".parse().unwrap();
        assert!((0..50).all(|_| limiter.admit(&l, exempt, t1).is_ok()));
    }

    /// Past the bound the least recently seen client is forgotten in O(1); an IPv6 host
    /// cycling through its /64 is one client.
    #[test]
    fn counts_are_bounded_and_ipv6_counts_by_prefix() {
        let limiter = Arc::new(Limiter::with_capacity(3));
        let l = limit(Some(1), None, None);
        let t0 = Instant::now();
        let ip = |n: u32| IpAddr::from([192, 0, 2, n as u8]);
        for n in 0..10 {
            assert!(limiter.admit(&l, ip(n), t0).is_ok());
        }
        assert_eq!(limiter.buckets.lock().unwrap().len(), 3);
        // Six addresses of one /64 share a bucket: burst 5 + 1, then refused.
        let admitted = (0..10u16)
            .filter(|i| {
                let a: IpAddr = format!("2001:db8:1:2::{i:x}").parse().unwrap();
                limiter.admit(&l, a, t0).is_ok()
            })
            .count();
        assert_eq!(admitted, 6);
    }

    #[test]
    fn connections_count_requests_in_progress() {
        let limiter = Arc::new(Limiter::default());
        let l = limit(None, None, Some(2));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let now = Instant::now();
        let a = limiter.admit(&l, ip, now).unwrap();
        let b = limiter.admit(&l, ip, now).unwrap();
        assert!(limiter.admit(&l, ip, now).is_err());
        drop(a);
        assert!(limiter.admit(&l, ip, now).is_ok());
        drop(b);
        assert!(limiter.in_progress.lock().unwrap().is_empty());
    }

    /// A client whose rate state is evicted (many other clients seen since) still has its
    /// requests in progress counted.
    #[test]
    fn requests_in_progress_outlive_eviction() {
        let limiter = Arc::new(Limiter::with_capacity(2));
        let l = limit(None, None, Some(1));
        let now = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let held = limiter.admit(&l, ip, now).unwrap();
        for n in 2..10u8 {
            let _ = limiter.admit(&l, IpAddr::from([192, 0, 2, n]), now);
        }
        assert!(limiter.admit(&l, ip, now).is_err());
        drop(held);
        assert!(limiter.admit(&l, ip, now).is_ok());
    }

    #[test]
    fn access_denies_first_then_allows_only_the_list() {
        let a = Access::compile(&SourceAccess {
            deny: vec!["10.0.0.5".into()],
            allow: vec!["10.0.0.0/24".into()],
            status: 403,
        })
        .unwrap();
        assert!(a.admits("10.0.0.4".parse().unwrap()));
        assert!(!a.admits("10.0.0.5".parse().unwrap()));
        assert!(!a.admits("10.0.1.1".parse().unwrap()));
        assert!(a.admits("::ffff:10.0.0.4".parse().unwrap()), "mapped IPv4");
    }
}
