//! Our own accept loops: sockets opened and closed at runtime from config, each accepted
//! connection served by the direct HTTP/1 path until a request needs pingora, then handed
//! to pingora's HTTP session handling in this process (no second hop). HTTP/2 (ALPN) goes
//! to pingora at once.
//! Closing one socket never touches connections of another.

use super::coalesce::{Coalescing, PushBack};
use super::proxy_protocol;
use super::tls::{Sni, SniCapture};
use crate::http::direct::{Conn, Direct, Outcome};
use crate::http::proxy::GatehouseProxy;
use crate::metrics::SocketLabels;
use crate::runtime::Runtime;
use arc_swap::ArcSwap;
use gatehouse_model::ir::ClientLimits;
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::{ALPN, GetSocketDigest, SocketDigest, Ssl, Stream};
use pingora_proxy::HttpProxy;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

/// The pingora HTTP proxy with our phases: what a handed-over connection goes to.
pub type Proxy = HttpProxy<GatehouseProxy>;

/// What serves accepted connections.
pub struct Handlers {
    pub proxy: Arc<Proxy>,
    pub direct: Direct,
    /// Connections and TLS handshakes are counted here.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Requests pingora serves on one kept-alive connection (nginx's `keepalive_requests`).
pub const KEEPALIVE_REQUESTS: u32 = 1000;

/// How long a TLS handshake or a silent new connection may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

struct Active {
    /// Keeps the shutdown watch alive: dropping it would GOAWAY every HTTP/2 connection.
    shutdown: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

/// The sockets currently open.
#[derive(Default)]
pub struct Listeners {
    active: HashMap<SocketAddr, Active>,
    /// Sockets closed by a version, whose connections are still finishing: a shutdown
    /// waits for them too.
    closing: Vec<watch::Sender<bool>>,
}

impl Listeners {
    /// Opens the sockets the runtime has and this does not; closes the ones it no longer
    /// has. Returns the addresses that could not be opened, with the error.
    pub fn reconcile(
        &mut self,
        runtime: &Runtime,
        state: &Arc<ArcSwap<Runtime>>,
        handlers: &Arc<Handlers>,
    ) -> Vec<(SocketAddr, String)> {
        let mut failures = Vec::new();
        let gone: Vec<SocketAddr> = self
            .active
            .keys()
            .filter(|a| !runtime.binds.contains_key(a))
            .copied()
            .collect();
        // Kept until the last connection of each is done with it.
        self.closing.retain(|s| s.receiver_count() > 0);
        for addr in gone {
            if let Some(a) = self.active.remove(&addr) {
                self.closing.push(close(addr, a));
            }
        }
        for addr in runtime.binds.keys() {
            if self.active.contains_key(addr) {
                continue;
            }
            match bind(*addr) {
                Ok(listener) => {
                    tracing::info!(%addr, "listening");
                    let (tx, rx) = watch::channel(false);
                    let accept = tokio::spawn(accept_loop(
                        listener,
                        *addr,
                        state.clone(),
                        handlers.clone(),
                        rx,
                    ));
                    self.active.insert(
                        *addr,
                        Active {
                            shutdown: tx,
                            accept,
                        },
                    );
                }
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "cannot listen");
                    failures.push((*addr, e.to_string()));
                }
            }
        }
        failures
    }
}

impl Listeners {
    /// Closes every socket (the process is going away). The future resolves when every
    /// connection they accepted has ended.
    pub fn close_all(&mut self) -> impl Future<Output = ()> + use<> {
        let mut closing: Vec<watch::Sender<bool>> = self
            .active
            .drain()
            .map(|(addr, a)| close(addr, a))
            .collect();
        closing.append(&mut self.closing);
        async move {
            for shutdown in closing {
                shutdown.closed().await;
            }
        }
    }
}

/// Stops accepting on a socket (closing it) and tells its connections: in-flight requests
/// finish; kept-alive connections close after their current request (HTTP/1, answered
/// with `Connection: close`) or drain with GOAWAY (HTTP/2). The sender's `closed()` is when
/// the last of them ended.
fn close(addr: SocketAddr, a: Active) -> watch::Sender<bool> {
    tracing::info!(%addr, "closing listener");
    a.accept.abort();
    let _ = a.shutdown.send(true);
    a.shutdown
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Connections open on one socket, counted down when each ends.
#[derive(Default)]
struct Open(std::sync::atomic::AtomicU32);

/// One open connection of a socket; dropping it counts it out (of the cap, and of the
/// active connections metric).
struct OpenGuard(Arc<Open>, prometheus_client::metrics::gauge::Gauge);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.1.dec();
    }
}

