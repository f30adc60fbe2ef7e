//! What a run reports: the JSON summary `bench/run` prints as its last line (medians of
//! the rounds, Gatehouse's ratios to each peer, route scale, propagation and churn), and
//! the per-scenario table `--write-docs` writes for docs/benchmarks.md.

use crate::churn::Churn;
use crate::proxies::{SCENARIOS, Samples};
use crate::sample::Sample;
use crate::scale::Scale;
use crate::stats::{median, ms, percentile, size};
use crate::topology::PROXIES;
use serde_json::{Map, Value, json};

/// What the phases measured, and how.
pub struct Results {
    pub samples: Samples,
    /// The data plane's RSS with the one route of the proxies phase.
    pub rss_mb: Option<f64>,
    pub scale: Vec<Scale>,
    /// Propagation through the API server: (routes, milliseconds per change).
    pub apiserver: Vec<(usize, Vec<f64>)>,
    pub churn_gatehouse: Churn,
    pub churn_nginx: Churn,
    pub rounds: usize,
    pub seconds: u64,
    pub quick: bool,
}

/// The JSON summary: one key per figure.
pub fn summary(r: &Results) -> Value {
    let mut summary = Map::new();
    proxy_ratios(&mut summary, &r.samples);
    summary.insert("rss_mb_1_route".into(), json!(r.rss_mb));
    route_scale(&mut summary, &r.scale);
    for (n, ms) in &r.apiserver {
        let n = size(*n);
        summary.insert(
            format!("propagation_p50_ms_apiserver_{n}"),
            json!(percentile(ms, 50.0)),
        );
        summary.insert(
            format!("propagation_p99_ms_apiserver_{n}"),
            json!(percentile(ms, 99.0)),
        );
    }
    for (name, c) in [("gatehouse", &r.churn_gatehouse), ("nginx", &r.churn_nginx)] {
        summary.insert(format!("churn_failed_{name}"), json!(c.errors));
        summary.insert(format!("churn_requests_{name}"), json!(c.requests));
        summary.insert(format!("churn_p99_ms_{name}"), json!(c.p99));
    }
    // Keys the issue names that this harness does not measure yet: null, never a guess.
    for key in [
        "propagation_p99_ms_standalone_10k",
        "propagation_p99_ms_apiserver_10k",
        "rss_mb_10k_routes",
    ] {
        summary.entry(key).or_insert(Value::Null);
    }
    summary.insert("rounds".into(), json!(r.rounds));
    summary.insert("seconds".into(), json!(r.seconds));
    summary.insert("quick".into(), json!(r.quick));
    Value::Object(summary)
}

/// Per scenario and peer: Gatehouse's median req/s, req/s per core and p99 over the
/// peer's, and the per-core ratio of each round.
fn proxy_ratios(summary: &mut Map<String, Value>, samples: &Samples) {
    let med = |s: &str, p: &str, f: fn(&Sample) -> Option<f64>| med(samples, s, p, f);
    for s in &SCENARIOS {
        for peer in ["nginx", "haproxy"] {
            summary.insert(
                format!("{}_rps_vs_{peer}", s.key),
                json!(ratio(med(s.key, "gatehouse", rps), med(s.key, peer, rps))),
            );
            summary.insert(
                format!("{}_rps_per_core_vs_{peer}", s.key),
                json!(ratio(
                    med(s.key, "gatehouse", per_core),
                    med(s.key, peer, per_core)
                )),
            );
            // Each round's ratio as well: rounds on a shared machine drift together, so
            // the spread of same-round ratios says how far the medians can be trusted.
            let ours = samples.get(&(s.key, "gatehouse")).into_iter().flatten();
            let theirs = samples.get(&(s.key, peer)).into_iter().flatten();
            let each: Vec<Option<f64>> = ours
                .zip(theirs)
                .map(|(g, q)| ratio(g.rps_per_core(), q.rps_per_core()))
                .collect();
            summary.insert(
                format!("{}_rps_per_core_vs_{peer}_each_round", s.key),
                json!(each),
            );
            if !s.h2 {
                summary.insert(
                    format!("{}_p99_vs_{peer}", s.key),
                    json!(ratio(med(s.key, "gatehouse", p99), med(s.key, peer, p99))),
                );
            }
        }
    }
}

