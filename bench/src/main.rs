//! `bench/run`: Gatehouse, nginx and haproxy as equivalent reverse proxies in front of one
//! backend, driven by the same load generators in the same run. Each proxy is pinned to
//! core 0; the load generator and the backend share core 1. Scenarios run interleaved
//! (every proxy once per round) so drift hits all three alike; the summary is the median
//! of the rounds and each figure is also given as a ratio to nginx's in the same run.
//!
//! Prints one JSON object as its last line; with `--write-docs FILE` also writes the tables
//! of docs/benchmarks.md.

mod apiserver;
mod churn;
mod load;
mod peers;
mod probe;
mod process;
mod proxies;
mod report;
mod sample;
mod scale;
mod setup;
mod slow_clients;
mod stats;
mod topology;

use anyhow::{Context, Result};
use process::Running;
use serde_json::Value;
use std::path::{Path, PathBuf};

struct Options {
    quick: bool,
    rounds: usize,
    seconds: u64,
    bin: PathBuf,
    write_docs: Option<PathBuf>,
    /// Phases to run (proxies, slow, scale, apiserver, churn); all when empty.
    only: Vec<String>,
    /// Route table sizes for scale and propagation.
    sizes: Vec<usize>,
}

impl Options {
    fn runs(&self, phase: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == phase)
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if args.first().is_some_and(|a| a == "requests") {
        let port: u16 = value("--port").context("requests: --port")?.parse()?;
        let count: u64 = value("--count").context("requests: --count")?.parse()?;
        return load::sequential(
            port,
            &value("--host").unwrap_or_else(|| "localhost".into()),
            &value("--path").unwrap_or_else(|| "/".into()),
            count,
        );
    }
    if args.first().is_some_and(|a| a == "load") {
        let number = |name: &str| -> Result<u64> {
            value(name)
                .with_context(|| format!("load: {name} is required"))?
                .parse()
                .with_context(|| format!("load: {name}"))
        };
        return load::run(&load::Load {
            port: u16::try_from(number("--port")?).context("--port")?,
            host: value("--host").unwrap_or_else(|| "localhost".into()),
            path: value("--path").unwrap_or_else(|| "/".into()),
            rate: number("--rate")?.max(1),
            connections: number("--connections")?.max(1),
            seconds: number("--seconds")?.max(1),
        });
    }
    let opts = Options {
        quick,
        rounds: value("--rounds")
            .map(|r| r.parse())
            .transpose()
            .context("--rounds")?
            .unwrap_or(if quick { 1 } else { 5 }),
        seconds: value("--seconds")
            .map(|r| r.parse())
            .transpose()
            .context("--seconds")?
            .unwrap_or(if quick { 3 } else { 10 }),
        bin: value("--bin")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("target/release")),
        write_docs: value("--write-docs").map(PathBuf::from),
        only: value("--only")
            .map(|v| v.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
        sizes: match value("--sizes") {
            Some(v) => v
                .split(',')
                .map(|n| n.parse().context("--sizes"))
                .collect::<Result<_>>()?,
            None if quick => vec![10, 1000],
            None => vec![10, 100, 1000, 10_000, 50_000],
        },
    };
    let dir = tempfile::tempdir()?;
    let mut running = Running::default();
    let result = run(&opts, dir.path(), &mut running);
    drop(running);
    let summary = result?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

/// The phases in order, on what `setup` started: the proxies side by side, slow clients,
/// route scale, propagation through the API server, churn; then the summary (and the docs
/// table).
fn run(opts: &Options, dir: &Path, running: &mut Running) -> Result<Value> {
    let started = setup::start(&opts.bin, dir, running)?;
    let lua = &started.scripts.report;

    let rounds = if opts.runs("proxies") { opts.rounds } else { 0 };
    let samples = proxies::rounds(rounds, opts.seconds, lua, &opts.bin, |name| {
        started.group(name)
    })?;
    let rss_mb = probe::dataplane_rss_mb()?;

    let slow = if opts.runs("slow") {
        slow_clients::phase(&opts.bin, opts.seconds, |name| started.group(name))?
    } else {
        vec![]
    };

    let sizes: &[usize] = if opts.runs("scale") { &opts.sizes } else { &[] };
    let changes = if opts.quick { 20 } else { 100 };
    let scale = scale::route_scale(&started.gatehouse_dir, sizes, opts.seconds, lua, changes)?;

    let apiserver = if opts.runs("apiserver") {
        apiserver::phase(&opts.bin, opts.quick, changes, dir, running)?
    } else {
        vec![]
    };

    let (churn_gatehouse, churn_nginx) = if opts.runs("churn") {
        churn::gatehouse_and_nginx(
            &started.gatehouse_dir,
            &started.nginx_dir,
            started.nginx_pid,
            opts.seconds,
            &started.scripts.churn,
        )?
    } else {
        Default::default()
    };

    let results = report::Results {
        samples,
        rss_mb,
        scale,
        apiserver,
        churn_gatehouse,
        churn_nginx,
        rounds: opts.rounds,
        seconds: opts.seconds,
        quick: opts.quick,
    };
    let mut summary = report::summary(&results);
    if let Some(o) = summary.as_object_mut() {
        o.insert("slow_clients".into(), report::slow_clients(&slow));
    }
    if let Some(path) = &opts.write_docs {
        std::fs::write(path, report::docs_table(&results.samples, opts.rounds))?;
    }
    Ok(summary)
}
