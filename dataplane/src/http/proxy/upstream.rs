//! The upstream phases: the peer an attempt connects to, what is checked once connected,
//! the request as the backend gets it, and whether the backend's answer is retried.

use super::context::Ctx;
use super::headers::{modify_request, replayable};
use super::state::GatehouseProxy;
use crate::http::forwarding::{Forwarded, dropped_header, push_decimal, push_ip};
use crate::net::send_watch::SendWatch;
use crate::policies::filters::{expand_template, modify_path};
use crate::runtime::PathRule;
use gatehouse_model::ir::{Filter, PathModifier, UpstreamProtocol};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use std::time::{Duration, Instant};

impl GatehouseProxy {
    /// The peer for an attempt: the chosen endpoint (the next one after a failed connect),
    /// with the route's time limits and the cluster's TLS.
    pub(super) async fn choose_peer(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> Result<Box<HttpPeer>> {
        // A retry after a failed connect goes to the next endpoint.
        if ctx.attempts > 0
            && let Some(next) = ctx
                .cluster
                .as_ref()
                .and_then(|c| c.pick(&ctx.tried, &self.ejections))
            && let Some(up) = ctx.upstream.as_mut()
        {
            up.0 = next;
        }
        if ctx.attempts > 0
            && let Some(ms) = ctx
                .route
                .as_ref()
                .and_then(|r| r.retry.as_ref()?.backoff_ms)
        {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        ctx.attempts += 1;
        ctx.retry_answer = false;
        if let Some((addr, _)) = ctx.upstream {
            ctx.tried.push(addr);
        }
        let Some((addr, protocol)) = ctx.upstream else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "no upstream chosen",
            ));
        };
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout = Some(Duration::from_secs(5));
        peer.options.total_connection_timeout = Some(Duration::from_secs(10));
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        // A backend that does not answer: 504 after the socket's upstream header timeout
        // (pingora times each read, as nginx's proxy_read_timeout does).
        peer.options.read_timeout =
            Some(Duration::from_millis(ctx.limits.upstream_header_timeout_ms));
        // Time limits: the backend timeout bounds each attempt, the request timeout what is
        // left of the whole request.
        let backend = ctx
            .route
            .as_ref()
            .and_then(|r| r.timeouts.backend_request_ms)
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis);
        let remaining = ctx
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()));
        if remaining.is_some_and(|r| r.is_zero()) {
            return Err(Error::explain(
                ErrorType::HTTPStatus(504),
                "request timeout reached",
            ));
        }
        let limit = match (backend, remaining) {
            (Some(b), Some(r)) => Some(b.min(r)),
            (b, r) => b.or(r),
        };
        if let Some(limit) = limit {
            peer.options.read_timeout = Some(limit);
            peer.options.write_timeout = Some(limit);
            peer.options.total_connection_timeout = Some(limit.min(Duration::from_secs(10)));
            peer.options.connection_timeout = Some(limit.min(Duration::from_secs(5)));
        }
        // nginx-style limits: connecting, and the wait between two reads or writes.
        if let Some(t) = ctx.route.as_ref().map(|r| r.timeouts) {
            let tighter = |current: Option<Duration>, ms: Option<u64>| match ms {
                Some(ms) => Some(current.map_or(Duration::from_millis(ms), |c| {
                    c.min(Duration::from_millis(ms))
                })),
                None => current,
            };
            peer.options.connection_timeout =
                tighter(peer.options.connection_timeout, t.connect_ms);
            peer.options.total_connection_timeout =
                tighter(peer.options.total_connection_timeout, t.connect_ms);
            peer.options.read_timeout = tighter(peer.options.read_timeout, t.read_idle_ms);
            peer.options.write_timeout = tighter(peer.options.write_timeout, t.write_idle_ms);
        }
        if let Some(tls) = ctx.cluster.as_ref().and_then(|c| c.tls.as_ref()) {
            tls.apply(&mut peer, addr, ctx.backend_client.as_ref());
        }
        if protocol == UpstreamProtocol::H2c && !session.is_upgrade_req() {
            peer.options.set_http_version(2, 2);
            peer.options.max_h2_streams = 100;
        }
        Ok(Box::new(peer))
    }

    /// A policy with subjectAltNames: the connection's certificate (Pingora verified its
    /// chain) must carry one of them; new and pooled connections alike. A route with a
    /// send timeout gets its watch here, where the connection's socket is known.
    pub(super) async fn on_connected(
        &self,
        #[cfg(unix)] fd: std::os::unix::io::RawFd,
        digest: Option<&pingora_core::protocols::Digest>,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.send_watch = None;
        #[cfg(unix)]
        if let (Some(ms), Some((_, UpstreamProtocol::Http1))) = (
            ctx.route.as_ref().and_then(|r| r.timeouts.write_idle_ms),
            ctx.upstream,
        ) {
            match SendWatch::start(fd, Duration::from_millis(ms)) {
                Ok(w) => ctx.send_watch = Some(w),
                Err(e) => tracing::warn!("send timeout not watched: {e}"),
            }
        }
        let Some(tls) = ctx
            .cluster
            .as_ref()
            .and_then(|c| c.tls.as_ref())
            .filter(|t| !t.subject_alt_names.is_empty())
        else {
            return Ok(());
        };
        let Some((addr, _)) = ctx.upstream else {
            return Ok(());
        };
        let leaf = digest
            .and_then(|d| d.ssl_digest.as_ref())
            .map(|s| s.cert_digest.clone())
            .unwrap_or_default();
        self.verified_leaves
            .check_leaf(tls, addr, &leaf)
            .await
            .map_err(|e| Error::explain(ErrorType::HTTPStatus(502), e))
    }

    /// The request as the backend gets it: the route's and backend's request filters, the
    /// headers external auth set, X-Forwarded-For and X-Forwarded-Proto.
    pub(super) fn edit_upstream_request(
        &self,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.upstream_sent = Some(std::time::Instant::now());
        let prefix = match ctx.route.as_deref().map(|r| &r.path) {
            Some(PathRule::Prefix(p)) => Some(p.clone()),
            _ => None,
        };
        // The client's versions of Gatehouse's own headers and claims, and names with
        // underscores, never pass; dropped before the route's filters, which may set them.
        drop_client_headers(upstream, ctx.keep_underscores);
        for f in ctx.filters() {
            match f {
                Filter::RequestHeaders(m) => modify_request(upstream, m)?,
                Filter::Rewrite(r) => {
                    if let Some(host) = &r.hostname {
                        upstream.insert_header(http::header::HOST, host.as_str())?;
                    }
                    if let Some(m) = &r.path {
                        let new_path = match (m, ctx.route.as_deref().map(|r| &r.path)) {
                            (PathModifier::RegexTemplate(t), Some(PathRule::Regex(re))) => {
                                expand_template(t, re, upstream.uri.path())
                            }
                            _ => modify_path(m, upstream.uri.path(), prefix.as_deref()),
                        };
                        // A rewrite of a normal path stays normal and under the root.
                        let new_path = crate::http::path::tidy_rewritten(&new_path).into_owned();
                        let pq = match upstream.uri.query() {
                            Some(q) => format!("{new_path}?{q}"),
                            None => new_path,
                        };
                        let uri = pq.parse::<http::Uri>().map_err(|e| {
                            Error::because(ErrorType::InternalError, "rewritten path", e)
                        })?;
                        upstream.set_uri(uri);
                    }
                }
                Filter::ResponseHeaders(_)
                | Filter::Redirect(_)
                | Filter::RedirectTo(_)
                | Filter::Mirror(_)
                | Filter::Cors(_)
                | Filter::NginxCors(_) => {}
            }
        }
        for (name, value) in &ctx.auth_headers {
            match value {
                Some(v) => upstream.insert_header(name.clone(), v.as_str())?,
                None => {
                    upstream.remove_header(name.as_str());
                }
            }
        }
        // An HTTP/1.0 request without Host goes on as HTTP/1.1, which needs one: the
        // endpoint's address (nginx sends its upstream's name).
        if !upstream.headers.contains_key(http::header::HOST)
            && upstream.uri.authority().is_none()
            && let Some((addr, _)) = ctx.upstream
        {
            upstream.insert_header(http::header::HOST, addr.to_string())?;
        }
        // Gatehouse's forwarded headers last, as the direct path writes them.
        set_forwarded(upstream, ctx)?;
        Ok(())
    }

    /// A retry policy that names this answer's status sends the request again, while
    /// attempts remain and the body can be replayed; the answer is thrown away unread.
    pub(super) fn on_upstream_answer(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.upstream_first_byte = ctx.upstream_sent.map(|t| t.elapsed());
        // The backend answers: it is no longer stuck on the request.
        ctx.send_watch = None;
        let code = resp.status.as_u16();
        let retried = ctx
            .route
            .as_ref()
            .and_then(|r| r.retry.as_ref())
            .is_some_and(|r| r.codes.contains(&code));
        if retried && ctx.may_retry() && replayable(session) {
            ctx.retry_answer = true;
            return Err(Error::explain(
                ErrorType::HTTPStatus(code),
                "answer retried by the route's retry policy",
            ));
        }
        Ok(())
    }
}

