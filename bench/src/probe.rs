//! What the harness reads off the running processes without loading them: whether a port
//! answers a route with a given status yet, a process group's CPU time, open files and
//! resident memory, and the Gatehouse data plane's resident memory.

use crate::topology::PROXIES;
use anyhow::{Result, bail};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Polls Gatehouse's HTTP port until `host` and `path` answer `status` (every millisecond).
pub fn wait_for_route(host: &str, path: &str, status: &str, limit: Duration) -> Result<()> {
    wait_for(PROXIES[0].http, host, path, status, limit)
}

/// Polls a port until `host` and `path` answer `status` (every millisecond).
pub fn wait_for(port: u16, host: &str, path: &str, status: &str, limit: Duration) -> Result<()> {
    let start = Instant::now();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(request.as_bytes());
            let mut answer = [0u8; 12];
            if s.read_exact(&mut answer).is_ok() && answer.ends_with(status.as_bytes()) {
                return Ok(());
            }
        }
        if start.elapsed() > limit {
            bail!("{host}{path} did not answer {status} within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The processes of a process group: each one's /proc directory and the fields of its
/// `stat` after "pid (comm)" (state, ppid, pgrp, ...).
fn group_members(pgid: u32) -> Result<Vec<(std::path::PathBuf, Vec<String>)>> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let path = entry?.path();
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<String> = rest.split_whitespace().map(str::to_string).collect();
        if fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) {
            members.push((path, fields));
        }
    }
    Ok(members)
}

/// CPU seconds (user and system) used so far by the processes of a process group.
pub fn group_cpu_seconds(pgid: u32) -> Result<f64> {
    // USER_HZ: the unit of /proc/<pid>/stat times, 100 on every Linux architecture.
    const TICKS: f64 = 100.0;
    let mut ticks = 0u64;
    for (_, fields) in group_members(pgid)? {
        // utime (12th field after the command), stime (13th).
        for i in [11, 12] {
            ticks += fields
                .get(i)
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(ticks as f64 / TICKS)
}

/// Open files (sockets included) and resident memory (MB) of the processes of a process
/// group, summed.
pub fn group_files_and_rss(pgid: u32) -> Result<(usize, f64)> {
    let mut files = 0;
    let mut kb = 0.0;
    for (path, _) in group_members(pgid)? {
        files += std::fs::read_dir(path.join("fd")).map_or(0, |d| d.count());
        let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
        kb += rss_kb(&status).unwrap_or(0.0);
    }
    Ok((files, (kb / 1024.0 * 10.0).round() / 10.0))
}

/// VmRSS of a /proc status text, in kB.
fn rss_kb(status: &str) -> Option<f64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
}

/// Resident memory of the Gatehouse data plane process, in MB.
pub fn dataplane_rss_mb() -> Result<Option<f64>> {
    for entry in std::fs::read_dir("/proc")? {
        let path = entry?.path();
        let Ok(cmdline) = std::fs::read(path.join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_dataplane = args.first().is_some_and(|a| a.ends_with(b"gatehouse"))
            && args.get(1).is_some_and(|a| *a == b"dataplane");
        if !is_dataplane {
            continue;
        }
        let status = std::fs::read_to_string(path.join("status"))?;
        return Ok(rss_kb(&status).map(|kb| (kb / 1024.0 * 10.0).round() / 10.0));
    }
    Ok(None)
}
