//! The HTTP proxy: pingora-proxy phases with Gatehouse routing, filters and answers.
//!
//! Answers of our own: 404 no route, 500 invalid backend, 503 no endpoints, 502 upstream
//! connect failure, 504 timeout. Every request keeps the `Runtime` it started with.
//!
//! `state` holds `GatehouseProxy` (what the proxy keeps across requests) and `context` the
//! per-request `Ctx`; `phases` is the `ProxyHttp` implementation, each phase handing its
//! work to `request`, `upstream`, `response` or `failure`; `headers` and `answers` are
//! the head helpers and our own answers they share.

mod answers;
mod context;
mod failure;
mod headers;
mod phases;
mod request;
mod response;
mod state;
mod upstream;

pub use context::Ctx;
pub use state::GatehouseProxy;