/// Per route table size: req/s, RSS and standalone propagation; and the largest table's
/// req/s over the smallest's.
fn route_scale(summary: &mut Map<String, Value>, scale: &[Scale]) {
    for s in scale {
        let n = size(s.routes);
        summary.insert(format!("rps_{n}_routes"), json!(s.rps.round()));
        summary.insert(format!("rss_mb_{n}_routes"), json!(s.rss_mb));
        if !s.propagation.is_empty() {
            summary.insert(
                format!("propagation_p50_ms_standalone_{n}"),
                json!(percentile(&s.propagation, 50.0)),
            );
            summary.insert(
                format!("propagation_p99_ms_standalone_{n}"),
                json!(percentile(&s.propagation, 99.0)),
            );
        }
    }
    if let (Some(small), Some(large)) = (scale.first(), scale.last()) {
        summary.insert(
            format!(
                "rps_{}_vs_{}_routes",
                size(large.routes),
                size(small.routes)
            ),
            json!(ratio(Some(large.rps), Some(small.rps))),
        );
    }
}

/// The table of docs/benchmarks.md: a row per scenario and proxy, medians of `rounds`
/// rounds and ratios to nginx.
pub fn docs_table(samples: &Samples, rounds: usize) -> String {
    let med = |s: &str, p: &str, f: fn(&Sample) -> Option<f64>| med(samples, s, p, f);
    let mut doc = String::new();
    doc.push_str(&format!(
        "| scenario | proxy | req/s (median of {}) | proxy CPU | req/s per core | p50 ms | p99 ms | p99.9 ms | req/s vs nginx | per core vs nginx | p99 vs nginx |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
        rounds
    ));
    for s in &SCENARIOS {
        for p in PROXIES {
            let x = |f: fn(&Sample) -> Option<f64>| med(s.key, p.name, f);
            doc.push_str(&format!(
                "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                s.what,
                p.name,
                x(rps).unwrap_or(0.0),
                x(|v| v.cpu_share).map_or("-".into(), |c| format!("{:.0} %", c * 100.0)),
                x(per_core).map_or("-".into(), |r| format!("{r:.0}")),
                ms(x(|v| v.p50)),
                ms(x(p99)),
                ms(x(|v| v.p999)),
                ratio(x(rps), med(s.key, "nginx", rps)).map_or("-".into(), |r| format!("{r:.2}")),
                ratio(x(per_core), med(s.key, "nginx", per_core))
                    .map_or("-".into(), |r| format!("{r:.2}")),
                ratio(x(p99), med(s.key, "nginx", p99)).map_or("-".into(), |r| format!("{r:.2}")),
            ));
        }
    }
    doc
}

/// The median over the rounds of one figure of scenario `s` against proxy `p`.
fn med(samples: &Samples, s: &str, p: &str, f: fn(&Sample) -> Option<f64>) -> Option<f64> {
    median(
        samples
            .get(&(s, p))
            .into_iter()
            .flatten()
            .filter_map(f)
            .collect(),
    )
}

/// `a` over `b`, to two decimals.
fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some((a / b * 100.0).round() / 100.0),
        _ => None,
    }
}

fn rps(x: &Sample) -> Option<f64> {
    Some(x.rps)
}

fn per_core(x: &Sample) -> Option<f64> {
    x.rps_per_core()
}

fn p99(x: &Sample) -> Option<f64> {
    x.p99
}

/// The slow-client phase as the summary gives it: per proxy, open files and MB per 10,000
/// held connections, and the normal client's p99 alone and with them held.
pub fn slow_clients(results: &[crate::slow_clients::SlowClients]) -> Value {
    let mut o = serde_json::Map::new();
    for r in results {
        o.insert(
            r.name.into(),
            serde_json::json!({
                "held": r.held,
                "open_files_per_10k": r.files_per_10k(),
                "rss_mb_per_10k": r.mb_per_10k(),
                "p99_ms_alone": r.p99_alone,
                "p99_ms_held": r.p99_held,
                "errors_held": r.errors_held,
            }),
        );
    }
    Value::Object(o)
}
