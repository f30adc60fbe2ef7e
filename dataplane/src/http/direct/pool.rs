//! Backend connections of the direct path: new ones, and idle keep-alive ones kept per
//! endpoint for the next request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::net::TcpStream;

/// Idle pooled connections kept per endpoint, and how long one stays usable.
const POOL_PER_ENDPOINT: usize = 256;
const POOL_IDLE_SECONDS: u64 = 60;
/// As the pingora path: connecting to a backend.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A pooled connection and when it went idle (`coarse_seconds`).
type Idle = (TcpStream, u64);

/// Idle keep-alive connections to backends, newest last.
#[derive(Default)]
pub(super) struct Pool {
    /// Keyed by endpoints from config, not by anything a client sends: a fast hash is safe.
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>, rustc_hash::FxBuildHasher>>,
}

impl Pool {
    /// The newest idle connection to `addr` still young enough to use.
    pub(super) fn take(&self, addr: SocketAddr) -> Option<TcpStream> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(&addr)?;
        let now = coarse_seconds();
        while let Some((s, since)) = list.pop() {
            if now.saturating_sub(since) < POOL_IDLE_SECONDS {
                return Some(s);
            }
        }
        None
    }

    /// Drops every idle connection to `addr`: one turned out closed, the others likely are
    /// (a backend restarting or going away closes them all).
    pub(super) fn forget(&self, addr: SocketAddr) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.remove(&addr);
        }
    }

    /// Keeps a connection that finished an exchange cleanly, while there is room.
    pub(super) fn put(&self, addr: SocketAddr, s: TcpStream) {
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry(addr).or_default();
            if list.len() < POOL_PER_ENDPOINT {
                list.push((s, coarse_seconds()));
            }
        }
    }
}

/// Seconds on the kernel's coarse monotonic clock (its tick; no TSC read, which costs a
/// VM more): idle connections' ages need no better, and every request takes and returns one.
fn coarse_seconds() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which we own, and reads nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0)
}

/// A new connection to a backend endpoint (`CONNECT_TIMEOUT`, no Nagle).
pub(super) async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    s.set_nodelay(true)?;
    Ok(s)
}
