//! The direct HTTP/1 path: a request to a route with no filters and no policies (most
//! routes) is forwarded by a small loop of our own instead of pingora-proxy's phases.
//!
//! Why: profiles of a proxied request (`bench/instructions`) put 2.5 % of its instructions
//! in our code and most of the rest in pingora's general machinery (a ~15 KB per-request
//! future moved into boxes, header maps built and serialised twice). A plain route needs
//! none of it: parse the head once (httparse), route on the parsed bytes, write the head
//! again with X-Forwarded-For/-Proto, and copy the answer back as the backend framed it.
//!
//! Anything else is handed to pingora with the bytes already read (`Coalescing` replays
//! them), so pingora answers exactly as before: HTTP/1.0, bodies, upgrades, `Expect`,
//! h2c, unknown hosts and routes (404), misdirected requests (421), malformed heads (400),
//! routes with filters or policies, TLS or h2c backends, endpoint-less clusters (503).
//! A connection can go back and forth: each request is decided on its own.
//!
//! Failure handling follows the pingora path (`proxy.rs`): a failed connect ejects the
//! endpoint and tries another; a pooled connection that turns out closed is retried on a
//! fresh one; a fresh one that fails is retried elsewhere for GET/HEAD/OPTIONS, and
//! answered 502 otherwise.

use crate::tables::{Ejections, Headers, RequestView, Runtime, Target};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// A request head larger than this goes to pingora (which answers 431 past its own limit).
const MAX_HEAD: usize = 16 * 1024;
/// Headers parsed per head; more go to pingora.
const MAX_HEADERS: usize = 64;
/// An answer head larger than this is a broken backend (502).
const MAX_ANSWER_HEAD: usize = 64 * 1024;
/// Idle pooled connections kept per endpoint, and how long one stays usable.
const POOL_PER_ENDPOINT: usize = 256;
const POOL_IDLE_SECONDS: u64 = 60;
/// As the pingora path: connecting to a backend.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes copied per read while streaming a body.
const COPY_CHUNK: usize = 64 * 1024;

/// The connection being served.
pub struct Conn {
    pub peer: SocketAddr,
    /// The bind address the connection was accepted on.
    pub bind: SocketAddr,
    pub tls: bool,
    /// The TLS server name, lower-case, without a trailing dot.
    pub sni: Option<String>,
}

/// How the direct path left a connection.
pub enum Outcome {
    /// Done with: the client closed, an error, a close asked for, or the listener closing.
    Closed,
    /// A request for pingora, with every byte read from the client so far.
    HandOff(Vec<u8>),
}

/// The direct path: shared by every connection of every listener.
pub struct Direct {
    state: Arc<ArcSwap<Runtime>>,
    ejections: Arc<Ejections>,
    pool: Pool,
}

/// A pooled connection and when it went idle (`coarse_seconds`).
type Idle = (TcpStream, u64);

/// Idle keep-alive connections to backends, newest last.
#[derive(Default)]
struct Pool {
    /// Keyed by endpoints from config, not by anything a client sends: a fast hash is safe.
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>, rustc_hash::FxBuildHasher>>,
}

impl Pool {
    fn take(&self, addr: SocketAddr) -> Option<TcpStream> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(&addr)?;
        let now = coarse_seconds();
        while let Some((s, since)) = list.pop() {
            if now.saturating_sub(since) < POOL_IDLE_SECONDS {
                return Some(s);
            }
        }
        None
    }

    /// Drops every idle connection to `addr`: one turned out closed, the others likely are
    /// (a backend restarting or going away closes them all).
    fn forget(&self, addr: SocketAddr) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.remove(&addr);
        }
    }

    fn put(&self, addr: SocketAddr, s: TcpStream) {
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry(addr).or_default();
            if list.len() < POOL_PER_ENDPOINT {
                list.push((s, coarse_seconds()));
            }
        }
    }
}

