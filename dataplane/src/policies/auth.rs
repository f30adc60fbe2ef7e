//! External authorization (ingress-nginx auth-url): before a request goes to its backend,
//! a check request with the client's headers goes to the auth service, and its answer
//! decides. 2xx lets the request through (with the headers the route copies from the
//! answer); 401 and 403 are the client's answer (401 may become a redirect to a sign-in
//! page); anything else, or no answer, is 500: a check that cannot be made never opens
//! the route.

use crate::runtime::{Cluster, Ejections};
use bytes::Bytes;
use gatehouse_model::ir::ExternalAuth;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How long a check may take, answer included, before the request is answered 500.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Checks in flight at once; past it a request is answered 500 (the check cannot be made)
/// rather than queue behind a slow auth service.
const MAX_IN_FLIGHT: usize = 512;
/// Answer body bytes read from the auth service (the body is not used).
const MAX_ANSWER: usize = 64 * 1024;

/// What the check decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go on; set (or, with None, remove) these request headers, and add these Set-Cookie
    /// values to the answer.
    Allow {
        headers: Vec<(String, Option<String>)>,
        set_cookies: Vec<String>,
    },
    /// Answer the client with this status and headers.
    Deny {
        status: u16,
        headers: Vec<(&'static str, String)>,
    },
}

/// What the check needs to know of the request.
pub struct Original<'a> {
    pub method: &'a str,
    /// scheme://host + path and query, as nginx's X-Original-URL.
    pub url: String,
    pub path_and_query: &'a str,
    pub headers: &'a http::HeaderMap,
    pub client: Option<IpAddr>,
    /// The port keeps header names with underscores.
    pub keep_underscores: bool,
}

/// Makes external auth checks (an HTTP client with a 2 s connect timeout).
pub struct Checker {
    client: Client<HttpConnector, Empty<Bytes>>,
    in_flight: tokio::sync::Semaphore,
}

impl Default for Checker {
    fn default() -> Self {
        let mut c = HttpConnector::new();
        c.set_connect_timeout(Some(Duration::from_secs(2)));
        c.set_nodelay(true);
        Checker {
            client: Client::builder(TokioExecutor::new()).build(c),
            in_flight: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
        }
    }
}

impl Checker {
    /// Sends the check for `original` and decides from its answer.
    pub async fn check(
        &self,
        auth: &ExternalAuth,
        cluster: Option<&Cluster>,
        ejections: &Ejections,
        original: &Original<'_>,
    ) -> Decision {
        let error = Decision::Deny {
            status: 500,
            headers: vec![],
        };
        let Ok(_permit) = self.in_flight.try_acquire() else {
            tracing::debug!("external auth: too many checks in flight");
            return error;
        };
        let started = tokio::time::Instant::now();
        let Ok(url) = auth.url.parse::<http::Uri>() else {
            return error;
        };
        let Some(authority) = url.authority().cloned() else {
            return error;
        };
        // A Service of the cluster: one of its endpoints; otherwise the URL's host.
        let target = match cluster {
            Some(c) => match c.pick(&[], ejections) {
                Some(e) => endpoint_uri(e, &url),
                None => return error,
            },
            None => url.clone(),
        };
        let mut req = http::Request::new(Empty::<Bytes>::new());
        *req.method_mut() = auth.method.parse().unwrap_or(http::Method::GET);
        *req.uri_mut() = target;
        let h = req.headers_mut();
        for (name, value) in original.headers {
            if matches!(
                name.as_str(),
                "connection"
                    | "keep-alive"
                    | "transfer-encoding"
                    | "upgrade"
                    | "te"
                    | "content-length"
                    | "x-forwarded-proto"
                    | "host"
            ) || crate::http::forwarding::dropped_header(
                name.as_str().as_bytes(),
                original.keep_underscores,
            ) {
                // The client's claims of who it is pass to the auth service no more than
                // to the backend; Gatehouse's are set below.
                continue;
            }
            h.append(name.clone(), value.clone());
        }
        let host = authority.host().to_string();
        let mut set = |name: &'static str, value: &str| {
            if let Ok(v) = http::HeaderValue::from_str(value) {
                h.insert(name, v);
            }
        };
        set("host", &host);
        set("x-original-url", &original.url);
        set("x-original-method", original.method);
        set("x-sent-from", "nginx-ingress-controller");
        set("x-auth-request-redirect", original.path_and_query);
        if let Some(ip) = original.client {
            set("x-real-ip", &ip.to_string());
            set("x-forwarded-for", &ip.to_string());
        }
        let due = started + CHECK_TIMEOUT;
        let answer = match tokio::time::timeout_at(due, self.client.request(req)).await {
            Ok(Ok(r)) => r,
            _ => return error,
        };
        let status = answer.status().as_u16();
        let headers = answer.headers().clone();
        // The body is not used; read it (up to a bound, within the check's time) so the
        // connection can be reused.
        let body = http_body_util::Limited::new(answer.into_body(), MAX_ANSWER);
        let _ = tokio::time::timeout_at(due, body.collect()).await;
        let header = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        match status {
            200..=299 => Decision::Allow {
                headers: auth
                    .response_headers
                    .iter()
                    .map(|n| (n.clone(), header(n)))
                    .collect(),
                set_cookies: headers
                    .get_all(http::header::SET_COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok().map(str::to_string))
                    .collect(),
            },
            401 => match &auth.signin {
                Some(signin) => Decision::Deny {
                    status: 302,
                    headers: vec![("location", signin_url(signin, &original.url))],
                },
                None => Decision::Deny {
                    status: 401,
                    headers: header("www-authenticate")
                        .map(|v| ("www-authenticate", v))
                        .into_iter()
                        .collect(),
                },
            },
            403 => Decision::Deny {
                status: 403,
                headers: vec![],
            },
            _ => error,
        }
    }
}

/// The check's URL with an endpoint of the Service in place of its host.
fn endpoint_uri(endpoint: SocketAddr, url: &http::Uri) -> http::Uri {
    let pq = url.path_and_query().map_or("/", |p| p.as_str());
    format!("http://{endpoint}{pq}")
        .parse()
        .unwrap_or_else(|_| url.clone())
}

/// nginx: `rd=<the original URL, escaped>` added to the sign-in URL, unless it has one.
fn signin_url(signin: &str, original: &str) -> String {
    if signin.contains("rd=") {
        return signin.to_string();
    }
    let sep = if signin.contains('?') { '&' } else { '?' };
    let mut escaped = String::new();
    for b in original.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            escaped.push(char::from(b));
        } else {
            escaped.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{signin}{sep}rd={escaped}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signin_urls_carry_the_original_url() {
        assert_eq!(
            signin_url("https://login.example/start", "http://a.example/x?y=1"),
            "https://login.example/start?rd=http%3A%2F%2Fa.example%2Fx%3Fy%3D1"
        );
        assert_eq!(
            signin_url("https://login.example/start?app=1", "http://a/"),
            "https://login.example/start?app=1&rd=http%3A%2F%2Fa%2F"
        );
        assert_eq!(
            signin_url("https://login.example/?rd=fixed", "http://a/"),
            "https://login.example/?rd=fixed"
        );
    }
}
