//! Backend connections of the direct path: new ones, and idle keep-alive ones kept per
//! endpoint for the next request.
//!
//! A pooled connection is reused only while it is clean: nothing unread and not closed by
//! the backend, checked (one `MSG_PEEK`) when it comes out of the pool; it goes in only
//! after an answer whose framing was certain and exact. A backend
//! that sent bytes after its answer (a body to a HEAD, say) would otherwise hand them to the
//! next client as the start of its answer, and that client's answer to the one after.
//! The pool is bounded per endpoint and in all, and connections to endpoints no cluster
//! has any more are closed when a version is applied.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::net::TcpStream;

/// Idle pooled connections kept per endpoint and in all, and how long one stays usable.
const POOL_PER_ENDPOINT: usize = 256;
const POOL_TOTAL: usize = 1024;
const POOL_IDLE_SECONDS: u64 = 60;
/// As the pingora path: connecting to a backend.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A pooled connection and when it went idle (`coarse_seconds`).
type Idle = (TcpStream, u64);

/// Idle keep-alive connections to backends, newest last.
#[derive(Default)]
pub(super) struct Pool {
    idle: Mutex<Idles>,
}

#[derive(Default)]
struct Idles {
    /// Keyed by endpoints from config, not by anything a client sends: a fast hash is safe.
    by_endpoint: HashMap<SocketAddr, Vec<Idle>, rustc_hash::FxBuildHasher>,
    total: usize,
}

impl Pool {
    /// The newest idle connection to `addr` still young enough and clean; stale and dirty
    /// ones on the way are closed.
    pub(super) fn take(&self, addr: SocketAddr) -> Option<TcpStream> {
        let mut idle = self.idle.lock().ok()?;
        let Idles { by_endpoint, total } = &mut *idle;
        let list = by_endpoint.get_mut(&addr)?;
        let now = coarse_seconds();
        while let Some((s, since)) = list.pop() {
            *total -= 1;
            if now.saturating_sub(since) < POOL_IDLE_SECONDS && clean(&s) {
                return Some(s);
            }
        }
        None
    }

    /// Drops every idle connection to `addr`: one turned out closed, the others likely are
    /// (a backend restarting or going away closes them all).
    pub(super) fn forget(&self, addr: SocketAddr) {
        if let Ok(mut idle) = self.idle.lock()
            && let Some(list) = idle.by_endpoint.remove(&addr)
        {
            idle.total -= list.len();
        }
    }

    /// Keeps a connection that finished an exchange with certain framing, if there is
    /// room. Bytes that come after (or came with) the answer are found when it is taken:
    /// one check per reuse, not two.
    pub(super) fn put(&self, addr: SocketAddr, s: TcpStream) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.total >= POOL_TOTAL {
                return;
            }
            let list = idle.by_endpoint.entry(addr).or_default();
            if list.len() < POOL_PER_ENDPOINT {
                list.push((s, coarse_seconds()));
                idle.total += 1;
            }
        }
    }

    /// Closes the idle connections to endpoints not in `live`.
    pub(super) fn retain(&self, live: &HashSet<SocketAddr>) {
        if let Ok(mut idle) = self.idle.lock() {
            let Idles { by_endpoint, total } = &mut *idle;
            by_endpoint.retain(|addr, list| {
                let keep = live.contains(addr);
                if !keep {
                    *total -= list.len();
                }
                keep
            });
        }
    }

    /// How many idle connections the pool holds (tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.idle.lock().map_or(0, |i| i.total)
    }

    /// Waits until the newest idle connection to `addr` is no longer clean (tests).
    #[cfg(test)]
    async fn until_dirty(&self, addr: SocketAddr) {
        let dirty = || {
            self.idle.lock().is_ok_and(|i| {
                i.by_endpoint
                    .get(&addr)
                    .and_then(|l| l.last())
                    .is_some_and(|(s, _)| !clean(s))
            })
        };
        let waited = tokio::time::timeout(Duration::from_secs(5), async {
            while !dirty() {
                tokio::task::yield_now().await;
            }
        });
        assert!(
            waited.await.is_ok(),
            "the idle connection never turned dirty"
        );
    }
}

/// Whether an idle connection has nothing to read and is still open: a non-blocking peek
/// of one byte would block. Bytes there (a backend out of step) or an end of stream mean
/// the connection must not carry another request. A real system call: tokio's `try_read`
/// trusts readiness the reactor may not have seen yet on a socket nobody is polling.
fn clean(s: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut probe = [0u8; 1];
    // SAFETY: recv writes at most one byte into `probe`, which we own, on a socket `s`
    // keeps open; MSG_PEEK leaves the byte in the socket.
    let n = unsafe {
        libc::recv(
            s.as_raw_fd(),
            probe.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
}

/// Seconds on the kernel's coarse monotonic clock: idle connections' ages need no better,
/// and every request takes and returns one.
fn coarse_seconds() -> u64 {
    super::deadline::now_ms() / 1000
}

/// A new connection to a backend endpoint (`CONNECT_TIMEOUT`, no Nagle).
pub(super) async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    s.set_nodelay(true)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// A connection to a fresh local listener, and the listener's side of it.
    async fn pair() -> (SocketAddr, TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let c = TcpStream::connect(addr).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (addr, c, s)
    }

    #[tokio::test]
    async fn dirty_and_closed_connections_are_never_reused() {
        let pool = Pool::default();
        // Bytes from the backend after the answer, there when put: closed when taken.
        let (addr, c, mut backend) = pair().await;
        backend.write_all(b"stray").await.unwrap();
        c.readable().await.unwrap();
        pool.put(addr, c);
        assert!(pool.take(addr).is_none());
        assert_eq!(pool.len(), 0);
        // Clean when put, stray bytes while idle: closed when taken.
        let (addr, c, mut backend) = pair().await;
        pool.put(addr, c);
        assert_eq!(pool.len(), 1);
        backend.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        pool.until_dirty(addr).await;
        assert!(pool.take(addr).is_none());
        assert_eq!(pool.len(), 0);
        // Closed by the backend while idle: closed when taken.
        let (addr, c, backend) = pair().await;
        pool.put(addr, c);
        drop(backend);
        pool.until_dirty(addr).await;
        assert!(pool.take(addr).is_none());
        // A clean one comes back.
        let (addr, c, _backend) = pair().await;
        pool.put(addr, c);
        assert!(pool.take(addr).is_some());
    }

    #[tokio::test]
    async fn endpoints_that_left_lose_their_connections() {
        let pool = Pool::default();
        let (a, c1, _b1) = pair().await;
        let (b, c2, _b2) = pair().await;
        pool.put(a, c1);
        pool.put(b, c2);
        pool.retain(&[a].into_iter().collect());
        assert_eq!(pool.len(), 1);
        assert!(pool.take(b).is_none());
        assert!(pool.take(a).is_some());
    }
}
