//! A small write buffer under each downstream HTTP session, so a response's head and a
//! small body leave in one `send()` instead of two.
//!
//! Pingora's own listeners give every accepted stream such a buffer (1,460 bytes, one MSS)
//! and its HTTP code flushes where it matters (headers of responses without a length, 1xx,
//! chunks, the end of a body); the setter is crate-private, and our accept loop builds
//! streams itself, so they had none: `bench/run` profiles showed 46 % of the data plane's
//! CPU in `send()`. Everything but writing is passed through.
//!
//! It also hands pingora a connection the direct HTTP/1 path (`http::direct`) has already
//! read from: those bytes are read (and peeked, for h2c detection) before the socket's.
//! Between pingora's requests the connection goes back to the direct path, which reads the
//! next head under its deadlines; what it read is handed back through a `PushBack` shared
//! with the stream (pingora keeps the stream boxed, as its own type).

use async_trait::async_trait;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::{SslDigest, TlsRef};
use pingora_core::protocols::{
    ALPN, GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType,
};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Pingora's default write buffer: one TCP segment.
const WRITE_BUFFER: usize = 1460;

/// Bytes read off a stream by the direct path while pingora holds the stream, to be read
/// first on its next read.
#[derive(Debug, Default)]
pub struct PushBack {
    /// Whether `bytes` holds any: one relaxed load per read when it does not.
    armed: std::sync::atomic::AtomicBool,
    bytes: std::sync::Mutex<Vec<u8>>,
}

impl PushBack {
    /// Hands `bytes` back to be read before the socket's.
    pub fn put(&self, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        if let Ok(mut b) = self.bytes.lock() {
            b.extend_from_slice(&bytes);
            self.armed.store(true, std::sync::atomic::Ordering::Release);
        }
    }

    fn take(&self) -> Vec<u8> {
        if !self.armed.load(std::sync::atomic::Ordering::Acquire) {
            return Vec::new();
        }
        self.armed
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.bytes
            .lock()
            .map(|mut b| std::mem::take(&mut *b))
            .unwrap_or_default()
    }
}

/// A stream with a small write buffer, and bytes already read to be read first.
#[derive(Debug)]
pub struct Coalescing<S> {
    inner: S,
    buf: Vec<u8>,
    /// Bytes read from `inner` by someone else, to be read first.
    unread: Vec<u8>,
    /// How much of `unread` has been read.
    unread_at: usize,
    /// Where the direct path hands bytes back between pingora's requests.
    push_back: Option<Arc<PushBack>>,
    /// How long a peek may wait for the rest of a begun HTTP/2 preface.
    peek_timeout: Duration,
}

impl<S> Coalescing<S> {
    /// A stream with nothing read ahead.
    pub fn new(inner: S) -> Self {
        Self::with_unread(inner, Vec::new())
    }

    /// A stream whose first bytes are `unread`, then `inner`'s.
    pub fn with_unread(inner: S, unread: Vec<u8>) -> Self {
        Coalescing {
            inner,
            buf: Vec::with_capacity(WRITE_BUFFER),
            unread,
            unread_at: 0,
            push_back: None,
            peek_timeout: Duration::from_secs(10),
        }
    }

    /// Reads what is handed back through `push_back` first; a begun HTTP/2 preface is
    /// waited for at most `peek_timeout`.
    pub fn handing_back(mut self, push_back: Arc<PushBack>, peek_timeout: Duration) -> Self {
        self.push_back = Some(push_back);
        self.peek_timeout = peek_timeout;
        self
    }

    fn pending(&self) -> &[u8] {
        &self.unread[self.unread_at..]
    }

