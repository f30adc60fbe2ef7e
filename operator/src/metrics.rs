//! What the operator counts, as Prometheus text on its admin endpoint (`/metrics`):
//! how long loading and translating take, how many objects of each kind it holds, the
//! versions it published, how long each took to reach the data planes of each Gateway
//! (from the change seen to the ACK), the ACKs and NACKs, status writes, leadership and the kinds it cannot
//! watch. In standalone mode the data plane's own metrics follow on the same page.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GatewayLabels {
    pub gateway: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AckLabels {
    /// "true" for an ACK, "false" for a NACK (the version refused as a whole).
    pub accepted: String,
}

/// Status patches sent to the API server by this process (tests read it: no status is
/// written that did not change).
pub static STATUS_WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The Content-Type of `encode`'s output (Prometheus text, version 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Versions whose publish time is kept for the propagation histogram: data planes ACK
/// within seconds, so the last few are all an ACK can name.
const PUBLISHED_KEPT: usize = 64;

pub struct OperatorMetrics {
    registry: Registry,
    pub load_seconds: Histogram,
    pub translate_seconds: Histogram,
    pub versions_published: Counter,
    pub objects: Family<KindLabels, Gauge>,
    pub source_errors: Gauge,
    pub unwatched: Family<KindLabels, Gauge>,
    pub acks: Family<AckLabels, Counter>,
    pub propagation_seconds: Family<GatewayLabels, Histogram>,
    pub leader: Gauge,
    pub status_writes: Counter,
    /// (version, when it was published), newest last.
    published: Mutex<VecDeque<(u64, Instant)>>,
}

impl std::fmt::Debug for OperatorMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorMetrics").finish_non_exhaustive()
    }
}

/// 1 ms to about 16 s, doubling.
fn seconds_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 15)
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let m = OperatorMetrics {
            load_seconds: Histogram::new(seconds_buckets()),
            translate_seconds: Histogram::new(seconds_buckets()),
            versions_published: Counter::default(),
            objects: Family::default(),
            source_errors: Gauge::default(),
            unwatched: Family::default(),
            acks: Family::default(),
            propagation_seconds: Family::new_with_constructor(|| Histogram::new(seconds_buckets())),
            leader: Gauge::default(),
            status_writes: Counter::default(),
            published: Mutex::default(),
            registry: Registry::default(),
        };
        registry.register(
            "gatehouse_operator_load_duration_seconds",
            "Reading the sources (a YAML directory or the API server's caches) per round",
            m.load_seconds.clone(),
        );
        registry.register(
            "gatehouse_operator_translation_duration_seconds",
            "Translating the objects into the model per round",
            m.translate_seconds.clone(),
        );
        registry.register(
            "gatehouse_operator_config_versions_published",
            "Config versions published to data planes",
            m.versions_published.clone(),
        );
        registry.register(
            "gatehouse_operator_objects",
            "Objects the operator holds, by kind",
            m.objects.clone(),
        );
        registry.register(
            "gatehouse_operator_source_errors",
            "Objects or files the sources could not read (reported in /status and the log)",
            m.source_errors.clone(),
        );
        registry.register(
            "gatehouse_operator_unwatched_kinds",
            "1 for each kind the operator cannot watch (no CRD, or its list forbidden)",
            m.unwatched.clone(),
        );
        registry.register(
            "gatehouse_operator_config_acks",
            "Data plane answers to config versions (accepted=false: NACK, the version refused)",
            m.acks.clone(),
        );
        registry.register(
            "gatehouse_operator_propagation_seconds",
            "From a change seen by the operator to a data plane of the Gateway acknowledging the version made of it",
            m.propagation_seconds.clone(),
        );
        registry.register(
            "gatehouse_operator_leader",
            "1 while this replica leads (serves data planes and writes status)",
            m.leader.clone(),
        );
        registry.register(
            "gatehouse_operator_status_writes",
            "Status writes to the API server (only changed status is written)",
            m.status_writes.clone(),
        );
        OperatorMetrics { registry, ..m }
    }
}

impl OperatorMetrics {
    /// A version went out, made of the change seen at `since`.
    pub fn published(&self, version: u64, since: Instant) {
        self.versions_published.inc();
        if let Ok(mut p) = self.published.lock() {
            p.push_back((version, since));
            while p.len() > PUBLISHED_KEPT {
                p.pop_front();
            }
        }
    }

    /// A data plane answered `version` for `gateways`.
    pub fn acknowledged(&self, version: u64, accepted: bool, gateways: &[(String, i64)]) {
        self.acks
            .get_or_create(&AckLabels {
                accepted: accepted.to_string(),
            })
            .inc();
        if !accepted {
            return;
        }
        let sent = self.published.lock().ok().and_then(|p| {
            p.iter()
                .find(|(v, _)| *v == version)
                .map(|(_, at)| at.elapsed())
        });
        if let Some(took) = sent {
            for (gateway, _) in gateways {
                self.propagation_seconds
                    .get_or_create(&GatewayLabels {
                        gateway: gateway.clone(),
                    })
                    .observe(took.as_secs_f64());
            }
        }
    }

    /// Everything, as Prometheus text.
    pub fn encode(&self) -> String {
        // Status writes are counted where they happen (`STATUS_WRITES`, which tests read).
        let written = STATUS_WRITES.load(std::sync::atomic::Ordering::Relaxed);
        let shown = self.status_writes.get();
        if written > shown {
            self.status_writes.inc_by(written - shown);
        }
        let mut out = String::new();
        if prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
