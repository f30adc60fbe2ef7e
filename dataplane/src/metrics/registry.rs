//! `Metrics`: every metric one data plane exposes, and their Prometheus text.
//!
//! Route series (`series.rs`) are handed out by labels at compile time and kept here
//! weakly: a series lives while a compiled route of some version holds it, and goes from
//! the output once no version does (a deleted route's series disappear; an edited route
//! keeps its own). The number of series is bounded by the config's listeners and routes.
//! The rest are prometheus-client families, updated where the thing happens.

use super::series::{Event, RouteSeries, SeriesLabels};
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};

type SeriesTable = Mutex<BTreeMap<SeriesLabels, Weak<RouteSeries>>>;

/// A listening socket: its Gateway and port.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SocketLabels {
    pub gateway: String,
    pub port: u16,
}

/// A certificate a listener serves, for a server name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct CertificateLabels {
    /// "namespace/name" of the Gateway.
    pub gateway: String,
    pub listener: String,
    /// The Secret ("namespace/name").
    pub certificate: String,
    /// The first name it covers there ("*.example.com", or "*" for any).
    pub server_name: String,
}

/// The served certificates and when each expires (Unix seconds), as of the last version.
type CertificateTable = Mutex<BTreeMap<CertificateLabels, f64>>;

/// The Content-Type of `Metrics::encode`'s output (Prometheus text, version 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub struct Metrics {
    series: Arc<SeriesTable>,
    registry: Registry,
    pub versions_applied: Counter,
    pub versions_refused: Counter,
    /// The version serving now.
    pub version: Gauge,
    /// When the serving version was applied (Unix seconds).
    pub last_applied: Gauge<f64, AtomicU64>,
    /// Resources of applied versions left out (not compiled: the rest of the version
    /// applied without them).
    pub resources_refused: Counter,
    /// How long versions take to decode, compile and swap in (ingress-nginx's reload
    /// duration, where a reload storm shows).
    pub apply_seconds: Histogram,
    /// 1 when the last version applied, 0 when it was refused.
    pub last_version_accepted: Gauge,
    pub connections_accepted: Family<SocketLabels, Counter>,
    pub connections_active: Family<SocketLabels, Gauge>,
    /// Connections closed at once because the socket was at its cap.
    pub connections_refused: Family<SocketLabels, Counter>,
    pub tls_handshakes: Family<SocketLabels, Counter>,
    /// Handshakes that failed or timed out.
    pub tls_handshake_errors: Family<SocketLabels, Counter>,
    certificates: Arc<CertificateTable>,
    /// Access log lines dropped because the writer's queue was full.
    pub access_log_dropped: Counter,
    /// Spans by what became of them (`traces::export`).
    pub spans: Family<SpanLabels, Counter>,
}

