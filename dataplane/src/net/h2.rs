//! HTTP/2 client connections: pingora's handshake and streams, our accept loop.
//!
//! Pingora's own loop has one idle timeout per process and sends no PING. Ours takes the
//! Gateway's: a connection with no stream for `idleTimeoutSeconds` is closed, and one whose
//! peer does not answer a PING (sent every `http2PingIntervalSeconds`) within
//! `PING_TIMEOUT` is closed too: a peer gone without a FIN (a NAT that dropped its state, a
//! phone that left) would otherwise hold the socket and its streams until TCP gives up,
//! which for a connection with nothing to send is never.
//!
//! The loop wakes on a stream, on the listener closing (GOAWAY, then the streams finish)
//! and on a check every quarter of the shorter of the two periods (so an idle connection
//! goes within a quarter of its timeout after it; 10 k idle connections with the defaults
//! wake 670 times a second in all).

use gatehouse_model::ir::ClientLimits;
use pingora_core::apps::HttpServerApp;
use pingora_core::protocols::Digest;
use pingora_core::protocols::Stream;
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::http::v2::server::{H2Accept, HttpSession, handshake};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long a PING may go unanswered.
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// Malformed streams (a control byte in `:path`, conflicting Content-Length, a bad
/// authority) after which the connection is closed: pingora's own loop allows 32 per
/// connection and counts across calls, which an outside loop like ours must do itself.
const MAX_MALFORMED_STREAMS: usize = 32;

/// Serves an HTTP/2 connection (its preface read or about to be) until it ends, each
/// stream by `proxy` (the listeners' pingora application).
pub async fn serve<A: HttpServerApp + Send + Sync + 'static>(
    proxy: &Arc<A>,
    stream: Stream,
    shutdown: &watch::Receiver<bool>,
    limits: &ClientLimits,
) {
    let digest = Arc::new(Digest {
        ssl_digest: stream.get_ssl_digest(),
        timing_digest: stream.get_timing_digest(),
        proxy_digest: stream.get_proxy_digest(),
        socket_digest: stream.get_socket_digest(),
    });
    // The rest of the preface and the SETTINGS exchange within the header timeout (the
    // direct path hands h2c over after the preface's first 18 bytes).
    let header_timeout = Duration::from_millis(limits.header_timeout_ms);
    let Ok(Ok(mut conn)) =
        tokio::time::timeout(header_timeout, handshake(stream, proxy.h2_options())).await
    else {
        return;
    };
    let idle = Duration::from_millis(limits.idle_timeout_ms);
    let ping_every = Duration::from_millis(limits.h2_ping_interval_ms);
    let ping_timeout = if ping_every.is_zero() {
        PING_TIMEOUT
    } else {
        PING_TIMEOUT.min(ping_every)
    };
    let mut pings = conn.ping_pong().filter(|_| !ping_every.is_zero());
    let check_every = idle
        .min(if ping_every.is_zero() {
            idle
        } else {
            ping_every
        })
        .div_f32(4.0)
        .clamp(Duration::from_millis(100), Duration::from_secs(15));
    let mut check = tokio::time::interval(check_every);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let started = Instant::now();
    let streams = Arc::new(Streams::default());
    let mut shutdown = shutdown.clone();
    let mut draining = false;
    let mut last_ping = started;
    let mut unanswered: Option<Instant> = None;
    let mut malformed = 0usize;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed(), if !draining => {
                conn.graceful_shutdown();
                draining = true;
            }
            accepted = HttpSession::from_h2_conn(&mut conn, digest.clone()) => match accepted {
                Ok(Some(H2Accept::Session(session))) => {
                    let in_flight = InFlight::start(&streams, started);
                    let (proxy, shutdown) = (proxy.clone(), shutdown.clone());
                    tokio::spawn(async move {
                        // Held until the task ends, or unwinds: a stream that panicked
                        // must not keep its connection busy (and open) for ever.
                        let _in_flight = in_flight;
                        proxy.process_new_http(ServerSession::new_http2(session), &shutdown).await;
                    });
                }
                Ok(Some(H2Accept::Rejected)) => {
                    malformed += 1;
                    if malformed >= MAX_MALFORMED_STREAMS {
                        tracing::warn!(malformed, "HTTP/2 connection closed after malformed streams");
                        return;
                    }
                }
                // Closed, or an error (a peer that just went away, commonly).
                Ok(None) | Err(_) => return,
            },
            pong = pong(pings.as_mut()), if unanswered.is_some() => match pong {
                Ok(()) => unanswered = None,
                Err(_) => return,
            },
            _ = check.tick() => {
                let now = Instant::now();
                if unanswered.is_some_and(|sent| now - sent >= ping_timeout) {
                    tracing::debug!("HTTP/2 peer did not answer a PING; closed");
                    return;
                }
                if streams.idle_since(started).is_some_and(|since| now - since >= idle) {
                    // Nothing in flight: dropping the connection closes the socket (no
                    // GOAWAY wait that a dead peer could hold).
                    return;
                }
                if let Some(p) = pings.as_mut()
                    && unanswered.is_none()
                    && now - last_ping >= ping_every
                    && p.send_ping(h2::Ping::opaque()).is_ok()
                {
                    last_ping = now;
                    unanswered = Some(now);
                }
            }
        }
    }
}

/// The answer to the PING in flight.
async fn pong(pings: Option<&mut h2::PingPong>) -> Result<(), h2::Error> {
    match pings {
        Some(p) => std::future::poll_fn(|cx| p.poll_pong(cx)).await.map(|_| ()),
        None => std::future::pending().await,
    }
}

/// A connection's streams in flight, and when the last one ended.
#[derive(Default)]
struct Streams {
    running: AtomicUsize,
    /// Milliseconds from the connection's start when the last stream ended.
    last_end_ms: AtomicU64,
}

/// One stream in flight: counted from `start` until dropped.
struct InFlight {
    streams: Arc<Streams>,
    started: Instant,
}

impl InFlight {
    fn start(streams: &Arc<Streams>, started: Instant) -> Self {
        streams.running.fetch_add(1, Ordering::AcqRel);
        Self {
            streams: streams.clone(),
            started,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.streams.last_end_ms.store(ms, Ordering::Release);
        self.streams.running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Streams {
    /// Since when nothing has been in flight, if nothing is.
    fn idle_since(&self, started: Instant) -> Option<Instant> {
        (self.running.load(Ordering::Acquire) == 0)
            .then(|| started + Duration::from_millis(self.last_end_ms.load(Ordering::Acquire)))
    }
}
