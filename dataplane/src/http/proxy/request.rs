//! The request phases: routing a request and the steps that may answer it before any
//! backend does (CORS, redirects, limits and access lists, external auth, the body
//! limit), the backend and endpoint it goes to, and its body (limit, mirrors).

use super::answers::{Answer, respond};
use super::context::{Ctx, ForwardedFrom, PendingMirror};
use super::headers::{has_body, modify_request, request_host, server_name};
use super::state::GatehouseProxy;
use crate::http::forwarding::{CLIENT_BODY_TIMEOUT, CLIENT_SEND_TIMEOUT};
use crate::policies::auth::{Decision, Original};
use crate::policies::balance;
use crate::policies::cors;
use crate::policies::filters::redirect_location;
use crate::policies::limits::Limited;
use crate::policies::mirror::MAX_MIRRORED_BODY;
use crate::runtime::{Cluster, CompiledRoute, Headers, PathRule, RequestView, Target};
use bytes::Bytes;
use gatehouse_model::ir::{Filter, Protocol};
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

impl GatehouseProxy {
    /// The request phase: the route (404 without one; 421 when the Host belongs to another
    /// listener than the TLS server name), then, in nginx's order, CORS, redirects, limits
    /// and access lists, external auth and the body limit, each of which may answer the
    /// request here; then the mirrors start and a backend and endpoint are chosen.
    pub(super) async fn on_request(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        ctx.started = Some(Instant::now());
        // One normalisation of the path, before any route is chosen; the backend gets the
        // path the request was routed on. The target as the client wrote it is what is
        // normalised (pingora keeps the raw bytes beside a lenient parse).
        let raw = target_path(session.req_header());
        let path = match raw
            .as_deref()
            .map_err(|e| *e)
            .and_then(crate::http::path::normalize)
        {
            Ok(p) => {
                let p = p.into_owned();
                // Forwarded as routed: the normalised path, whatever pingora's parse kept.
                if raw.as_deref() != Ok(p.as_str()) || session.req_header().uri.path() != p {
                    set_path(session.req_header_mut(), &p)?;
                }
                p
            }
            Err(e) => {
                ctx.status_reason = "bad path";
                return respond(session, 400, format!("bad request: {e}\n"), &[]).await;
            }
        };
        // One Host, a valid one; one Content-Length, a canonical one: what the backend gets
        // is framed one way only.
        if let Err(why) = canonical_head(session.req_header_mut()) {
            ctx.status_reason = "bad head";
            return respond(session, 400, format!("bad request: {why}\n"), &[]).await;
        }
        // Routing: the bind, the Host against the TLS server name, then the route.
        let runtime = self.state.load_full();
        ctx.runtime = Some(runtime.clone());
        let local = session.server_addr().and_then(|a| a.as_inet()).copied();
        let Some(bind) = local.and_then(|a| runtime.bind(a)).cloned() else {
            ctx.status_reason = "no listener";
            return respond(session, 404, "no listener\n".into(), &[]).await;
        };
        ctx.series = Some(bind.unmatched.clone());
        if let Some(answer) = self.admit_client(session, ctx, &bind).await {
            return answer;
        }
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
        let query = req.uri.query().map(str::to_string);
        let routed = bind
            .route(&RequestView {
                host: &host,
                path: &path,
                query: query.as_deref(),
                method: &req.method,
                headers: Headers::Map(&req.headers),
            })
            .map(|(l, r)| (l.backend_client.clone(), r.clone()));
        let Ok((backend_client, route)) = routed else {
            if let Some(listener) = bind.listener_for(&host) {
                ctx.series = Some(listener.unrouted.clone());
            }
            ctx.status_reason = "no route";
            return respond(session, 404, "no route\n".into(), &[]).await;
        };
        ctx.series = Some(route.series.clone());
        ctx.route = Some(route.clone());
        ctx.backend_client = backend_client;
        ctx.deadline = route
            .timeouts
            .request_ms
            .filter(|ms| *ms > 0)
            .map(|ms| Instant::now() + Duration::from_millis(ms));

        // CORS: a preflight is answered here; an actual request gets headers on its answer.
        match cors_outcome(session.req_header(), &route) {
            Some(cors::Outcome::Preflight(headers)) => {
                ctx.status_reason = "cors preflight";
                let mut resp = ResponseHeader::build(204, Some(headers.len()))?;
                for (name, value) in headers {
                    resp.insert_header(name, value)?;
                }
                session.write_response_header(Box::new(resp), true).await?;
                return Ok(true);
            }
            Some(cors::Outcome::Actual(headers)) => ctx.cors = headers,
            Some(cors::Outcome::NotCors) | None => {}
        }

        if let Some(answer) = redirect(
            &route,
            ctx.tls,
            &host,
            bind.addr.port(),
            &path,
            query.as_deref(),
        ) {
            return answer.send(session, ctx).await;
        }

        let client = ctx.client;
        if let Some(answer) = self.limits(&route, client, ctx) {
            return answer.send(session, ctx).await;
        }
        if let Some(answer) = self
            .external_auth(session.req_header(), &route, &host, client, ctx)
            .await
        {
            return answer.send(session, ctx).await;
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
            ctx.mirror = self.start_mirrors(session, &route, ctx)?;
        }

        self.choose_backend(session, ctx, &route, client).await
    }