    /// Takes in what was handed back, when nothing of our own is pending.
    fn refill(&mut self) {
        if self.unread_at == self.unread.len()
            && let Some(p) = &self.push_back
        {
            let back = p.take();
            if !back.is_empty() {
                self.unread = back;
                self.unread_at = 0;
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> Coalescing<S> {
    /// Writes out what is buffered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.buf.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.buf.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalescing<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.buf.len() + data.len() > WRITE_BUFFER {
            ready!(this.poll_drain(cx))?;
        }
        if data.len() >= WRITE_BUFFER {
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalescing<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.refill();
        let pending = this.pending();
        if pending.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let n = pending.len().min(buf.remaining());
        buf.put_slice(&pending[..n]);
        this.unread_at += n;
        if this.unread_at == this.unread.len() {
            this.unread = Vec::new();
            this.unread_at = 0;
        }
        Poll::Ready(Ok(()))
    }
}

#[async_trait]
impl<S: AsyncWrite + Shutdown + Unpin + Send> Shutdown for Coalescing<S> {
    async fn shutdown(&mut self) {
        // What is buffered goes out first; a failure here is the peer's to see.
        let _ = std::future::poll_fn(|cx| self.poll_drain(cx)).await;
        Shutdown::shutdown(&mut self.inner).await
    }
}

impl<S: UniqueID> UniqueID for Coalescing<S> {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl<S: Ssl> Ssl for Coalescing<S> {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl<S: GetTimingDigest> GetTimingDigest for Coalescing<S> {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl<S: GetProxyDigest> GetProxyDigest for Coalescing<S> {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl<S: GetSocketDigest> GetSocketDigest for Coalescing<S> {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

/// What pingora peeks for (the only peek it makes): HTTP/2's connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[async_trait]
impl<S: Peek + AsyncRead + Unpin + Send> Peek for Coalescing<S> {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.refill();
        if self.pending().is_empty() {
            return self.inner.try_peek(buf).await;
        }
        // Bytes already read that cannot begin the preface answer the peek at once (padded):
        // a whole request shorter than the preface ("GET / HTTP/1.0\r\n\r\n") must not wait
        // for bytes the client will never send.
        let have = self.pending().len().min(buf.len());
        if !H2_PREFACE.starts_with(&self.pending()[..have]) {
            buf.fill(0);
            buf[..have].copy_from_slice(&self.pending()[..have]);
            return Ok(true);
        }
        // Read on until the unread bytes cover the peek (pingora waits the same way), for at
        // most the peek timeout: half a preface must not hold the connection.
        let due = tokio::time::Instant::now() + self.peek_timeout;
        while self.pending().len() < buf.len() {
            let mut chunk = [0u8; 512];
            let read = tokio::io::AsyncReadExt::read(&mut self.inner, &mut chunk);
            let n = tokio::time::timeout_at(due, read)
                .await
                .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.unread.extend_from_slice(&chunk[..n]);
        }
        buf.copy_from_slice(&self.pending()[..buf.len()]);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn small_writes_leave_together_on_flush_and_large_ones_at_once() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut w = Coalescing::new(a);
        w.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        w.write_all(b"body").await.unwrap();
        let mut got = [0u8; 64];
        // Nothing has left before the flush.
        let early = tokio::time::timeout(Duration::from_millis(50), b.read(&mut got)).await;
        assert!(early.is_err(), "bytes left before the flush");
        w.flush().await.unwrap();
        let n = b.read(&mut got).await.unwrap();
        assert_eq!(&got[..n], b"HTTP/1.1 200 OK\r\n\r\nbody");
        // A write of a segment or more goes straight through, after what was buffered.
        w.write_all(b"x").await.unwrap();
        w.write_all(&[b'y'; 4096]).await.unwrap();
        let mut all = vec![0u8; 4097];
        b.read_exact(&mut all).await.unwrap();
        assert_eq!(all[0], b'x');
        assert!(all[1..].iter().all(|&c| c == b'y'));
    }

    #[tokio::test]
    async fn a_short_request_already_read_is_not_held_for_the_preface_peek() {
        let (a, _b) = tokio::io::duplex(1 << 10);
        let mut s = Coalescing::with_unread(a, b"GET / HTTP/1.0\r\n\r\n".to_vec());
        let mut peeked = [0u8; 24];
        // Answers at once: the other end never sends more.
        let answered = tokio::time::timeout(Duration::from_secs(5), s.try_peek(&mut peeked));
        assert!(answered.await.expect("not held").expect("peeked"));
        assert!(peeked.starts_with(b"GET / HTTP/1.0"));
    }

    #[tokio::test]
    async fn unread_bytes_are_peeked_and_read_before_the_streams() {
        let (a, mut b) = tokio::io::duplex(1 << 10);
        let mut s = Coalescing::with_unread(a, b"PRI * ".to_vec());
        b.write_all(b"HTTP/2.0\r\nrest").await.unwrap();
        // A peek longer than what is unread waits for the stream, and consumes nothing.
        let mut peeked = [0u8; 14];
        assert!(s.try_peek(&mut peeked).await.unwrap());
        assert_eq!(&peeked, b"PRI * HTTP/2.0");
        drop(b);
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"PRI * HTTP/2.0\r\nrest");
    }
}
