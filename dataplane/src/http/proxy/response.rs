//! The answer to the client: the headers added to it, and the access log line once it is
//! done.

use super::answers::SERVER;
use super::context::Ctx;
use super::headers::modify_response;
use super::state::GatehouseProxy;
use crate::metrics::{Event, Observed};
use gatehouse_model::ir::Filter;
use pingora_error::{Error, Result};
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
        for _ in 1..ctx.attempts {
            series.count(Event::Retry);
        }
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        series.record(&Observed {
            method: &session.req_header().method,
            status,
            duration: ctx.started.map(|t| t.elapsed()).unwrap_or_default(),
            upstream_first_byte: ctx.upstream_first_byte,
            bytes_in: session.body_bytes_read() as u64,
            bytes_out: session.body_bytes_sent() as u64,
        });
    }

    /// The access log line (target `gatehouse::access`, at debug level).
    pub(super) fn log_access(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        if !tracing::enabled!(target: "gatehouse::access", tracing::Level::DEBUG) {
            return;
        }
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let req = session.req_header();
        let client = ctx.client.map(|c| c.to_string()).unwrap_or_default();
        let route = ctx
            .route
            .as_deref()
            .map(|r| {
                format!(
                    "{} {}/{} rule {}",
                    r.source.kind, r.source.namespace, r.source.name, r.source.rule
                )
            })
            .unwrap_or_default();
        tracing::debug!(
            target: "gatehouse::access",
            client = %client,
            method = %req.method,
            uri = %req.uri,
            status,
            route = %route,
            upstream = ?ctx.upstream.map(|u| u.0),
            version = ctx.runtime.as_ref().map(|r| r.version).unwrap_or(0),
            outcome = ctx.status_reason,
            error = ?e.map(|e| e.to_string()),
        );
    }
}
