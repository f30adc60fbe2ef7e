//! The Gatehouse data plane: compiles the model into runtime tables, swaps them atomically,
//! opens and closes listeners from config, and proxies with pingora.
//!
//! ```text
//! client::run ──(gRPC updates)──> DataPlane::apply ──> tables::compile ──> ArcSwap<Runtime>
//!                                                   └─> listeners::reconcile (accept loops)
//! accept loop ──> TLS (tls::SniResolver) ──> direct::Direct (plain routes, HTTP/1.1)
//!                                         └─> pingora session ──> proxy::GatehouseProxy
//! ```

pub mod auth;
pub mod balance;
pub mod client;
pub mod coalesce;
pub mod cors;
pub mod direct;
pub mod filters;
pub mod held;
pub mod limits;
pub mod listeners;
pub mod mirror;
pub mod proxy;
pub mod send_watch;
pub mod tables;
pub mod tls;
pub mod upstream_tls;

use arc_swap::ArcSwap;
use gatehouse_model::ir::Config;
use pingora_core::server::configuration::ServerConf;
use std::sync::{Arc, Mutex};

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

pub struct DataPlane {
    state: Arc<ArcSwap<tables::Runtime>>,
    handlers: Arc<listeners::Handlers>,
    inner: Mutex<Inner>,
}

struct Inner {
    compiler: tables::Compiler,
    listeners: listeners::Listeners,
}

impl DataPlane {
    /// Must be called within a tokio runtime.
    pub fn new() -> Arc<Self> {
        // One crypto provider for the process, whatever else is compiled in.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let state = Arc::new(ArcSwap::from_pointee(tables::Runtime::empty()));
        let conf = Arc::new(ServerConf {
            threads: 1,
            upstream_keepalive_pool_size: 256,
            // Attempts per request; the proxy decides each retry (see proxy.rs).
            max_retries: proxy::MAX_POLICY_ATTEMPTS.max(proxy::MAX_CONNECT_ATTEMPTS) as usize,
            ..Default::default()
        });
        let ejections = Arc::new(tables::Ejections::default());
        let mut proxy = pingora_proxy::http_proxy(
            &conf,
            proxy::GatehouseProxy::new(state.clone(), ejections.clone()),
        );
        let mut options = pingora_core::apps::HttpServerOptions::default();
        // HTTP/2 by prior knowledge on plaintext listeners; TLS uses ALPN.
        options.h2c = true;
        proxy.server_options = Some(options);
        Arc::new(DataPlane {
            handlers: Arc::new(listeners::Handlers {
                proxy: Arc::new(proxy),
                direct: direct::Direct::new(state.clone(), ejections),
            }),
            state,
            inner: Mutex::new(Inner {
                compiler: tables::Compiler::default(),
                listeners: listeners::Listeners::default(),
            }),
        })
    }

    /// Applies a whole config as a version (tools and tests). On error nothing changes and
    /// the previous version keeps serving.
    pub fn apply(&self, config: &Config, version: u64) -> Result<Vec<ListenerError>, String> {
        self.apply_held(&mut held::Held::of(config), version)
    }

    /// Applies what the held model changed since the last applied version. On error
    /// nothing changes, the previous version keeps serving, and the changes stay held for
    /// the next version. On success, listeners that could not be opened are returned.
    pub fn apply_held(
        &self,
        held: &mut held::Held,
        version: u64,
    ) -> Result<Vec<ListenerError>, String> {
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| "data plane state poisoned".to_string())?;
        let runtime = Arc::new(inner.compiler.compile(held, version)?);
        held.compiled();
        // Swap first so that a connection on a new socket finds its table.
        self.state.store(runtime.clone());
        let failures = inner
            .listeners
            .reconcile(&runtime, &self.state, &self.handlers);
        Ok(failures
            .into_iter()
            .flat_map(|(addr, error)| {
                held.listeners
                    .values()
                    .filter(move |l| l.socket_addr() == addr)
                    .map(move |l| (l.key.clone(), error.clone()))
            })
            .collect())
    }

    pub fn version(&self) -> u64 {
        self.state.load().version
    }
}
