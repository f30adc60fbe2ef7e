//! Sockets and streams: our accept loops (`listeners`), TLS termination by SNI (`tls`),
//! TLS to backends (`upstream_tls`), the write buffer under each pingora session
//! (`coalesce`) and the send-timeout watch on backend sockets (`send_watch`).

pub mod coalesce;
pub mod listeners;
pub mod send_watch;
pub mod tls;
pub mod upstream_tls;
