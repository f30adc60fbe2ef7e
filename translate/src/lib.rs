//! Gatehouse's translation: a store of typed Kubernetes objects in, the model (IR) every
//! data plane compiles and a status report for every object out.
//!
//! Pure by construction: this crate has no Kubernetes client, no runtime, no network or
//! file I/O in its dependency tree (`cargo tree -p gatehouse-translate -e normal` shows
//! none; CI checks it), no clock and no randomness. The same store always gives the same
//! output, so it is tested with objects in and model plus conditions out, and every caller
//! (the operator, `gatehouse convert --verify`, the benchmarks) gets the same answer.
//!
//! Gateway API and Ingress are two front-ends that attach routes to the same planned
//! listeners, so both APIs meet in one route table per listener:
//!
//! ```text
//! Store ──> gateways (listeners, addresses, TLS) ──┬─> httproute (+ policy: TrafficPolicy)
//!            client_certificates                   ├─> ingress (+ nginx: annotations)
//!                                                  v
//!           backends (+ backend_tls) <── route_tables (precedence) ──> Config + StatusReport
//! ```
//!
//! Where a change goes: a new route kind gets a front-end module beside `httproute` that
//! fills `route_tables::Contribution`; a new policy field goes into the TrafficPolicy spec
//! (`gatehouse_api::TrafficPolicySpec`) and `policy::compile`, and the annotation that
//! sets it into `nginx`; a new kind of object is one line of `store::for_each_kind!`.

#![warn(missing_docs)]

mod backend_tls;
mod backends;
mod client_certificates;
mod gateways;
mod hostnames;
pub mod httproute;
pub mod ingress;
mod meta;
pub mod nginx;
mod policy;
mod references;
mod route_tables;
mod settings;
pub mod status;
pub mod store;
mod tls_material;
mod translator;
pub mod yaml;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

pub use settings::{
    GATEWAY_CONTROLLER, GATEWAY_GROUP, INGRESS_CONTROLLER, Infrastructure, Settings,
    infrastructure_name,
};
pub use translator::{DataPlanePlan, Output, Translator, translate};

/// Gateway API types of the experimental channel: a superset of the standard channel's,
/// with the fields (rule retry, ListenerSet, ...) the conformance profile exercises.
pub use gateway_api::experimental as gwapi;
