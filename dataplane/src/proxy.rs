//! The HTTP proxy: pingora-proxy phases with Gatehouse routing, filters and answers.
//!
//! Answers of our own: 404 no route, 500 invalid backend, 503 no endpoints, 502 upstream
//! connect failure, 504 timeout. Every request keeps the `Runtime` it started with.

use crate::cors;
use crate::filters::{expand_template, modify_path, redirect_location};
use crate::mirror::{MAX_MIRRORED_BODY, Mirrors};
use crate::tables::{Cluster, CompiledRoute, PathRule, RequestView, Runtime, Target};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use gatehouse_model::ir::{Filter, HeaderModifier, PathModifier, Protocol, UpstreamProtocol};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connection attempts per request, the first included; a request tries at most every
/// endpoint of its cluster once.
pub const MAX_CONNECT_ATTEMPTS: u32 = 8;

/// Attempts per request under a route's retry policy, the first included.
pub const MAX_POLICY_ATTEMPTS: u32 = 16;

/// How long an endpoint that failed a connect is skipped.
pub(crate) const EJECTION: Duration = Duration::from_secs(10);

pub struct GatehouseProxy {
    state: Arc<ArcSwap<Runtime>>,
    ejections: Arc<crate::tables::Ejections>,
    /// Backend certificates found to carry a policy's subjectAltNames.
    verified_leaves: crate::upstream_tls::VerifiedLeaves,
    /// Per-client rate limit state, by zone.
    limiter: Arc<crate::limits::Limiter>,
    auth: crate::auth::Checker,
    mirrors: Mirrors,
}

impl GatehouseProxy {
    /// `ejections` is shared with the direct path: an endpoint that fails a connect on
    /// either is skipped by both.
    pub fn new(state: Arc<ArcSwap<Runtime>>, ejections: Arc<crate::tables::Ejections>) -> Self {
        GatehouseProxy {
            state,
            ejections,
            verified_leaves: Default::default(),
            limiter: Default::default(),
            auth: Default::default(),
            mirrors: Mirrors::default(),
        }
    }
}

/// A request to be mirrored once its body has been read.
struct PendingMirror {
    head: RequestHeader,
    targets: Vec<Arc<Cluster>>,
    body: Vec<u8>,
}

/// Per-request state.
#[derive(Default)]
pub struct Ctx {
    /// The table this request is served from, start to end.
    runtime: Option<Arc<Runtime>>,
    route: Option<Arc<CompiledRoute>>,
    backend: usize,
    cluster: Option<Arc<crate::tables::Cluster>>,
    upstream: Option<(SocketAddr, UpstreamProtocol)>,
    /// The listener's client certificate for TLS backends.
    backend_client: Option<Arc<pingora_core::utils::tls::CertKey>>,
    /// Connection attempts made for this request.
    attempts: u32,
    /// Endpoints this request tried, so a retry goes elsewhere.
    tried: Vec<SocketAddr>,
    tls: bool,
    /// Outcome for the access log.
    status_reason: &'static str,
    /// When the route's request timeout runs out.
    deadline: Option<Instant>,
    /// CORS headers to add to the answer.
    cors: Vec<cors::Header>,
    /// The answer just received is thrown away and the request sent again (retry policy).
    retry_answer: bool,
    mirror: Option<PendingMirror>,
    /// Request body bytes seen, against the route's limit.
    body_bytes: u64,
    /// A connection slot of a rate limit, released when the request ends.
    _slot: Option<crate::limits::Slot>,
    /// A new session affinity cookie for the answer.
    set_cookie: Option<String>,
    /// Request headers the external auth answer sets (None: removes).
    auth_headers: Vec<(String, Option<String>)>,
    /// Set-Cookie values of the external auth answer, for the client's answer.
    auth_cookies: Vec<String>,
    /// nginx's send timeout on the HTTP/1 backend connection, until its answer starts.
    send_watch: Option<crate::send_watch::SendWatch>,
}