/// What became of a span: `exported`, `queue_full` (dropped: the exporter was behind) or
/// `export_failed` (dropped: the collector refused or did not answer).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SpanLabels {
    pub outcome: &'static str,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let series: Arc<SeriesTable> = Arc::default();
        let mut registry = Registry::default();
        let versions_applied = Counter::default();
        let versions_refused = Counter::default();
        let version = Gauge::default();
        let last_applied = Gauge::<f64, AtomicU64>::default();
        let resources_refused = Counter::default();
        let apply_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "gatehouse_config_apply_duration_seconds",
            "How long config versions take to decode, compile and swap in",
            apply_seconds.clone(),
        );
        let last_version_accepted = Gauge::default();
        registry.register(
            "gatehouse_config_last_version_accepted",
            "1 when the last config version applied, 0 when it was refused",
            last_version_accepted.clone(),
        );
        let connections_accepted = Family::<SocketLabels, Counter>::default();
        registry.register(
            "gatehouse_connections_accepted",
            "Client connections accepted, by Gateway and port",
            connections_accepted.clone(),
        );
        let connections_active = Family::<SocketLabels, Gauge>::default();
        registry.register(
            "gatehouse_connections_active",
            "Client connections open now, by Gateway and port",
            connections_active.clone(),
        );
        let connections_refused = Family::<SocketLabels, Counter>::default();
        registry.register(
            "gatehouse_connections_refused",
            "Client connections closed at once because their socket was at its connection cap",
            connections_refused.clone(),
        );
        let tls_handshakes = Family::<SocketLabels, Counter>::default();
        registry.register(
            "gatehouse_tls_handshakes",
            "TLS handshakes completed, by Gateway and port",
            tls_handshakes.clone(),
        );
        let tls_handshake_errors = Family::<SocketLabels, Counter>::default();
        registry.register(
            "gatehouse_tls_handshake_errors",
            "TLS handshakes that failed or timed out, by Gateway and port",
            tls_handshake_errors.clone(),
        );
        let access_log_dropped = Counter::default();
        registry.register(
            "gatehouse_access_log_lines_dropped",
            "Access log lines dropped because standard output was slower than the requests",
            access_log_dropped.clone(),
        );
        let spans = Family::<SpanLabels, Counter>::default();
        registry.register(
            "gatehouse_trace_spans",
            "Spans by outcome: exported, or dropped (queue_full, export_failed)",
            spans.clone(),
        );
        let certificates: Arc<CertificateTable> = Arc::default();
        registry.register_collector(Box::new(CertificateCollector(certificates.clone())));
        registry.register(
            "gatehouse_config_versions_applied",
            "Config versions applied (each a full config or a delta from the operator)",
            versions_applied.clone(),
        );
        registry.register(
            "gatehouse_config_versions_refused",
            "Config versions refused as a whole (NACKed; the previous one serves on)",
            versions_refused.clone(),
        );
        registry.register(
            "gatehouse_config_version",
            "The config version serving now",
            version.clone(),
        );
        registry.register(
            "gatehouse_config_last_applied_timestamp_seconds",
            "When the serving config version was applied",
            last_applied.clone(),
        );
        registry.register(
            "gatehouse_config_resources_refused",
            "Resources of applied versions left out (a virtual host, listener or cluster that did not compile; reported to the operator)",
            resources_refused.clone(),
        );
        registry.register_collector(Box::new(SeriesCollector(series.clone())));
        Metrics {
            series,
            registry,
            versions_applied,
            versions_refused,
            version,
            last_applied,
            resources_refused,
            apply_seconds,
            last_version_accepted,
            connections_accepted,
            connections_active,
            connections_refused,
            tls_handshakes,
            tls_handshake_errors,
            certificates,
            access_log_dropped,
            spans,
        }
    }
}

impl Metrics {
    /// The series of `labels`: the one already handed out, or a new one.
    pub fn series(&self, labels: SeriesLabels) -> Arc<RouteSeries> {
        let Ok(mut table) = self.series.lock() else {
            return Arc::new(RouteSeries::new(labels));
        };
        if let Some(s) = table.get(&labels).and_then(Weak::upgrade) {
            return s;
        }
        let s = Arc::new(RouteSeries::new(labels.clone()));
        table.insert(labels, Arc::downgrade(&s));
        s
    }

    /// The certificates the serving version presents, and when each expires.
    pub fn set_certificates(&self, served: BTreeMap<CertificateLabels, f64>) {
        if let Ok(mut table) = self.certificates.lock() {
            *table = served;
        }
    }

    /// Everything, as Prometheus text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Encodes the live route series at each scrape.
#[derive(Debug)]
struct SeriesCollector(Arc<SeriesTable>);

impl SeriesCollector {
    fn live(&self) -> Vec<Arc<RouteSeries>> {
        let Ok(mut table) = self.0.lock() else {
            return vec![];
        };
        table.retain(|_, s| s.strong_count() > 0);
        table.values().filter_map(Weak::upgrade).collect()
    }
}

/// Which histogram of a series a family shows.
type HistogramOf = fn(&RouteSeries) -> &super::histogram::Histogram;
/// Which of a series' (in, out) byte counts a family shows.
type BytesOf = fn((u64, u64)) -> u64;

fn route_labels(l: &SeriesLabels) -> [(&'static str, &str); 5] {
    [
        ("gateway", &l.gateway),
        ("listener", &l.listener),
        ("route_kind", &l.route_kind),
        ("route_namespace", &l.route_namespace),
        ("route_name", &l.route_name),
    ]
}

impl prometheus_client::collector::Collector for SeriesCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let live = self.live();
        let mut requests = encoder.encode_descriptor(
            "gatehouse_requests",
            "Requests answered, by Gateway, listener, route, method and status code (0: the client left before an answer)",
            None,
            MetricType::Counter,
        )?;
        for s in &live {
            for (method, code, n) in s.requests() {
                let code = code.to_string();
                let [g, l, k, ns, name] = route_labels(&s.labels);
                let labels = [g, l, k, ns, name, ("method", method), ("code", &code)];
                requests
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, f64>(&n, None)?;
            }
        }
        let histograms: [(&str, &str, HistogramOf); 2] = [
            (
                "gatehouse_request_duration_seconds",
                "From the request's head read to its answer's last byte",
                |s| &s.duration,
            ),
            (
                "gatehouse_upstream_first_byte_seconds",
                "From the request sent to a backend to its answer's head",
                |s| &s.upstream_first_byte,
            ),
        ];
        for (name, help, histogram) in histograms {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for s in &live {
                let (sum, count, buckets) = histogram(s).snapshot();
                family
                    .encode_family(&route_labels(&s.labels))?
                    .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
            }
        }
        let bytes: [(&str, &str, BytesOf); 2] = [
            (
                "gatehouse_request_body_bytes",
                "Request body bytes read from clients",
                |b| b.0,
            ),
            (
                "gatehouse_response_body_bytes",
                "Answer body bytes sent to clients",
                |b| b.1,
            ),
        ];
        for (name, help, pick) in bytes {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for s in &live {
                family
                    .encode_family(&route_labels(&s.labels))?
                    .encode_counter::<NoLabelSet, _, f64>(&pick(s.bytes()), None)?;
            }
        }
        let mut events = encoder.encode_descriptor(
            "gatehouse_route_events",
            "Retries, upstream connect errors, and requests a route's rate limit, external auth or source address lists refused",
            None,
            MetricType::Counter,
        )?;
        for s in &live {
            for (event, n) in s.events().filter(|(_, n)| *n > 0) {
                let [g, l, k, ns, name] = route_labels(&s.labels);
                let labels = [g, l, k, ns, name, ("event", event_name(event))];
                events
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, f64>(&n, None)?;
            }
        }
        Ok(())
    }
}

