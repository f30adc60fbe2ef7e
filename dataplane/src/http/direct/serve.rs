//! Serving a connection on the direct path: read a head, decide whether this path takes
//! the request, route it, and send it to an endpoint of its cluster (another after a
//! failed connect, as the pingora path does); anything else is handed back for pingora.

use super::deadline::{Deadline, now_ms};
use super::framing::{Head, MAX_HEADERS, eligible, head_end_from, write_request};
use super::pool::{Pool, connect};
use super::relay::{ClientState, Failed, Scratch, forward};
use crate::http::access_log::{AccessLog, Entry, bounded, now_rfc3339};
use crate::http::forwarding::new_request_id;
use crate::http::forwarding::{ConnectionTexts, EJECTION, Forwarded, MAX_CONNECT_ATTEMPTS};
use crate::metrics::{Event, Observed};
use crate::runtime::{Cluster, Ejections, Headers, RequestView, Runtime, Target};
use crate::traces::{SpanFacts, TraceContext, Tracer, span_of};
use arc_swap::ArcSwap;
use gatehouse_model::ir::ClientLimits;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

/// How long a kept-alive connection may stay idle once its listener is closing.
const DRAIN_IDLE_MS: u64 = 1000;

/// The connection being served.
pub struct Conn {
    pub peer: SocketAddr,
    /// The bind address the connection was accepted on.
    pub bind: SocketAddr,
    pub tls: bool,
    /// The TLS server name, lower-case, without a trailing dot.
    pub sni: Option<String>,
    /// The TLS version ("TLSv1.3"), for the access log.
    pub tls_version: Option<String>,
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
    access_log: Arc<AccessLog>,
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

impl Direct {
    /// `ejections` is shared with the pingora path: an endpoint that fails a connect on
    /// either is skipped by both.
    pub fn new(
        state: Arc<ArcSwap<Runtime>>,
        ejections: Arc<Ejections>,
        access_log: Arc<AccessLog>,
    ) -> Self {
        Direct {
            state,
            ejections,
            pool: Pool::default(),
            access_log,
        }
    }

    /// Closes idle backend connections to endpoints no cluster of the applied version has.
    pub fn forget_endpoints_except(&self, live: &std::collections::HashSet<SocketAddr>) {
        self.pool.retain(live);
    }

