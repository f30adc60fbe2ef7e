//! The two request paths and what they share: the direct HTTP/1 path (`direct`) for plain
//! routes, the pingora proxy (`proxy`) for everything else, and the forwarding rules both
//! follow (`forwarding`: attempts, ejection, Host and X-Forwarded-For), and the access log
//! both write (`access_log`).

pub mod access_log;
pub mod direct;
pub mod forwarding;
pub mod path;
pub mod proxy;