/// Seconds on the kernel's coarse monotonic clock (its tick; no TSC read, which costs a
/// VM more): idle connections' ages need no better, and every request takes and returns one.
fn coarse_seconds() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which we own, and reads nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0)
}

/// What one request came to.
enum Served {
    /// Answered; the connection may carry another request.
    KeepAlive,
    /// Answered (or failed); the connection is to be closed.
    Close,
    /// Not for this path.
    HandOff,
}

/// The parts of a request head the direct path acts on.
struct Head<'a> {
    method: http::Method,
    target: &'a str,
    host: std::borrow::Cow<'a, str>,
    /// The client asked to close after this request.
    close: bool,
    forwarded_for: Option<&'a [u8]>,
}

impl Direct {
    pub fn new(state: Arc<ArcSwap<Runtime>>, ejections: Arc<Ejections>) -> Self {
        Direct {
            state,
            ejections,
            pool: Pool::default(),
        }
    }

    /// Serves requests from `client` until one is not for this path (handed back with the
    /// bytes read) or the connection ends. The first bytes must come within `first_byte`.
    pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        client: &mut S,
        conn: &Conn,
        shutdown: &mut watch::Receiver<bool>,
        first_byte: Duration,
    ) -> Outcome {
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        let mut scratch = Scratch::default();
        let mut first = true;
        if *shutdown.borrow() {
            return Outcome::Closed;
        }
        // One wait for the listener closing, registered once for the whole connection
        // rather than once per request.
        let mut closing = std::pin::pin!(shutdown.changed());
        loop {
            // Read until a whole head is in.
            let head_len = loop {
                if let Some(n) = head_end(&buf) {
                    break n;
                }
                if buf.len() >= MAX_HEAD {
                    // Too large for us: pingora's to answer (431 past its own limit).
                    return Outcome::HandOff(buf);
                }
                if buf.capacity() - buf.len() < 1024 {
                    buf.reserve(4096);
                }
                let read = if first {
                    first = false;
                    match tokio::time::timeout(first_byte, client.read_buf(&mut buf)).await {
                        Ok(r) => r,
                        Err(_) => return Outcome::Closed,
                    }
                } else if buf.is_empty() {
                    // Between requests: the listener closing ends an idle connection.
                    tokio::select! {
                        biased;
                        r = client.read_buf(&mut buf) => r,
                        _ = &mut closing => return Outcome::Closed,
                    }
                } else {
                    client.read_buf(&mut buf).await
                };
                match read {
                    Ok(0) | Err(_) => return Outcome::Closed,
                    Ok(_) => {}
                }
            };
            match self
                .request(client, conn, &buf[..head_len], &mut scratch)
                .await
            {
                Served::HandOff => return Outcome::HandOff(buf),
                Served::Close => {
                    let _ = client.shutdown().await;
                    return Outcome::Closed;
                }
                Served::KeepAlive => {
                    // Pipelined bytes stay for the next round.
                    buf.drain(..head_len);
                }
            }
        }
    }

    /// One request whose head is `raw` (complete).
    async fn request<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        client: &mut S,
        conn: &Conn,
        raw: &[u8],
        scratch: &mut Scratch,
    ) -> Served {
        // The one parse of this head. Malformed, too many headers, HTTP/2's preface:
        // pingora's to answer.
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        if !matches!(req.parse(raw), Ok(httparse::Status::Complete(n)) if n == raw.len()) {
            return Served::HandOff;
        }
        let Some(head) = eligible(&req) else {
            return Served::HandOff;
        };
        let (path, query) = match head.target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (head.target, None),
        };
        let (route, cluster) = {
            let runtime = self.state.load();
            let Some(bind) = runtime.bind(conn.bind) else {
                return Served::HandOff;
            };
            if let Some(sni) = &conn.sni
                && bind.misdirected(sni, &head.host)
            {
                return Served::HandOff;
            }
            let view = RequestView {
                host: &head.host,
                path,
                query,
                method: &head.method,
                headers: Headers::Raw(req.headers),
            };
            let Ok((_, route)) = bind.route(&view) else {
                return Served::HandOff;
            };
            if !route.direct {
                return Served::HandOff;
            }
            let backend = if route.backends.len() == 1 {
                route.backends.first()
            } else {
                let sample = rand::random_range(0..route.total_weight.max(1));
                let mut acc = 0u64;
                route.backends.iter().find(|b| {
                    acc += u64::from(b.weight);
                    sample < acc
                })
            };
            let Some(Target::Cluster(cluster)) = backend.map(|b| &b.target) else {
                return Served::HandOff;
            };
            (route.clone(), cluster.clone())
        };
        let Some(first) = cluster.pick(&[], &self.ejections) else {
            return Served::HandOff;
        };

        scratch.request.clear();
        write_request(&mut scratch.request, &req, &head, conn);
        let idempotent = matches!(
            head.method,
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
        );
        let exchanged = self
            .exchange(client, &cluster, first, idempotent, &head, scratch)
            .await;
        if tracing::enabled!(target: "gatehouse::access", tracing::Level::DEBUG) {
            let s = &route.source;
            tracing::debug!(
                target: "gatehouse::access",
                client = %conn.peer,
                method = %head.method,
                uri = %head.target,
                status = exchanged.status,
                route = %format!("{} {}/{} rule {}", s.kind, s.namespace, s.name, s.rule),
                upstream = ?exchanged.upstream,
                outcome = exchanged.outcome,
                path = "direct",
            );
        }
        match exchanged.client {
            ClientState::Open if !head.close => Served::KeepAlive,
            _ => Served::Close,
        }
    }

    /// Sends the request to an endpoint of `cluster` (trying others as the pingora path
    /// does) and copies its answer to the client.
    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        client: &mut S,
        cluster: &crate::tables::Cluster,
        first: SocketAddr,
        idempotent: bool,
        head: &Head<'_>,
        scratch: &mut Scratch,
    ) -> Exchanged {
        let mut addr = first;
        let mut tried: Vec<SocketAddr> = Vec::new();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (mut upstream, reused) = match self.pool.take(addr) {
                Some(s) => (s, true),
                None => match connect(addr).await {
                    Ok(s) => (s, false),
                    Err(_) => {
                        // As fail_to_connect: skip the endpoint a while, try another.
                        self.ejections.eject(addr, crate::proxy::EJECTION);
                        tried.push(addr);
                        match cluster.pick(&tried, &self.ejections) {
                            Some(next) if attempts < crate::proxy::MAX_CONNECT_ATTEMPTS => {
                                addr = next;
                                continue;
                            }
                            _ => return fail(client, 502, addr).await,
                        }
                    }
                },
            };
            match forward(client, &mut upstream, head, scratch).await {
                Ok(done) => {
                    if done.upstream_reusable {
                        self.pool.put(addr, upstream);
                    }
                    return Exchanged {
                        status: done.status,
                        upstream: Some(addr),
                        outcome: "proxied",
                        client: done.client,
                    };
                }
                Err(Failed::NoAnswer) => {
                    // A pooled connection the backend had closed: the same endpoint on a
                    // fresh connection.
                    if reused && attempts < crate::proxy::MAX_CONNECT_ATTEMPTS {
                        self.pool.forget(addr);
                        continue;
                    }
                    tried.push(addr);
                    match cluster.pick(&tried, &self.ejections) {
                        Some(next)
                            if idempotent && attempts < crate::proxy::MAX_CONNECT_ATTEMPTS =>
                        {
                            addr = next;
                        }
                        _ => return fail(client, 502, addr).await,
                    }
                }
                Err(Failed::BadAnswer) => return fail(client, 502, addr).await,
                Err(Failed::Midway(status)) => {
                    return Exchanged {
                        status,
                        upstream: Some(addr),
                        outcome: "upstream failed mid-answer",
                        client: ClientState::Broken,
                    };
                }
            }
        }
    }
}

