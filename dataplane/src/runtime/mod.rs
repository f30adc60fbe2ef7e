//! The runtime: the model compiled for serving, and the lookup a request takes.
//!
//! Pure: compiled once per config version, swapped atomically, never mutated. A request
//! holds an `Arc<Runtime>` from start to end, so it finishes on the runtime it started with.
//!
//! - `version`: what one version serves: its sockets (`Bind`) and their listeners;
//! - `hosts`: a listener's virtual hosts (`HostTable`, the one "table" here) and each
//!   virtual host's routes;
//! - `route`: a compiled route: matchers, backends, mirrors, policies;
//! - `cluster` and `ejections`: a backend's endpoints, and the ones skipped for a while
//!   after a failed connect (passive health, shared by every version);
//! - `lookup`: what a request is matched on, and the walk from bind to route;
//! - `compiler`: the `Compiler`, which compiles only what changed since the last version.
//!
//! This module only declares and re-exports: every item has one path,
//! `gatehouse_dataplane::runtime::Item`.

mod cluster;
mod compiler;
mod ejections;
mod hosts;
mod lookup;
mod route;
mod version;

pub use cluster::Cluster;
pub use compiler::{Compiler, Refused, compile};
pub use ejections::Ejections;
pub use hosts::{CompiledVirtualHost, HostTable};
pub use lookup::{Headers, Miss, RequestView, prefix_matches, query_param};
pub use route::{CompiledBackend, CompiledMirror, CompiledRoute, PathRule, Target, ValueRule};
pub use version::{Bind, CompiledListener, Runtime};
