//! Failures: which failed attempts are tried again (on another endpoint), and the answer
//! to a request that failed.

use super::context::Ctx;
use super::headers::{has_body, replayable};
use super::state::GatehouseProxy;
use crate::http::forwarding::EJECTION;
use bytes::Bytes;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType};
use pingora_proxy::{FailToProxy, Session};

impl GatehouseProxy {
    /// A connect that failed sent nothing, so it is safe to try another endpoint: an
    /// endpoint going away (a scale-down, a rollout) costs a retry, not a failed request.
    pub(super) fn on_connect_failure(
        &self,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some((addr, _)) = ctx.upstream {
            self.ejections.eject(addr, EJECTION);
        }
        if let Some(series) = &ctx.series {
            series.count(crate::metrics::Event::UpstreamConnectError);
        }
        if ctx.may_try_another() {
            tracing::debug!(upstream = %peer, attempt = ctx.attempts, "connect failed; trying another endpoint");
            e.set_retry(true);
        }
        e
    }

    /// An upstream that fails mid-request (a pod killed while answering) is retried on
    /// another endpoint only when replaying is safe: GET/HEAD/OPTIONS without a body, and
    /// nothing sent to the client yet. Otherwise pingora's rule: retry only errors on
    /// reused pooled connections.
    pub(super) fn on_proxy_error(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        mut e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        if ctx.retry_answer {
            tracing::debug!(upstream = %peer, attempt = ctx.attempts, "retrying after a retried status");
            e.set_retry(true);
            return e;
        }
        let req = session.req_header();
        let idempotent = matches!(
            req.method,
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
        );
        let nothing_sent = session.response_written().is_none();
        let safe_replay = idempotent && !has_body(req) && ctx.may_try_another();
        // Under a retry policy, a backend timeout or broken connection is retried too.
        let policy = ctx.route.as_ref().is_some_and(|r| r.retry.is_some())
            && ctx.may_retry()
            && replayable(session);
        if nothing_sent && (safe_replay || policy) {
            tracing::debug!(upstream = %peer, attempt = ctx.attempts, "upstream failed; trying again");
            e.set_retry(true);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    /// The answer to a request that failed: 504 for a timeout, 502 for an upstream that
    /// failed, 400 for a bad request, 500 otherwise; nothing when the client is gone.
    pub(super) async fn answer_failure(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Ctx,
    ) -> FailToProxy {
        let send_timed_out = ctx.send_watch.as_ref().is_some_and(|w| w.fired());
        let code = match e.etype() {
            _ if ctx.timed_out() || send_timed_out => 504,
            ErrorType::HTTPStatus(c) => *c,
            _ if *e.esource() == ErrorSource::Upstream => match e.etype() {
                // A connect timeout is a connect failure (502), except under an
                // nginx-style connect limit, where nginx answers 504; a slow answer is 504.
                ErrorType::ReadTimedout | ErrorType::WriteTimedout => 504,
                ErrorType::ConnectTimedout
                    if ctx
                        .route
                        .as_ref()
                        .is_some_and(|r| r.timeouts.connect_ms.is_some()) =>
                {
                    504
                }
                _ => 502,
            },
            ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed
                if *e.esource() == ErrorSource::Downstream =>
            {
                0
            }
            _ if *e.esource() == ErrorSource::Downstream => 400,
            _ => 500,
        };
        if code > 0 {
            let body = Bytes::from(match code {
                502 => "upstream connect failure\n".to_string(),
                504 => "upstream timeout\n".to_string(),
                c => format!("error {c}\n"),
            });
            let _ = session.respond_error_with_body(code, body).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }
}
