//! The admin endpoint: status of every object as JSON (where standalone mode has no API
//! server to write it to), the current model, and health.
//!
//! In a cluster it listens on the pod's address, for the kubelet's probes; `/status` and
//! `/config` (every tenant's routes) answer only clients on the pod's own loopback
//! (`kubectl port-forward`), and `/config` never shows header values a route sets or any
//! key material.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

type Body = http_body_util::Full<bytes::Bytes>;

/// What the admin endpoint serves, read on each request.
pub trait AdminView: Send + Sync + 'static {
    /// JSON of every object's status and the source errors.
    fn status_json(&self) -> String;
    /// JSON of the model currently published.
    fn config_json(&self) -> String;
}

pub async fn serve(listener: TcpListener, view: Arc<dyn AdminView>) {
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        let view = view.clone();
        let local = peer.ip().to_canonical().is_loopback();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let view = view.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&req, view.as_ref(), local)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
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
            "try /status, /config or /healthz\n".to_string(),
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
