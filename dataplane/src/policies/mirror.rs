//! RequestMirror: copies of requests sent to another backend, fire and forget. The copy
//! carries the request as the backend would get it (method, path, headers after the
//! route's request filters, the body when it was small enough to keep); its answer is read
//! and dropped, and it never delays or fails the original request.

use crate::runtime::{Cluster, Ejections};
use bytes::Bytes;
use gatehouse_model::ir::UpstreamProtocol;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use pingora_http::RequestHeader;
use std::sync::Arc;
use std::time::Duration;

/// Bodies larger than this are not kept for mirroring; such requests are not mirrored.
pub const MAX_MIRRORED_BODY: usize = 1 << 20;

/// How long a mirrored request may take, answer included, before it is abandoned.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(10);
/// Mirrored requests in flight at once; past it a copy is not sent (counted). A slow
/// mirror target must not hold the data plane's memory and sockets.
const MAX_IN_FLIGHT: usize = 256;
/// Answer bytes read from a mirror target; past it the connection is dropped.
const MAX_ANSWER: usize = 1 << 20;

/// Copies not sent because `MAX_IN_FLIGHT` were in flight.
pub static SKIPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Sends mirrored requests (HTTP/1 and h2c clients).
pub struct Mirrors {
    http1: Client<HttpConnector, Full<Bytes>>,
    h2c: Client<HttpConnector, Full<Bytes>>,
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl Default for Mirrors {
    fn default() -> Self {
        let connector = || {
            let mut c = HttpConnector::new();
            c.set_connect_timeout(Some(Duration::from_secs(5)));
            c.set_nodelay(true);
            c
        };
        Mirrors {
            http1: Client::builder(TokioExecutor::new()).build(connector()),
            h2c: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build(connector()),
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
        }
    }
}

impl Mirrors {
    /// Sends a copy of `head` with `body` to one endpoint of `cluster`, in the background.
    pub fn send(
        &self,
        cluster: &Arc<Cluster>,
        ejections: &Ejections,
        head: &RequestHeader,
        body: Bytes,
    ) {
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            SKIPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(cluster = %cluster.key, "mirror: too many in flight; skipped");
            return;
        };
        let Some(endpoint) = cluster.pick(&[], ejections) else {
            tracing::debug!(cluster = %cluster.key, "mirror: no endpoints");
            return;
        };
        let path = head.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let uri = match format!("http://{endpoint}{path}").parse::<http::Uri>() {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "mirror: bad uri");
                return;
            }
        };
        let mut req = http::Request::new(Full::new(body));
        *req.method_mut() = head.method.clone();
        *req.uri_mut() = uri;
        let headers = req.headers_mut();
        for (name, value) in head.headers.iter() {
            // Hop-by-hop headers belong to the original connection.
            if matches!(
                name.as_str(),
                "connection" | "keep-alive" | "transfer-encoding" | "upgrade" | "te"
            ) {
                continue;
            }
            headers.append(name.clone(), value.clone());
        }
        // Host from the request line (HTTP/2 :authority) when there is no Host header.
        if !headers.contains_key(http::header::HOST)
            && let Some(authority) = head.uri.authority()
            && let Ok(v) = http::HeaderValue::from_str(authority.as_str())
        {
            headers.insert(http::header::HOST, v);
        }
        let client = match cluster.protocol {
            UpstreamProtocol::H2c => self.h2c.clone(),
            UpstreamProtocol::Http1 => self.http1.clone(),
        };
        let key = cluster.key.clone();
        tokio::spawn(async move {
            let exchange = async {
                let resp = client.request(req).await?;
                // Drain the answer (up to a bound) so the connection can be reused.
                let body = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER);
                let _ = http_body_util::BodyExt::collect(body).await;
                Ok::<_, hyper_util::client::legacy::Error>(())
            };
            match tokio::time::timeout(MIRROR_TIMEOUT, exchange).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(cluster = %key, error = %e, "mirror failed"),
                Err(_) => tracing::debug!(cluster = %key, "mirror timed out"),
            }
            drop(permit);
        });
    }
}
