//! One exchange with a backend on the direct path: write the request, read the answer
//! head and rewrite it for the client, then copy the body as the backend framed it.

use super::deadline::{Deadline, now_ms, within};
use super::framing::{ChunkedEnd, Framing, Head, MAX_HEADERS};
use crate::http::forwarding::{CLIENT_SEND_TIMEOUT, ConnectionTexts};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// An answer head larger than this is a broken backend (502).
const MAX_ANSWER_HEAD: usize = 64 * 1024;
/// Bytes copied per read while streaming a body.
const COPY_CHUNK: usize = 64 * 1024;

/// What a connection keeps across its requests: buffers, its timer for backend waits,
/// its peer and port as text.
pub(super) struct Scratch {
    pub(super) request: Vec<u8>,
    pub(super) answer: Vec<u8>,
    pub(super) out: Vec<u8>,
    /// The answer head's deadline, then each body read's.
    pub(super) upstream_wait: Deadline,
    pub(super) texts: ConnectionTexts,
}

impl Scratch {
    pub(super) fn new(texts: ConnectionTexts) -> Scratch {
        Scratch {
            request: Vec::new(),
            answer: Vec::new(),
            out: Vec::new(),
            upstream_wait: Deadline::default(),
            texts,
        }
    }
}

/// Whether the client's connection can carry another request.
pub(super) enum ClientState {
    Open,
    /// The answer was close-delimited or the client is gone: close.
    Broken,
}

/// Why an exchange failed, and so whether it can be tried again.
pub(super) enum Failed {
    /// No whole answer head came back (the request may or may not have arrived); nothing
    /// sent to the client.
    NoAnswer,
    /// An answer that is not HTTP/1 or cannot be framed; nothing sent to the client.
    BadAnswer,
    /// No answer head within the upstream header timeout; nothing sent to the client.
    TimedOut,
    /// The backend or client failed after the answer started: close the client.
    Midway(u16),
}

/// An exchange that went through.
pub(super) struct Done {
    pub(super) status: u16,
    pub(super) upstream_reusable: bool,
    pub(super) client: ClientState,
    /// From the request written to the backend to its answer's head.
    pub(super) first_byte: Duration,
    /// Answer body bytes sent to the client (a chunked body with its chunk framing).
    pub(super) body_bytes: u64,
}

/// Writes the request, reads the answer head, and copies head and body to the client.
pub(super) async fn forward<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut S,
    upstream: &mut TcpStream,
    head: &Head<'_>,
    scratch: &mut Scratch,
    answer_timeout: Duration,
) -> Result<Done, Failed> {
    let answer_due = now_ms() + answer_timeout.as_millis() as u64;
    within(answer_timeout, upstream.write_all(&scratch.request))
        .await
        .map_err(|_| Failed::NoAnswer)?;
    let sent = std::time::Instant::now();
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
            let read = scratch
                .upstream_wait
                .until(answer_due, upstream.read_buf(answer));
            match read.await {
                Ok(0) => return Err(interim.map_or(Failed::NoAnswer, Failed::Midway)),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Err(interim.map_or(Failed::TimedOut, Failed::Midway));
                }
                Err(_) => return Err(interim.map_or(Failed::NoAnswer, Failed::Midway)),
            }
        };
        if (100..200).contains(&status) {
            // An interim answer (103 Early Hints, say): on to the client, then the next.
            send(client, &scratch.out)
                .await
                .map_err(|_| Failed::Midway(status))?;
            interim = Some(status);
            answer.drain(..head_len);
            continue;
        }
        let done = Done {
            status,
            first_byte: sent.elapsed(),
            body_bytes: 0,
            upstream_reusable: !upstream_close,
            client: if matches!(framing, Framing::Close) || head.close {
                ClientState::Broken
            } else {
                ClientState::Open
            },
        };
        let body = Body {
            head_len,
            framing,
            read_timeout: answer_timeout,
        };
        return copy_answer(client, upstream, scratch, body, done).await;
    }
}

/// An answer's body as the backend sends it.
struct Body {
    /// Where it starts in `scratch.answer`.
    head_len: usize,
    /// How it ends.
    framing: Framing,
    /// How long each read of it may wait (the upstream header timeout, as pingora's path
    /// uses it per read).
    read_timeout: Duration,
}

