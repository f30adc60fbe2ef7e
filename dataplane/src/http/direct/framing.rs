//! HTTP/1 framing on the direct path: where a request head ends, whether the direct path
//! takes the request (and what it needs of it), the head the backend gets, and how an
//! answer's body ends (a length, chunks, or the backend closing).

use crate::http::forwarding::{Forwarded, dropped_header, normalize_host};

/// Headers parsed per head (and per answer head from a backend). A request with more is
/// answered 431 when the listener's limit is this or less, else it goes to pingora.
pub const MAX_HEADERS: usize = 128;

/// The parts of a request head the direct path acts on.
pub struct Head<'a> {
    pub method: http::Method,
    pub target: &'a str,
    pub host: std::borrow::Cow<'a, str>,
    /// The client asked to close after this request.
    pub close: bool,
    pub forwarded_for: Option<&'a [u8]>,
    /// The Host header as sent (X-Forwarded-Host).
    pub raw_host: &'a [u8],
}

/// The length of the request head at the start of `buf` (through its empty line), once it
/// is all in. Header lines cannot hold a bare LF, so the first LF followed by an empty line
/// (CRLF or LF, as httparse accepts both) ends the head.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    head_end_from(buf, 0)
}

/// As `head_end`, looking only at LFs from `from` on: a head read in many pieces is scanned
/// once, not once per piece (a head dripped a byte at a time would cost its length squared).
/// `from` must be where an earlier scan of the same head stopped, less two bytes.
pub fn head_end_from(buf: &[u8], from: usize) -> Option<usize> {
    let mut from = from.min(buf.len());
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
pub fn eligible<'a>(req: &httparse::Request<'_, 'a>) -> Option<Head<'a>> {
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
    let mut raw_host: &[u8] = b"";
    let mut close = false;
    let mut forwarded_for = None;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("host") {
            // A second Host, or one that is not host[:port]: pingora's to answer (400).
            if host.is_some() || !crate::http::forwarding::valid_host(h.value) {
                return None;
            }
            host = Some(std::str::from_utf8(h.value).ok()?);
            raw_host = h.value;
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
        } else if is("x-forwarded-for") {
            // A chain over several lines: pingora's to join.
            if forwarded_for.is_some() {
                return None;
            }
            forwarded_for = Some(h.value);
        }
    }
    Some(Head {
        method,
        target,
        host: normalize_host(host?),
        close,
        forwarded_for,
        raw_host,
    })
}

/// Bytes `http::Uri` takes in a path and query (others: pingora's to judge).
fn uri_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%[]".contains(&b)
}

/// The head sent to the backend: the client's, less hop-by-hop headers and those
/// Gatehouse sets or drops (`forwarding::dropped_header`), with Gatehouse's forwarded
/// headers as the pingora path sets them.
pub fn write_request(
    out: &mut Vec<u8>,
    req: &httparse::Request<'_, '_>,
    head: &Head<'_>,
    forwarded: &Forwarded<'_>,
    keep_underscores: bool,
) {
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"connection")
            || name.eq_ignore_ascii_case(b"keep-alive")
            || dropped_header(name, keep_underscores)
            || forwarded.replaces(name)
        {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    forwarded.write_headers(out);
    out.extend_from_slice(b"\r\n");
}

/// How the answer's body ends.
pub(super) enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the backend closes: the client connection closes after it.
    Close,
}

/// Finds where a chunked body ends, fed the bytes as they come (they are passed on as
/// they are; only the end is looked for). Framing outside RFC 9112 7.1 (a size line without
/// digits or with bytes other than extensions after them, data not followed by its line
/// end, a size that overflows) is noted as `malformed`: such a backend connection is never
/// reused, as the backend may have meant another end.
#[derive(Default)]
pub struct ChunkedEnd {
    state: ChunkState,
    size: u64,
    /// Hex digits read on this size line.
    digits: u32,
    /// The framing broke the rules somewhere.
    pub malformed: bool,
}

