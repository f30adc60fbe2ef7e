//! `Ctx`: what the proxy knows of one request, from its first phase to its last.

use crate::http::forwarding::{MAX_CONNECT_ATTEMPTS, MAX_POLICY_ATTEMPTS};
use crate::net::send_watch::SendWatch;
use crate::policies::cors;
use crate::policies::limits::Slot;
use crate::runtime::{Cluster, CompiledRoute, Runtime};
use gatehouse_model::ir::{Filter, UpstreamProtocol};
use pingora_http::RequestHeader;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// A request to be mirrored once its body has been read.
pub(super) struct PendingMirror {
    pub(super) head: RequestHeader,
    pub(super) targets: Vec<Arc<Cluster>>,
    pub(super) body: Vec<u8>,
}

/// Per-request state.
#[derive(Default)]
pub struct Ctx {
    /// The runtime this request is served from, start to end.
    pub(super) runtime: Option<Arc<Runtime>>,
    pub(super) route: Option<Arc<CompiledRoute>>,
    pub(super) backend: usize,
    pub(super) cluster: Option<Arc<Cluster>>,
    pub(super) upstream: Option<(SocketAddr, UpstreamProtocol)>,
    /// The listener's client certificate for TLS backends.
    pub(super) backend_client: Option<Arc<pingora_core::utils::tls::CertKey>>,
    /// Connection attempts made for this request.
    pub(super) attempts: u32,
    /// Endpoints this request tried, so a retry goes elsewhere.
    pub(super) tried: Vec<SocketAddr>,
    pub(super) tls: bool,
    /// Outcome for the access log.
    pub(super) status_reason: &'static str,
    /// When the route's request timeout runs out.
    pub(super) deadline: Option<Instant>,
    /// CORS headers to add to the answer.
    pub(super) cors: Vec<cors::Header>,
    /// The answer just received is thrown away and the request sent again (retry policy).
    pub(super) retry_answer: bool,
    pub(super) mirror: Option<PendingMirror>,
    /// Request body bytes seen, against the route's limit.
    pub(super) body_bytes: u64,
    /// A connection slot of a rate limit, released when the request ends.
    pub(super) _slot: Option<Slot>,
    /// A new session affinity cookie for the answer.
    pub(super) set_cookie: Option<String>,
    /// Request headers the external auth answer sets (None: removes).
    pub(super) auth_headers: Vec<(String, Option<String>)>,
    /// Set-Cookie values of the external auth answer, for the client's answer.
    pub(super) auth_cookies: Vec<String>,
    /// nginx's send timeout on the HTTP/1 backend connection, until its answer starts.
    pub(super) send_watch: Option<SendWatch>,
    /// The socket's client timeouts and caps.
    pub(super) limits: gatehouse_model::ir::ClientLimits,
    /// Who sent the request: the connection's peer (a PROXY header's source, when the port
    /// reads one), or the client a trusted proxy names; what source ranges, rate limits,
    /// hashing and logs see.
    pub(super) client: Option<std::net::IpAddr>,
    /// What Gatehouse forwards in its own headers: the peer, the client's X-Forwarded-For
    /// when it is believed, the Host as sent, the listener's port.
    pub(super) forwarded: Option<ForwardedFrom>,
    /// Header names with underscores pass.
    pub(super) keep_underscores: bool,
    /// When the request phase began (its head read): the duration recorded starts here.
    pub(super) started: Option<Instant>,
    /// Where the request is counted: its route's series, else its listener's or its
    /// socket's (no route, no listener).
    pub(super) series: Option<Arc<crate::metrics::RouteSeries>>,
    /// When the request went to the backend (the last attempt), and how long its answer's
    /// head took.
    pub(super) upstream_sent: Option<Instant>,
    pub(super) upstream_first_byte: Option<std::time::Duration>,
    /// The request is logged (its Gateway's parameters ask for it).
    pub(super) access_log: bool,
    /// Its X-Request-ID, as sent or as generated (`request_id_generated`: then also sent
    /// to the backend).
    pub(super) request_id: Option<String>,
    pub(super) request_id_generated: bool,
    /// Its trace, and the tracer its span goes to, when its Gateway traces.
    pub(super) trace: Option<(crate::traces::TraceContext, Arc<crate::traces::Tracer>)>,
}

/// The request's parts Gatehouse's forwarded headers are made of (owned: the request head
/// is edited between the request phase and the upstream one).
pub(super) struct ForwardedFrom {
    pub(super) peer: std::net::IpAddr,
    pub(super) chain: Option<Vec<u8>>,
    pub(super) host: Vec<u8>,
    pub(super) port: u16,
}

impl Ctx {
    /// Whether the route's request timeout has run out.
    pub(super) fn timed_out(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Attempts the route's retry policy allows, the first included (1 without a policy).
    pub(super) fn policy_attempts(&self) -> u32 {
        self.route
            .as_ref()
            .and_then(|r| r.retry.as_ref())
            .map_or(1, |r| r.attempts.saturating_add(1).min(MAX_POLICY_ATTEMPTS))
    }

    /// Whether another attempt under the retry policy is allowed (an answer with a retried
    /// code, a backend timeout, a broken connection).
    pub(super) fn may_retry(&self) -> bool {
        !self.timed_out() && self.attempts < self.policy_attempts()
    }

    /// Whether another attempt after a failed connect (or a safe replay) is allowed: every
    /// endpoint of the cluster once (at most MAX_CONNECT_ATTEMPTS), or what the retry policy
    /// allows if that is more.
    pub(super) fn may_try_another(&self) -> bool {
        let endpoints = self.cluster.as_ref().map_or(0, |c| c.endpoints.len());
        let spread = MAX_CONNECT_ATTEMPTS.min(u32::try_from(endpoints).unwrap_or(u32::MAX));
        !self.timed_out() && self.attempts < spread.max(self.policy_attempts())
    }

    /// The filters that apply: the route's, then its chosen backend's.
    pub(super) fn filters(&self) -> impl Iterator<Item = &Filter> {
        let route = self.route.as_deref();
        let backend = route.and_then(|r| r.backends.get(self.backend));
        route
            .into_iter()
            .flat_map(|r| r.filters.iter())
            .chain(backend.into_iter().flat_map(|b| b.filters.iter()))
    }
}
