//! End-to-end tests: real sockets, real HTTP and TLS clients, the real gRPC config channel
//! between operator and data plane. One test binary to keep link time down.
//!
//! `kubernetes` runs against a real API server (the testbed, started when none runs, which
//! needs root): it is built with the `testbed` feature only, so a plain `cargo test
//! --workspace` passes anywhere; scripts/test turns the feature on. `chart` renders the
//! Helm chart with a real Helm (scripts/install-helm builds it): the same feature, as do
//! `prometheus` (Debian's Prometheus) and `tracing` (an OpenTelemetry Collector that
//! scripts/install-otelsink builds).

mod access_log;
mod backend_tls;
mod channel;
#[cfg(feature = "testbed")]
mod chart;
mod drain;
mod edge;
#[cfg(feature = "testbed")]
mod fewer_kinds;
mod http2;
#[cfg(feature = "testbed")]
mod kube_metrics;
#[cfg(feature = "testbed")]
mod kubernetes;
mod lifecycle;
mod metrics;
mod migration;
mod nginx;
mod policies;
#[cfg(feature = "testbed")]
mod printer_columns;
#[cfg(feature = "testbed")]
mod prometheus;
mod quickstart;
#[cfg(feature = "testbed")]
mod rollout;
mod routing;
#[cfg(feature = "testbed")]
mod standard_channel;
mod support;
mod tls;
#[cfg(feature = "testbed")]
mod tracing;
mod traffic_policy;
#[cfg(feature = "testbed")]
mod uninstall;