/// The metric labels of socket `addr` in the current version.
fn socket_labels(state: &ArcSwap<Runtime>, addr: SocketAddr) -> SocketLabels {
    SocketLabels {
        gateway: state
            .load()
            .bind(addr)
            .map(|b| b.unmatched.labels.gateway.clone())
            .unwrap_or_default(),
        port: addr.port(),
    }
}

/// Connections refused at a socket's cap, by all sockets of this process.
pub static REFUSED_AT_CAP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    state: Arc<ArcSwap<Runtime>>,
    handlers: Arc<Handlers>,
    shutdown: watch::Receiver<bool>,
) {
    use std::sync::atomic::Ordering;
    let open = Arc::new(Open::default());
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                // At the cap: accepted and closed at once (the client sees the connection
                // end before any byte; nothing else waits on it), counted.
                let cap = state
                    .load()
                    .bind(addr)
                    .map_or(u32::MAX, |b| b.limits.max_connections);
                let labels = socket_labels(&state, addr);
                let metrics = &handlers.metrics;
                metrics.connections_accepted.get_or_create(&labels).inc();
                if open.0.fetch_add(1, Ordering::Relaxed) >= cap {
                    open.0.fetch_sub(1, Ordering::Relaxed);
                    metrics.connections_refused.get_or_create(&labels).inc();
                    let refused = REFUSED_AT_CAP.fetch_add(1, Ordering::Relaxed) + 1;
                    if refused.is_power_of_two() {
                        tracing::warn!(%addr, %peer, cap, refused, "connection refused at the socket's cap");
                    }
                    drop(tcp);
                    continue;
                }
                let active = metrics.connections_active.get_or_create(&labels).clone();
                active.inc();
                let guard = OpenGuard(open.clone(), active);
                let state = state.clone();
                let handlers = handlers.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    serve(tcp, peer, addr, state, handlers, shutdown).await;
                    drop(guard);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%addr, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    addr: SocketAddr,
    state: Arc<ArcSwap<Runtime>>,
    handlers: Arc<Handlers>,
    mut shutdown: watch::Receiver<bool>,
) {
    // The TLS acceptor of the current version: a certificate swap applies to the next
    // handshake without touching open connections.
    let (tls, limits, clients) = match state.load().bind(addr) {
        Some(b) => (b.tls.clone(), b.limits, b.clients.clone()),
        None => (None, ClientLimits::default(), Default::default()),
    };
    // Behind a load balancer that says whose a connection is: its PROXY header first.
    let mut tcp = tcp;
    let mut peer = peer;
    if clients.proxy_protocol {
        let header_timeout = Duration::from_millis(limits.header_timeout_ms);
        match tokio::time::timeout(header_timeout, proxy_protocol::read(&mut tcp)).await {
            Ok(Ok(Some(source))) => peer = source,
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "connection without a valid PROXY header");
                return;
            }
            Err(_) => return,
        }
    }
    let header_timeout = Duration::from_millis(limits.header_timeout_ms);
    let push_back = Arc::new(PushBack::default());
    // The connection's first requests on the direct path; what it hands over goes to
    // pingora with the bytes read (no second hop).
    let (stream, conn, unread_h2): (Stream, Conn, bool) = match tls {
        None => {
            // The direct path reads and writes the socket itself; pingora's stream (its
            // buffers and timing) is built only if a request is handed over.
            let conn = Conn {
                peer,
                bind: addr,
                tls: false,
                sni: None,
                tls_version: None,
            };
            match handlers
                .direct
                .serve(&mut tcp, &conn, &mut shutdown, &limits, true)
                .await
            {
                Outcome::Closed => return,
                Outcome::HandOff(unread) => {
                    let h2c = unread.starts_with(H2C_START);
                    let s = Coalescing::with_unread(l4(tcp, peer), unread)
                        .handing_back(push_back.clone(), header_timeout);
                    (Box::new(s), conn, h2c)
                }
            }
        }
        Some(acceptor) => {
            let handshake = pingora_core::protocols::tls::server::handshake_with_callback(
                &acceptor,
                l4(tcp, peer),
                &SniCapture,
            );
            let metrics = &handlers.metrics;
            let labels = socket_labels(&state, addr);
            let mut t = match tokio::time::timeout(HANDSHAKE_TIMEOUT, Box::pin(handshake)).await {
                Ok(Ok(t)) => {
                    metrics.tls_handshakes.get_or_create(&labels).inc();
                    t
                }
                Ok(Err(e)) => {
                    metrics.tls_handshake_errors.get_or_create(&labels).inc();
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    metrics.tls_handshake_errors.get_or_create(&labels).inc();
                    return;
                }
            };
            match t.selected_alpn_proto() {
                Some(ALPN::Custom(_)) => return,
                Some(ALPN::H2) => {
                    // HTTP/2 by ALPN: its preface within the header timeout (pingora's
                    // handshake waits for it without one), then pingora's.
                    let mut preface = vec![0u8; 24];
                    let read = tokio::io::AsyncReadExt::read_exact(&mut t, &mut preface);
                    if let Ok(Ok(_)) = tokio::time::timeout(header_timeout, read).await {
                        let s: Stream = Box::new(Coalescing::with_unread(t, preface));
                        Box::pin(super::h2::serve(&handlers.proxy, s, &shutdown, &limits)).await;
                    }
                    return;
                }
                _ => {
                    let sni = t
                        .get_ssl_digest()
                        .and_then(|d| d.extension.get::<Sni>().and_then(|s| s.0.clone()))
                        .map(|s| s.trim_end_matches('.').to_ascii_lowercase());
                    let tls_version = t.get_ssl_digest().map(|d| d.version.to_string());
                    let conn = Conn {
                        peer,
                        bind: addr,
                        tls: true,
                        sni,
                        tls_version,
                    };
                    match handlers
                        .direct
                        .serve(&mut t, &conn, &mut shutdown, &limits, true)
                        .await
                    {
                        Outcome::Closed => return,
                        Outcome::HandOff(unread) => {
                            let s = Coalescing::with_unread(t, unread)
                                .handing_back(push_back.clone(), header_timeout);
                            (Box::new(s), conn, false)
                        }
                    }
                }
            }
        }
    };
    if unread_h2 {
        // h2c (prior knowledge): the preface is among the bytes read.
        Box::pin(super::h2::serve(
            &handlers.proxy,
            stream,
            &shutdown,
            &limits,
        ))
        .await;
        return;
    }
    // Boxed, as the HTTP/2 and TLS futures are: each is several KiB, and a connection the
    // direct path holds (idle, or half a head in) would otherwise carry them all
    // (bench/run --only slow: memory per 10k held connections).
    Box::pin(http1_through_pingora(
        &handlers, stream, &conn, shutdown, &limits, &push_back,
    ))
    .await;
}