/// Buffers kept across a connection's requests.
#[derive(Default)]
struct Scratch {
    request: Vec<u8>,
    answer: Vec<u8>,
    out: Vec<u8>,
}

enum ClientState {
    Open,
    /// The answer was close-delimited or the client is gone: close.
    Broken,
}

struct Exchanged {
    status: u16,
    upstream: Option<SocketAddr>,
    outcome: &'static str,
    client: ClientState,
}

/// A 502 of our own; the connection closes after it, as after pingora's error answers.
async fn fail<S: AsyncWrite + Unpin>(client: &mut S, status: u16, addr: SocketAddr) -> Exchanged {
    let body = "upstream connect failure\n";
    let answer = format!(
        "HTTP/1.1 {status} Bad Gateway\r\nserver: gatehouse\r\ncontent-length: {}\r\ncache-control: private, no-store\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(answer.as_bytes()).await;
    let _ = client.flush().await;
    Exchanged {
        status,
        upstream: Some(addr),
        outcome: "upstream connect failure",
        client: ClientState::Broken,
    }
}

async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    s.set_nodelay(true)?;
    Ok(s)
}

/// The length of the request head at the start of `buf` (through its empty line), once it
/// is all in. Header lines cannot hold a bare LF, so the first LF followed by an empty line
/// (CRLF or LF, as httparse accepts both) ends the head.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = buf[from..].iter().position(|b| *b == b'\n') {
        let lf = from + i;
        match (buf.get(lf + 1), buf.get(lf + 2)) {
            (Some(b'\n'), _) => return Some(lf + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(lf + 3),
            _ => from = lf + 1,
        }
    }
    None
}

