//! Phase `scale`: Gatehouse (standalone) with route tables of growing size: requests/s to
//! a route in the middle, the data plane's RSS, and (from 100 routes up) how long a new
//! route file takes to answer.

use crate::probe::{dataplane_rss_mb, wait_for_route};
use crate::sample::keep_alive_load;
use crate::stats::{ms, percentile};
use crate::topology::PROXIES;
use anyhow::{Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// What one route table size gave.
pub struct Scale {
    pub routes: usize,
    pub rps: f64,
    pub rss_mb: f64,
    /// Standalone propagation with this many routes in the table (none under 100).
    pub propagation: Vec<f64>,
}

/// Requests/s (HTTP/1.1 keep-alive, to a route in the middle), data plane RSS, and (from
/// 100 routes up) propagation with `n` HTTPRoutes on the listener: one hostname each,
/// prefixes, every 10th with a header match and every 50th with a regular expression path.
pub fn route_scale(
    dir: &Path,
    sizes: &[usize],
    seconds: u64,
    lua: &Path,
    changes: usize,
) -> Result<Vec<Scale>> {
    let mut out = vec![];
    for &n in sizes {
        let yaml = gatehouse_bench::scale_routes(n);
        std::fs::write(dir.join("routes.yaml"), yaml)?;
        let (host, path) = gatehouse_bench::scale_target(n);
        let last = format!("r{}.bench.example.com", n - 1);
        let last_path = format!("/p{}/x", (n - 1) % 100);
        wait_for_route(
            &last,
            &last_path,
            "302",
            Duration::from_secs(60 + n as u64 / 200),
        )
        .with_context(|| format!("{n} routes never served"))?;
        wait_for_route(&host, &path, "200", Duration::from_secs(10))?;
        let rps = keep_alive_load(
            seconds,
            lua,
            &host,
            &format!("http://127.0.0.1:{}{path}", PROXIES[0].http),
        )?
        .rps;
        let rss_mb = dataplane_rss_mb()?.unwrap_or(0.0);
        eprintln!("routes {n:>6}: {rps:>10.0} req/s, data plane RSS {rss_mb} MB");
        let propagation = if n >= 100 {
            propagation_ms(dir, n, changes)?
        } else {
            vec![]
        };
        out.push(Scale {
            routes: n,
            rps,
            rss_mb,
            propagation,
        });
    }
    Ok(out)
}

/// Milliseconds from writing a new route file (standalone mode) to its first answer (a 302
/// of its own, since the catch-all route answers 200 for any host), over `changes` changes
/// on top of a table of `size` routes; the new files are removed afterwards.
fn propagation_ms(dir: &Path, size: usize, changes: usize) -> Result<Vec<f64>> {
    let mut out = vec![];
    for k in 0..changes {
        let host = format!("new{k}.bench.example.com");
        let yaml = format!(
            "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: new{k}, namespace: default}}
spec:
  parentRefs: [{{name: bench, sectionName: http}}]
  hostnames: [{host}]
  rules:
  - filters: [{{type: RequestRedirect, requestRedirect: {{statusCode: 302, hostname: done.example.com}}}}]
"
        );
        let start = Instant::now();
        std::fs::write(dir.join(format!("new-{k}.yaml")), yaml)?;
        wait_for_route(&host, "/", "302", Duration::from_secs(30))?;
        out.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    for k in 0..changes {
        std::fs::remove_file(dir.join(format!("new-{k}.yaml")))?;
    }
    wait_for_route(
        &format!("new{}.bench.example.com", changes - 1),
        "/",
        "200",
        Duration::from_secs(30),
    )?;
    eprintln!(
        "propagation at {size} routes over {changes} changes (file): p50 {} ms, p90 {} ms, p99 {} ms",
        ms(percentile(&out, 50.0)),
        ms(percentile(&out, 90.0)),
        ms(percentile(&out, 99.0))
    );
    Ok(out)
}
