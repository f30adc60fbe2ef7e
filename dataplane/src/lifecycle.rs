//! A data plane process from start to exit: the admin endpoint the kubelet probes (and
//! Prometheus scrapes, `/metrics`), and the shutdown that drops no request.
//!
//! Readiness (`/readyz`) is 200 once a version has been applied and every socket it names
//! is open, and 503 before that and from the moment SIGTERM arrives; liveness (`/healthz`)
//! is 200 while the process answers. A rollout then sends traffic only to pods that can
//! serve it.
//!
//! On SIGTERM (or SIGINT) the pod's address is still in the Service's endpoints for a
//! while: the endpoint controller and every node's kube-proxy (or the cloud's load
//! balancer) take from under a second to several to stop sending new connections. So the
//! data plane first turns unready and keeps serving, new connections included, for
//! `drain_delay`; then closes its listeners (new connections are refused), answers a
//! request arriving on a kept-alive HTTP/1 connection with `Connection: close`, sends
//! HTTP/2 GOAWAY, lets requests in flight finish, and exits when the last connection
//! ended or `drain_timeout` passed, whichever is first. The provisioner sets the pod's
//! termination grace period to the sum of both plus 5 s, so the kubelet's SIGKILL never
//! comes first.

use crate::DataPlane;
use crate::channel::client::{ClientSettings, run};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

/// How a data plane process runs and stops.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    /// Where `/readyz` and `/healthz` answer (none: no health endpoint).
    pub health_address: Option<SocketAddr>,
    /// How long to keep serving, unready, after SIGTERM before closing the listeners.
    pub drain_delay: Duration,
    /// How long connections may take to finish after the listeners closed.
    pub drain_timeout: Duration,
}

/// Bounds on a probe's connection: the kubelet sends a small request and closes.
const PROBE_HEAD_TIMEOUT: Duration = Duration::from_secs(5);
const PROBE_CONNECTIONS: usize = 64;

/// Serves the config channel's versions until SIGTERM or SIGINT, then drains and returns.
pub async fn run_until_terminated(
    settings: ClientSettings,
    dataplane: Arc<DataPlane>,
    lifecycle: Lifecycle,
) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| anyhow::anyhow!("listening for SIGTERM: {e}"))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| anyhow::anyhow!("listening for SIGINT: {e}"))?;
    if let Some(addr) = lifecycle.health_address {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("health endpoint on {addr}: {e}"))?;
        tracing::info!(%addr, "admin endpoint listening (/readyz, /healthz, /metrics)");
        tokio::spawn(serve_health(listener, dataplane.clone()));
    }
    let channel = tokio::spawn(run(settings, dataplane.clone()));
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = int.recv() => tracing::info!("SIGINT: draining"),
    }
    drain(&dataplane, &lifecycle).await;
    channel.abort();
    Ok(())
}

/// Unready, serving for the drain delay, then listeners closed and connections awaited.
pub async fn drain(dataplane: &DataPlane, lifecycle: &Lifecycle) {
    dataplane.stop_being_ready();
    tokio::time::sleep(lifecycle.drain_delay).await;
    let started = tokio::time::Instant::now();
    if dataplane.close(lifecycle.drain_timeout).await {
        tracing::info!(took = ?started.elapsed(), "every connection ended; exiting");
    } else {
        tracing::warn!(timeout = ?lifecycle.drain_timeout, "connections still open at the drain timeout; exiting");
    }
}

/// The admin endpoint: `/readyz`, `/healthz` and `/metrics`.
pub async fn serve_health(listener: TcpListener, dataplane: Arc<DataPlane>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(PROBE_CONNECTIONS));
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // At the bound, a probe connection waits its turn (the kubelet's own timeout
        // fails it) rather than taking memory.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let dataplane = dataplane.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let response = if req.uri().path() == "/metrics" {
                    metrics_page(&dataplane)
                } else {
                    answer(req.uri().path(), dataplane.ready())
                };
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let serving = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(PROBE_HEAD_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(PROBE_HEAD_TIMEOUT * 2, serving).await;
            drop(slot);
        });
    }
}

fn metrics_page(dataplane: &DataPlane) -> Response<Full<bytes::Bytes>> {
    let mut response = Response::new(Full::new(bytes::Bytes::from(dataplane.metrics().encode())));
    if let Ok(v) = crate::metrics::CONTENT_TYPE.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, v);
    }
    response
}

fn answer(path: &str, ready: bool) -> Response<Full<bytes::Bytes>> {
    let (status, body) = match path {
        "/readyz" if ready => (StatusCode::OK, "ready\n"),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        "/healthz" => (StatusCode::OK, "ok\n"),
        _ => (StatusCode::NOT_FOUND, "try /readyz, /healthz or /metrics\n"),
    };
    let mut response = Response::new(Full::new(bytes::Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}
