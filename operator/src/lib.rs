//! The Gatehouse operator: sources fill a store of typed objects, a pure translation turns
//! it into the model and a status report, and the config server streams the model to data
//! planes over gRPC.

pub mod admin;
pub mod host;
pub mod identity;
pub mod infra;
pub mod kubernetes;
pub mod server;
pub mod source;
pub mod standalone;
pub mod status;
pub mod store;
pub mod translate;

/// Gateway API types of the experimental channel: a superset of the standard channel's,
/// with the fields (rule retry, ListenerSet, ...) the conformance profile exercises.
pub(crate) use gateway_api::experimental as gwapi;
