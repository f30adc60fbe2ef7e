//! Access logs: one JSON line per request, for the Gateways whose parameters ask for them
//! (`spec.clients.accessLog`), on the data plane's standard output (its own log goes to
//! standard error).
//!
//! Writing never blocks a request: a request's line goes into a bounded queue
//! (`QUEUE_LINES`) that one thread drains to stdout; when the queue is full (stdout slower
//! than the traffic) the line is dropped and counted in
//! `gatehouse_access_log_lines_dropped_total`. Both request paths write the same fields.

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Lines waiting for the writer: about 8 MB at 1 KB a line.
const QUEUE_LINES: usize = 8192;

/// One request, as logged. Text fields are the request's own (escaped by JSON), cut to
/// `MAX_FIELD` bytes: a client's header must not make a line unbounded.
#[derive(Serialize)]
pub struct Entry<'a> {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub client: Option<std::net::IpAddr>,
    pub method: &'a str,
    pub host: &'a str,
    /// The path and query as the client sent them.
    pub path: &'a str,
    /// "HTTP/1.1", "HTTP/2".
    pub protocol: &'static str,
    /// 0: no answer was sent (the client left first).
    pub status: u16,
    /// What came of it: "proxied", or why Gatehouse answered itself ("no route", "rate
    /// limited", "upstream connect failure", ...).
    pub outcome: &'a str,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_ms: f64,
    pub upstream: Option<std::net::SocketAddr>,
    /// The backend's time to its answer's head.
    pub upstream_ms: Option<f64>,
    pub gateway: &'a str,
    pub listener: &'a str,
    /// "HTTPRoute namespace/name rule N"; empty when no route took the request.
    pub route: String,
    pub request_id: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub tls_version: Option<&'a str>,
    pub sni: Option<&'a str>,
}

/// Longest text field kept, in bytes.
pub const MAX_FIELD: usize = 1024;

/// `s` cut to at most `MAX_FIELD` bytes on a character boundary.
pub fn bounded(s: &str) -> &str {
    if s.len() <= MAX_FIELD {
        return s;
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

pub struct AccessLog {
    lines: SyncSender<String>,
    dropped: Counter,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog").finish_non_exhaustive()
    }
}

impl AccessLog {
    /// Starts the writer thread; `dropped` counts lines the full queue refused.
    pub fn start(dropped: Counter) -> AccessLog {
        let (lines, queue) = sync_channel(QUEUE_LINES);
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(queue));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "access log writer not started; access logs are dropped");
        }
        AccessLog { lines, dropped }
    }

    pub fn write(&self, entry: &Entry<'_>) {
        let Ok(line) = serde_json::to_string(entry) else {
            return;
        };
        match self.lines.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.inc();
            }
        }
    }
}

/// Drains the queue to stdout, flushing whenever it runs empty.
fn write_lines(queue: Receiver<String>) {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    while let Ok(line) = queue.recv() {
        let mut next = Some(line);
        while let Some(line) = next {
            if out.write_all(line.as_bytes()).is_err() || out.write_all(b"\n").is_err() {
                return;
            }
            next = queue.try_recv().ok();
        }
        if out.flush().is_err() {
            return;
        }
    }
}

/// Now, as RFC 3339 in UTC with milliseconds ("2026-12-06T11:43:00.123Z").
pub fn now_rfc3339() -> String {
    rfc3339(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

fn rfc3339(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since_epoch.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00.000Z");
        // 2026-12-06T11:43:00.123Z
        assert_eq!(
            rfc3339(Duration::from_millis(1_796_557_380_123)),
            "2026-12-06T11:43:00.123Z"
        );
        // A leap day.
        assert_eq!(
            rfc3339(Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn long_fields_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_FIELD);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_FIELD);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
