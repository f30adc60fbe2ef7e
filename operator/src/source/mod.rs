//! Sources fill the store: a directory of YAML (`file`) or the Kubernetes API (`kube`,
//! kube-runtime watches). The operator loop (`control_loop`) takes either through the
//! `Source` trait, and translation cannot tell them apart.

pub mod file;
pub mod kube;

use gatehouse_translate::store::Store;
use gatehouse_translate::yaml::SourceError;
use std::sync::Arc;

/// Where the operator's objects come from: a directory of YAML or the Kubernetes API.
pub trait Source: Send {
    /// The current objects, and problems reading them.
    fn load(&mut self) -> Loaded;
    /// Resolves after the next change.
    fn changed(&mut self) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
}

/// What one load of a source produced.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Shared with the source until its next load.
    pub store: Arc<Store>,
    pub errors: Vec<SourceError>,
    /// Kinds the source cannot watch (Kubernetes: no CRD, or forbidden), with why.
    pub unwatched: std::collections::BTreeMap<&'static str, String>,
}