    /// The socket's client rules for this request: who the client is (the peer, or the
    /// client a trusted proxy names), what Gatehouse forwards of it, the head's limits
    /// (431 past them: heads pingora read itself are held to the direct path's limits) and
    /// the read timeout for the rest of the connection. Some(answer) when it is answered.
    async fn admit_client(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        bind: &crate::runtime::Bind,
    ) -> Option<Result<bool>> {
        ctx.tls = bind.protocol == Protocol::Https;
        ctx.limits = bind.limits;
        // A client that stops reading its answer, or sending its body, is let go (pingora
        // waits without end by default); the direct path has the same bounds.
        session.set_write_timeout(Some(CLIENT_SEND_TIMEOUT));
        session.set_read_timeout(Some(CLIENT_BODY_TIMEOUT));
        ctx.keep_underscores = bind.clients.keep_underscores;
        ctx.access_log = bind.clients.access_log;
        if bind.clients.access_log || bind.clients.generate_request_id {
            let sent = session
                .req_header()
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(|v| crate::http::access_log::bounded(v).to_string());
            ctx.request_id_generated = sent.is_none() && bind.clients.generate_request_id;
            ctx.request_id = sent.or_else(|| {
                ctx.request_id_generated
                    .then(crate::http::forwarding::new_request_id)
            });
        }
        if let Some(tracer) = &bind.clients.tracer {
            let sent = session.req_header().headers.get_all("traceparent");
            let trace = tracer.start(sent.iter().map(|v| v.as_bytes()));
            ctx.trace = Some((trace, tracer.clone()));
        }
        if let Some(peer) = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
        {
            let req = session.req_header();
            // Every X-Forwarded-For line: a chain split over lines is one chain.
            let xff: Vec<&[u8]> = req
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .map(|v| v.as_bytes())
                .collect();
            let (client, believed) = bind.clients.client(peer, &xff);
            ctx.client = Some(client);
            ctx.forwarded = Some(ForwardedFrom {
                peer,
                chain: (believed && !xff.is_empty()).then(|| xff.join(&b", "[..])),
                host: req
                    .headers
                    .get(http::header::HOST)
                    .map(|h| h.as_bytes().to_vec())
                    .or_else(|| req.uri.authority().map(|a| a.as_str().as_bytes().to_vec()))
                    .unwrap_or_default(),
                port: bind.addr.port(),
            });
        }
        // Heads pingora read itself (after the direct path handed a connection over, and
        // HTTP/2) are held to the same limits as the direct path's: 431 past them.
        let req = session.req_header();
        let header_bytes: usize = req
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum();
        if req.headers.len() > bind.limits.max_headers as usize
            || header_bytes > bind.limits.max_header_bytes as usize
        {
            ctx.status_reason = "head too large";
            return Some(
                respond(
                    session,
                    431,
                    "request header fields too large\n".into(),
                    &[],
                )
                .await,
            );
        }
        // A slow client: each read of this connection's later heads and bodies within the
        // header timeout (pingora times reads, not whole heads).
        session.set_read_timeout(Some(Duration::from_millis(bind.limits.header_timeout_ms)));
        None
    }

    /// Limits and access lists, after redirects (as nginx's phases): 503 and 403.
    fn limits(
        &self,
        route: &CompiledRoute,
        client: Option<IpAddr>,
        ctx: &mut Ctx,
    ) -> Option<Answer> {
        if let (Some(limit), Some(ip)) = (&route.rate_limit, client) {
            match self.limiter.admit(limit, ip, Instant::now()) {
                Ok(slot) => ctx._slot = slot,
                Err(Limited) => {
                    return Some(Answer {
                        reason: "rate limited",
                        status: limit.status,
                        body: "too many requests\n".into(),
                        headers: vec![],
                    });
                }
            }
        }
        if let Some(access) = &route.access
            && !client.is_some_and(|ip| access.admits(ip))
        {
            return Some(Answer {
                reason: "source not allowed",
                status: access.status,
                body: "forbidden\n".into(),
                headers: vec![],
            });
        }
        None
    }