/// Removes the client's headers that never pass (`forwarding::dropped_header`).
pub(super) fn drop_client_headers(head: &mut RequestHeader, keep_underscores: bool) {
    let dropped: Vec<http::HeaderName> = head
        .headers
        .keys()
        .filter(|n| dropped_header(n.as_str().as_bytes(), keep_underscores))
        .cloned()
        .collect();
    for name in dropped {
        head.remove_header(&name);
    }
}

/// Sets Gatehouse's forwarded headers (X-Forwarded-*, X-Real-IP) as the direct path writes
/// them.
pub(super) fn set_forwarded(upstream: &mut RequestHeader, ctx: &Ctx) -> Result<()> {
    if let (Some(from), Some(client)) = (&ctx.forwarded, ctx.client) {
        let forwarded = Forwarded {
            peer: from.peer,
            client,
            chain: from.chain.as_deref(),
            tls: ctx.tls,
            host: &from.host,
            port: from.port,
            texts: None,
            request_id: None,
            trace: None,
        };
        let value = |v: Vec<u8>| {
            http::HeaderValue::from_maybe_shared(bytes::Bytes::from(v))
                .map_err(|e| Error::because(ErrorType::InternalError, "forwarded header", e))
        };
        let mut xff = Vec::with_capacity(64);
        forwarded.forwarded_for(&mut xff);
        upstream.insert_header("x-forwarded-for", value(xff)?)?;
        if !from.host.is_empty() {
            upstream.insert_header("x-forwarded-host", value(from.host.clone())?)?;
        }
        let mut port = Vec::with_capacity(5);
        push_decimal(&mut port, u64::from(from.port));
        upstream.insert_header("x-forwarded-port", value(port)?)?;
        let mut ip = Vec::with_capacity(15);
        push_ip(&mut ip, client);
        upstream.insert_header("x-real-ip", value(ip)?)?;
    }
    upstream.insert_header(
        "x-forwarded-proto",
        http::HeaderValue::from_static(if ctx.tls { "https" } else { "http" }),
    )?;
    if ctx.request_id_generated
        && let Some(id) = &ctx.request_id
    {
        upstream.insert_header("x-request-id", id.as_str())?;
    }
    if let Some((trace, _)) = &ctx.trace {
        let traceparent = http::HeaderValue::from_bytes(&trace.traceparent())
            .map_err(|e| Error::because(ErrorType::InternalError, "traceparent", e))?;
        upstream.insert_header("traceparent", traceparent)?;
        if !trace.keeps_tracestate() {
            upstream.remove_header("tracestate");
        }
    }
    Ok(())
}