/// Copies the answer to the client: its head as rewritten (`scratch.out`), then its body.
/// Each write to the client may wait `CLIENT_SEND_TIMEOUT`. `done` learns whether the
/// backend connection can be reused.
async fn copy_answer<S: AsyncWrite + Unpin>(
    client: &mut S,
    upstream: &mut TcpStream,
    scratch: &mut Scratch,
    body: Body,
    mut done: Done,
) -> Result<Done, Failed> {
    let Body {
        head_len,
        framing,
        read_timeout,
    } = body;
    let status = done.status;
    let Scratch {
        answer,
        out,
        upstream_wait,
        ..
    } = scratch;
    // Each body read is due within the read timeout of its start.
    let due = || now_ms() + read_timeout.as_millis() as u64;
    let body = &answer[head_len..];
    let midway = |_| Failed::Midway(status);
    match framing {
        Framing::None => {
            done.upstream_reusable &= body.is_empty();
            send(client, out).await.map_err(midway)?;
        }
        Framing::Length(len) => {
            let have = (body.len() as u64).min(len) as usize;
            // Extra bytes past the answer: a backend out of step; not reused.
            done.upstream_reusable &= body.len() as u64 <= len;
            done.body_bytes += have as u64;
            if out.len() + have <= COPY_CHUNK {
                out.extend_from_slice(&body[..have]);
                send(client, out).await.map_err(midway)?;
            } else {
                send(client, out).await.map_err(midway)?;
                send(client, &body[..have]).await.map_err(midway)?;
            }
            let mut left = len - have as u64;
            if left > 0 {
                answer.clear();
                answer.reserve(COPY_CHUNK);
                while left > 0 {
                    answer.clear();
                    let want = (left.min(COPY_CHUNK as u64)) as usize;
                    let mut limited = (&mut *upstream).take(want as u64);
                    let n = upstream_wait
                        .until(due(), limited.read_buf(answer))
                        .await
                        .map_err(midway)?;
                    if n == 0 {
                        return Err(Failed::Midway(status));
                    }
                    send(client, &answer[..n]).await.map_err(midway)?;
                    done.body_bytes += n as u64;
                    left -= n as u64;
                }
            }
        }
        Framing::Chunked => {
            let mut end = ChunkedEnd::default();
            let used = end.feed(body);
            done.upstream_reusable &= used.is_none_or(|u| u == body.len()) && !end.malformed;
            let have = used.unwrap_or(body.len());
            send(client, out).await.map_err(midway)?;
            send(client, &body[..have]).await.map_err(midway)?;
            done.body_bytes += have as u64;
            if used.is_none() {
                loop {
                    answer.clear();
                    answer.reserve(COPY_CHUNK);
                    let n = upstream_wait
                        .until(due(), upstream.read_buf(answer))
                        .await
                        .map_err(midway)?;
                    if n == 0 {
                        return Err(Failed::Midway(status));
                    }
                    let used = end.feed(&answer[..n]);
                    let have = used.unwrap_or(n);
                    send(client, &answer[..have]).await.map_err(midway)?;
                    done.body_bytes += have as u64;
                    if let Some(u) = used {
                        done.upstream_reusable &= u == n && !end.malformed;
                        break;
                    }
                }
            }
        }
        Framing::Close => {
            done.upstream_reusable = false;
            send(client, out).await.map_err(midway)?;
            send(client, body).await.map_err(midway)?;
            done.body_bytes += body.len() as u64;
            loop {
                answer.clear();
                answer.reserve(COPY_CHUNK);
                match upstream_wait.until(due(), upstream.read_buf(answer)).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        send(client, &answer[..n]).await.map_err(midway)?;
                        done.body_bytes += n as u64;
                    }
                }
            }
        }
    }
    tokio::time::timeout(CLIENT_SEND_TIMEOUT, client.flush())
        .await
        .map_err(|_| Failed::Midway(status))?
        .map_err(midway)?;
    Ok(done)
}

/// Writes all of `bytes` to the client, within `CLIENT_SEND_TIMEOUT`.
async fn send<S: AsyncWrite + Unpin>(client: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    within(CLIENT_SEND_TIMEOUT, client.write_all(bytes)).await
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
    let bodiless = (100..200).contains(&status)
        || status == 204
        || status == 304
        || head.method == http::Method::HEAD;
    // Framing the connection cannot be sure of: both a length and a coding, or an answer
    // that has no body but announces one (a HEAD's Content-Length, a 204 with a coding):
    // whatever the backend sends after it must not reach the next request's client.
    if (chunked.is_some() && length.is_some())
        || (bodiless && (chunked.is_some() || length.is_some_and(|n| n > 0)))
    {
        upstream_close = true;
    }
    let framing = if bodiless {
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
