//! The direct HTTP/1 path: a request to a route with no filters and no policies (most
//! routes) is forwarded by a small loop of our own instead of pingora-proxy's phases.
//!
//! Why: profiles of a proxied request (`bench/instructions`) put 2.5 % of its instructions
//! in our code and most of the rest in pingora's general machinery (a ~15 KB per-request
//! future moved into boxes, header maps built and serialised twice). A plain route needs
//! none of it: parse the head once (httparse), route on the parsed bytes, write the head
//! again with X-Forwarded-For/-Proto, and copy the answer back as the backend framed it.
//!
//! Anything else is handed to pingora with the bytes already read (`Coalescing` replays
//! them), so pingora answers exactly as before: HTTP/1.0, bodies, upgrades, `Expect`,
//! h2c, unknown hosts and routes (404), misdirected requests (421), malformed heads (400),
//! routes with filters or policies, TLS or h2c backends, endpoint-less clusters (503).
//! A connection can go back and forth: each request is decided on its own.
//!
//! Failure handling follows the pingora path (`http::proxy`): a failed connect ejects the
//! endpoint and tries another; a pooled connection that turns out closed is retried on a
//! fresh one; a fresh one that fails is retried elsewhere for GET/HEAD/OPTIONS, and
//! answered 502 otherwise.
//!
//! `serve` holds `Direct` (the per-connection loop, one request's routing, the attempts on
//! the cluster's endpoints); `pool` the idle backend connections; `framing` the request
//! head (where it ends, whether this path takes it, what the backend gets) and how a body
//! ends; `relay` one exchange with a backend, its answer head rewritten for the client;
//! `deadline` the timeouts of every wait, at next to no cost per request.
//! `framing` is public for the fuzz targets (fuzz/), which hold it to its properties.

mod deadline;
pub mod framing;
mod pool;
mod relay;
mod serve;

pub use serve::{Conn, Direct, Outcome};