/// Whether the direct path serves this request, and what it needs of it. HTTP/1.1 only, no
/// body, no upgrade or expectation, an origin-form target, one Host.
fn eligible<'a>(req: &httparse::Request<'_, 'a>) -> Option<Head<'a>> {
    if req.version != Some(1) {
        return None;
    }
    let method = http::Method::from_bytes(req.method?.as_bytes()).ok()?;
    if method == http::Method::CONNECT {
        return None;
    }
    let target = req.path?;
    if !target.starts_with('/') || !target.bytes().all(uri_byte) {
        return None;
    }
    let mut host = None;
    let mut close = false;
    let mut forwarded_for = None;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("host") {
            if host.is_some() || !h.value.iter().all(|b| b.is_ascii_graphic()) {
                return None;
            }
            host = Some(std::str::from_utf8(h.value).ok()?);
        } else if is("content-length") {
            if h.value != b"0" {
                return None;
            }
        } else if is("transfer-encoding") || is("expect") || is("upgrade") || is("te") {
            return None;
        } else if is("connection") {
            for token in h.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if !token.eq_ignore_ascii_case(b"keep-alive") && !token.is_empty() {
                    // Other hop-by-hop headers named: pingora's.
                    return None;
                }
            }
        } else if is("x-forwarded-for") && forwarded_for.is_none() {
            forwarded_for = Some(h.value);
        }
    }
    Some(Head {
        method,
        target,
        host: crate::proxy::normalize_host(host?),
        close,
        forwarded_for,
    })
}

/// Bytes `http::Uri` takes in a path and query (others: pingora's to judge).
fn uri_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%[]".contains(&b)
}

/// The head sent to the backend: the client's, less hop-by-hop headers, with
/// X-Forwarded-For and X-Forwarded-Proto as the pingora path sets them.
fn write_request(out: &mut Vec<u8>, req: &httparse::Request<'_, '_>, head: &Head<'_>, conn: &Conn) {
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if [
            "connection",
            "keep-alive",
            "x-forwarded-for",
            "x-forwarded-proto",
        ]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
        {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    crate::proxy::push_forwarded_for(out, head.forwarded_for, conn.peer.ip());
    out.extend_from_slice(if conn.tls {
        b"\r\nx-forwarded-proto: https\r\n\r\n"
    } else {
        b"\r\nx-forwarded-proto: http\r\n\r\n"
    });
}

enum Failed {
    /// No whole answer head came back (the request may or may not have arrived); nothing
    /// sent to the client.
    NoAnswer,
    /// An answer that is not HTTP/1 or cannot be framed; nothing sent to the client.
    BadAnswer,
    /// The backend or client failed after the answer started: close the client.
    Midway(u16),
}

struct Done {
    status: u16,
    upstream_reusable: bool,
    client: ClientState,
}

/// How the answer's body ends.
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the backend closes: the client connection closes after it.
    Close,
}

