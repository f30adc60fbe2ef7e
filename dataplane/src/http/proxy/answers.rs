//! Answers of our own (not a backend's): a plain-text body with our Server header.

use super::context::Ctx;
use bytes::Bytes;
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

/// The Server header of answers that have none.
pub(super) const SERVER: &str = "gatehouse";

/// Answers the request ourselves: `status`, a plain-text `body` and `headers`.
pub(super) async fn respond(
    session: &mut Session,
    status: u16,
    body: String,
    headers: &[(&'static str, String)],
) -> Result<bool> {
    let mut resp = ResponseHeader::build(status, Some(headers.len() + 3))?;
    resp.insert_header(http::header::SERVER, SERVER)?;
    resp.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    for (name, value) in headers {
        resp.insert_header(*name, value.as_str())?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::from(body)), true)
        .await?;
    Ok(true)
}

/// An answer a step of the request phase decided on, sent by `send`.
pub(super) struct Answer {
    /// The outcome for the access log.
    pub(super) reason: &'static str,
    pub(super) status: u16,
    pub(super) body: String,
    pub(super) headers: Vec<(&'static str, String)>,
}

impl Answer {
    /// Notes the outcome and answers the request.
    pub(super) async fn send(self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        ctx.status_reason = self.reason;
        respond(session, self.status, self.body, &self.headers).await
    }
}
