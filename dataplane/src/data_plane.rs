//! The data plane as one value: `DataPlane` applies versions (compile, swap, reconcile the
//! listeners), and the hook run after a large update.

use crate::channel::received::Received;
use crate::http::access_log::AccessLog;
use crate::http::direct::Direct;
use crate::http::forwarding::{MAX_CONNECT_ATTEMPTS, MAX_POLICY_ATTEMPTS};
use crate::http::proxy::GatehouseProxy;
use crate::metrics::Metrics;
use crate::net::listeners::{Handlers, Listeners};
use crate::runtime::{Compiler, Ejections, Refused, Runtime};
use arc_swap::ArcSwap;
use gatehouse_model::ir::Config;
use pingora_core::server::configuration::ServerConf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Called after a large update is applied; the binary sets it so its allocator hands back
/// what decoding and compiling the update used (mimalloc keeps freed pages otherwise).
static AFTER_LARGE_UPDATE: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Sets what runs after a large update (at most once per process).
pub fn after_large_update(f: fn()) {
    let _ = AFTER_LARGE_UPDATE.set(f);
}

/// An update of at least this many resources counts as large.
pub const LARGE_UPDATE: usize = 1000;

pub(crate) fn large_update_applied() {
    if let Some(f) = AFTER_LARGE_UPDATE.get() {
        f();
    }
}

/// A listener that could not be opened: (listener key, error).
pub type ListenerError = (String, String);

/// What applying a version came to: listeners that could not be opened, and resources
/// left out.
#[derive(Debug, Default)]
pub struct Applied {
    pub listener_errors: Vec<ListenerError>,
    pub refused: Vec<Refused>,
}

/// A data plane: the runtime it serves, its listeners, and the compiler that turns each
/// version it is given into the next runtime.
pub struct DataPlane {
    state: Arc<ArcSwap<Runtime>>,
    /// What it counts (`/metrics`); compiled routes hold their series from here.
    metrics: Arc<Metrics>,
    handlers: Arc<Handlers>,
    inner: Mutex<Inner>,
    /// A version applied and its listeners opened, and not closing: ready for traffic.
    ready: AtomicBool,
    /// Shutting down (SIGTERM): never ready again, whatever versions still apply.
    terminating: AtomicBool,
}

struct Inner {
    compiler: Compiler,
    listeners: Listeners,
    /// The listeners were closed for good (`close`): versions still apply (a request in
    /// flight may look up its cluster) but open no socket.
    closed: bool,
}

impl DataPlane {
    /// Must be called within a tokio runtime.
    pub fn new() -> Arc<Self> {
        // One crypto provider for the process, whatever else is compiled in.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let state = Arc::new(ArcSwap::from_pointee(Runtime::empty()));
        let conf = Arc::new(ServerConf {
            threads: 1,
            upstream_keepalive_pool_size: 256,
            // Attempts per request; the proxy decides each retry (see `http::proxy`).
            max_retries: MAX_POLICY_ATTEMPTS.max(MAX_CONNECT_ATTEMPTS) as usize,
            ..Default::default()
        });
        let ejections = Arc::new(Ejections::default());
        let metrics = Arc::new(Metrics::default());
        let access_log = Arc::new(AccessLog::start(metrics.access_log_dropped.clone()));
        // Pingora's per-process server options (h2c, HTTP/2 idle timeout, requests per
        // connection) belong to its connection loop, which we do not use: connections are
        // ours (`net::listeners` hands pingora one HTTP/1 session at a time, `net::h2` runs
        // HTTP/2 connections), with each Gateway's limits.
        let proxy = pingora_proxy::http_proxy(
            &conf,
            GatehouseProxy::new(state.clone(), ejections.clone(), access_log.clone()),
        );
        Arc::new(DataPlane {
            handlers: Arc::new(Handlers {
                proxy: Arc::new(proxy),
                direct: Direct::new(state.clone(), ejections, access_log),
                metrics: metrics.clone(),
            }),
            state,
            inner: Mutex::new(Inner {
                compiler: Compiler::with_metrics(metrics.clone()),
                listeners: Listeners::default(),
                closed: false,
            }),
            ready: AtomicBool::new(false),
            terminating: AtomicBool::new(false),
            metrics,
        })
    }

