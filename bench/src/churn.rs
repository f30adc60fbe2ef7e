//! Phase `churn`: a steady keep-alive load on a route that never changes while other
//! routes are added and removed, against standalone Gatehouse (route files) and nginx
//! (server blocks and reloads); what counts is the requests that failed meanwhile.

use crate::probe::wait_for;
use crate::sample::{Sample, keep_alive_load};
use crate::stats::ms;
use crate::topology::PROXIES;
use anyhow::{Context, Result, anyhow};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Where churn's route changes go.
enum Churner<'a> {
    /// Standalone Gatehouse: one route file written and one removed per change.
    Gatehouse(&'a Path),
    /// nginx: server blocks in an included directory, then a reload (SIGHUP to the master).
    Nginx { dir: &'a Path, pid: u32 },
}

/// Changes per second while the load runs, each adding one route and removing one; nginx
/// gets them in batches, one reload per `NGINX_BATCH` changes (as ingress-nginx batches
/// its reloads), since a reload per change would be a test of nginx's process spawning.
const CHURN_PER_SECOND: u64 = 100;
const NGINX_BATCH: u64 = 10;
/// Routes present at any time while churning.
const CHURN_LIVE: u64 = 20;

/// What the load saw while routes changed.
#[derive(Default)]
pub struct Churn {
    pub requests: u64,
    pub errors: u64,
    pub p99: Option<f64>,
}

/// Churn against standalone Gatehouse (route files in `gatehouse_dir`), then against nginx
/// (server blocks under `nginx_dir`, reloads sent to its master `nginx_pid`).
pub fn gatehouse_and_nginx(
    gatehouse_dir: &Path,
    nginx_dir: &Path,
    nginx_pid: u32,
    seconds: u64,
    lua: &Path,
) -> Result<(Churn, Churn)> {
    Ok((
        churn(&Churner::Gatehouse(gatehouse_dir), seconds, lua)?,
        churn(
            &Churner::Nginx {
                dir: nginx_dir,
                pid: nginx_pid,
            },
            seconds,
            lua,
        )?,
    ))
}

/// Failed requests (connect, read, write errors, timeouts, any answer but the route's
/// 200) of a steady keep-alive load on a route that never changes, while `CHURN_PER_SECOND` other
/// routes are added and removed.
fn churn(to: &Churner, seconds: u64, lua: &Path) -> Result<Churn> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let (name, port) = match to {
        Churner::Gatehouse(_) => ("gatehouse", PROXIES[0].http),
        Churner::Nginx { .. } => ("nginx", PROXIES[1].http),
    };
    let changed = std::thread::scope(|scope| -> Result<(Sample, u64)> {
        let churner = scope.spawn(|| -> Result<u64> {
            let tick = Duration::from_micros(1_000_000 / CHURN_PER_SECOND);
            let mut next = Instant::now();
            let mut k: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                change(to, k)?;
                k += 1;
                next += tick;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            Ok(k)
        });
        let load = keep_alive_load(
            seconds,
            lua,
            "bench.example.com",
            &format!("http://127.0.0.1:{port}/bytes/128"),
        );
        stop.store(true, Ordering::Relaxed);
        let changes = churner
            .join()
            .map_err(|_| anyhow!("the churning thread panicked"))??;
        Ok((load?, changes))
    })?;
    let (load, changes) = changed;
    // The changes were applied, not just written: the last route added answers its 302
    // (nginx: the last one its last reload took in).
    let last = match to {
        Churner::Gatehouse(_) => changes.checked_sub(1),
        Churner::Nginx { .. } => (changes / NGINX_BATCH * NGINX_BATCH).checked_sub(1),
    };
    if let Some(last) = last {
        wait_for(
            port,
            &format!("churn{last}.bench.example.com"),
            "/",
            "302",
            Duration::from_secs(30),
        )
        .with_context(|| format!("{name} never served the last route churn added"))?;
    }
    let requests = load.requests;
    eprintln!(
        "churn {name:<9}: {changes} route changes, {requests} requests, {} failed, p99 {} ms",
        load.errors,
        ms(load.p99)
    );
    Ok(Churn {
        requests,
        errors: load.errors,
        p99: load.p99,
    })
}

/// Change number `k`: adds route `churn<k>` and removes the one `CHURN_LIVE` changes older
/// (nginx: reloads after every `NGINX_BATCH` changes).
fn change(to: &Churner, k: u64) -> Result<()> {
    match to {
        Churner::Gatehouse(dir) => {
            std::fs::write(dir.join(format!("churn-{k}.yaml")), churn_route(k))?;
            if k >= CHURN_LIVE {
                let _ = std::fs::remove_file(dir.join(format!("churn-{}.yaml", k - CHURN_LIVE)));
            }
        }
        Churner::Nginx { dir, pid } => {
            std::fs::write(
                dir.join("churn").join(format!("{k}.conf")),
                format!(
                    "server {{ listen 28080; server_name churn{k}.bench.example.com; return 302 http://done.example.com/; }}\n"
                ),
            )?;
            if k >= CHURN_LIVE {
                let _ = std::fs::remove_file(
                    dir.join("churn").join(format!("{}.conf", k - CHURN_LIVE)),
                );
            }
            if (k + 1).is_multiple_of(NGINX_BATCH) {
                Command::new("kill")
                    .args(["-HUP", &pid.to_string()])
                    .status()
                    .context("reloading nginx")?;
            }
        }
    }
    Ok(())
}

/// A route of its own host, answering 302 (churn adds and removes these).
fn churn_route(k: u64) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: churn{k}, namespace: default}}
spec:
  parentRefs: [{{name: bench, sectionName: http}}]
  hostnames: [churn{k}.bench.example.com]
  rules:
  - filters: [{{type: RequestRedirect, requestRedirect: {{statusCode: 302, hostname: done.example.com}}}}]
"
    )
}
