//! Phase `slow`: what slow and idle clients cost each proxy, and what a normal client sees
//! meanwhile. For each proxy in turn: a normal client's latency alone (a fixed offered
//! rate, `gatehouse-bench load`); then `HELD` connections opened and held, half having sent
//! half a request head (a slowloris), half idle after one answered request (kept alive);
//! the proxy's open files and resident memory counted with them held, and the same load
//! again. Open files and memory are reported per 10,000 held connections.
//!
//! `HELD` is 8,000, under Gatehouse's default `maxConnections` (10,000 per port), so every
//! proxy runs at its defaults but for the connection limits nginx and haproxy need raised
//! (`peers`). The held connections are measured within Gatehouse's 10 s header timeout.

use crate::probe::group_files_and_rss;
use crate::topology::PROXIES;
use anyhow::{Context, Result};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Connections held per proxy.
pub const HELD: usize = 8_000;
/// The normal client's offered rate (requests/s) and connections.
const RATE: u64 = 1_000;
const CONNECTIONS: u64 = 10;

/// One proxy's figures.
pub struct SlowClients {
    pub name: &'static str,
    /// Connections held (opened and, for the idle half, answered).
    pub held: usize,
    pub files_alone: usize,
    pub files_held: usize,
    pub rss_alone_mb: f64,
    pub rss_held_mb: f64,
    /// The normal client's p99 (ms) alone and with the connections held.
    pub p99_alone: Option<f64>,
    pub p99_held: Option<f64>,
    pub errors_held: u64,
    /// How long opening the held connections took.
    pub open_seconds: f64,
}

impl SlowClients {
    pub fn files_per_10k(&self) -> f64 {
        per_10k(
            self.files_held.saturating_sub(self.files_alone) as f64,
            self.held,
        )
    }

    pub fn mb_per_10k(&self) -> f64 {
        per_10k(self.rss_held_mb - self.rss_alone_mb, self.held)
    }
}

fn per_10k(v: f64, held: usize) -> f64 {
    (v * 10_000.0 / held.max(1) as f64 * 10.0).round() / 10.0
}

/// Runs the phase on every proxy (`group`: a proxy's process group).
pub fn phase(bin: &Path, seconds: u64, group: impl Fn(&str) -> u32) -> Result<Vec<SlowClients>> {
    let seconds = seconds.min(5);
    let mut out = Vec::new();
    for p in PROXIES {
        let pgid = group(p.name);
        let alone = offered(bin, p.http, seconds)?;
        let (files_alone, rss_alone_mb) = group_files_and_rss(pgid)?;
        let started = Instant::now();
        let held = hold(p.http).with_context(|| format!("{}: holding connections", p.name))?;
        let open_seconds = started.elapsed().as_secs_f64();
        let (files_opened, rss_opened) = group_files_and_rss(pgid)?;
        let with_held = offered(bin, p.http, seconds)?;
        let (files_after, rss_after) = group_files_and_rss(pgid)?;
        let r = SlowClients {
            name: p.name,
            held: held.len(),
            files_alone,
            files_held: files_opened.max(files_after),
            rss_alone_mb,
            rss_held_mb: rss_opened.max(rss_after),
            p99_alone: alone.p99,
            p99_held: with_held.p99,
            errors_held: with_held.errors,
            open_seconds,
        };
        eprintln!(
            "slow {:>9}: {} held in {:.1} s; +{:.0} files, +{:.1} MB per 10k; p99 {} ms alone, {} ms held ({} errors)",
            r.name,
            r.held,
            r.open_seconds,
            r.files_per_10k(),
            r.mb_per_10k(),
            crate::stats::ms(r.p99_alone),
            crate::stats::ms(r.p99_held),
            r.errors_held
        );
        drop(held);
        // Let the proxy see the closes before the next one is measured.
        std::thread::sleep(Duration::from_secs(2));
        out.push(r);
    }
    Ok(out)
}

/// The normal client: `RATE` requests/s over `CONNECTIONS` keep-alive connections.
fn offered(bin: &Path, port: u16, seconds: u64) -> Result<crate::sample::Sample> {
    crate::sample::fixed_rate(bin, port, "/bytes/1", RATE, CONNECTIONS, seconds)
}

/// Opens `HELD` connections to `port`: even ones send half a head, odd ones a whole
/// request whose answer is read, and then nothing. A connection the proxy refuses or
/// closes is not counted.
fn hold(port: u16) -> Result<Vec<TcpStream>> {
    let half = b"GET /bytes/1 HTTP/1.1\r\nHost: bench.example.com\r\nUser-Agent: slow\r\n";
    let whole = b"GET /bytes/1 HTTP/1.1\r\nHost: bench.example.com\r\n\r\n";
    let mut held = Vec::with_capacity(HELD);
    let mut answer = [0u8; 4096];
    for i in 0..HELD {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            continue;
        };
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        if i % 2 == 0 {
            if s.write_all(half).is_ok() {
                held.push(s);
            }
        } else if s.write_all(whole).is_ok() && matches!(s.read(&mut answer), Ok(n) if n > 0) {
            held.push(s);
        }
    }
    Ok(held)
}
