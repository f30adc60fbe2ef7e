//! The config channel, data plane side: the client that dials the operator and applies
//! each version (`client`), and what it received, decoded, with what changed since the
//! last compiled version (`received`).

pub mod client;
pub mod received;
