//! The pingora-proxy phases of `GatehouseProxy`, in the order a request meets them, each
//! pointing at where its work is done: `request` (routing, the steps that may answer
//! early, the backend and endpoint, the request body), `upstream` (the peer, the
//! connection, the request as sent, the answer's retry), `response` (the answer's headers,
//! the access log) and `failure` (retries after failures, the answer to a failed request).

use super::context::Ctx;
use super::state::GatehouseProxy;
use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

#[async_trait]
impl ProxyHttp for GatehouseProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    /// No downstream modules: Pingora's default adds a (disabled) compression module that
    /// is still built and run for every request.
    fn init_downstream_modules(&self, _modules: &mut pingora_core::modules::http::HttpModules) {}

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        self.on_request(session, ctx).await
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        self.choose_peer(session, ctx).await
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        digest: Option<&pingora_core::protocols::Digest>,
        ctx: &mut Ctx,
    ) -> Result<()> {
        #[cfg(unix)]
        return self.on_connected(fd, digest, ctx).await;
        #[cfg(windows)]
        return self.on_connected(digest, ctx).await;
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.edit_upstream_request(upstream, ctx)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.edit_response(resp, ctx)
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.on_upstream_answer(session, resp, ctx)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.on_request_body(body, end_of_stream, ctx)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        e: Box<Error>,
    ) -> Box<Error> {
        self.on_connect_failure(peer, ctx, e)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        self.on_proxy_error(peer, session, e, ctx, client_reused)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        self.answer_failure(session, e, ctx).await
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        // A kept-alive HTTP/1 connection waits for its next request at most the socket's
        // idle timeout (pingora's default: forever, or what the client's Keep-Alive asks).
        if session
            .as_http1()
            .is_some_and(|s| s.get_keepalive_timeout().is_some())
        {
            session.set_keepalive(Some(ctx.limits.idle_timeout_ms.div_ceil(1000)));
        }
        self.record(session, ctx);
    }
}
