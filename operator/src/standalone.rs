//! The operator on a directory of YAML: file source -> translate -> config server, with
//! status served on the admin endpoint and logged when it changes.

use crate::admin::{self, AdminView};
use crate::server::{AckEvent, ConfigServer, Published};
use crate::source::file::{self, FileSource, SourceError};
use crate::status::{DataPlaneReports, StatusReport};
use crate::store::ObjectKey;
use crate::translate::{self, DataPlanePlan, Settings};
use gatehouse_model::ir::Config;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};

#[derive(Debug, Clone)]
pub struct FileOperatorOptions {
    pub dir: PathBuf,
    pub settings: Settings,
    /// Where data planes dial in (gRPC).
    pub config_address: SocketAddr,
    /// Status, model and health (HTTP).
    pub admin_address: SocketAddr,
}

/// Where the operator's objects come from: a directory of YAML or the Kubernetes API.
pub(crate) trait Source: Send {
    /// The current objects, and problems reading them.
    fn load(&mut self) -> crate::source::file::Loaded;
    /// Resolves after the next change.
    fn changed(&mut self) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
}

struct Directory {
    source: FileSource,
    changes: mpsc::Receiver<file::Change>,
    _watcher: notify::RecommendedWatcher,
}

impl Source for Directory {
    fn load(&mut self) -> crate::source::file::Loaded {
        self.source.load()
    }

    async fn changed(&mut self) -> anyhow::Result<()> {
        match self.changes.recv().await {
            Some(file::Change::Paths(paths)) => self.source.touched(paths),
            Some(file::Change::Rescan) => self.source.rescan(),
            None => anyhow::bail!("file watcher stopped"),
        }
        Ok(())
    }
}

/// What the API server should hold: every object's status (data plane reports folded in)
/// and the data planes each accepted Gateway should have.
#[derive(Debug, Default)]
pub struct Desired {
    pub status: StatusReport,
    pub dataplanes: BTreeMap<ObjectKey, DataPlanePlan>,
}

/// Status as last computed, shared with the admin endpoint.
#[derive(Default)]
struct Book {
    translation: StatusReport,
    dataplanes: BTreeMap<ObjectKey, DataPlanePlan>,
    reports: DataPlaneReports,
    errors: Vec<SourceError>,
    config: Arc<Config>,
    version: u64,
    /// The last status logged, to log only changes.
    logged: StatusReport,
}

impl Book {
    fn status(&self) -> StatusReport {
        self.reports.apply(&self.translation)
    }

    fn desired(&self) -> Arc<Desired> {
        Arc::new(Desired {
            status: self.status(),
            dataplanes: self.dataplanes.clone(),
        })
    }

    /// Logs the objects whose status changed since the last log.
    fn log_changes(&mut self) {
        let now = self.status();
        for key in self.logged.changed_keys(&now) {
            match now.objects.get(key) {
                Some(st) => {
                    let summary: Vec<String> = st
                        .conditions
                        .iter()
                        .chain(st.listeners.iter().flat_map(|l| l.conditions.iter()))
                        .chain(st.parents.iter().flat_map(|p| p.conditions.iter()))
                        .filter(|c| {
                            !c.is_true() && c.type_ != "Conflicted" || c.type_ == "PartiallyInvalid"
                        })
                        .map(|c| format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message))
                        .collect();
                    if summary.is_empty() {
                        tracing::info!(object = key, "status: ok");
                    } else {
                        tracing::warn!(object = key, problems = %summary.join(" | "), "status");
                    }
                }
                None => tracing::info!(object = key, "status: gone"),
            }
        }
        self.logged = now;
    }
}

struct View(Arc<Mutex<Book>>);

impl AdminView for View {
    fn status_json(&self) -> String {
        let Ok(book) = self.0.lock() else {
            return "{}".into();
        };
        serde_json::json!({
            "version": book.version,
            "errors": book.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            "objects": book.status().objects,
        })
        .to_string()
    }

    fn config_json(&self) -> String {
        let Ok(book) = self.0.lock() else {
            return "{}".into();
        };
        let c = &book.config;
        // Certificates by key only: private keys never leave through the admin endpoint.
        serde_json::json!({
            "version": book.version,
            "gateways": c.gateways,
            "listeners": c.listeners,
            "routeTables": c.route_tables,
            "clusters": c.clusters,
            "certificates": c.certificates.iter().map(|c| &c.key).collect::<Vec<_>>(),
        })
        .to_string()
    }
}

/// A version number that keeps growing across operator restarts (start time in
/// microseconds), so data plane logs read in order.
fn first_version() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(1)
}

/// The file operator with its sockets bound (so callers learn the real addresses before
/// it runs, e.g. to start a data plane against a port picked by the OS).
pub struct FileOperator {
    opts: FileOperatorOptions,
    grpc: tokio::net::TcpListener,
    admin: tokio::net::TcpListener,
}

