//! The operator loop, whatever the source (a directory of YAML or the Kubernetes API):
//! load, translate, publish to data planes through the config server, and hand status
//! (with what data planes reported) to the admin endpoint, the log and, in Kubernetes mode,
//! the status writer.

use crate::admin::{self, AdminEndpoint, AdminView};
use crate::config_server::{AckEvent, ConfigServer, Published};
use crate::dataplane_reports::DataPlaneReports;
use crate::metrics::KindLabels;
use crate::source::Source;
use gatehouse_model::ir::Config;
use gatehouse_translate::status::StatusReport;
use gatehouse_translate::store::ObjectKey;
use gatehouse_translate::yaml::SourceError;
use gatehouse_translate::{DataPlanePlan, Settings, Translator};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};

/// What the API server should hold: every object's status (data plane reports folded in)
/// and the data planes each accepted Gateway should have.
#[derive(Debug, Default)]
pub struct Desired {
    pub status: StatusReport,
    pub dataplanes: BTreeMap<ObjectKey, DataPlanePlan>,
}

/// Status as last computed, shared with the admin endpoint.
#[derive(Default)]
struct LatestStatus {
    translation: StatusReport,
    dataplanes: BTreeMap<ObjectKey, DataPlanePlan>,
    reports: DataPlaneReports,
    errors: Vec<SourceError>,
    unwatched: BTreeMap<&'static str, String>,
    config: Arc<Config>,
    version: u64,
    /// The last status logged, to log only changes.
    logged: StatusReport,
}

/// Each GatewayClass's Accepted message names the kinds the operator cannot watch (a
/// cluster with the standard channel only has no ListenerSet CRD): their objects are not
/// served, and the platform team reading the class learns why.
fn with_unwatched(
    mut report: StatusReport,
    unwatched: &BTreeMap<&'static str, String>,
) -> StatusReport {
    if unwatched.is_empty() {
        return report;
    }
    let note = format!(
        " Not watched, so not served: {}.",
        unwatched
            .iter()
            .map(|(kind, why)| format!("{kind} ({why})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (key, st) in report.objects.iter_mut() {
        if !key.starts_with("GatewayClass ") {
            continue;
        }
        let st = Arc::make_mut(st);
        for c in st.conditions.iter_mut().filter(|c| c.type_ == "Accepted") {
            c.message.push_str(&note);
        }
    }
    report
}

impl LatestStatus {
    fn status(&self) -> StatusReport {
        with_unwatched(self.reports.apply(&self.translation), &self.unwatched)
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

struct View(Arc<Mutex<LatestStatus>>);

impl AdminView for View {
    fn status_json(&self) -> String {
        let Ok(latest) = self.0.lock() else {
            return "{}".into();
        };
        serde_json::json!({
            "version": latest.version,
            "errors": latest.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            "objects": latest.status().objects,
        })
        .to_string()
    }

    fn config_json(&self) -> String {
        let Ok(latest) = self.0.lock() else {
            return "{}".into();
        };
        let c = &latest.config;
        // Certificates by key only: private keys never leave through the admin endpoint;
        // header values routes set (tokens, often) neither.
        let mut tables = serde_json::to_value(&c.route_tables).unwrap_or_default();
        redact_header_values(&mut tables);
        serde_json::json!({
            "version": latest.version,
            "gateways": c.gateways,
            "listeners": c.listeners,
            "routeTables": tables,
            "clusters": c.clusters,
            "certificates": c.certificates.iter().map(|c| &c.key).collect::<Vec<_>>(),
        })
        .to_string()
    }
}

/// Every header value a header modifier sets or adds, replaced (`set` and `add` are
/// lists of [name, value] pairs wherever they appear in route tables).
fn redact_header_values(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if (k == "set" || k == "add")
                    && let Value::Array(pairs) = child
                {
                    for pair in pairs {
                        if let Some(value) = pair.get_mut(1) {
                            *value = Value::String("<redacted>".into());
                        }
                    }
                } else {
                    redact_header_values(child);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_header_values),
        _ => {}
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

/// The operator loop, whatever the source: load, translate, publish to data planes, and
/// hand status (with what data planes reported) to the admin endpoint, the log, and the
/// API-server writer when there is one.
pub async fn run(
    mut source: impl Source,
    settings: Settings,
    grpc: tokio::net::TcpListener,
    admin: AdminEndpoint,
    status_sink: Option<watch::Sender<Arc<Desired>>>,
    tls: Option<tonic::transport::ServerTlsConfig>,
    serving: Option<watch::Receiver<bool>>,
) -> anyhow::Result<()> {
    let (snapshot_tx, snapshot_rx) = watch::channel(Published::default());
    let (ack_tx, mut ack_rx) = mpsc::channel::<AckEvent>(gatehouse_model::channel::REPORT_QUEUE);
    let latest = Arc::new(Mutex::new(LatestStatus::default()));
    tracing::info!(address = %grpc.local_addr()?, "config server listening");
    let mut server = ConfigServer::new(snapshot_rx, ack_tx);
    if let Some(serving) = serving {
        server = server.serving_while(serving);
    }
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

    tracing::info!(address = %admin.listener.local_addr()?, "admin endpoint listening (/status, /config, /metrics, /healthz)");
    let metrics = admin.metrics.clone();
    tokio::spawn(admin::serve(admin, Arc::new(View(latest.clone()))));

    let mut version = first_version();
    let mut published: Option<Config> = None;
    let mut validation = gatehouse_model::validate::ValidationMemo::default();
    let mut translator = Translator::new(settings);
    loop {
        let started = std::time::Instant::now();
        let loaded = source.load();
        let load_ms = started.elapsed().as_secs_f64() * 1000.0;
        let output = translator.translate(&loaded.store);
        let translate_ms = started.elapsed().as_secs_f64() * 1000.0 - load_ms;
        metrics.load_seconds.observe(load_ms / 1000.0);
        metrics.translate_seconds.observe(translate_ms / 1000.0);
        for (kind, n) in loaded.store.counts() {
            metrics
                .objects
                .get_or_create(&KindLabels { kind: kind.into() })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        metrics
            .source_errors
            .set(i64::try_from(loaded.errors.len()).unwrap_or(i64::MAX));
        metrics.unwatched.clear();
        for kind in loaded.unwatched.keys() {
            metrics
                .unwatched
                .get_or_create(&KindLabels {
                    kind: (*kind).into(),
                })
                .set(1);
        }
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
                metrics.published(version, started);
                if let Ok(mut b) = latest.lock() {
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
        if let Ok(mut b) = latest.lock() {
            if b.errors != loaded.errors {
                for e in &loaded.errors {
                    tracing::warn!("{e}");
                }
            }
            b.errors = loaded.errors;
            b.unwatched = loaded.unwatched;
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
                    metrics.acknowledged(ack.version, ack.accepted, &ack.gateways);
                    if let Ok(mut b) = latest.lock() {
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

#[cfg(test)]
mod tests {
    #[test]
    fn header_values_are_redacted() {
        let mut v = serde_json::json!([{"filters": [{"requestHeaders": {"set": [["authorization", "Bearer s3cret"]], "remove": ["x"]}}]}]);
        super::redact_header_values(&mut v);
        assert_eq!(
            v[0]["filters"][0]["requestHeaders"]["set"][0],
            serde_json::json!(["authorization", "<redacted>"])
        );
        assert_eq!(v[0]["filters"][0]["requestHeaders"]["remove"][0], "x");
        assert!(!v.to_string().contains("s3cret"));
    }
}