    /// Serves requests from `client` until one is not for this path (handed back with the
    /// bytes read) or the connection ends. Every head this path reads must come whole
    /// within `limits.header_timeout_ms` (the first from the connection's start, the next
    /// from their first byte), be no larger than `limits.max_header_bytes` and hold at most
    /// `limits.max_headers` headers (431 otherwise); a kept-alive connection idle for
    /// `limits.idle_timeout_ms` between requests is closed.
    ///
    /// `fresh`: a new connection, whose first head is due from its start; otherwise one
    /// coming back from pingora between requests, idle until its next head begins.
    pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        client: &mut S,
        conn: &Conn,
        shutdown: &mut watch::Receiver<bool>,
        limits: &ClientLimits,
        fresh: bool,
    ) -> Outcome {
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        let mut scratch = Scratch::new(ConnectionTexts::of(conn.peer.ip(), conn.bind.port()));
        // The listener closing: the next request is answered with `Connection: close`, and a
        // connection that stays idle `DRAIN_IDLE_MS` is closed. A busy kept-alive client so
        // learns of the close from an answer, not from a FIN racing its next request.
        let mut draining = *shutdown.borrow();
        let (header_timeout, idle_timeout) = (limits.header_timeout_ms, limits.idle_timeout_ms);
        let max_head = limits.max_header_bytes as usize;
        let now = now_ms();
        // The first head of a new connection is due whole from its start; a later head
        // from when its first bytes are in. Between requests the connection may be idle
        // until `idle_due`. One timer per connection for all of it (`Deadline`).
        let mut head_due = fresh.then(|| now + header_timeout);
        let mut idle_due = now + idle_timeout;
        if draining {
            idle_due = idle_due.min(now + DRAIN_IDLE_MS);
        }
        let mut client_wait = Deadline::default();
        // One wait for the listener closing, registered once for the whole connection
        // rather than once per request; and its state, read before each request.
        let closed = shutdown.clone();
        let mut closing = std::pin::pin!(shutdown.changed());
        loop {
            // Read until a whole head is in.
            let mut scanned = 0;
            let head_len = loop {
                if let Some(n) = head_end_from(&buf, scanned) {
                    if n > max_head {
                        return too_large(client).await;
                    }
                    break n;
                }
                if buf.len() >= max_head {
                    return too_large(client).await;
                }
                // The end of a head straddling two reads is found from two bytes back.
                scanned = buf.len().saturating_sub(2);
                if buf.capacity() - buf.len() < 1024 {
                    buf.reserve(4096);
                }
                // A head begun and not whole: all of it is due from now.
                if head_due.is_none() && !buf.is_empty() {
                    head_due = Some(now_ms() + header_timeout);
                }
                let read = match head_due {
                    // Half a head (or nothing) for too long: closed, as nginx does.
                    Some(due) => client_wait.until(due, client.read_buf(&mut buf)).await,
                    // Between requests: idle until the idle timeout, or the listener closing.
                    None => tokio::select! {
                        biased;
                        r = client_wait.until(idle_due, client.read_buf(&mut buf)) => r,
                        _ = &mut closing, if !draining => {
                            draining = true;
                            idle_due = idle_due.min(now_ms() + DRAIN_IDLE_MS);
                            continue;
                        }
                    },
                };
                match read {
                    Ok(0) | Err(_) => return Outcome::Closed,
                    Ok(_) => {}
                }
            };
            // The listener is closing: pingora answers this one with `Connection: close`.
            if draining || *closed.borrow() {
                return Outcome::HandOff(buf);
            }
            // Boxed: a request's state (its parsed headers, the backend exchange) is
            // about 5 KiB, which a connection waiting for its next head need not carry
            // (bench/run --only slow: memory per 10k held connections).
            match Box::pin(self.request(client, conn, &buf[..head_len], &mut scratch, limits)).await
            {
                Served::HandOff => return Outcome::HandOff(buf),
                Served::Close => {
                    let _ = client.shutdown().await;
                    return Outcome::Closed;
                }
                Served::KeepAlive => {
                    // Pipelined bytes stay for the next round (a head begun: due when
                    // it has to be read on).
                    buf.drain(..head_len);
                    head_due = None;
                    idle_due = now_ms() + idle_timeout;
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
        limits: &ClientLimits,
    ) -> Served {
        // The one parse of this head. Malformed, HTTP/2's preface: pingora's to answer.
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(raw) {
            Ok(httparse::Status::Complete(n)) if n == raw.len() => {}
            // More headers than this path parses: 431 when that is over the limit too,
            // else pingora's (which parses up to 256).
            Err(httparse::Error::TooManyHeaders) if limits.max_headers as usize <= MAX_HEADERS => {
                answer_431(client).await;
                return Served::Close;
            }
            _ => return Served::HandOff,
        }
        if req.headers.len() > limits.max_headers as usize {
            answer_431(client).await;
            return Served::Close;
        }
        let Some(head) = eligible(&req) else {
            return Served::HandOff;
        };
        let (path, query) = match head.target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (head.target, None),
        };
        // A path to normalise (or refuse) is pingora's: one normalisation, one answer.
        if !crate::http::path::is_normal(path) {
            return Served::HandOff;
        }
        // The route, and the port's client rules as of now (not as of the connection's
        // start: a trusted-proxy change applies to the next request, as on pingora's path).
        let (route, cluster, clients) = {
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
            // No backend (every weight 0), an invalid one: pingora's answer (500).
            let Some((_, backend)) = route.choose_backend() else {
                return Served::HandOff;
            };
            let Target::Cluster(cluster) = &backend.target else {
                return Served::HandOff;
            };
            (route.clone(), cluster.clone(), bind.clients.clone())
        };
        let Some(first) = cluster.pick(&[], &self.ejections) else {
            return Served::HandOff;
        };

        scratch.request.clear();
        let (client_ip, believed) = clients.client(conn.peer.ip(), head.forwarded_for.as_slice());
        let sent_id = (clients.access_log || clients.generate_request_id)
            .then(|| raw_header(req.headers, "x-request-id"))
            .flatten();
        let generated_id = (sent_id.is_none() && clients.generate_request_id).then(new_request_id);
        let trace = clients.tracer.as_ref().map(|tracer| {
            let sent = (req.headers.iter()).filter(|h| h.name.eq_ignore_ascii_case("traceparent"));
            (tracer.start(sent.map(|h| h.value)), &**tracer)
        });
        let forwarded = Forwarded {
            peer: conn.peer.ip(),
            client: client_ip,
            chain: head.forwarded_for.filter(|_| believed),
            tls: conn.tls,
            host: head.raw_host,
            port: conn.bind.port(),
            texts: Some(&scratch.texts),
            request_id: generated_id.as_deref(),
            trace: trace.as_ref().map(|(t, _)| t),
        };
        write_request(
            &mut scratch.request,
            &req,
            &head,
            &forwarded,
            clients.keep_underscores,
        );
        let idempotent = matches!(
            head.method,
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
        );
        let answer_timeout = Duration::from_millis(limits.upstream_header_timeout_ms);
        let started = std::time::Instant::now();
        let exchanged = self
            .exchange(
                client,
                &cluster,
                first,
                idempotent,
                &head,
                scratch,
                answer_timeout,
            )
            .await;
        let logged = Logged {
            conn,
            client: client_ip,
            head: &head,
            headers: req.headers,
            http10: req.version == Some(0),
            request_id: sent_id.or(generated_id.as_deref()),
        };
        self.report(
            &logged,
            &route,
            &exchanged,
            started,
            &clients,
            trace.as_ref(),
        );
        match exchanged.client {
            ClientState::Open if !head.close => Served::KeepAlive,
            _ => Served::Close,
        }
    }

    /// Sends the request to an endpoint of `cluster` (trying others as the pingora path
    /// does) and copies its answer to the client.
    #[allow(clippy::too_many_arguments)]
    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        client: &mut S,
        cluster: &Cluster,
        first: SocketAddr,
        idempotent: bool,
        head: &Head<'_>,
        scratch: &mut Scratch,
        answer_timeout: Duration,
    ) -> Exchanged {
        let mut addr = first;
        let mut tried: Vec<SocketAddr> = Vec::new();
        let mut attempts = 0;
        let mut connect_errors = 0;
        loop {
            attempts += 1;
            let (mut upstream, reused) = match self.pool.take(addr) {
                Some(s) => (s, true),
                None => match connect(addr).await {
                    Ok(s) => (s, false),
                    Err(_) => {
                        connect_errors += 1;
                        // As fail_to_connect: skip the endpoint a while, try another.
                        self.ejections.eject(addr, EJECTION);
                        tried.push(addr);
                        match cluster.pick(&tried, &self.ejections) {
                            Some(next) if attempts < MAX_CONNECT_ATTEMPTS => {
                                addr = next;
                                continue;
                            }
                            _ => {
                                return fail(client, 502, addr)
                                    .await
                                    .counted(attempts, connect_errors);
                            }
                        }
                    }
                },
            };
            match forward(client, &mut upstream, head, scratch, answer_timeout).await {
                Ok(done) => {
                    if done.upstream_reusable {
                        self.pool.put(addr, upstream);
                    }
                    return Exchanged {
                        status: done.status,
                        upstream: Some(addr),
                        outcome: "proxied",
                        client: done.client,
                        first_byte: Some(done.first_byte),
                        body_bytes: done.body_bytes,
                        attempts,
                        connect_errors,
                    };
                }
                Err(Failed::NoAnswer) => {
                    // A pooled connection the backend had closed: the same endpoint on a
                    // fresh connection, for a request that may be sent twice (the request
                    // may have reached the backend).
                    if reused && idempotent && attempts < MAX_CONNECT_ATTEMPTS {
                        self.pool.forget(addr);
                        continue;
                    }
                    tried.push(addr);
                    match cluster.pick(&tried, &self.ejections) {
                        Some(next) if idempotent && attempts < MAX_CONNECT_ATTEMPTS => {
                            addr = next;
                        }
                        _ => {
                            return fail(client, 502, addr)
                                .await
                                .counted(attempts, connect_errors);
                        }
                    }
                }
                Err(Failed::BadAnswer) => {
                    return fail(client, 502, addr)
                        .await
                        .counted(attempts, connect_errors);
                }
                // As the pingora path: the read timed out, 504 (nothing was answered yet).
                Err(Failed::TimedOut) => {
                    return fail(client, 504, addr)
                        .await
                        .counted(attempts, connect_errors);
                }
                Err(Failed::Midway(status)) => {
                    return Exchanged {
                        status,
                        upstream: Some(addr),
                        outcome: "upstream failed mid-answer",
                        client: ClientState::Broken,
                        first_byte: None,
                        body_bytes: 0,
                        attempts,
                        connect_errors,
                    };
                }
            }
        }
    }
}

/// What a request's access log line is made of besides its route and outcome.
struct Logged<'a> {
    conn: &'a Conn,
    client: std::net::IpAddr,
    head: &'a Head<'a>,
    headers: &'a [httparse::Header<'a>],
    http10: bool,
    request_id: Option<&'a str>,
}

