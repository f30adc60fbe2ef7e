//! Timeouts on the direct path that cost next to nothing per request.
//!
//! A `tokio::time::timeout` around a read that has to wait registers a timer in tokio's
//! wheel and cancels it when the read ends, and takes the time twice: about 1,000
//! instructions a request (`bench/instructions`), for deadlines that practically never
//! fire. Instead:
//! - deadlines are read off the kernel's coarse monotonic clock (`now_ms`: its tick, a few
//!   milliseconds; no TSC read), which is plenty for timeouts of a second and more;
//! - each connection keeps one timer per kind of wait (`Deadline`), armed at most
//!   `SLACK_MS` before the deadline asked for and moved only when that no longer holds: a
//!   keep-alive connection's deadlines creep later with every request and its timer moves
//!   about once a second. A timer that fires before its deadline (armed early) is armed
//!   again for the rest, so no wait ends early;
//! - a wait that ends at its first poll (most writes, a read whose bytes are in) touches
//!   no timer at all, and a wait is polled once per wake-up (no separate first try).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;
use tokio::time::Sleep;

/// How far before its deadline a timer may be armed.
const SLACK_MS: u64 = 1000;

/// Milliseconds on the kernel's coarse monotonic clock.
pub(super) fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which we own, and reads nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let ms = u64::try_from(ts.tv_nsec).unwrap_or(0) / 1_000_000;
    secs * 1000 + ms
}

/// One connection's timer for one kind of wait, made at its first wait that has to.
#[derive(Default)]
pub(super) struct Deadline {
    sleep: Option<Pin<Box<Sleep>>>,
    /// When the timer fires (`now_ms`).
    armed: u64,
}

impl Deadline {
    /// `io`, unless `at` (`now_ms`) comes first (then `TimedOut`).
    pub(super) async fn until<T>(
        &mut self,
        at: u64,
        io: impl Future<Output = io::Result<T>>,
    ) -> io::Result<T> {
        let mut io = std::pin::pin!(io);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(done) = io.as_mut().poll(cx) {
                return Poll::Ready(done);
            }
            loop {
                if self.armed > at || self.armed + SLACK_MS < at || self.sleep.is_none() {
                    self.arm(at);
                }
                let Some(sleep) = self.sleep.as_mut() else {
                    return Poll::Pending;
                };
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if now_ms() >= at {
                    return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
                }
                // Fired before the deadline (armed early): armed again for the rest.
                self.arm(at);
            }
        })
        .await
    }

    /// Arms the timer for `at` (`now_ms`).
    fn arm(&mut self, at: u64) {
        let when = tokio::time::Instant::now() + Duration::from_millis(at.saturating_sub(now_ms()));
        match &mut self.sleep {
            Some(s) => s.as_mut().reset(when),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(when))),
        }
        self.armed = at;
    }
}

/// `io` within `limit` (then `TimedOut`); a timer only if it does not end at once.
pub(super) async fn within<T>(
    limit: Duration,
    io: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    let mut io = std::pin::pin!(io);
    let mut sleep: Option<Pin<Box<Sleep>>> = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(done) = io.as_mut().poll(cx) {
            return Poll::Ready(done);
        }
        sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)))
            .as_mut()
            .poll(cx)
            .map(|()| Err(io::ErrorKind::TimedOut.into()))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn never() -> impl Future<Output = io::Result<()>> {
        std::future::pending()
    }

    /// Each wait ends at its own deadline, neither early nor much late, whichever way the
    /// deadlines move (real time: the coarse clock is the kernel's).
    #[tokio::test]
    async fn a_wait_ends_at_its_deadline_whichever_way_deadlines_move() {
        let mut d = Deadline::default();
        for wait_ms in [300u64, 1500, 200, 1200] {
            let start = Instant::now();
            let e = d.until(now_ms() + wait_ms, never()).await;
            assert_eq!(e.unwrap_err().kind(), io::ErrorKind::TimedOut);
            let took = start.elapsed();
            assert!(
                took >= Duration::from_millis(wait_ms.saturating_sub(10))
                    && took < Duration::from_millis(wait_ms + 250),
                "{wait_ms} ms wait took {took:?}"
            );
        }
        // What is ready is taken at once, with no timer made.
        let mut fresh = Deadline::default();
        let ok = fresh.until(now_ms(), async { Ok(7) }).await;
        assert_eq!(ok.unwrap(), 7);
        assert!(fresh.sleep.is_none());
        assert_eq!(within(Duration::ZERO, async { Ok(1) }).await.unwrap(), 1);
        let e = within(Duration::from_millis(50), never()).await;
        assert_eq!(e.unwrap_err().kind(), io::ErrorKind::TimedOut);
    }
}
