//! Traces: W3C Trace Context on both request paths, and one OpenTelemetry span per request
//! exported over OTLP, for the Gateways whose parameters ask for it (`spec.tracing`).
//!
//! - `context`: reading a request's `traceparent`, deciding whether it is sampled (the
//!   client's decision when it sent one, else `samplingPercent` of trace ids), and the
//!   `traceparent` the backend receives: the same trace, Gatehouse's span as its parent.
//! - `span`: the span of a request, from what both request paths know of it.
//! - `export`: per collector, a bounded queue and one thread that batches spans and sends
//!   them over OTLP/gRPC or OTLP/HTTP.
//!
//! Why not opentelemetry_sdk's tracer: it is built around one process-wide provider and
//! exporter, while here each Gateway's parameters name their own collector and rate, and
//! change at runtime with the config. The wire types are opentelemetry-proto's (kept
//! upstream), the transport tonic or hyper (already ours); what is written here is the
//! sampler, the W3C header and the batching loop.
//!
//! Cost: with tracing off, nothing (one `Option` test per request). With tracing on, a
//! request that is not sampled costs parsing one header and writing one; a sampled one
//! builds its span (about twenty attributes) and hands it to the queue without waiting.

pub mod context;
pub mod export;
pub mod span;

pub use context::{Sampler, TraceContext};
pub use export::{Tracer, Tracers};
pub use span::{SpanFacts, span_of};