impl FileOperator {
    pub async fn bind(opts: FileOperatorOptions) -> anyhow::Result<Self> {
        let grpc = tokio::net::TcpListener::bind(opts.config_address)
            .await
            .map_err(|e| anyhow::anyhow!("config server {}: {e}", opts.config_address))?;
        let admin = admin::bind(opts.admin_address).await?;
        Ok(FileOperator { opts, grpc, admin })
    }

    pub fn config_address(&self) -> std::io::Result<SocketAddr> {
        self.grpc.local_addr()
    }

    pub fn admin_address(&self) -> std::io::Result<SocketAddr> {
        self.admin.local_addr()
    }

    /// Runs until the process ends. Bad input never ends it: it becomes errors and
    /// conditions.
    pub async fn run(self) -> anyhow::Result<()> {
        let (watcher, changes) = file::watch(&self.opts.dir)?;
        let source = Directory {
            source: FileSource::new(&self.opts.dir),
            changes,
            _watcher: watcher,
        };
        run(
            source,
            self.opts.settings,
            self.grpc,
            self.admin,
            None,
            None,
        )
        .await
    }
}

/// The operator loop, whatever the source: load, translate, publish to data planes, and
/// hand status (with what data planes reported) to the admin endpoint, the log, and the
/// API-server writer when there is one.
pub(crate) async fn run(
    mut source: impl Source,
    settings: Settings,
    grpc: tokio::net::TcpListener,
    admin: tokio::net::TcpListener,
    status_sink: Option<watch::Sender<Arc<Desired>>>,
    tls: Option<tonic::transport::ServerTlsConfig>,
) -> anyhow::Result<()> {
    let (snapshot_tx, snapshot_rx) = watch::channel(Published::default());
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<AckEvent>();
    let book = Arc::new(Mutex::new(Book::default()));
    tracing::info!(address = %grpc.local_addr()?, "config server listening");
    let mut server = ConfigServer::new(snapshot_rx, ack_tx);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.requiring_identity();
        builder = builder
            .tls_config(tls)
            .map_err(|e| anyhow::anyhow!("config server TLS: {e}"))?;
    }
    tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc);
        if let Err(e) = builder
            .add_service(server.into_service())
            .serve_with_incoming(incoming)
            .await
        {
            tracing::error!(error = %e, "config server stopped");
        }
    });

    tracing::info!(address = %admin.local_addr()?, "admin endpoint listening (/status, /config, /healthz)");
    tokio::spawn(admin::serve(admin, Arc::new(View(book.clone()))));

    let mut version = first_version();
    let mut published: Option<Config> = None;
    let mut validation = gatehouse_model::validate::ValidationMemo::default();
    let mut translator = translate::Translator::new(settings);
    loop {
        let started = std::time::Instant::now();
        let loaded = source.load();
        let load_ms = started.elapsed().as_secs_f64() * 1000.0;
        let output = translator.translate(&loaded.store);
        let translate_ms = started.elapsed().as_secs_f64() * 1000.0 - load_ms;
        match validation.validate(&output.config) {
            // Translation only emits what validates; this guards the data plane all the same.
            Err(errors) => tracing::error!(
                ?errors,
                "translation produced an invalid config; keeping the previous one"
            ),
            Ok(()) if published.as_ref() != Some(&output.config) => {
                version += 1;
                let config = Arc::new(output.config.clone());
                let _ = snapshot_tx.send(Published {
                    version,
                    config: config.clone(),
                });
                if let Ok(mut b) = book.lock() {
                    b.config = config;
                    b.version = version;
                }
                tracing::info!(
                    version,
                    load_ms = format!("{load_ms:.1}"),
                    translate_ms = format!("{translate_ms:.1}"),
                    "published config"
                );
                published = Some(output.config);
            }
            Ok(()) => {}
        }
        if let Ok(mut b) = book.lock() {
            if b.errors != loaded.errors {
                for e in &loaded.errors {
                    tracing::warn!("{e}");
                }
            }
            b.errors = loaded.errors;
            b.translation = output.status;
            b.dataplanes = output.dataplanes;
            b.log_changes();
            if let Some(sink) = &status_sink {
                sink.send_replace(b.desired());
            }
        }

        // Wait for a change, folding in data plane reports meanwhile.
        loop {
            tokio::select! {
                change = source.changed() => {
                    change?;
                    break;
                }
                Some(ack) = ack_rx.recv() => {
                    if let Ok(mut b) = book.lock() {
                        b.reports.record(&ack);
                        b.log_changes();
                        if let Some(sink) = &status_sink {
                            sink.send_replace(b.desired());
                        }
                    }
                }
            }
        }
    }
}