    /// External auth, after access lists (nginx's access phase): on success, the headers
    /// and cookies the auth answer passes on are kept; otherwise its answer.
    async fn external_auth(
        &self,
        req: &RequestHeader,
        route: &CompiledRoute,
        host: &str,
        client: Option<IpAddr>,
        ctx: &mut Ctx,
    ) -> Option<Answer> {
        let (auth, cluster) = route.external_auth.as_deref()?;
        let path_and_query = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let original = Original {
            method: req.method.as_str(),
            url: format!(
                "{}://{host}{path_and_query}",
                if ctx.tls { "https" } else { "http" }
            ),
            path_and_query,
            headers: &req.headers,
            client,
            keep_underscores: ctx.keep_underscores,
        };
        match self
            .auth
            .check(auth, cluster.as_deref(), &self.ejections, &original)
            .await
        {
            Decision::Allow {
                headers,
                set_cookies,
            } => {
                ctx.auth_headers = headers;
                ctx.auth_cookies = set_cookies;
                None
            }
            Decision::Deny { status, headers } => Some(Answer {
                reason: "external auth",
                status,
                body: String::new(),
                headers,
            }),
        }
    }

    /// A backend by weight, then an endpoint of its cluster: 500 when the route has no
    /// usable backend, 503 when the cluster cannot be sent to.
    async fn choose_backend(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        route: &CompiledRoute,
        client: Option<IpAddr>,
    ) -> Result<bool> {
        let Some((index, backend)) = route.choose_backend() else {
            ctx.status_reason = "no backend";
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
            Target::Cluster(cluster) => match self.pick(session, ctx, route, cluster, client) {
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
                let key = balance::hash_key(
                    parts,
                    &balance::RequestParts {
                        path_and_query: req.uri.path_and_query().map_or("/", |p| p.as_str()),
                        path: req.uri.path(),
                        client,
                        host: &request_host(req),
                        headers: &req.headers,
                        query: req.uri.query(),
                    },
                );
                balance::rendezvous(key, &cluster.endpoints)
            }
            Some(Balance::Cookie(a)) => {
                if let Some(e) = balance::cookie(&req.headers, &a.name)
                    .and_then(|v| balance::by_cookie(a, cluster, v))
                {
                    return Some(e);
                }
                let (e, value) = balance::choose(a, cluster, &self.ejections)?;
                let path = match &route.path {
                    PathRule::Exact(p) | PathRule::Prefix(p) => p.as_str(),
                    PathRule::Regex(_) => "/",
                };
                ctx.set_cookie = Some(balance::set_cookie(a, &value, path, ctx.tls));
                Some(e)
            }
        }
    }

