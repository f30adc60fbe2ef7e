//! The answer to the client: the headers added to it, and the access log line once it is
//! done.

use super::answers::SERVER;
use super::context::Ctx;
use super::headers::modify_response;
use super::headers::{request_host, server_name};
use super::state::GatehouseProxy;
use crate::http::access_log::{Entry, bounded, now_rfc3339};
use crate::metrics::{Event, Observed, RouteSeries};
use crate::traces::{SpanFacts, span_of};
use gatehouse_model::ir::Filter;
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

impl GatehouseProxy {
    /// The answer as the client gets it: the filters' response headers, CORS, the affinity
    /// cookie, HSTS, our Server header, and the external auth answer's cookies.
    pub(super) fn edit_response(&self, resp: &mut ResponseHeader, ctx: &mut Ctx) -> Result<()> {
        for f in ctx.filters() {
            if let Filter::ResponseHeaders(m) = f {
                modify_response(resp, m)?;
            }
        }
        for (name, value) in &ctx.cors {
            resp.insert_header(*name, value.as_str())?;
        }
        if let Some(c) = ctx.set_cookie.take() {
            resp.append_header(http::header::SET_COOKIE, c)?;
        }
        if ctx.tls
            && let Some(hsts) = ctx.route.as_ref().and_then(|r| r.hsts.as_ref())
        {
            resp.insert_header(http::header::STRICT_TRANSPORT_SECURITY, hsts.as_str())?;
        }
        // Every answer names its server (the Ingress conformance suite checks), unless the
        // backend named itself.
        if !resp.headers.contains_key(http::header::SERVER) {
            resp.insert_header(http::header::SERVER, http::HeaderValue::from_static(SERVER))?;
        }
        // nginx passes the auth answer's cookies on successful and redirect answers.
        if matches!(
            resp.status.as_u16(),
            200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308
        ) {
            for c in std::mem::take(&mut ctx.auth_cookies) {
                resp.append_header(http::header::SET_COOKIE, c)?;
            }
        }
        Ok(())
    }

    /// Counts the request in its series: status, duration, upstream first byte, body
    /// bytes, and what its route's policies did.
    pub(super) fn record(&self, session: &mut Session, ctx: &mut Ctx) {
        let series = match &ctx.series {
            Some(s) => s.clone(),
            // Refused before its socket was looked up (a bad path or head): the socket's.
            None => {
                let runtime = self.state.load();
                let local = session.server_addr().and_then(|a| a.as_inet()).copied();
                match local.and_then(|a| runtime.bind(a)) {
                    Some(bind) => bind.unmatched.clone(),
                    None => return,
                }
            }
        };
        let event = match ctx.status_reason {
            "rate limited" => Some(Event::RateLimited),
            "source not allowed" => Some(Event::SourceDenied),
            "external auth" => Some(Event::AuthDenied),
            _ => None,
        };
        if let Some(event) = event {
            series.count(event);
        }
        series.count_by(Event::Retry, u64::from(ctx.attempts.saturating_sub(1)));
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let observed = Observed {
            method: &session.req_header().method,
            status,
            duration: ctx.started.map(|t| t.elapsed()).unwrap_or_default(),
            upstream_first_byte: ctx.upstream_first_byte,
            bytes_in: session.body_bytes_read() as u64,
            bytes_out: session.body_bytes_sent() as u64,
        };
        series.record(&observed);
        if ctx.access_log {
            self.write_access_log(session, ctx, &series, &observed);
        }
        if let Some((trace, tracer)) = &ctx.trace
            && trace.sampled
        {
            tracer.finish(span_of(trace, &span_facts(session, ctx, &series, status)));
        }
    }

    /// The request's line in the access log.
    fn write_access_log(
        &self,
        session: &Session,
        ctx: &Ctx,
        series: &RouteSeries,
        o: &Observed<'_>,
    ) {
        let req = session.req_header();
        let header = |name: &str| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(bounded)
        };
        let host = request_host(req);
        let tls = session.digest().and_then(|d| d.ssl_digest.as_ref());
        let sni = server_name(session);
        let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
        self.access_log.write(&Entry {
            time: now_rfc3339(),
            client: ctx.client,
            method: req.method.as_str(),
            host: bounded(&host),
            path: bounded(path),
            protocol: match req.version {
                http::Version::HTTP_2 => "HTTP/2",
                http::Version::HTTP_10 => "HTTP/1.0",
                _ => "HTTP/1.1",
            },
            status: o.status,
            outcome: outcome(ctx),
            bytes_in: o.bytes_in,
            bytes_out: o.bytes_out,
            duration_ms: o.duration.as_secs_f64() * 1000.0,
            upstream: ctx.upstream.map(|u| u.0),
            upstream_ms: o.upstream_first_byte.map(|d| d.as_secs_f64() * 1000.0),
            gateway: &series.labels.gateway,
            listener: &series.labels.listener,
            route: ctx
                .route
                .as_deref()
                .map_or_else(String::new, |r| r.source.to_string()),
            request_id: ctx.request_id.as_deref(),
            user_agent: header("user-agent"),
            tls_version: tls.map(|t| t.version.as_ref()),
            sni: sni.as_deref(),
        });
    }
}

/// What the request's span says of it: the fields the direct path gives too.
fn span_facts<'a>(
    session: &'a Session,
    ctx: &'a Ctx,
    series: &'a RouteSeries,
    status: u16,
) -> SpanFacts<'a> {
    let req = session.req_header();
    SpanFacts {
        method: req.method.as_str(),
        path: req.uri.path(),
        host: req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()))
            .unwrap_or_default(),
        protocol_version: match req.version {
            http::Version::HTTP_2 => "2",
            http::Version::HTTP_10 => "1.0",
            _ => "1.1",
        },
        tls: ctx.tls,
        client: ctx.client,
        status,
        outcome: outcome(ctx),
        gateway: &series.labels.gateway,
        listener: &series.labels.listener,
        route: ctx.route.as_deref().map(|r| &r.source),
        upstream: ctx.upstream.map(|u| u.0),
        user_agent: req
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
        request_id: ctx.request_id.as_deref(),
    }
}

/// "proxied", or why Gatehouse answered itself.
fn outcome(ctx: &Ctx) -> &'static str {
    match ctx.status_reason {
        "" if ctx.upstream.is_some() => "proxied",
        reason => reason,
    }
}
