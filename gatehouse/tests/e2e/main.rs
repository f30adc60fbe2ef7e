//! End-to-end tests: real sockets, real HTTP and TLS clients, the real gRPC config channel
//! between operator and data plane. One test binary to keep link time down.

mod backend_tls;
mod channel;
mod kubernetes;
mod lifecycle;
mod migration;
mod nginx;
mod policies;
mod quickstart;
mod routing;
mod support;
mod tls;
mod traffic_policy;
