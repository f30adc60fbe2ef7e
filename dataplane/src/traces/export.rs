//! Sending spans to collectors. A `Tracer` per distinct `spec.tracing` (collector, protocol,
//! rate, resource), shared by every socket whose Gateway names it and kept across config
//! versions while one does; when no version holds it, its queue closes and its thread sends
//! what is left and ends.
//!
//! Bounds: the queue holds `QUEUE_SPANS` spans; a request hands its span over with
//! `try_send` and never waits (a full queue drops it, counted as `queue_full`). One thread
//! per collector sends batches of up to `BATCH_SPANS`, `BATCH_DELAY` after a batch's first
//! span at the latest, one at a time, each within `EXPORT_TIMEOUT` (a batch that fails is
//! dropped and counted as `export_failed`: no retry queue to grow while a collector is
//! down). At most `MAX_TRACERS` collectors are served at once.

use super::context::{Sampler, TraceContext};
use super::span::text;
use crate::metrics::registry::SpanLabels;
use gatehouse_model::ir::{TraceProtocol, Tracing};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// Spans waiting for the exporter: at about 1 KB a span, 4 MB.
pub const QUEUE_SPANS: usize = 4096;
pub const BATCH_SPANS: usize = 512;
pub const BATCH_DELAY: Duration = Duration::from_millis(200);
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_TRACERS: usize = 64;

/// One collector's sampler and queue.
pub struct Tracer {
    sampler: Sampler,
    queue: mpsc::Sender<Span>,
    queue_full: Counter,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("sampler", &self.sampler)
            .finish_non_exhaustive()
    }
}

impl Tracer {
    /// The context of a request that sent these `traceparent` lines.
    pub fn start<'a>(&self, traceparent: impl IntoIterator<Item = &'a [u8]>) -> TraceContext {
        TraceContext::start(traceparent, &self.sampler)
    }

    /// Hands a finished span to the exporter; never waits.
    pub fn finish(&self, span: Span) {
        if self.queue.try_send(span).is_err() {
            self.queue_full.inc();
        }
    }
}

/// The tracers of the serving config, by their settings (the compiler's).
#[derive(Default)]
pub struct Tracers {
    started: HashMap<Tracing, Weak<Tracer>>,
    spans: Family<SpanLabels, Counter>,
}

impl Tracers {
    /// Tracers whose spans are counted in `spans`.
    pub fn counted(spans: Family<SpanLabels, Counter>) -> Tracers {
        Tracers {
            started: HashMap::new(),
            spans,
        }
    }

    /// The counter of spans with this outcome. (One at a time: the family's guard, held
    /// while a second is created, would deadlock.)
    fn counter(&self, outcome: &'static str) -> Counter {
        let guard = self.spans.get_or_create(&SpanLabels { outcome });
        guard.clone()
    }

    /// The tracer for `settings`: the running one, or a new one (its exporter thread
    /// started). Settings that do not pass `Tracing::check`, or one collector too many,
    /// are refused.
    pub fn tracer(&mut self, settings: &Tracing) -> Result<Arc<Tracer>, String> {
        if let Some(t) = self.started.get(settings).and_then(Weak::upgrade) {
            return Ok(t);
        }
        self.started.retain(|_, t| t.strong_count() > 0);
        if self.started.len() >= MAX_TRACERS {
            return Err(format!(
                "tracing: {MAX_TRACERS} collectors are served already"
            ));
        }
        let collector = settings.check()?;
        let (queue, spans) = mpsc::channel(QUEUE_SPANS);
        let exporter = Exporter {
            target: Target::of(settings.protocol, &collector.host, collector.port),
            resource: resource(settings),
            exported: self.counter("exported"),
            failed: self.counter("export_failed"),
        };
        std::thread::Builder::new()
            .name("trace-export".into())
            .spawn(move || exporter.run(spans))
            .map_err(|e| format!("tracing: exporter thread not started: {e}"))?;
        let tracer = Arc::new(Tracer {
            sampler: Sampler::percent(settings.sampling_percent),
            queue,
            queue_full: self.counter("queue_full"),
        });
        self.started
            .insert(settings.clone(), Arc::downgrade(&tracer));
        Ok(tracer)
    }
}