    /// Copies the request (its headers as the backend gets them) for each mirror that takes
    /// it; sends now when there is no body, else when the body has been read.
    fn start_mirrors(
        &self,
        session: &Session,
        route: &CompiledRoute,
        ctx: &Ctx,
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
        // What the backend gets of the client's headers: the same dropped, the route's
        // filters, Gatehouse's forwarded headers.
        let mut head = session.req_header().clone();
        super::upstream::drop_client_headers(&mut head, ctx.keep_underscores);
        for f in &route.filters {
            if let Filter::RequestHeaders(m) = f {
                modify_request(&mut head, m)?;
            }
        }
        super::upstream::set_forwarded(&mut head, ctx)?;
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

    /// Keeps the body of a request that is mirrored, and sends the mirrors at its end.
    pub(super) fn on_request_body(
        &self,
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
}

/// What the route's CORS filter (or ingress-nginx CORS) makes of the request, if it has one.
fn cors_outcome(req: &RequestHeader, route: &CompiledRoute) -> Option<cors::Outcome> {
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
}

/// The answer of the route's redirect filter, if it has one: a RequestRedirect, else an
/// nginx-style `return`.
fn redirect(
    route: &CompiledRoute,
    tls: bool,
    host: &str,
    port: u16,
    path: &str,
    query: Option<&str>,
) -> Option<Answer> {
    let prefix = match &route.path {
        PathRule::Prefix(p) => Some(p.as_str()),
        _ => None,
    };
    if let Some(Filter::Redirect(r)) = route
        .filters
        .iter()
        .find(|f| matches!(f, Filter::Redirect(_)))
    {
        let location = redirect_location(r, tls, host, port, path, query, prefix);
        return Some(Answer {
            reason: "redirect",
            status: r.status,
            body: String::new(),
            headers: vec![("location", location)],
        });
    }
    if let Some(Filter::RedirectTo(r)) = route
        .filters
        .iter()
        .find(|f| matches!(f, Filter::RedirectTo(_)))
    {
        // As nginx's `return`: codes with a Location header, the others the URL as body.
        return Some(if matches!(r.status, 301 | 302 | 303 | 307 | 308) {
            Answer {
                reason: "redirect",
                status: r.status,
                body: String::new(),
                headers: vec![("location", r.location.clone())],
            }
        } else {
            Answer {
                reason: "redirect",
                status: r.status,
                body: r.location.clone(),
                headers: vec![],
            }
        });
    }
    None
}

/// Replaces the request's path, keeping its query (and the authority of an absolute-form
/// target).
fn set_path(req: &mut RequestHeader, path: &str) -> Result<()> {
    let pq = match req.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = req.uri.clone().into_parts();
    parts.path_and_query = Some(
        pq.parse()
            .map_err(|e| Error::because(ErrorType::InternalError, "normalised path", e))?,
    );
    let uri = http::Uri::from_parts(parts)
        .map_err(|e| Error::because(ErrorType::InternalError, "normalised path", e))?;
    req.set_uri(uri);
    Ok(())
}

/// The path of the request target as the client wrote it: origin-form as is (less its
/// query), absolute-form's path; anything else (a bare word, a leading space, `*`) has none.
fn target_path(req: &RequestHeader) -> Result<String, crate::http::path::PathError> {
    use crate::http::path::PathError;
    let raw = req.raw_path();
    let lower = raw
        .get(..8)
        .map(<[u8]>::to_ascii_lowercase)
        .unwrap_or_default();
    if lower.starts_with(b"http://") || lower.starts_with(b"https://") {
        return Ok(req.uri.path().to_string());
    }
    if raw.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let path = raw.split(|b| *b == b'?').next().unwrap_or_default();
    std::str::from_utf8(path)
        .map(str::to_string)
        .map_err(|_| PathError::Encoding)
}

/// Refuses a head that could be read two ways: no Host (HTTP/1.1) or several, a Host that
/// is not a host[:port]; Content-Length values that disagree or are not plain digits. Several equal
/// Content-Length values (or a list of them) become one, leading zeros dropped (RFC 9112
/// 6.3 lets a recipient do either; a backend must not get to choose).
fn canonical_head(req: &mut RequestHeader) -> Result<(), &'static str> {
    let hosts: Vec<&[u8]> = req
        .headers
        .get_all(http::header::HOST)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    match hosts.as_slice() {
        [h] if crate::http::forwarding::valid_host(h) => {}
        [] if req.uri.authority().is_some() => {}
        // HTTP/1.0 has no Host requirement (RFC 9112 3.2 is HTTP/1.1's): routed as a
        // request for no name, to the routes that take any host.
        [] if req.version == http::Version::HTTP_10 => {}
        [] => return Err("no Host"),
        [_] => return Err("an invalid Host"),
        _ => return Err("more than one Host"),
    }
    let lengths: Vec<&[u8]> = req
        .headers
        .get_all(http::header::CONTENT_LENGTH)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .collect();
    if lengths.is_empty() {
        return Ok(());
    }
    let mut length: Option<u64> = None;
    for l in &lengths {
        if l.is_empty() || !l.iter().all(u8::is_ascii_digit) {
            return Err("an invalid Content-Length");
        }
        let n = std::str::from_utf8(l)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or("an invalid Content-Length")?;
        if length.is_some_and(|m| m != n) {
            return Err("Content-Length values that disagree");
        }
        length = Some(n);
    }
    let canonical = length.map(|n| n.to_string()).unwrap_or_default();
    let single = req
        .headers
        .get_all(http::header::CONTENT_LENGTH)
        .iter()
        .count()
        == 1;
    if !single || lengths.len() > 1 || lengths[0] != canonical.as_bytes() {
        req.insert_header(http::header::CONTENT_LENGTH, canonical)
            .map_err(|_| "an invalid Content-Length")?;
    }
    Ok(())
}
