//! An echo backend that answers every request with JSON describing it, in the shape of the
//! Gateway API conformance echo server (path, host, method, proto, headers, pod, ...).
//! Serves HTTP/1.1 and cleartext HTTP/2 (prior knowledge) on the same port.
//!
//! Special paths for tests: `/slow/<ms>` answers after that many milliseconds;
//! `/status/<code>` answers with that status; `/flaky/<key>/<n>/<how>` fails the first `n`
//! requests with that key, then answers 200, where `<how>` is a status code, `slow<ms>`
//! (answer late) or `close` (drop the connection without an answer); `/seen/<path>` says
//! how many requests for `<path>` (without query) this server has had; `/bytes/<n>`
//! answers n bytes (benchmarks).

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct Identity {
    pub pod: String,
    pub namespace: String,
    pub service: String,
}

/// Requests seen per path, and per flaky key.
#[derive(Default)]
struct Counters {
    paths: Mutex<HashMap<String, u64>>,
    flaky: Mutex<HashMap<String, u64>>,
}

fn bump(map: &Mutex<HashMap<String, u64>>, key: &str) -> u64 {
    let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
    let n = m.entry(key.to_string()).or_default();
    *n += 1;
    *n
}

/// Serves until the listener's task is dropped.
pub async fn serve(listener: TcpListener, id: Identity) {
    let id = Arc::new(id);
    let counters = Arc::new(Counters::default());
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let id = id.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let id = id.clone();
                let counters = counters.clone();
                async move { answer(req, &id, &counters).await }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// The answer, or an error that makes hyper drop the connection unanswered.
async fn answer(
    req: Request<Incoming>,
    id: &Identity,
    counters: &Counters,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    // `/bytes/<n>`: n bytes (at most 1 MiB) and nothing else, for benchmarks.
    if let Some(n) = req
        .uri()
        .path()
        .strip_prefix("/bytes/")
        .and_then(|n| n.parse::<usize>().ok())
    {
        let mut resp = Response::new(Full::new(Bytes::from(vec![b'x'; n.min(1 << 20)])));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/octet-stream"),
        );
        return Ok(resp);
    }
    let path = req.uri().path().to_string();
    let mut status = 200;
    if let Some(seen) = path.strip_prefix("/seen") {
        let n = counters
            .paths
            .lock()
            .map(|m| m.get(seen).copied().unwrap_or(0))
            .unwrap_or(0);
        return Ok(Response::new(Full::new(Bytes::from(n.to_string()))));
    }
    bump(&counters.paths, &path);
    if let Some(rest) = path.strip_prefix("/flaky/")
        && let [key, n, how] = rest.split('/').collect::<Vec<_>>()[..]
        && let Ok(n) = n.parse::<u64>()
        && bump(&counters.flaky, key) <= n
    {
        if how == "close" {
            return Err(std::io::Error::other("flaky: dropping the connection"));
        } else if let Some(ms) = how.strip_prefix("slow").and_then(|m| m.parse::<u64>().ok()) {
            tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
        } else if let Ok(code) = how.parse::<u16>() {
            status = code;
        }
    }
    if let Some(ms) = path
        .strip_prefix("/slow/")
        .and_then(|s| s.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
    }
    if let Some(code) = path
        .strip_prefix("/status/")
        .and_then(|s| s.parse::<u16>().ok())
    {
        status = code;
    }
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in req.headers() {
        headers
            .entry(http_canonical(k.as_str()))
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let host = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        })
        .unwrap_or_default();
    let body = serde_json::json!({
        "path": req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default(),
        "host": host,
        "method": req.method().as_str(),
        "proto": format!("{:?}", req.version()),
        "headers": headers,
        "namespace": id.namespace,
        "service": id.service,
        "pod": id.pod,
    })
    .to_string();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// "x-forwarded-for" -> "X-Forwarded-For", as Go's echo server reports header names.
fn http_canonical(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}