/// The start of an HTTP/2 connection preface (h2c prior knowledge).
const H2C_START: &[u8] = b"PRI * HTTP/2.0";

/// An HTTP/1 connection the direct path handed over: each request through pingora's proxy
/// (`process_new_http`, one session at a time), and between requests back on the direct
/// path, which reads the next head under its deadlines (pingora would time each read
/// only, so a head dripped a byte at a time would hold the connection) and serves it when
/// it can; what it hands over again is read by pingora before the socket's (`push_back`).
async fn http1_through_pingora(
    handlers: &Handlers,
    mut stream: Stream,
    conn: &Conn,
    mut shutdown: watch::Receiver<bool>,
    limits: &ClientLimits,
    push_back: &PushBack,
) {
    let mut settings: Option<HttpPersistentSettings> = None;
    loop {
        let mut session = ServerSession::new_http1(stream);
        match settings.take() {
            // Carries the requests left on this connection (`KEEPALIVE_REQUESTS`).
            Some(s) => s.apply_to_session(&mut session),
            None => {
                session.set_keepalive(Some(limits.idle_timeout_ms.div_ceil(1000)));
                session.set_keepalive_reuses_remaining(Some(KEEPALIVE_REQUESTS));
            }
        }
        let Some(reused) = handlers.proxy.process_new_http(session, &shutdown).await else {
            return;
        };
        let (s, next) = reused.consume();
        stream = s;
        settings = next;
        match handlers
            .direct
            .serve(&mut stream, conn, &mut shutdown, limits, false)
            .await
        {
            Outcome::Closed => return,
            Outcome::HandOff(unread) => push_back.put(unread),
        }
    }
}

fn l4(tcp: TcpStream, peer: SocketAddr) -> L4Stream {
    let mut stream: L4Stream = tcp.into();
    let digest = SocketDigest::from_raw_fd(stream.as_raw_fd());
    let _ = digest.peer_addr.set(Some(peer.into()));
    stream.set_socket_digest(digest);
    stream
}
