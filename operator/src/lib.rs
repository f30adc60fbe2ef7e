//! The Gatehouse operator: the shell around translation (`gatehouse_translate`). Sources
//! fill a store of typed objects, the operator loop translates it and publishes the model to
//! data planes over the config channel, and status goes where the mode says.
//!
//! ```text
//! source::{file, kube} ──Source──> control_loop ──> config_server ──gRPC──> data planes
//!                                      │   ^                         │
//!                                      │   └──── dataplane_reports <─┘ (ACK/NACK)
//!                                      v
//!                  admin (/status) + log; kubernetes::status_writer (leader only)
//! ```
//!
//! Modes: `file_operator` (a directory of YAML; `dataplane_process` runs a data plane
//! child for `gatehouse standalone`) and `kubernetes` (leader election, status writer,
//! provisioning, identities).

pub mod admin;
pub mod config_server;
pub mod control_loop;
pub mod dataplane_process;
pub mod dataplane_reports;
pub mod file_operator;
pub mod kubernetes;
pub mod metrics;
pub mod source;
