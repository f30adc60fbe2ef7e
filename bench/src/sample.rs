//! One measurement (`Sample`) and how a load generator's run becomes one: wrk's Lua report
//! scripts, wrk on the load core, and the JSON report line wrk and `gatehouse-bench load`
//! end with.

use crate::process::pinned;
use crate::topology::LOAD_CORE;
use anyhow::{Context, Result, anyhow};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One measurement: requests/s and latency percentiles in ms (HTTP/2: rps only).
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub rps: f64,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
    pub errors: u64,
    pub requests: u64,
    /// The proxy's CPU time over the run's wall time (1.0: its core was busy throughout).
    pub cpu_share: Option<f64>,
}

impl Sample {
    /// Requests/s per core of proxy CPU: what the proxy would do with its core saturated.
    /// On two cores the load generator's core can saturate first; this still compares.
    pub fn rps_per_core(&self) -> Option<f64> {
        self.cpu_share.filter(|c| *c > 0.0).map(|c| self.rps / c)
    }
}

/// wrk's report scripts in `dir`: the plain one, and churn's (which also counts wrong
/// answers).
pub struct Scripts {
    pub report: PathBuf,
    pub churn: PathBuf,
}

/// Writes wrk's report scripts into `dir`.
pub fn write_scripts(dir: &Path) -> Result<Scripts> {
    let report = dir.join("report.lua");
    std::fs::write(&report, WRK_REPORT)?;
    let churn = dir.join("churn.lua");
    std::fs::write(&churn, format!("{WRK_REPORT}{CHURN_CHECK}"))?;
    Ok(Scripts { report, churn })
}

/// Prints requests/s, errors and latency percentiles (µs) as one JSON line when wrk ends.
/// Errors include the answers a `response` hook counted as `wrong` (only the churn script
/// has one: a hook on every answer slows wrk).
const WRK_REPORT: &str = r#"
local threads = {}
function setup(thread) table.insert(threads, thread) end
done = function(summary, latency, requests)
  local wrong = 0
  for _, t in ipairs(threads) do wrong = wrong + (t:get("wrong") or 0) end
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout + wrong
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors":%d,"p50":%d,"p99":%d,"p999":%d}\n',
    summary.requests, summary.duration, errors,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"#;

/// For churn: an answer other than the stable route's 200 that wrk would not call an
/// error (a 3xx from another route) is a failure too.
const CHURN_CHECK: &str = r#"
wrong = 0
function response(status, headers, body)
  if status ~= 200 and status < 400 then wrong = wrong + 1 end
end
"#;

/// wrk with 64 keep-alive connections on one `url` with this Host for `seconds`.
pub fn keep_alive_load(seconds: u64, lua: &Path, host: &str, url: &str) -> Result<Sample> {
    run_wrk(&[
        "-t1",
        "-c64",
        "-d",
        &format!("{seconds}s"),
        "-s",
        &lua.display().to_string(),
        "-H",
        &format!("Host: {host}"),
        url,
    ])
}

/// Runs wrk on the load core with the report script among `args`, and reads its report.
pub fn run_wrk(args: &[&str]) -> Result<Sample> {
    run_reporting(pinned(LOAD_CORE, Path::new("wrk"), args), "wrk")
}

/// Runs a load generator that ends with a JSON report line (wrk with its script, or
/// `gatehouse-bench load`) and reads the report.
pub fn run_reporting(mut cmd: Command, what: &str) -> Result<Sample> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| {
            anyhow!(
                "{what} printed no report: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let v: Value = serde_json::from_str(line)?;
    let n = |k: &str| v[k].as_f64().unwrap_or(0.0);
    Ok(Sample {
        rps: n("requests") / (n("duration_us") / 1e6).max(1e-9),
        p50: Some(n("p50") / 1000.0),
        p99: Some(n("p99") / 1000.0),
        p999: Some(n("p999") / 1000.0),
        errors: n("errors") as u64,
        requests: n("requests") as u64,
        cpu_share: None,
    })
}

/// `gatehouse-bench load` on the load core: `rate` requests/s to `path` on `port` over
/// `connections` keep-alive connections for `seconds`.
pub fn fixed_rate(
    bin: &std::path::Path,
    port: u16,
    path: &str,
    rate: u64,
    connections: u64,
    seconds: u64,
) -> Result<Sample> {
    let cmd = crate::process::pinned(
        crate::topology::LOAD_CORE,
        &bin.join("gatehouse-bench"),
        &[
            "load",
            "--port",
            &port.to_string(),
            "--host",
            "bench.example.com",
            "--path",
            path,
            "--rate",
            &rate.to_string(),
            "--connections",
            &connections.to_string(),
            "--seconds",
            &seconds.to_string(),
        ],
    );
    run_reporting(cmd, "gatehouse-bench load")
}