/// Writes the request, reads the answer head, and copies head and body to the client.
async fn forward<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut S,
    upstream: &mut TcpStream,
    head: &Head<'_>,
    scratch: &mut Scratch,
) -> Result<Done, Failed> {
    upstream
        .write_all(&scratch.request)
        .await
        .map_err(|_| Failed::NoAnswer)?;
    let answer = &mut scratch.answer;
    answer.clear();
    // An interim answer went to the client: a failure now cannot be retried.
    let mut interim = None;
    loop {
        // Read until an answer head (1xx heads are passed on as they come).
        let (status, head_len, framing, upstream_close) = loop {
            if !answer.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(answer) {
                    Ok(httparse::Status::Complete(n)) => {
                        let parsed = answer_head(&resp, head, &mut scratch.out)
                            .map_err(|e| interim.map_or(e, Failed::Midway))?;
                        break (parsed.0, n, parsed.1, parsed.2);
                    }
                    Ok(httparse::Status::Partial) if answer.len() < MAX_ANSWER_HEAD => {}
                    _ => return Err(interim.map_or(Failed::BadAnswer, Failed::Midway)),
                }
            }
            if answer.capacity() - answer.len() < 1024 {
                answer.reserve(4096);
            }
            match upstream.read_buf(answer).await {
                Ok(0) | Err(_) => {
                    return Err(interim.map_or(Failed::NoAnswer, Failed::Midway));
                }
                Ok(_) => {}
            }
        };
        if (100..200).contains(&status) {
            // An interim answer (103 Early Hints, say): on to the client, then the next.
            client
                .write_all(&scratch.out)
                .await
                .map_err(|_| Failed::Midway(status))?;
            interim = Some(status);
            answer.drain(..head_len);
            continue;
        }
        let out = &mut scratch.out;
        let body = &answer[head_len..];
        let mut done = Done {
            status,
            upstream_reusable: !upstream_close,
            client: if matches!(framing, Framing::Close) || head.close {
                ClientState::Broken
            } else {
                ClientState::Open
            },
        };
        let midway = |_| Failed::Midway(status);
        match framing {
            Framing::None => {
                done.upstream_reusable &= body.is_empty();
                client.write_all(out).await.map_err(midway)?;
            }
            Framing::Length(len) => {
                let have = (body.len() as u64).min(len) as usize;
                // Extra bytes past the answer: a backend out of step; not reused.
                done.upstream_reusable &= body.len() as u64 <= len;
                if out.len() + have <= COPY_CHUNK {
                    out.extend_from_slice(&body[..have]);
                    client.write_all(out).await.map_err(midway)?;
                } else {
                    client.write_all(out).await.map_err(midway)?;
                    client.write_all(&body[..have]).await.map_err(midway)?;
                }
                let mut left = len - have as u64;
                if left > 0 {
                    answer.clear();
                    answer.reserve(COPY_CHUNK);
                    while left > 0 {
                        answer.clear();
                        let want = (left.min(COPY_CHUNK as u64)) as usize;
                        let n = (&mut *upstream)
                            .take(want as u64)
                            .read_buf(answer)
                            .await
                            .map_err(midway)?;
                        if n == 0 {
                            return Err(Failed::Midway(status));
                        }
                        client.write_all(&answer[..n]).await.map_err(midway)?;
                        left -= n as u64;
                    }
                }
            }
            Framing::Chunked => {
                let mut end = ChunkedEnd::default();
                let used = end.feed(body);
                done.upstream_reusable &= used.is_none_or(|u| u == body.len());
                let have = used.unwrap_or(body.len());
                client.write_all(out).await.map_err(midway)?;
                client.write_all(&body[..have]).await.map_err(midway)?;
                if used.is_none() {
                    loop {
                        answer.clear();
                        answer.reserve(COPY_CHUNK);
                        let n = upstream.read_buf(answer).await.map_err(midway)?;
                        if n == 0 {
                            return Err(Failed::Midway(status));
                        }
                        let used = end.feed(&answer[..n]);
                        let have = used.unwrap_or(n);
                        client.write_all(&answer[..have]).await.map_err(midway)?;
                        if let Some(u) = used {
                            done.upstream_reusable &= u == n;
                            break;
                        }
                    }
                }
            }
            Framing::Close => {
                done.upstream_reusable = false;
                client.write_all(out).await.map_err(midway)?;
                client.write_all(body).await.map_err(midway)?;
                loop {
                    answer.clear();
                    answer.reserve(COPY_CHUNK);
                    match upstream.read_buf(answer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => client.write_all(&answer[..n]).await.map_err(midway)?,
                    }
                }
            }
        }
        client.flush().await.map_err(midway)?;
        return Ok(done);
    }
}

