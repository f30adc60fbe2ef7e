//! nginx's `proxy_send_timeout` for HTTP/1 backends: a backend that has taken nothing of
//! the request for the limit ends the request (504), as nginx closes the connection.
//!
//! Pingora's upstream write timeout alone is not enough: after a write times out it keeps
//! waiting for the answer (up to the read timeout), so a backend that stops reading and
//! never answers would hold the request. The watch looks at the socket itself: while the
//! send buffer is full (not writable) and its unsent/unacknowledged bytes do not move, the
//! backend receives nothing. After the limit it shuts the socket down, which wakes both the
//! blocked write and the pending read, and says so through `fired()` so the answer is 504.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A running watch; dropping it stops it.
pub struct SendWatch {
    task: tokio::task::JoinHandle<()>,
    fired: Arc<AtomicBool>,
}

impl SendWatch {
    /// Watches the connection behind `fd` (a copy of the descriptor is kept, so a
    /// descriptor number reused after Pingora closes the connection is never touched).
    pub fn start(fd: RawFd, limit: Duration) -> std::io::Result<SendWatch> {
        // SAFETY: `fd` is Pingora's open upstream socket for the duration of this call
        // (connected_to_upstream); it is only borrowed to duplicate it.
        let socket = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?;
        let fired = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(watch(socket, limit, fired.clone()));
        Ok(SendWatch { task, fired })
    }

    /// Whether the watch ended the request.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }
}

impl Drop for SendWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn watch(socket: OwnedFd, limit: Duration, fired: Arc<AtomicBool>) {
    let tick = (limit / 8).clamp(Duration::from_millis(10), Duration::from_millis(250));
    let mut stalled: Option<(Instant, i32)> = None;
    loop {
        tokio::time::sleep(tick).await;
        let now = Instant::now();
        let Some((writable, unsent)) = send_state(socket.as_raw_fd()) else {
            return;
        };
        stalled = match stalled {
            _ if writable || unsent == 0 => None,
            Some((since, before)) if before == unsent => {
                if now.duration_since(since) >= limit {
                    fired.store(true, Ordering::Release);
                    // SAFETY: plain syscall on a descriptor this task owns.
                    unsafe { libc::shutdown(socket.as_raw_fd(), libc::SHUT_RDWR) };
                    tracing::debug!(?limit, "backend took nothing of the request; closed");
                    return;
                }
                Some((since, before))
            }
            _ => Some((now, unsent)),
        };
    }
}

/// Whether the socket can take more bytes, and how many it holds that the peer has not
/// acknowledged; None when the socket is gone.
fn send_state(fd: RawFd) -> Option<(bool, i32)> {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout; `fd` is owned by the caller.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    if ready < 0 || poll.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
        return None;
    }
    let mut unsent: libc::c_int = 0;
    // SAFETY: TIOCOUTQ writes one int.
    if unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut unsent) } < 0 {
        return None;
    }
    Some((poll.revents & libc::POLLOUT != 0, unsent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A peer that accepts and never reads: the watch fires after about the limit and the
    /// writer's pending write ends with an error. A peer that reads keeps it quiet.
    #[tokio::test]
    async fn fires_only_when_the_peer_takes_nothing() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut stuck = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (_held, _) = listener.accept().await.unwrap();
        let watch = SendWatch::start(stuck.as_raw_fd(), Duration::from_millis(300)).unwrap();
        let start = Instant::now();
        let chunk = vec![0u8; 1 << 20];
        let result = async {
            loop {
                stuck.write_all(&chunk).await?;
            }
        };
        let result: std::io::Result<()> = tokio::time::timeout(Duration::from_secs(10), result)
            .await
            .expect("the blocked write ends");
        assert!(result.is_err());
        assert!(watch.fired());
        assert!(start.elapsed() >= Duration::from_millis(300));

        let mut flowing = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut reader, _) = listener.accept().await.unwrap();
        let drain =
            tokio::spawn(async move { tokio::io::copy(&mut reader, &mut tokio::io::sink()).await });
        let watch = SendWatch::start(flowing.as_raw_fd(), Duration::from_millis(100)).unwrap();
        for _ in 0..64 {
            flowing.write_all(&chunk).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!watch.fired());
        // The watch holds a copy of the descriptor: the connection closes with both.
        drop(watch);
        drop(flowing);
        drain.await.unwrap().unwrap();
    }
}
