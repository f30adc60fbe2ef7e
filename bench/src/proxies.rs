//! Phase `proxies`: the side-by-side scenarios. Every scenario runs against every proxy
//! once per round (interleaved, so drift hits all three alike), with wrk, h2load or
//! `gatehouse-bench load` on the load core and the proxy's CPU time read around each run.

use crate::probe::group_cpu_seconds;
use crate::process::pinned;
use crate::sample::{Sample, run_wrk};
use crate::stats::ms;
use crate::topology::{LOAD_CORE, PROXIES, Proxy};
use anyhow::{Context, Result, anyhow};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// What a scenario asks of the load generator.
pub struct Scenario {
    pub key: &'static str,
    pub what: &'static str,
    tls: bool,
    path: &'static str,
    /// wrk connections (HTTP/1.1), or h2load clients for HTTP/2.
    connections: u32,
    close: bool,
    pub h2: bool,
    /// Requests/s offered by `gatehouse-bench load` (latency below saturation); None:
    /// as fast as the proxy answers.
    rate: Option<u64>,
}

pub const SCENARIOS: [Scenario; 6] = [
    Scenario {
        key: "http1",
        what: "HTTP/1.1 keep-alive, 128 B answers",
        tls: false,
        path: "/bytes/128",
        connections: 64,
        close: false,
        h2: false,
        rate: None,
    },
    Scenario {
        key: "http1_64k",
        what: "HTTP/1.1 keep-alive, 64 KiB answers",
        tls: false,
        path: "/bytes/65536",
        connections: 64,
        close: false,
        h2: false,
        rate: None,
    },
    Scenario {
        key: "http1_close",
        what: "HTTP/1.1, a new connection per request",
        tls: false,
        path: "/bytes/128",
        connections: 16,
        close: true,
        h2: false,
        rate: None,
    },
    Scenario {
        key: "https",
        what: "HTTPS (TLS 1.3) keep-alive, 128 B answers",
        tls: true,
        path: "/bytes/128",
        connections: 64,
        close: false,
        h2: false,
        rate: None,
    },
    Scenario {
        key: "h2",
        what: "HTTP/2 over TLS, 16 clients x 8 streams, 128 B answers",
        tls: true,
        path: "/bytes/128",
        connections: 16,
        close: false,
        h2: true,
        rate: None,
    },
    Scenario {
        key: "http1_rate",
        what: "HTTP/1.1 keep-alive, 128 B answers, 10,000 req/s offered",
        tls: false,
        path: "/bytes/128",
        connections: 32,
        close: false,
        h2: false,
        rate: Some(10_000),
    },
];

/// Each run's sample, by (scenario key, proxy name), in the order of the rounds.
pub type Samples = BTreeMap<(&'static str, &'static str), Vec<Sample>>;

/// Runs `rounds` rounds of every scenario against every proxy, `seconds` each, and prints
/// a line per run; `group` gives the process group of a proxy by name (its CPU time is
/// what the proxy used).
pub fn rounds(
    rounds: usize,
    seconds: u64,
    lua: &Path,
    bin: &Path,
    group: impl Fn(&str) -> u32,
) -> Result<Samples> {
    let mut samples = Samples::new();
    for round in 0..rounds {
        for s in &SCENARIOS {
            for p in PROXIES {
                let cpu_before = group_cpu_seconds(group(p.name))?;
                let started = Instant::now();
                let mut sample = measure(s, p, seconds, lua, bin)
                    .with_context(|| format!("{} against {}", s.key, p.name))?;
                let wall = started.elapsed().as_secs_f64();
                let cpu = group_cpu_seconds(group(p.name))? - cpu_before;
                sample.cpu_share = (cpu > 0.0).then(|| cpu / wall);
                eprintln!(
                    "round {} {:<12} {:<9} {:>10.0} req/s  cpu {:>4.0}%  p50 {:>7} p99 {:>7} p99.9 {:>7} errors {}",
                    round + 1,
                    s.key,
                    p.name,
                    sample.rps,
                    sample.cpu_share.unwrap_or(0.0) * 100.0,
                    ms(sample.p50),
                    ms(sample.p99),
                    ms(sample.p999),
                    sample.errors
                );
                samples.entry((s.key, p.name)).or_default().push(sample);
            }
        }
    }
    Ok(samples)
}

/// One run of scenario `s` against proxy `p` for `seconds`: `gatehouse-bench load` at the
/// scenario's rate if it has one, h2load for HTTP/2, wrk otherwise.
fn measure(s: &Scenario, p: Proxy, seconds: u64, lua: &Path, bin: &Path) -> Result<Sample> {
    let scheme = if s.tls { "https" } else { "http" };
    let port = if s.tls { p.https } else { p.http };
    if let Some(rate) = s.rate {
        return offered_rate(s, port, rate, seconds, bin);
    }
    let url = format!("{scheme}://127.0.0.1:{port}{}", s.path);
    if s.h2 {
        return h2load(s, &url, seconds);
    }
    let duration = format!("{seconds}s");
    let connections = s.connections.to_string();
    let lua = lua.display().to_string();
    let mut args = vec!["-t1", "-c", &connections, "-d", &duration, "-s", &lua];
    if s.close {
        args.extend(["-H", "Connection: close"]);
    }
    args.push(&url);
    run_wrk(&args)
}

/// `gatehouse-bench load` offering `rate` requests/s on the load core.
fn offered_rate(s: &Scenario, port: u16, rate: u64, seconds: u64, bin: &Path) -> Result<Sample> {
    crate::sample::fixed_rate(bin, port, s.path, rate, u64::from(s.connections), seconds)
}

/// h2load (8 streams per client) on the load core: requests/s and failures, no latency.
fn h2load(s: &Scenario, url: &str, seconds: u64) -> Result<Sample> {
    let out = pinned(
        LOAD_CORE,
        Path::new("h2load"),
        &[
            "-c",
            &s.connections.to_string(),
            "-m",
            "8",
            "-D",
            &seconds.to_string(),
            "--warm-up-time",
            "1",
            url,
        ],
    )
    .output()
    .context("running h2load")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "finished in 3.00s, 41234.56 req/s, 6.12MB/s" and "requests: ... N failed, N errored"
    let rps = text
        .lines()
        .find(|l| l.starts_with("finished in"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|f| f.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .ok_or_else(|| anyhow!("h2load printed no rate: {text}"))?;
    let failed = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .map(|l| {
            l.split(", ")
                .filter(|f| f.ends_with("failed") || f.ends_with("errored"))
                .filter_map(|f| f.split_whitespace().next()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Ok(Sample {
        rps,
        errors: failed,
        ..Default::default()
    })
}