/// Encodes the served certificates' expiry at each scrape.
#[derive(Debug)]
struct CertificateCollector(Arc<CertificateTable>);

impl prometheus_client::collector::Collector for CertificateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(table) = self.0.lock() else {
            return Ok(());
        };
        let mut family = encoder.encode_descriptor(
            "gatehouse_tls_certificate_expiry_timestamp_seconds",
            "When each certificate a listener serves expires (its notAfter, Unix seconds)",
            None,
            MetricType::Gauge,
        )?;
        for (c, expiry) in table.iter() {
            let labels = [
                ("gateway", c.gateway.as_str()),
                ("listener", &c.listener),
                ("certificate", &c.certificate),
                ("server_name", &c.server_name),
            ];
            family.encode_family(&labels)?.encode_gauge(expiry)?;
        }
        Ok(())
    }
}

fn event_name(e: Event) -> &'static str {
    match e {
        Event::Retry => "retry",
        Event::UpstreamConnectError => "upstream_connect_error",
        Event::RateLimited => "rate_limited",
        Event::AuthDenied => "auth_denied",
        Event::SourceDenied => "source_denied",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Observed;
    use std::time::Duration;

    fn labels(route: &str) -> SeriesLabels {
        SeriesLabels {
            gateway: "default/gw".into(),
            listener: "http".into(),
            route_kind: "HTTPRoute".into(),
            route_namespace: "default".into(),
            route_name: route.into(),
        }
    }

    /// The same labels give the same series (a route compiled again keeps its counts); a
    /// series no route holds leaves the page; histogram buckets are cumulative on it.
    #[test]
    fn series_are_shared_by_labels_and_encoded_cumulatively() {
        let metrics = Metrics::default();
        let a = metrics.series(labels("a"));
        assert!(Arc::ptr_eq(&a, &metrics.series(labels("a"))));
        let get = http::Method::GET;
        for ms in [3, 30] {
            a.record(&Observed {
                method: &get,
                status: 200,
                duration: Duration::from_millis(ms),
                upstream_first_byte: None,
                bytes_in: 0,
                bytes_out: 10,
            });
        }
        let gone = metrics.series(labels("gone"));
        drop(gone);
        let text = metrics.encode();
        let route = r#"gateway="default/gw",listener="http",route_kind="HTTPRoute",route_namespace="default",route_name="a""#;
        for line in [
            format!(r#"gatehouse_requests_total{{{route},method="GET",code="200"}} 2"#),
            format!(r#"gatehouse_request_duration_seconds_bucket{{{route},le="0.005"}} 1"#),
            format!(r#"gatehouse_request_duration_seconds_bucket{{{route},le="0.025"}} 1"#),
            format!(r#"gatehouse_request_duration_seconds_bucket{{{route},le="0.05"}} 2"#),
            format!(r#"gatehouse_request_duration_seconds_bucket{{{route},le="+Inf"}} 2"#),
            format!(r#"gatehouse_request_duration_seconds_count{{{route}}} 2"#),
            format!(r#"gatehouse_response_body_bytes_total{{{route}}} 20"#),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        assert!(!text.contains(r#"route_name="gone""#), "{text}");
    }
}
