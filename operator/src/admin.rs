//! The admin endpoint: status of every object as JSON (where standalone mode has no API
//! server to write it to), the current model, health, and the operator's metrics
//! (`/metrics`; in standalone mode followed by the data plane's, so one scrape sees both
//! processes).
//!
//! In a cluster it listens on the pod's address, for the kubelet's probes; `/status` and
//! `/config` (every tenant's routes) answer only clients on the pod's own loopback
//! (`kubectl port-forward`), and `/config` never shows header values a route sets or any
//! key material.

use crate::metrics::OperatorMetrics;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long fetching the data plane's metrics may take before the page goes without them.
const DATAPLANE_METRICS_TIMEOUT: Duration = Duration::from_secs(2);

/// The admin endpoint's socket and what its `/metrics` shows.
pub struct AdminEndpoint {
    pub listener: TcpListener,
    pub metrics: Arc<OperatorMetrics>,
    /// A data plane's admin endpoint whose `/metrics` follow ours (standalone mode, where
    /// the data plane is a child process on this machine).
    pub dataplane: Option<SocketAddr>,
}

type Body = http_body_util::Full<bytes::Bytes>;

/// What the admin endpoint serves, read on each request.
pub trait AdminView: Send + Sync + 'static {
    /// JSON of every object's status and the source errors.
    fn status_json(&self) -> String;
    /// JSON of the model currently published.
    fn config_json(&self) -> String;
}

pub async fn serve(endpoint: AdminEndpoint, view: Arc<dyn AdminView>) {
    let AdminEndpoint {
        listener,
        metrics,
        dataplane,
    } = endpoint;
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        let view = view.clone();
        let metrics = metrics.clone();
        let local = peer.ip().to_canonical().is_loopback();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let view = view.clone();
                let metrics = metrics.clone();
                async move {
                    let response = if req.uri().path() == "/metrics" {
                        metrics_page(&metrics, dataplane).await
                    } else {
                        handle(&req, view.as_ref(), local)
                    };
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// The operator's metrics, then the data plane's when there is one to ask.
async fn metrics_page(metrics: &OperatorMetrics, dataplane: Option<SocketAddr>) -> Response<Body> {
    let mut text = metrics.encode();
    if let Some(addr) = dataplane {
        match tokio::time::timeout(DATAPLANE_METRICS_TIMEOUT, fetch_metrics(addr)).await {
            Ok(Ok(more)) => text.push_str(&more),
            Ok(Err(e)) => {
                text.push_str(&format!("# data plane metrics ({addr}) unavailable: {e}\n"))
            }
            Err(_) => text.push_str(&format!("# data plane metrics ({addr}) timed out\n")),
        }
    }
    let mut resp = Response::new(Body::from(text));
    if let Ok(v) = crate::metrics::CONTENT_TYPE.parse() {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}

/// GET /metrics of a data plane's admin endpoint.
async fn fetch_metrics(addr: SocketAddr) -> anyhow::Result<String> {
    use http_body_util::BodyExt;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let req = Request::get("/metrics")
        .header(http::header::HOST, addr.to_string())
        .body(http_body_util::Empty::<bytes::Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    if !resp.status().is_success() {
        anyhow::bail!("answered {}", resp.status());
    }
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn handle(req: &Request<Incoming>, view: &dyn AdminView, local: bool) -> Response<Body> {
    let (status, ctype, body) = match req.uri().path() {
        "/status" | "/config" if !local => (
            StatusCode::FORBIDDEN,
            "text/plain",
            "only from the pod's own loopback (kubectl port-forward)\n".to_string(),
        ),
        "/status" => (StatusCode::OK, "application/json", view.status_json()),
        "/config" => (StatusCode::OK, "application/json", view.config_json()),
        "/healthz" | "/readyz" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /status, /config, /metrics or /healthz\n".to_string(),
        ),
    };
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    if let Ok(v) = ctype.parse() {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}

pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("admin endpoint {addr}: {e}"))
}