fn resource(settings: &Tracing) -> Resource {
    let mut attributes = vec![text("service.name", &settings.service_name)];
    attributes.extend(
        settings
            .resource_attributes
            .iter()
            .filter(|(k, _)| k.as_str() != "service.name")
            .map(|(k, v)| text(k, v)),
    );
    Resource {
        attributes,
        ..Resource::default()
    }
}

/// Where batches go. The host and port were checked by `Tracing::check`; the URI is built
/// from them and fixed paths, never from other text.
enum Target {
    Grpc(String),
    Http { host: String, port: u16 },
}

impl Target {
    fn of(protocol: TraceProtocol, host: &str, port: u16) -> Target {
        match protocol {
            TraceProtocol::Grpc if host.contains(':') => {
                Target::Grpc(format!("http://[{host}]:{port}"))
            }
            TraceProtocol::Grpc => Target::Grpc(format!("http://{host}:{port}")),
            TraceProtocol::Http => Target::Http {
                host: host.to_string(),
                port,
            },
        }
    }
}

struct Exporter {
    target: Target,
    resource: Resource,
    exported: Counter,
    failed: Counter,
}

impl Exporter {
    /// The thread's body: batches from the queue, sent one after the other until the queue
    /// closes (no tracer left) and is drained.
    fn run(self, mut spans: mpsc::Receiver<Span>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "trace exporter without a runtime; spans are dropped");
                return;
            }
        };
        runtime.block_on(async move {
            let mut grpc = match &self.target {
                Target::Grpc(uri) => match tonic::transport::Endpoint::from_shared(uri.clone()) {
                    Ok(e) => Some(TraceServiceClient::new(
                        e.connect_timeout(Duration::from_secs(5))
                            .timeout(EXPORT_TIMEOUT)
                            .connect_lazy(),
                    )),
                    Err(e) => {
                        tracing::error!(error = %e, "trace collector address");
                        return;
                    }
                },
                Target::Http { .. } => None,
            };
            let mut batch = Vec::with_capacity(BATCH_SPANS);
            while let Some(first) = spans.recv().await {
                batch.push(first);
                let until = tokio::time::Instant::now() + BATCH_DELAY;
                while batch.len() < BATCH_SPANS {
                    match tokio::time::timeout_at(until, spans.recv()).await {
                        Ok(Some(s)) => batch.push(s),
                        Ok(None) | Err(_) => break,
                    }
                }
                let n = batch.len() as u64;
                let request = self.request(std::mem::take(&mut batch));
                let sent = match &mut grpc {
                    Some(client) => client
                        .export(request)
                        .await
                        .map(|_| ())
                        .map_err(|s| format!("{}: {}", s.code(), s.message())),
                    None => self.post(request).await,
                };
                match sent {
                    Ok(()) => {
                        self.exported.inc_by(n);
                    }
                    Err(e) => {
                        self.failed.inc_by(n);
                        tracing::warn!(error = %e, spans = n, "spans not exported");
                    }
                }
                batch = Vec::with_capacity(BATCH_SPANS);
            }
        });
    }

    fn request(&self, spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "gatehouse".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..InstrumentationScope::default()
                    }),
                    spans,
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        }
    }

    /// OTLP/HTTP: the batch as protobuf, POSTed to `/v1/traces` on a new connection.
    async fn post(&self, request: ExportTraceServiceRequest) -> Result<(), String> {
        let Target::Http { host, port } = &self.target else {
            return Err("not an HTTP collector".into());
        };
        let body = prost::Message::encode_to_vec(&request);
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let send = async {
            let stream = tokio::net::TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(|e| format!("connect {authority}: {e}"))?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(|e| format!("{authority}: {e}"))?;
            tokio::spawn(connection);
            let post = http::Request::post("/v1/traces")
                .header(http::header::HOST, authority.as_str())
                .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .map_err(|e| format!("request: {e}"))?;
            let answer = sender
                .send_request(post)
                .await
                .map_err(|e| format!("{authority}: {e}"))?;
            if answer.status().is_success() {
                Ok(())
            } else {
                Err(format!("{authority} answered {}", answer.status()))
            }
        };
        tokio::time::timeout(EXPORT_TIMEOUT, send)
            .await
            .map_err(|_| format!("{authority}: no answer within {EXPORT_TIMEOUT:?}"))?
    }
}