    /// What this data plane counts.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Applies a whole config as a version (tools and tests).
    pub fn apply(&self, config: &Config, version: u64) -> Result<Applied, String> {
        self.apply_received(&mut Received::of(config), version)
    }

    /// Applies what the received model changed since the last applied version. A resource
    /// that cannot be applied is left out and reported (`Applied::refused`); the rest
    /// applies. The version is refused as a whole (NACK: nothing changes, the previous
    /// version keeps serving and the changes are kept for the next) only when compiling it
    /// panicked.
    pub fn apply_received(&self, received: &mut Received, version: u64) -> Result<Applied, String> {
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| "data plane state poisoned".to_string())?;
        let endpoints_changed =
            received.changes.everything || !received.changes.clusters.is_empty();
        // A bug must not take the data plane (and every replica, on the same config) down
        // with it: the version is refused, and the process serves on.
        let compiled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            inner.compiler.compile(received, version)
        }));
        let (runtime, refused) = match compiled {
            Ok(c) => c,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                // Whatever the compiler held may be half-built: start from scratch.
                inner.compiler = Compiler::with_metrics(self.metrics.clone());
                received.changes.everything = true;
                self.metrics.versions_refused.inc();
                self.metrics.last_version_accepted.set(0);
                return Err(format!("compiling version {version} failed: {what}"));
            }
        };
        let runtime = Arc::new(runtime);
        received.compiled();
        if endpoints_changed {
            // Idle backend connections to endpoints that left are closed.
            let live: std::collections::HashSet<std::net::SocketAddr> = received
                .clusters
                .values()
                .flat_map(|c| c.endpoints.iter().copied())
                .collect();
            self.handlers.direct.forget_endpoints_except(&live);
        }
        // Swap first so that a connection on a new socket finds its table.
        self.state.store(runtime.clone());
        let failures = if inner.closed {
            Vec::new()
        } else {
            inner
                .listeners
                .reconcile(&runtime, &self.state, &self.handlers)
        };
        // Ready once a version opened every socket it has; a later socket that cannot be
        // opened is reported on its listener but does not take the others out of service.
        // Never once terminating (`close` is only called terminating).
        if failures.is_empty() && !self.terminating.load(Ordering::Acquire) {
            self.ready.store(true, Ordering::Release);
        }
        self.metrics.versions_applied.inc();
        self.metrics.last_version_accepted.set(1);
        self.metrics
            .version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.metrics.last_applied.set(now);
        self.metrics.resources_refused.inc_by(refused.len() as u64);
        let listener_errors = failures
            .into_iter()
            .flat_map(|(addr, error)| {
                received
                    .listeners
                    .values()
                    .filter(move |l| l.socket_addr() == addr)
                    .map(move |l| (l.key.clone(), error.clone()))
            })
            .collect();
        Ok(Applied {
            listener_errors,
            refused,
        })
    }

    /// The version being served (0 before the first).
    pub fn version(&self) -> u64 {
        self.state.load().version
    }

    /// Whether traffic should be sent here: a version is applied, its listeners are open,
    /// and the data plane is not closing (the readiness probe's answer).
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Says not ready from now on (the first step of a shutdown: endpoints stop sending
    /// new connections while the listeners still accept).
    pub fn stop_being_ready(&self) {
        // A version applied during the drain delay (endpoints change mid-rollout) must not
        // make the pod ready again.
        self.terminating.store(true, Ordering::Release);
        self.ready.store(false, Ordering::Release);
    }

    /// Closes every listener for good and waits, at most `timeout`, for the connections
    /// they accepted to end. Whether they all did.
    pub async fn close(&self, timeout: Duration) -> bool {
        self.stop_being_ready();
        let ended = match self.inner.lock() {
            Ok(mut inner) => {
                inner.closed = true;
                inner.listeners.close_all()
            }
            Err(_) => return false,
        };
        tokio::time::timeout(timeout, ended).await.is_ok()
    }
}
