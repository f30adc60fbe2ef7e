//! Sockets and streams: our accept loops (`listeners`), TLS termination by SNI (`tls`),
//! TLS to backends (`upstream_tls`), the write buffer under each pingora session
//! (`coalesce`), the send-timeout watch on backend sockets (`send_watch`) and the PROXY
//! protocol header a load balancer may send first (`proxy_protocol`).

pub mod coalesce;
pub mod listeners;
pub mod proxy_protocol;
pub mod send_watch;
pub mod tls;
pub mod upstream_tls;