impl Direct {
    /// Counts, logs and traces what a request came to.
    fn report(
        &self,
        logged: &Logged<'_>,
        route: &crate::runtime::CompiledRoute,
        exchanged: &Exchanged,
        started: std::time::Instant,
        clients: &crate::http::forwarding::ClientRules,
        trace: Option<&(TraceContext, &Tracer)>,
    ) {
        let observed = Observed {
            method: &logged.head.method,
            status: exchanged.status,
            duration: started.elapsed(),
            upstream_first_byte: exchanged.first_byte,
            bytes_in: 0,
            bytes_out: exchanged.body_bytes,
        };
        route.series.record(&observed);
        if clients.access_log {
            self.write_access_log(logged, route, &observed, exchanged);
        }
        if let Some((trace, tracer)) = trace
            && trace.sampled
        {
            tracer.finish(span_of(trace, &logged.span_facts(route, exchanged)));
        }
        let retries = u64::from(exchanged.attempts.saturating_sub(1));
        route.series.count_by(Event::Retry, retries);
        let connect_errors = u64::from(exchanged.connect_errors);
        route
            .series
            .count_by(Event::UpstreamConnectError, connect_errors);
    }

    /// The request's line in the access log: the fields the pingora path writes.
    fn write_access_log(
        &self,
        l: &Logged<'_>,
        route: &crate::runtime::CompiledRoute,
        o: &Observed<'_>,
        exchanged: &Exchanged,
    ) {
        self.access_log.write(&Entry {
            time: now_rfc3339(),
            client: Some(l.client),
            method: l.head.method.as_str(),
            host: bounded(&l.head.host),
            path: bounded(l.head.target),
            protocol: if l.http10 { "HTTP/1.0" } else { "HTTP/1.1" },
            status: o.status,
            outcome: exchanged.outcome,
            bytes_in: o.bytes_in,
            bytes_out: o.bytes_out,
            duration_ms: o.duration.as_secs_f64() * 1000.0,
            upstream: exchanged.upstream,
            upstream_ms: o.upstream_first_byte.map(|d| d.as_secs_f64() * 1000.0),
            gateway: &route.series.labels.gateway,
            listener: &route.series.labels.listener,
            route: route.source.to_string(),
            request_id: l.request_id,
            user_agent: raw_header(l.headers, "user-agent"),
            tls_version: l.conn.tls_version.as_deref(),
            sni: l.conn.sni.as_deref(),
        });
    }
}