/// Checks an answer head and writes the client's version of it into `out`: the backend's
/// status and headers less hop-by-hop ones, a Server header when it has none, and
/// `connection: close` when the client's connection will close. Returns the status, how
/// the body ends and whether the backend closes its connection after it.
fn answer_head(
    resp: &httparse::Response<'_, '_>,
    head: &Head<'_>,
    out: &mut Vec<u8>,
) -> Result<(u16, Framing, bool), Failed> {
    let status = resp.code.ok_or(Failed::BadAnswer)?;
    if status == 101 || !(100..1000).contains(&status) {
        return Err(Failed::BadAnswer);
    }
    let http11 = resp.version == Some(1);
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut upstream_close = !http11;
    let mut server = false;
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(Failed::BadAnswer)?;
            if length.is_some_and(|l| l != v) {
                return Err(Failed::BadAnswer);
            }
            length = Some(v);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // The last coding decides (RFC 9112 6.3).
            let last = h.value.rsplit(|b| *b == b',').next().unwrap_or_default();
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    upstream_close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && !http11 {
                    upstream_close = false;
                }
            }
        } else if name.eq_ignore_ascii_case(b"server") {
            server = true;
        }
    }
    let framing = if (100..200).contains(&status)
        || status == 204
        || status == 304
        || head.method == http::Method::HEAD
    {
        Framing::None
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::Close,
            (None, Some(0)) => Framing::None,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::Close,
        }
    };
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&[
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(resp.reason.unwrap_or_default().as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"connection") || name.eq_ignore_ascii_case(b"keep-alive") {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    if !server {
        out.extend_from_slice(b"server: gatehouse\r\n");
    }
    if (matches!(framing, Framing::Close) || head.close) && !(100..200).contains(&status) {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok((status, framing, upstream_close))
}

/// Finds where a chunked body ends, fed the bytes as they come (they are passed on as
/// they are; only the end is looked for).
#[derive(Default)]
struct ChunkedEnd {
    state: ChunkState,
    size: u64,
}

#[derive(Default, Clone, Copy, PartialEq, Debug)]
enum ChunkState {
    /// Hex digits of a chunk size.
    #[default]
    Size,
    /// After the size: extensions, up to the line's end.
    SizeLine,
    Data,
    /// The CRLF after a chunk's data.
    DataEnd,
    /// At the start of a trailer line (after the last chunk).
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    /// The final empty line's LF.
    LastLf,
    Done,
}

impl ChunkedEnd {
    /// Feeds bytes; returns how many of them belong to the body once its end is among
    /// them. Malformed framing ends the body where it breaks (the connection is not reused).
    fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match self.state {
                ChunkState::Size => match (b as char).to_digit(16) {
                    Some(d) => {
                        self.size = self.size.checked_mul(16)?.checked_add(u64::from(d))?;
                    }
                    None if b == b'\n' => self.end_size_line(),
                    None => self.state = ChunkState::SizeLine,
                },
                ChunkState::SizeLine => {
                    if b == b'\n' {
                        self.end_size_line();
                    }
                }
                ChunkState::Data => {
                    let take = (self.size).min((bytes.len() - i) as u64) as usize;
                    self.size -= take as u64;
                    i += take;
                    if self.size == 0 {
                        self.state = ChunkState::DataEnd;
                    }
                    continue;
                }
                ChunkState::DataEnd => {
                    if b == b'\n' {
                        self.state = ChunkState::Size;
                    }
                }
                ChunkState::TrailerStart => {
                    self.state = match b {
                        b'\r' => ChunkState::LastLf,
                        b'\n' => ChunkState::Done,
                        _ => ChunkState::Trailer,
                    }
                }
                ChunkState::Trailer => {
                    if b == b'\n' {
                        self.state = ChunkState::TrailerStart;
                    }
                }
                ChunkState::LastLf => self.state = ChunkState::Done,
                ChunkState::Done => {}
            }
            i += 1;
            if self.state == ChunkState::Done {
                return Some(i);
            }
        }
        None
    }

    fn end_size_line(&mut self) {
        self.state = if self.size == 0 {
            ChunkState::TrailerStart
        } else {
            ChunkState::Data
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_ends_where_httparse_says_it_does_however_much_has_arrived() {
        for head in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.1\nHost: a\n\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nAccept: */*\r\n\r\n",
        ] {
            let mut with_next = head.to_vec();
            with_next.extend_from_slice(b"GET /next HTTP/1.1\r\n");
            assert_eq!(head_end(&with_next), Some(head.len()));
            let mut headers = [httparse::EMPTY_HEADER; 8];
            let parsed = httparse::Request::new(&mut headers).parse(head);
            assert!(matches!(parsed, Ok(httparse::Status::Complete(n)) if n == head.len()));
            for cut in 0..head.len() {
                assert_eq!(head_end(&head[..cut]), None, "{cut} bytes");
            }
        }
    }

    #[test]
    fn the_end_of_a_chunked_body_is_found_however_it_is_split() {
        let body = b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nx-trailer: t\r\n\r\n";
        for split in 0..body.len() {
            let mut end = ChunkedEnd::default();
            let (a, b) = body.split_at(split);
            let got = match end.feed(a) {
                Some(n) => n,
                None => a.len() + end.feed(b).expect("end found"),
            };
            assert_eq!(got, body.len(), "split at {split}");
        }
        // Bytes after the end are not the body's.
        let mut end = ChunkedEnd::default();
        assert_eq!(end.feed(b"0\r\n\r\nHTTP/1.1"), Some(5));
        // A size that overflows is not a body.
        let mut end = ChunkedEnd::default();
        assert_eq!(end.feed(b"fffffffffffffffffffff\r\n"), None);
    }

    fn parse_eligible(raw: &[u8]) -> Option<(String, bool)> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(raw).ok()?;
        eligible(&req).map(|h| (h.host.into_owned(), h.close))
    }

    #[test]
    fn only_plain_http11_requests_without_a_body_are_direct() {
        assert_eq!(
            parse_eligible(b"GET /a?b=c HTTP/1.1\r\nHost: Example.COM:80\r\n\r\n"),
            Some(("example.com".into(), false))
        );
        assert_eq!(
            parse_eligible(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
            Some(("a".into(), true))
        );
        for other in [
            &b"GET / HTTP/1.0\r\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
            b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /\"x HTTP/1.1\r\nHost: a\r\n\r\n",
            b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(
                parse_eligible(other),
                None,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }
}
