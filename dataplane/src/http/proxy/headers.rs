//! Reading and editing heads: the Host and TLS server name a request is routed on, whether
//! its body can be replayed, X-Forwarded-For, and the header filters of routes and backends.

use crate::http::forwarding::normalize_host;
use crate::net::tls::Sni;
use gatehouse_model::ir::HeaderModifier;
use pingora_error::Result;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

/// Whether the request body can be replayed: none, or pingora kept all of it.
pub(super) fn replayable(session: &Session) -> bool {
    !has_body(session.req_header()) || !session.as_ref().retry_buffer_truncated()
}

/// Whether the request has a body (a length other than 0, or a transfer coding).
pub(super) fn has_body(req: &RequestHeader) -> bool {
    req.headers
        .get(http::header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0")
        || req.headers.contains_key(http::header::TRANSFER_ENCODING)
}

/// The TLS server name (SNI) of the connection, lower-case, if the client sent one.
pub(super) fn server_name(session: &Session) -> Option<String> {
    let digest = session.digest()?.ssl_digest.as_ref()?;
    let sni = digest.extension.get::<Sni>()?.0.as_deref()?;
    Some(sni.trim_end_matches('.').to_ascii_lowercase())
}

/// Host without port, lower-case, without a trailing dot; borrowed from the request when
/// it is that already (the common case: no copy per request).
pub(super) fn request_host(req: &RequestHeader) -> std::borrow::Cow<'_, str> {
    normalize_host(
        req.uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| {
                req.headers
                    .get(http::header::HOST)
                    .and_then(|v| v.to_str().ok())
            })
            .unwrap_or_default(),
    )
}

fn modify_headers<T>(
    m: &HeaderModifier,
    set: impl Fn(&mut T, String, String) -> Result<()>,
    add: impl Fn(&mut T, String, String) -> Result<()>,
    remove: impl Fn(&mut T, &str),
    target: &mut T,
) -> Result<()> {
    for (name, value) in &m.set {
        set(target, name.clone(), value.clone())?;
    }
    for (name, value) in &m.add {
        add(target, name.clone(), value.clone())?;
    }
    for name in &m.remove {
        remove(target, name);
    }
    Ok(())
}

/// Applies a header modifier (set, add, remove) to a request head.
pub(super) fn modify_request(req: &mut RequestHeader, m: &HeaderModifier) -> Result<()> {
    modify_headers(
        m,
        |r: &mut RequestHeader, n, v| r.insert_header(n, v),
        |r: &mut RequestHeader, n, v| r.append_header(n, v).map(|_| ()),
        |r: &mut RequestHeader, n| drop(r.remove_header(n)),
        req,
    )
}

/// Applies a header modifier (set, add, remove) to a response head.
pub(super) fn modify_response(resp: &mut ResponseHeader, m: &HeaderModifier) -> Result<()> {
    modify_headers(
        m,
        |r: &mut ResponseHeader, n, v| r.insert_header(n, v),
        |r: &mut ResponseHeader, n, v| r.append_header(n, v).map(|_| ()),
        |r: &mut ResponseHeader, n| drop(r.remove_header(n)),
        resp,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_host_borrows_when_it_can() {
        let req = |host: &str| {
            let mut r = RequestHeader::build("GET", b"/", None).unwrap();
            r.insert_header("host", host).unwrap();
            r
        };
        let plain = req("a.example.com:8080");
        assert!(matches!(
            request_host(&plain),
            std::borrow::Cow::Borrowed("a.example.com")
        ));
        assert_eq!(request_host(&req("A.Example.COM.")), "a.example.com");
        assert_eq!(request_host(&req("[::1]:443")), "[::1]");
    }
}