impl Logged<'_> {
    /// What the request's span says of it: the fields the pingora path gives too.
    fn span_facts<'a>(
        &'a self,
        route: &'a crate::runtime::CompiledRoute,
        exchanged: &'a Exchanged,
    ) -> SpanFacts<'a> {
        SpanFacts {
            method: self.head.method.as_str(),
            path: self
                .head
                .target
                .split_once('?')
                .map_or(self.head.target, |(p, _)| p),
            host: std::str::from_utf8(self.head.raw_host).unwrap_or_default(),
            protocol_version: if self.http10 { "1.0" } else { "1.1" },
            tls: self.conn.tls,
            client: Some(self.client),
            status: exchanged.status,
            outcome: exchanged.outcome,
            gateway: &route.series.labels.gateway,
            listener: &route.series.labels.listener,
            route: Some(&route.source),
            upstream: exchanged.upstream,
            user_agent: raw_header(self.headers, "user-agent"),
            request_id: self.request_id,
        }
    }
}

/// The first value of header `name` (lower-case) that is UTF-8, cut to the log's bound.
fn raw_header<'a>(headers: &'a [httparse::Header<'a>], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(bounded)
}

/// What an exchange came to, for the access log and the connection.
struct Exchanged {
    status: u16,
    upstream: Option<SocketAddr>,
    outcome: &'static str,
    client: ClientState,
    /// How long the backend took to its answer's head; None when none answered.
    first_byte: Option<Duration>,
    body_bytes: u64,
    /// Connection attempts made, and how many could not connect.
    attempts: u32,
    connect_errors: u32,
}

impl Exchanged {
    fn counted(self, attempts: u32, connect_errors: u32) -> Exchanged {
        Exchanged {
            attempts,
            connect_errors,
            ..self
        }
    }
}

/// 431 for a head over the limits; the connection closes after it.
async fn answer_431<S: AsyncWrite + Unpin>(client: &mut S) {
    let body = "request header fields too large\n";
    let answer = format!(
        "HTTP/1.1 431 Request Header Fields Too Large\r\nserver: gatehouse\r\ncontent-length: {}\r\ncache-control: private, no-store\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(answer.as_bytes()).await;
    let _ = client.flush().await;
}

/// A head over the size limit: 431, and the connection closes.
async fn too_large<S: AsyncWrite + Unpin>(client: &mut S) -> Outcome {
    answer_431(client).await;
    let _ = client.shutdown().await;
    Outcome::Closed
}

/// A 502 of our own; the connection closes after it, as after pingora's error answers.
async fn fail<S: AsyncWrite + Unpin>(client: &mut S, status: u16, addr: SocketAddr) -> Exchanged {
    let (reason, body) = match status {
        504 => ("Gateway Timeout", "upstream timed out\n"),
        _ => ("Bad Gateway", "upstream connect failure\n"),
    };
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\nserver: gatehouse\r\ncontent-length: {}\r\ncache-control: private, no-store\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(answer.as_bytes()).await;
    let _ = client.flush().await;
    Exchanged {
        status,
        upstream: Some(addr),
        outcome: if status == 504 {
            "upstream timed out"
        } else {
            "upstream connect failure"
        },
        client: ClientState::Broken,
        first_byte: None,
        body_bytes: body.len() as u64,
        attempts: 1,
        connect_errors: 0,
    }
}
