//! The Gatehouse data plane: compiles the model into a runtime, swaps it atomically,
//! opens and closes listeners from config, and proxies with pingora.
//!
//! ```text
//! channel::client::run ──(gRPC updates)──> channel::received::Received::apply
//!     ──> DataPlane::apply_received ──> runtime::Compiler ──> ArcSwap<Runtime>
//!                                    └─> net::listeners::Listeners::reconcile (accept loops)
//! accept loop ──> TLS (net::tls::SniResolver) ──> http::direct::Direct (plain routes, HTTP/1.1)
//!                                              └─> pingora session ──> http::proxy::GatehouseProxy
//! ```
//!
//! Domains, each a folder: `runtime` (what a version compiles to, the lookup, the
//! compiler), `http` (the two request paths and what they share), `policies` (CORS,
//! limits, external auth, balancing, mirrors, path filters), `net` (listeners, TLS,
//! socket helpers), `channel` (the config channel client and what it received) and
//! `metrics` (request series and the Prometheus text), `traces` (W3C Trace Context and
//! OTLP export);
//! `lifecycle.rs` is the process around them (health endpoint, drain on SIGTERM).
//! This file only declares them and re-exports `DataPlane` (`data_plane.rs`).

pub mod channel;
mod data_plane;
pub mod http;
pub mod lifecycle;
pub mod metrics;
pub mod net;
pub mod policies;
pub mod runtime;
pub mod traces;

pub use data_plane::{Applied, DataPlane, LARGE_UPDATE, ListenerError, after_large_update};
