//! The request series of one route on one listener (or of a listener's requests no route
//! took): counts by method and status, the duration and upstream first-byte histograms,
//! bytes in and out, and what the route's policies refused or retried.
//!
//! A route gets its series when it is compiled (`Metrics::series`), so a request records
//! into it with no label lookup: both request paths cost a lock-free histogram add or two,
//! a short lock for the (method, code) count and four atomic adds. The same labels give the
//! same series across versions, so a counter never restarts because a route was edited.

use super::histogram::Histogram;
use rustc_hash::FxHashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What a series is labelled with. Names from the model: Kubernetes names (or YAML keys in
/// standalone), never from requests, so the label sets are bounded by the config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesLabels {
    /// "namespace/name" of the Gateway.
    pub gateway: String,
    /// The listener's name; empty for a request no listener of the port took.
    pub listener: String,
    /// "HTTPRoute", "Ingress"; empty for requests no route took.
    pub route_kind: String,
    pub route_namespace: String,
    pub route_name: String,
}

/// The methods counted by name; any other is counted as "OTHER" (a client picks the
/// method, so it may not widen the label set).
pub const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "OTHER",
];

fn method_index(m: &http::Method) -> u8 {
    match *m {
        http::Method::GET => 0,
        http::Method::HEAD => 1,
        http::Method::POST => 2,
        http::Method::PUT => 3,
        http::Method::DELETE => 4,
        http::Method::CONNECT => 5,
        http::Method::OPTIONS => 6,
        http::Method::TRACE => 7,
        http::Method::PATCH => 8,
        _ => 9,
    }
}

/// Why a route's policy answered a request itself or a request was sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// An attempt after the first (retry policy, another endpoint after a failed connect).
    Retry,
    /// A connection to an endpoint could not be made.
    UpstreamConnectError,
    RateLimited,
    /// Refused by the external auth check.
    AuthDenied,
    /// Refused by the route's source address lists.
    SourceDenied,
}

impl Event {
    pub const ALL: [Event; 5] = [
        Event::Retry,
        Event::UpstreamConnectError,
        Event::RateLimited,
        Event::AuthDenied,
        Event::SourceDenied,
    ];
}

/// One request as recorded.
pub struct Observed<'a> {
    pub method: &'a http::Method,
    /// The status the client got; 0 when none was sent (the client left first).
    pub status: u16,
    /// From the request head read to the answer's last byte.
    pub duration: Duration,
    /// From the request sent to the backend to its answer's head; None when no backend
    /// answered.
    pub upstream_first_byte: Option<Duration>,
    /// Request body bytes read from the client.
    pub bytes_in: u64,
    /// Answer body bytes sent to the client.
    pub bytes_out: u64,
}

#[derive(Debug)]
pub struct RouteSeries {
    pub labels: SeriesLabels,
    /// Requests by (method index, status). At most 10 methods times the codes answered;
    /// codes come from backends too, so they are clamped to 100..=999 (0: none sent).
    requests: Mutex<FxHashMap<(u8, u16), u64>>,
    pub duration: Histogram,
    pub upstream_first_byte: Histogram,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    events: [AtomicU64; Event::ALL.len()],
}

impl RouteSeries {
    pub fn new(labels: SeriesLabels) -> RouteSeries {
        RouteSeries {
            labels,
            requests: Mutex::default(),
            duration: Histogram::default(),
            upstream_first_byte: Histogram::default(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            events: Default::default(),
        }
    }

    pub fn record(&self, o: &Observed<'_>) {
        let status = if o.status == 0 || (100..1000).contains(&o.status) {
            o.status
        } else {
            0
        };
        if let Ok(mut requests) = self.requests.lock() {
            *requests
                .entry((method_index(o.method), status))
                .or_insert(0) += 1;
        }
        self.duration.observe(o.duration);
        if let Some(d) = o.upstream_first_byte {
            self.upstream_first_byte.observe(d);
        }
        self.bytes_in.fetch_add(o.bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(o.bytes_out, Ordering::Relaxed);
    }

    pub fn count(&self, event: Event) {
        self.count_by(event, 1);
    }

    /// `n` occurrences of `event` (retries: the attempts after the first).
    pub fn count_by(&self, event: Event, n: u64) {
        if n == 0 {
            return;
        }
        let i = Event::ALL.iter().position(|e| *e == event).unwrap_or(0);
        self.events[i].fetch_add(n, Ordering::Relaxed);
    }

    /// (method, status, count), sorted.
    pub fn requests(&self) -> Vec<(&'static str, u16, u64)> {
        let mut out: Vec<_> = match self.requests.lock() {
            Ok(r) => r
                .iter()
                .map(|((m, s), n)| (METHODS[usize::from(*m)], *s, *n))
                .collect(),
            Err(_) => vec![],
        };
        out.sort_unstable();
        out
    }

    pub fn bytes(&self) -> (u64, u64) {
        (
            self.bytes_in.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed),
        )
    }

    pub fn events(&self) -> impl Iterator<Item = (Event, u64)> + '_ {
        Event::ALL
            .iter()
            .zip(&self.events)
            .map(|(e, n)| (*e, n.load(Ordering::Relaxed)))
    }
}