impl Ctx {
    fn timed_out(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Attempts the route's retry policy allows, the first included (1 without a policy).
    fn policy_attempts(&self) -> u32 {
        self.route
            .as_ref()
            .and_then(|r| r.retry.as_ref())
            .map_or(1, |r| r.attempts.saturating_add(1).min(MAX_POLICY_ATTEMPTS))
    }

    /// Whether another attempt under the retry policy is allowed (an answer with a retried
    /// code, a backend timeout, a broken connection).
    fn may_retry(&self) -> bool {
        !self.timed_out() && self.attempts < self.policy_attempts()
    }

    /// Whether another attempt after a failed connect (or a safe replay) is allowed: every
    /// endpoint of the cluster once (at most MAX_CONNECT_ATTEMPTS), or what the retry policy
    /// allows if that is more.
    fn may_try_another(&self) -> bool {
        let endpoints = self.cluster.as_ref().map_or(0, |c| c.endpoints.len());
        let spread = MAX_CONNECT_ATTEMPTS.min(u32::try_from(endpoints).unwrap_or(u32::MAX));
        !self.timed_out() && self.attempts < spread.max(self.policy_attempts())
    }
}

impl GatehouseProxy {
    /// The endpoint for a request: round robin, or the route's affinity or hash.
    fn pick(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        route: &CompiledRoute,
        cluster: &Cluster,
        client: Option<std::net::IpAddr>,
    ) -> Option<SocketAddr> {
        use gatehouse_model::ir::Balance;
        let req = session.req_header();
        match route.balance.as_deref() {
            None => cluster.pick(&[], &self.ejections),
            Some(Balance::Hash(parts)) => {
                let key = crate::balance::hash_key(
                    parts,
                    &crate::balance::RequestParts {
                        path_and_query: req.uri.path_and_query().map_or("/", |p| p.as_str()),
                        path: req.uri.path(),
                        client,
                        host: &request_host(req),
                        headers: &req.headers,
                        query: req.uri.query(),
                    },
                );
                crate::balance::rendezvous(key, &cluster.endpoints)
            }
            Some(Balance::Cookie(a)) => {
                if let Some(e) = crate::balance::cookie(&req.headers, &a.name)
                    .and_then(|v| crate::balance::by_cookie(a, cluster, v))
                {
                    return Some(e);
                }
                let (e, value) = crate::balance::choose(a, cluster, &self.ejections)?;
                let path = match &route.path {
                    PathRule::Exact(p) | PathRule::Prefix(p) => p.as_str(),
                    PathRule::Regex(_) => "/",
                };
                ctx.set_cookie = Some(crate::balance::set_cookie(a, &value, path, ctx.tls));
                Some(e)
            }
        }
    }
}

/// Whether the request body can be replayed: none, or pingora kept all of it.
fn replayable(session: &Session) -> bool {
    !has_body(session.req_header()) || !session.as_ref().retry_buffer_truncated()
}

fn has_body(req: &RequestHeader) -> bool {
    req.headers
        .get(http::header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0")
        || req.headers.contains_key(http::header::TRANSFER_ENCODING)
}

impl GatehouseProxy {
    /// Copies the request (after the route's request header filters) for each mirror that
    /// takes it; sends now when there is no body, else when the body has been read.
    fn start_mirrors(
        &self,
        session: &Session,
        route: &CompiledRoute,
    ) -> Result<Option<PendingMirror>> {
        let targets: Vec<Arc<Cluster>> = route
            .mirrors
            .iter()
            .filter(|m| m.takes(rand::random_range(0..m.denominator)))
            .map(|m| m.cluster.clone())
            .collect();
        if targets.is_empty() {
            return Ok(None);
        }
        let mut head = session.req_header().clone();
        for f in &route.filters {
            if let Filter::RequestHeaders(m) = f {
                modify_request(&mut head, m)?;
            }
        }
        if has_body(&head) {
            // request_body_filter keeps the body and sends at its end.
            return Ok(Some(PendingMirror {
                head,
                targets,
                body: Vec::new(),
            }));
        }
        for cluster in &targets {
            self.mirrors
                .send(cluster, &self.ejections, &head, Bytes::new());
        }
        Ok(None)
    }
}

/// The TLS server name (SNI) of the connection, lower-case, if the client sent one.
fn server_name(session: &Session) -> Option<String> {
    let digest = session.digest()?.ssl_digest.as_ref()?;
    let sni = digest
        .extension
        .get::<crate::listeners::Sni>()?
        .0
        .as_deref()?;
    Some(sni.trim_end_matches('.').to_ascii_lowercase())
}

/// Host without port, lower-case, without a trailing dot; borrowed from the request when
/// it is that already (the common case: no copy per request).
fn request_host(req: &RequestHeader) -> std::borrow::Cow<'_, str> {
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

/// A Host value without port, lower-case, without a trailing dot.
pub(crate) fn normalize_host(raw: &str) -> std::borrow::Cow<'_, str> {
    let host = if raw.starts_with('[') {
        // IPv6 literal: keep the brackets, drop the port.
        raw.split_inclusive(']').next().unwrap_or(raw)
    } else {
        raw.rsplit_once(':').map(|(h, _)| h).unwrap_or(raw)
    };
    let host = host.trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

/// X-Forwarded-For with `client` appended.
fn forwarded_for(previous: Option<&[u8]>, client: std::net::IpAddr) -> Result<http::HeaderValue> {
    let mut v: Vec<u8> = Vec::with_capacity(previous.map_or(0, |p| p.len() + 2) + 15);
    push_forwarded_for(&mut v, previous, client);
    http::HeaderValue::from_maybe_shared(bytes::Bytes::from(v))
        .map_err(|e| Error::because(ErrorType::InternalError, "x-forwarded-for", e))
}

/// Writes an X-Forwarded-For value: `previous`, then `client`; without the formatting
/// machinery (it is on every proxied request).
pub(crate) fn push_forwarded_for(
    v: &mut Vec<u8>,
    previous: Option<&[u8]>,
    client: std::net::IpAddr,
) {
    if let Some(p) = previous {
        v.extend_from_slice(p);
        v.extend_from_slice(b", ");
    }
    match client {
        std::net::IpAddr::V4(ip) => {
            for (i, octet) in ip.octets().iter().enumerate() {
                if i > 0 {
                    v.push(b'.');
                }
                let o = *octet;
                if o >= 100 {
                    v.push(b'0' + o / 100);
                }
                if o >= 10 {
                    v.push(b'0' + (o / 10) % 10);
                }
                v.push(b'0' + o % 10);
            }
        }
        std::net::IpAddr::V6(ip) => v.extend_from_slice(ip.to_string().as_bytes()),
    }
}

/// The Server header of answers that have none.
const SERVER: &str = "gatehouse";

async fn respond(
    session: &mut Session,
    status: u16,
    body: String,
    headers: &[(&'static str, String)],
) -> Result<bool> {
    let mut resp = ResponseHeader::build(status, Some(headers.len() + 3))?;
    resp.insert_header(http::header::SERVER, SERVER)?;
    resp.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    for (name, value) in headers {
        resp.insert_header(*name, value.as_str())?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::from(body)), true)
        .await?;
    Ok(true)
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

fn modify_request(req: &mut RequestHeader, m: &HeaderModifier) -> Result<()> {
    modify_headers(
        m,
        |r: &mut RequestHeader, n, v| r.insert_header(n, v),
        |r: &mut RequestHeader, n, v| r.append_header(n, v).map(|_| ()),
        |r: &mut RequestHeader, n| drop(r.remove_header(n)),
        req,
    )
}

fn modify_response(resp: &mut ResponseHeader, m: &HeaderModifier) -> Result<()> {
    modify_headers(
        m,
        |r: &mut ResponseHeader, n, v| r.insert_header(n, v),
        |r: &mut ResponseHeader, n, v| r.append_header(n, v).map(|_| ()),
        |r: &mut ResponseHeader, n| drop(r.remove_header(n)),
        resp,
    )
}

impl Ctx {
    fn filters(&self) -> impl Iterator<Item = &Filter> {
        let route = self.route.as_deref();
        let backend = route.and_then(|r| r.backends.get(self.backend));
        route
            .into_iter()
            .flat_map(|r| r.filters.iter())
            .chain(backend.into_iter().flat_map(|b| b.filters.iter()))
    }
}

#[async_trait]
impl ProxyHttp for GatehouseProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    /// No downstream modules: Pingora's default adds a (disabled) compression module that
    /// is still built and run for every request.
    fn init_downstream_modules(&self, _modules: &mut pingora_core::modules::http::HttpModules) {}

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let runtime = self.state.load_full();
        ctx.runtime = Some(runtime.clone());
        let local = session.server_addr().and_then(|a| a.as_inet()).copied();
        let Some(bind) = local.and_then(|a| runtime.bind(a)).cloned() else {
            ctx.status_reason = "no listener";
            return respond(session, 404, "no listener\n".into(), &[]).await;
        };
        ctx.tls = bind.protocol == Protocol::Https;
        let req = session.req_header();
        let host = request_host(req);
        if ctx.tls
            && let Some(sni) = server_name(session)
            && bind.misdirected(&sni, &host)
        {
            ctx.status_reason = "misdirected";
            return respond(
                session,
                421,
                "misdirected request: Host does not match the TLS server name\n".into(),
                &[],
            )
            .await;
        }
        let req = session.req_header();
        let path = req.uri.path().to_string();
        let query = req.uri.query().map(str::to_string);
        let routed = bind
            .route(&RequestView {
                host: &host,
                path: &path,
                query: query.as_deref(),
                method: &req.method,
                headers: crate::tables::Headers::Map(&req.headers),
            })
            .map(|(l, r)| (l.backend_client.clone(), r.clone()));
        let Ok((backend_client, route)) = routed else {
            ctx.status_reason = "no route";
            return respond(session, 404, "no route\n".into(), &[]).await;
        };
        ctx.route = Some(route.clone());
        ctx.backend_client = backend_client;
        ctx.deadline = route
            .timeouts
            .request_ms
            .filter(|ms| *ms > 0)
            .map(|ms| Instant::now() + Duration::from_millis(ms));

        let outcome = {
            let req = session.req_header();
            let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
            match (&route.cors, &route.nginx_cors) {
                (Some(c), _) => Some(cors::evaluate(
                    c,
                    &req.method,
                    header("origin"),
                    header("access-control-request-method"),
                    header("access-control-request-headers"),
                )),
                (None, Some(c)) => Some(cors::evaluate_nginx(c, &req.method, header("origin"))),
                (None, None) => None,
            }
        };
        if let Some(outcome) = outcome {
            match outcome {
                cors::Outcome::Preflight(headers) => {
                    ctx.status_reason = "cors preflight";
                    let mut resp = ResponseHeader::build(204, Some(headers.len()))?;
                    for (name, value) in headers {
                        resp.insert_header(name, value)?;
                    }
                    session.write_response_header(Box::new(resp), true).await?;
                    return Ok(true);
                }
                cors::Outcome::Actual(headers) => ctx.cors = headers,
                cors::Outcome::NotCors => {}
            }
        }

        let prefix = match &route.path {
            PathRule::Prefix(p) => Some(p.as_str()),
            _ => None,
        };
        if let Some(Filter::Redirect(r)) = route
            .filters
            .iter()
            .find(|f| matches!(f, Filter::Redirect(_)))
        {
            let location = redirect_location(
                r,
                ctx.tls,
                &host,
                bind.addr.port(),
                &path,
                query.as_deref(),
                prefix,
            );
            ctx.status_reason = "redirect";
            return respond(session, r.status, String::new(), &[("location", location)]).await;
        }
        if let Some(Filter::RedirectTo(r)) = route
            .filters
            .iter()
            .find(|f| matches!(f, Filter::RedirectTo(_)))
        {
            ctx.status_reason = "redirect";
            // As nginx's `return`: codes with a Location header, the others the URL as body.
            return if matches!(r.status, 301 | 302 | 303 | 307 | 308) {
                respond(
                    session,
                    r.status,
                    String::new(),
                    &[("location", r.location.clone())],
                )
                .await
            } else {
                respond(session, r.status, r.location.clone(), &[]).await
            };
        }

        // Limits and access lists, after redirects (as nginx's phases): 503 and 403.
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        if let (Some(limit), Some(ip)) = (&route.rate_limit, client) {
            match self.limiter.admit(limit, ip, Instant::now()) {
                Ok(slot) => ctx._slot = slot,
                Err(crate::limits::Limited) => {
                    ctx.status_reason = "rate limited";
                    return respond(session, limit.status, "too many requests\n".into(), &[]).await;
                }
            }
        }
        if let Some(access) = &route.access
            && !client.is_some_and(|ip| access.admits(ip))
        {
            ctx.status_reason = "source not allowed";
            return respond(session, access.status, "forbidden\n".into(), &[]).await;
        }

        // External auth, after access lists (nginx's access phase).
        if let Some((auth, cluster)) = route.external_auth.as_deref() {
            let req = session.req_header();
            let path_and_query = req.uri.path_and_query().map_or("/", |p| p.as_str());
            let original = crate::auth::Original {
                method: req.method.as_str(),
                url: format!(
                    "{}://{host}{path_and_query}",
                    if ctx.tls { "https" } else { "http" }
                ),
                path_and_query,
                headers: &req.headers,
                client,
            };
            match self
                .auth
                .check(auth, cluster.as_deref(), &self.ejections, &original)
                .await
            {
                crate::auth::Decision::Allow {
                    headers,
                    set_cookies,
                } => {
                    ctx.auth_headers = headers;
                    ctx.auth_cookies = set_cookies;
                }
                crate::auth::Decision::Deny { status, headers } => {
                    ctx.status_reason = "external auth";
                    return respond(session, status, String::new(), &headers).await;
                }
            }
        }

        // A body over the route's limit: 413 before anything goes to a backend.
        if let Some(max) = route.max_request_body
            && session
                .req_header()
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .is_some_and(|len| len > max)
        {
            ctx.status_reason = "body too large";
            return respond(session, 413, "request body too large\n".into(), &[]).await;
        }

        if !route.mirrors.is_empty() {
            ctx.mirror = self.start_mirrors(session, &route)?;
        }

        if route.total_weight == 0 {
            ctx.status_reason = "no backend";
            return respond(session, 500, "no backend\n".into(), &[]).await;
        }
        let sample = rand::random_range(0..route.total_weight);
        let Some((index, backend)) = route
            .backends
            .iter()
            .enumerate()
            .scan(0u64, |acc, (i, b)| {
                *acc += u64::from(b.weight);
                Some((i, b, *acc))
            })
            .find(|(_, _, acc)| sample < *acc)
            .map(|(i, b, _)| (i, b))
        else {
            return respond(session, 500, "no backend\n".into(), &[]).await;
        };
        ctx.backend = index;
        match &backend.target {
            Target::Invalid(_) => {
                ctx.status_reason = "invalid backend";
                respond(session, 500, "invalid backend\n".into(), &[]).await
            }
            // A TLS policy that cannot be honoured: refuse before choosing an endpoint
            // (which may set an affinity cookie), and never send cleartext.
            Target::Cluster(cluster)
                if cluster.tls.as_ref().is_some_and(|t| t.unusable.is_some()) =>
            {
                ctx.status_reason = "backend TLS unusable";
                respond(
                    session,
                    503,
                    "backend TLS policy has no usable CA\n".into(),
                    &[],
                )
                .await
            }
            Target::Cluster(cluster) => match self.pick(session, ctx, &route, cluster, client) {
                None => {
                    ctx.status_reason = "no endpoints";
                    respond(session, 503, "no healthy endpoints\n".into(), &[]).await
                }
                Some(addr) => {
                    ctx.upstream = Some((addr, cluster.protocol));
                    ctx.cluster = Some(cluster.clone());
                    Ok(false)
                }
            },
        }
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        // A retry after a failed connect goes to the next endpoint.
        if ctx.attempts > 0
            && let Some(next) = ctx
                .cluster
                .as_ref()
                .and_then(|c| c.pick(&ctx.tried, &self.ejections))
            && let Some(up) = ctx.upstream.as_mut()
        {
            up.0 = next;
        }
        if ctx.attempts > 0
            && let Some(ms) = ctx
                .route
                .as_ref()
                .and_then(|r| r.retry.as_ref()?.backoff_ms)
        {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        ctx.attempts += 1;
        ctx.retry_answer = false;
        if let Some((addr, _)) = ctx.upstream {
            ctx.tried.push(addr);
        }
        let Some((addr, protocol)) = ctx.upstream else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "no upstream chosen",
            ));
        };
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout = Some(Duration::from_secs(5));
        peer.options.total_connection_timeout = Some(Duration::from_secs(10));
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        // Time limits: the backend timeout bounds each attempt, the request timeout what is
        // left of the whole request.
        let backend = ctx
            .route
            .as_ref()
            .and_then(|r| r.timeouts.backend_request_ms)
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis);
        let remaining = ctx
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()));
        if remaining.is_some_and(|r| r.is_zero()) {
            return Err(Error::explain(
                ErrorType::HTTPStatus(504),
                "request timeout reached",
            ));
        }
        let limit = match (backend, remaining) {
            (Some(b), Some(r)) => Some(b.min(r)),
            (b, r) => b.or(r),
        };
        if let Some(limit) = limit {
            peer.options.read_timeout = Some(limit);
            peer.options.write_timeout = Some(limit);
            peer.options.total_connection_timeout = Some(limit.min(Duration::from_secs(10)));
            peer.options.connection_timeout = Some(limit.min(Duration::from_secs(5)));
        }
        // nginx-style limits: connecting, and the wait between two reads or writes.
        if let Some(t) = ctx.route.as_ref().map(|r| r.timeouts) {
            let tighter = |current: Option<Duration>, ms: Option<u64>| match ms {
                Some(ms) => Some(current.map_or(Duration::from_millis(ms), |c| {
                    c.min(Duration::from_millis(ms))
                })),
                None => current,
            };
            peer.options.connection_timeout =
                tighter(peer.options.connection_timeout, t.connect_ms);
            peer.options.total_connection_timeout =
                tighter(peer.options.total_connection_timeout, t.connect_ms);
            peer.options.read_timeout = tighter(peer.options.read_timeout, t.read_idle_ms);
            peer.options.write_timeout = tighter(peer.options.write_timeout, t.write_idle_ms);
        }
        if let Some(tls) = ctx.cluster.as_ref().and_then(|c| c.tls.as_ref()) {
            tls.apply(&mut peer, addr, ctx.backend_client.as_ref());
        }
        if protocol == UpstreamProtocol::H2c && !session.is_upgrade_req() {
            peer.options.set_http_version(2, 2);
            peer.options.max_h2_streams = 100;
        }
        Ok(Box::new(peer))
    }

    /// A policy with subjectAltNames: the connection's certificate (Pingora verified its
    /// chain) must carry one of them; new and pooled connections alike. A route with a
    /// send timeout gets its watch here, where the connection's socket is known.
    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        digest: Option<&pingora_core::protocols::Digest>,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.send_watch = None;
        #[cfg(unix)]
        if let (Some(ms), Some((_, UpstreamProtocol::Http1))) = (
            ctx.route.as_ref().and_then(|r| r.timeouts.write_idle_ms),
            ctx.upstream,
        ) {
            match crate::send_watch::SendWatch::start(fd, Duration::from_millis(ms)) {
                Ok(w) => ctx.send_watch = Some(w),
                Err(e) => tracing::warn!("send timeout not watched: {e}"),
            }
        }
        let Some(tls) = ctx
            .cluster
            .as_ref()
            .and_then(|c| c.tls.as_ref())
            .filter(|t| !t.subject_alt_names.is_empty())
        else {
            return Ok(());
        };
        let Some((addr, _)) = ctx.upstream else {
            return Ok(());
        };
        let leaf = digest
            .and_then(|d| d.ssl_digest.as_ref())
            .map(|s| s.cert_digest.clone())
            .unwrap_or_default();
        self.verified_leaves
            .check_leaf(tls, addr, &leaf)
            .await
            .map_err(|e| Error::explain(ErrorType::HTTPStatus(502), e))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let prefix = match ctx.route.as_deref().map(|r| &r.path) {
            Some(PathRule::Prefix(p)) => Some(p.clone()),
            _ => None,
        };
        for f in ctx.filters() {
            match f {
                Filter::RequestHeaders(m) => modify_request(upstream, m)?,
                Filter::Rewrite(r) => {
                    if let Some(host) = &r.hostname {
                        upstream.insert_header(http::header::HOST, host.as_str())?;
                    }
                    if let Some(m) = &r.path {
                        let new_path = match (m, ctx.route.as_deref().map(|r| &r.path)) {
                            (PathModifier::RegexTemplate(t), Some(PathRule::Regex(re))) => {
                                expand_template(t, re, upstream.uri.path())
                            }
                            _ => modify_path(m, upstream.uri.path(), prefix.as_deref()),
                        };
                        let pq = match upstream.uri.query() {
                            Some(q) => format!("{new_path}?{q}"),
                            None => new_path,
                        };
                        let uri = pq.parse::<http::Uri>().map_err(|e| {
                            Error::because(ErrorType::InternalError, "rewritten path", e)
                        })?;
                        upstream.set_uri(uri);
                    }
                }
                Filter::ResponseHeaders(_)
                | Filter::Redirect(_)
                | Filter::RedirectTo(_)
                | Filter::Mirror(_)
                | Filter::Cors(_)
                | Filter::NginxCors(_) => {}
            }
        }
        for (name, value) in &ctx.auth_headers {
            match value {
                Some(v) => upstream.insert_header(name.clone(), v.as_str())?,
                None => {
                    upstream.remove_header(name.as_str());
                }
            }
        }
        if let Some(client) = session.client_addr().and_then(|a| a.as_inet()) {
            let xff = forwarded_for(
                upstream
                    .headers
                    .get("x-forwarded-for")
                    .map(|v| v.as_bytes()),
                client.ip(),
            )?;
            upstream.insert_header("x-forwarded-for", xff)?;
        }
        upstream.insert_header(
            "x-forwarded-proto",
            http::HeaderValue::from_static(if ctx.tls { "https" } else { "http" }),
        )?;
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        for f in ctx.filters() {
            if let Filter::ResponseHeaders(m) = f {
                modify_response(resp, m)?;
            }
        }
        for (name, value) in &ctx.cors {
            resp.insert_header(*name, value.as_str())?;
        }
        if let Some(c) = ctx.set_cookie.take() {
            resp.append_header(http::header::SET_COOKIE, c)?;
        }
        if ctx.tls
            && let Some(hsts) = ctx.route.as_ref().and_then(|r| r.hsts.as_ref())
        {
            resp.insert_header(http::header::STRICT_TRANSPORT_SECURITY, hsts.as_str())?;
        }
        // Every answer names its server (the Ingress conformance suite checks), unless the
        // backend named itself.
        if !resp.headers.contains_key(http::header::SERVER) {
            resp.insert_header(http::header::SERVER, http::HeaderValue::from_static(SERVER))?;
        }
        // nginx passes the auth answer's cookies on successful and redirect answers.
        if matches!(
            resp.status.as_u16(),
            200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308
        ) {
            for c in std::mem::take(&mut ctx.auth_cookies) {
                resp.append_header(http::header::SET_COOKIE, c)?;
            }
        }
        Ok(())
    }

    /// A retry policy that names this answer's status sends the request again, while
    /// attempts remain and the body can be replayed; the answer is thrown away unread.
    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // The backend answers: it is no longer stuck on the request.
        ctx.send_watch = None;
        let code = resp.status.as_u16();
        let retried = ctx
            .route
            .as_ref()
            .and_then(|r| r.retry.as_ref())
            .is_some_and(|r| r.codes.contains(&code));
        if retried && ctx.may_retry() && replayable(session) {
            ctx.retry_answer = true;
            return Err(Error::explain(
                ErrorType::HTTPStatus(code),
                "answer retried by the route's retry policy",
            ));
        }
        Ok(())
    }

    /// Keeps the body of a request that is mirrored, and sends the mirrors at its end.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // A chunked body over the route's limit: 413 as soon as it is known.
        if let (Some(max), Some(chunk)) = (
            ctx.route.as_ref().and_then(|r| r.max_request_body),
            body.as_ref(),
        ) {
            ctx.body_bytes += chunk.len() as u64;
            if ctx.body_bytes > max {
                ctx.status_reason = "body too large";
                return Err(Error::explain(
                    ErrorType::HTTPStatus(413),
                    "request body too large",
                ));
            }
        }
        let Some(pending) = ctx.mirror.as_mut() else {
            return Ok(());
        };
        if let Some(chunk) = body {
            if pending.body.len() + chunk.len() > MAX_MIRRORED_BODY {
                tracing::debug!("request body too large to mirror");
                ctx.mirror = None;
                return Ok(());
            }
            pending.body.extend_from_slice(chunk);
        }
        if end_of_stream && let Some(p) = ctx.mirror.take() {
            let body = Bytes::from(p.body);
            for cluster in &p.targets {
                self.mirrors
                    .send(cluster, &self.ejections, &p.head, body.clone());
            }
        }
        Ok(())
    }

    /// A connect that failed sent nothing, so it is safe to try another endpoint: an
    /// endpoint going away (a scale-down, a rollout) costs a retry, not a failed request.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some((addr, _)) = ctx.upstream {
            self.ejections.eject(addr, EJECTION);
        }
        if ctx.may_try_another() {
            tracing::debug!(upstream = %peer, attempt = ctx.attempts, "connect failed; trying another endpoint");
            e.set_retry(true);
        }
        e
    }

    /// An upstream that fails mid-request (a pod killed while answering) is retried on
    /// another endpoint only when replaying is safe: GET/HEAD/OPTIONS without a body, and
    /// nothing sent to the client yet. Otherwise pingora's rule: retry only errors on
    /// reused pooled connections.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        mut e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        if ctx.retry_answer {
            tracing::debug!(upstream = %peer, attempt = ctx.attempts, "retrying after a retried status");
            e.set_retry(true);
            return e;
        }
        let req = session.req_header();
        let idempotent = matches!(
            req.method,
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
        );
        let nothing_sent = session.response_written().is_none();
        let safe_replay = idempotent && !has_body(req) && ctx.may_try_another();
        // Under a retry policy, a backend timeout or broken connection is retried too.
        let policy = ctx.route.as_ref().is_some_and(|r| r.retry.is_some())
            && ctx.may_retry()
            && replayable(session);
        if nothing_sent && (safe_replay || policy) {
            tracing::debug!(upstream = %peer, attempt = ctx.attempts, "upstream failed; trying again");
            e.set_retry(true);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let send_timed_out = ctx.send_watch.as_ref().is_some_and(|w| w.fired());
        let code = match e.etype() {
            _ if ctx.timed_out() || send_timed_out => 504,
            ErrorType::HTTPStatus(c) => *c,
            _ if *e.esource() == ErrorSource::Upstream => match e.etype() {
                // A connect timeout is a connect failure (502), except under an
                // nginx-style connect limit, where nginx answers 504; a slow answer is 504.
                ErrorType::ReadTimedout | ErrorType::WriteTimedout => 504,
                ErrorType::ConnectTimedout
                    if ctx
                        .route
                        .as_ref()
                        .is_some_and(|r| r.timeouts.connect_ms.is_some()) =>
                {
                    504
                }
                _ => 502,
            },
            ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed
                if *e.esource() == ErrorSource::Downstream =>
            {
                0
            }
            _ if *e.esource() == ErrorSource::Downstream => 400,
            _ => 500,
        };
        if code > 0 {
            let body = Bytes::from(match code {
                502 => "upstream connect failure\n".to_string(),
                504 => "upstream timeout\n".to_string(),
                c => format!("error {c}\n"),
            });
            let _ = session.respond_error_with_body(code, body).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        if !tracing::enabled!(target: "gatehouse::access", tracing::Level::DEBUG) {
            return;
        }
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let req = session.req_header();
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.to_string())
            .unwrap_or_default();
        let route = ctx
            .route
            .as_deref()
            .map(|r| {
                format!(
                    "{} {}/{} rule {}",
                    r.source.kind, r.source.namespace, r.source.name, r.source.rule
                )
            })
            .unwrap_or_default();
        tracing::debug!(
            target: "gatehouse::access",
            client = %client,
            method = %req.method,
            uri = %req.uri,
            status,
            route = %route,
            upstream = ?ctx.upstream.map(|u| u.0),
            version = ctx.runtime.as_ref().map(|r| r.version).unwrap_or(0),
            outcome = ctx.status_reason,
            error = ?e.map(|e| e.to_string()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_appends_the_client() {
        let v4: std::net::IpAddr = "10.0.100.7".parse().unwrap();
        assert_eq!(forwarded_for(None, v4).unwrap(), "10.0.100.7");
        let zero: std::net::IpAddr = "0.9.10.255".parse().unwrap();
        assert_eq!(forwarded_for(None, zero).unwrap(), "0.9.10.255");
        let v6: std::net::IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            forwarded_for(Some(b"192.0.2.1"), v6).unwrap(),
            "192.0.2.1, 2001:db8::1"
        );
    }

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
