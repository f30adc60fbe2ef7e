//! Source ranges and rate limits. An invalid source range denies every path (503), as
//! nginx does, so a typo never opens what was meant to be closed; an invalid rate or
//! exempt list refuses the Ingress.

use super::parsed::PREFIX;
use super::reader::Reader;
use gatehouse_api::{RateLimitPolicy, SourceAccessPolicy, TrafficPolicySpec};

/// nginx's limit-burst-multiplier default.
const BURST_MULTIPLIER: u32 = 5;

/// A comma-separated list of networks (CIDR or address), each checked.
fn networks(v: &str) -> Result<Vec<String>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| gatehouse_model::ir::parse_network(n).map(|_| n.to_string()))
        .collect()
}

/// allowlist-source-range (or whitelist-source-range) and denylist-source-range.
pub fn read_source_ranges(r: &mut Reader, policy: &mut TrafficPolicySpec) {
    let mut access = SourceAccessPolicy::default();
    for (names, field) in [
        (
            ["allowlist-source-range", "whitelist-source-range"],
            &mut access.allow,
        ),
        (
            ["denylist-source-range", "denylist-source-range"],
            &mut access.deny,
        ),
    ] {
        let Some((name, v)) = names.iter().find_map(|n| r.get(n).map(|v| (*n, v))) else {
            continue;
        };
        match networks(v) {
            Ok(list) => *field = list,
            Err(e) => r.deny(format!(
                "annotation {PREFIX}{name}: {e}; every path of the Ingress answers 503"
            )),
        }
    }
    if !access.allow.is_empty() || !access.deny.is_empty() {
        policy.source_access = Some(access);
    }
}

/// limit-rps, limit-rpm, limit-connections, limit-burst-multiplier, limit-allowlist (or
/// limit-whitelist): one zone per Ingress.
pub fn read_rate_limits(r: &mut Reader, policy: &mut TrafficPolicySpec) {
    let mut limit = RateLimitPolicy {
        burst_multiplier: Some(BURST_MULTIPLIER),
        ..Default::default()
    };
    for (name, field) in [
        ("limit-rps", &mut limit.requests_per_second),
        ("limit-rpm", &mut limit.requests_per_minute),
        ("limit-connections", &mut limit.connections),
    ] {
        if let Some(v) = r.get(name) {
            match v.parse::<u32>() {
                Ok(0) => {}
                Ok(n) => *field = Some(n),
                Err(_) => r.refuse(format!(
                    "annotation {PREFIX}{name}: {v:?} is not a whole number; the Ingress is not served"
                )),
            }
        }
    }
    if let Some(v) = r.get("limit-burst-multiplier") {
        match v.parse::<u32>() {
            Ok(n) if n > 0 => limit.burst_multiplier = Some(n),
            _ => r.warn(
                "limit-burst-multiplier",
                v,
                "is not a positive whole number",
            ),
        }
    }
    if let Some((name, v)) = ["limit-allowlist", "limit-whitelist"]
        .iter()
        .find_map(|n| r.get(n).map(|v| (*n, v)))
    {
        match networks(v) {
            Ok(list) => limit.exempt = list,
            Err(e) => r.refuse(format!(
                "annotation {PREFIX}{name}: {e}; the Ingress is not served"
            )),
        }
    }
    let limits = limit.requests_per_second.is_some()
        || limit.requests_per_minute.is_some()
        || limit.connections.is_some();
    if limits {
        policy.rate_limit = Some(limit);
    }
}
