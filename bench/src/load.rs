//! A load generator at a fixed offered rate: `gatehouse-bench load`. wrk measures at
//! saturation only and wrk2 is not packaged here, so this sends HTTP/1.1 keep-alive
//! requests on a schedule (request i is due at start + i/rate, spread over the
//! connections) and measures each latency from when the request was due, not from when
//! it went out: a proxy that stalls is charged for the requests it held up (no
//! coordinated omission). Prints wrk's report shape as one JSON line.

use anyhow::{Context, Result, bail};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Load {
    pub port: u16,
    pub host: String,
    pub path: String,
    /// Requests per second offered.
    pub rate: u64,
    pub connections: u64,
    pub seconds: u64,
}

/// Runs the load and prints its report; the last line of stdout.
pub fn run(load: &Load) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (latencies, errors) = rt.block_on(offer(load))?;
    let mut us: Vec<u64> = latencies.iter().map(|d| d.as_micros() as u64).collect();
    us.sort_unstable();
    let pct = |p: f64| -> u64 {
        if us.is_empty() {
            return 0;
        }
        let rank = ((p / 100.0) * us.len() as f64).ceil() as usize;
        us[rank.clamp(1, us.len()) - 1]
    };
    println!(
        "{{\"requests\":{},\"duration_us\":{},\"errors\":{},\"p50\":{},\"p99\":{},\"p999\":{}}}",
        us.len(),
        load.seconds * 1_000_000,
        errors,
        pct(50.0),
        pct(99.0),
        pct(99.9)
    );
    Ok(())
}

async fn offer(load: &Load) -> Result<(Vec<Duration>, u64)> {
    let total = load.rate * load.seconds;
    let interval = Duration::from_secs_f64(1.0 / load.rate as f64);
    let start = Instant::now() + Duration::from_millis(50);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: gatehouse-bench\r\n\r\n",
        load.path, load.host
    );
    let mut tasks = Vec::new();
    for c in 0..load.connections {
        let request = request.clone();
        let port = load.port;
        let (connections, seconds) = (load.connections, load.seconds);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity((total / connections + 1) as usize);
            let mut errors = 0u64;
            let mut stream: Option<TcpStream> = None;
            let mut buf = Vec::with_capacity(8192);
            let mut i = c;
            while i < total {
                let due = start + interval * i as u32;
                tokio::time::sleep_until(due.into()).await;
                let ok = match stream.as_mut() {
                    Some(s) => exchange(s, request.as_bytes(), &mut buf).await.is_ok(),
                    None => false,
                };
                let ok = ok || {
                    // A new connection, and the request again on it.
                    stream = TcpStream::connect(("127.0.0.1", port)).await.ok();
                    match stream.as_mut() {
                        Some(s) => {
                            let _ = s.set_nodelay(true);
                            exchange(s, request.as_bytes(), &mut buf).await.is_ok()
                        }
                        None => false,
                    }
                };
                if ok {
                    latencies.push(due.elapsed());
                } else {
                    errors += 1;
                    stream = None;
                }
                if start.elapsed() > Duration::from_secs(seconds + 10) {
                    break; // Hopelessly behind: the rest would not be this rate anyway.
                }
                i += connections;
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.context("a load task failed")?;
        latencies.extend(l);
        errors += e;
    }
    Ok((latencies, errors))
}

/// Sends `count` requests one after the other on one keep-alive connection; every answer
/// must be 200. For the instruction-count gate, which counts what the data plane executes
/// while they run.
pub fn sequential(port: u16, host: &str, path: &str, count: u64) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
        s.set_nodelay(true)?;
        let mut buf = Vec::with_capacity(8192);
        for i in 0..count {
            exchange(&mut s, request.as_bytes(), &mut buf)
                .await
                .with_context(|| format!("request {i}"))?;
        }
        Ok(())
    })
}

/// Sends one request and reads its answer (Content-Length or chunked); a status other
/// than 200 is an error.
async fn exchange(s: &mut TcpStream, request: &[u8], buf: &mut Vec<u8>) -> Result<()> {
    s.write_all(request).await?;
    buf.clear();
    let head_end = loop {
        if let Some(at) = find(buf, b"\r\n\r\n") {
            break at + 4;
        }
        read_more(s, buf).await?;
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("answer head")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("answer: {}", head.lines().next().unwrap_or_default());
    }
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            })
            .map(|(_, v)| v.trim().to_string())
    };
    if let Some(len) = header("content-length") {
        let len: usize = len.parse().context("content-length")?;
        while buf.len() < head_end + len {
            read_more(s, buf).await?;
        }
    } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        while find(&buf[head_end..], b"0\r\n\r\n").is_none() {
            read_more(s, buf).await?;
        }
    } else {
        bail!("an answer without a length on a kept-alive connection");
    }
    Ok(())
}

async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<()> {
    let mut chunk = [0u8; 16384];
    let n = s.read(&mut chunk).await?;
    if n == 0 {
        bail!("connection closed");
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
