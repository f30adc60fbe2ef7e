//! `GatehouseProxy`: the proxy's state across requests. Its phases are in `phases`.

use crate::http::access_log::AccessLog;
use crate::net::upstream_tls::VerifiedLeaves;
use crate::policies::auth::Checker;
use crate::policies::limits::Limiter;
use crate::policies::mirror::Mirrors;
use crate::runtime::{Ejections, Runtime};
use arc_swap::ArcSwap;
use std::sync::Arc;

/// The pingora proxy with Gatehouse's phases (`phases`), and what it keeps across
/// requests: the runtime being served, ejected endpoints, verified backend certificates,
/// rate limit counts, and the clients for external auth and mirrors.
pub struct GatehouseProxy {
    pub(super) state: Arc<ArcSwap<Runtime>>,
    pub(super) ejections: Arc<Ejections>,
    /// Backend certificates found to carry a policy's subjectAltNames.
    pub(super) verified_leaves: VerifiedLeaves,
    /// Per-client rate limit state, by zone.
    pub(super) limiter: Arc<Limiter>,
    pub(super) auth: Checker,
    pub(super) mirrors: Mirrors,
    /// Where the requests of Gateways that log them are written.
    pub(super) access_log: Arc<AccessLog>,
}

impl GatehouseProxy {
    /// `ejections` is shared with the direct path: an endpoint that fails a connect on
    /// either is skipped by both.
    pub fn new(
        state: Arc<ArcSwap<Runtime>>,
        ejections: Arc<Ejections>,
        access_log: Arc<AccessLog>,
    ) -> Self {
        GatehouseProxy {
            state,
            ejections,
            access_log,
            verified_leaves: Default::default(),
            limiter: Default::default(),
            auth: Default::default(),
            mirrors: Mirrors::default(),
        }
    }
}