#[derive(Default, Clone, Copy, PartialEq, Debug)]
enum ChunkState {
    /// Hex digits of a chunk size.
    #[default]
    Size,
    /// Spaces or tabs after the size, before `;` or the line's end.
    SizeSpace,
    /// An extension: anything up to the line's end.
    Extension,
    /// The LF after a size line's CR.
    SizeLf,
    Data,
    /// The CR (or bare LF) after a chunk's data.
    DataEnd,
    /// The LF after a chunk's data and CR.
    DataLf,
    /// At the start of a trailer line (after the last chunk).
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    /// The final empty line's LF.
    LastLf,
    Done,
    /// A size that overflowed: the body ends when the backend closes.
    Broken,
}

impl ChunkedEnd {
    /// Feeds bytes; returns how many of them belong to the body once its end is among
    /// them. Malformed framing is read on as leniently as it can be (and `malformed` set);
    /// a size that overflows never ends the body (the backend closing does).
    pub fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match self.state {
                ChunkState::Size => match (b as char).to_digit(16) {
                    Some(d) => {
                        let size = self.size.checked_mul(16);
                        let Some(size) = size.and_then(|s| s.checked_add(u64::from(d))) else {
                            self.malformed = true;
                            self.state = ChunkState::Broken;
                            return None;
                        };
                        self.size = size;
                        self.digits += 1;
                    }
                    None => self.after_size(b),
                },
                ChunkState::SizeSpace => self.after_size(b),
                ChunkState::Extension => match b {
                    b'\r' => self.state = ChunkState::SizeLf,
                    b'\n' => self.end_size_line(),
                    _ => {}
                },
                ChunkState::SizeLf => {
                    if b != b'\n' {
                        self.malformed = true;
                    }
                    self.end_size_line();
                    if b != b'\n' {
                        // The byte after a lone CR is the line's next: read it again.
                        continue;
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
                ChunkState::DataEnd => match b {
                    b'\r' => self.state = ChunkState::DataLf,
                    b'\n' => self.state = ChunkState::Size,
                    _ => self.malformed = true,
                },
                ChunkState::DataLf => {
                    if b != b'\n' {
                        self.malformed = true;
                        self.state = ChunkState::Size;
                        continue;
                    }
                    self.state = ChunkState::Size;
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
                ChunkState::LastLf => {
                    if b != b'\n' {
                        self.malformed = true;
                    }
                    self.state = ChunkState::Done;
                }
                ChunkState::Done => {}
                ChunkState::Broken => return None,
            }
            i += 1;
            if self.state == ChunkState::Done {
                return Some(i);
            }
        }
        None
    }

    /// A byte after a size's digits: spaces, an extension, or the line's end.
    fn after_size(&mut self, b: u8) {
        match b {
            b' ' | b'\t' => self.state = ChunkState::SizeSpace,
            b';' => self.state = ChunkState::Extension,
            b'\r' => self.state = ChunkState::SizeLf,
            b'\n' => self.end_size_line(),
            _ => {
                self.malformed = true;
                self.state = ChunkState::Extension;
            }
        }
    }

    fn end_size_line(&mut self) {
        if self.digits == 0 {
            self.malformed = true;
        }
        self.digits = 0;
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
        // A size that overflows is not a body, whatever follows.
        let mut end = ChunkedEnd::default();
        assert_eq!(end.feed(b"fffffffffffffffffffff\r\n"), None);
        assert_eq!(end.feed(b"0\r\n\r\n"), None);
        assert!(end.malformed);
        // Well-formed framing (extensions, bare LFs as httparse takes them) is not noted.
        let mut end = ChunkedEnd::default();
        assert_eq!(end.feed(b"3 ;a=b\nabc\n0\n\n"), Some(14));
        assert!(!end.malformed);
        // Data not followed by its CRLF, a size line without digits, junk after a size:
        // an end may be found, but the framing is noted as malformed.
        for bad in [
            &b"3\r\nabcXY\r\n0\r\n\r\n"[..],
            b"\r\n0\r\n\r\n",
            b"3x\r\nabc\r\n0\r\n\r\n",
            b"3\rabc\r\n0\r\n\r\n",
        ] {
            let mut end = ChunkedEnd::default();
            let _ = end.feed(bad);
            assert!(end.malformed, "{}", String::from_utf8_lossy(bad));
        }
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
