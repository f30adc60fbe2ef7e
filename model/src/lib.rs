//! The Gatehouse model: the intermediate representation shared by operator and data plane,
//! its validation, and (feature `channel`) the config channel (protobuf envelope and tonic
//! service).
//!
//! No Kubernetes types and no I/O live here, so both sides and every test can use it.

pub mod certificate;
#[cfg(feature = "channel")]
pub mod channel;
pub mod ir;
pub mod seen;
pub mod tracing_export;
pub mod validate;

/// Generated protobuf and tonic code for `proto/config.proto`.
#[cfg(feature = "channel")]
pub mod proto {
    tonic::include_proto!("gatehouse.config.v1");
}
