//! A request's span, from what both request paths know of it, with OpenTelemetry's HTTP
//! server attribute names where one exists and `gatehouse.*` for the rest. Texts from the
//! client (path, host, user agent) are cut as the access log cuts them.

use super::context::{TraceContext, unix_nanos};
use crate::http::access_log::bounded;
use gatehouse_model::ir::RouteSource;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, Status, span::SpanKind, status::StatusCode};
use std::net::{IpAddr, SocketAddr};

/// What a request came to.
pub struct SpanFacts<'a> {
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    pub host: &'a str,
    /// "1.0", "1.1", "2".
    pub protocol_version: &'static str,
    pub tls: bool,
    pub client: Option<IpAddr>,
    /// 0: no answer was sent.
    pub status: u16,
    /// "proxied", or why Gatehouse answered itself.
    pub outcome: &'a str,
    pub gateway: &'a str,
    pub listener: &'a str,
    pub route: Option<&'a RouteSource>,
    pub upstream: Option<SocketAddr>,
    pub user_agent: Option<&'a str>,
    pub request_id: Option<&'a str>,
}

/// A text attribute, cut to the access log's bound.
pub(super) fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(bounded(value).to_string())),
        }),
        ..KeyValue::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..KeyValue::default()
    }
}

/// The span of a request that ends now. Named `METHOD route` (`GET HTTPRoute ns/name`),
/// or `METHOD` alone when no route took it; kind server; status error for a 5xx or no
/// answer.
pub fn span_of(ctx: &TraceContext, f: &SpanFacts<'_>) -> Span {
    let mut attributes = vec![
        text("http.request.method", f.method),
        text("url.path", f.path),
        text("url.scheme", if f.tls { "https" } else { "http" }),
        text("server.address", f.host),
        text("network.protocol.version", f.protocol_version),
        text("gatehouse.gateway", f.gateway),
        text("gatehouse.listener", f.listener),
        text("gatehouse.outcome", f.outcome),
    ];
    if f.status != 0 {
        attributes.push(int("http.response.status_code", i64::from(f.status)));
    }
    if let Some(c) = f.client {
        attributes.push(text("client.address", &c.to_canonical().to_string()));
    }
    if let Some(r) = f.route {
        attributes.push(text("gatehouse.route.kind", &r.kind));
        attributes.push(text("gatehouse.route.namespace", &r.namespace));
        attributes.push(text("gatehouse.route.name", &r.name));
        attributes.push(int("gatehouse.route.rule", r.rule as i64));
    }
    if let Some(u) = f.upstream {
        attributes.push(text(
            "network.peer.address",
            &u.ip().to_canonical().to_string(),
        ));
        attributes.push(int("network.peer.port", i64::from(u.port())));
    }
    if let Some(ua) = f.user_agent {
        attributes.push(text("user_agent.original", ua));
    }
    if let Some(id) = f.request_id {
        attributes.push(text("gatehouse.request_id", id));
    }
    let name = match f.route {
        Some(r) => format!("{} {} {}/{}", f.method, r.kind, r.namespace, r.name),
        None => f.method.to_string(),
    };
    let failed = f.status == 0 || f.status >= 500;
    Span {
        trace_id: ctx.trace_id.to_vec(),
        span_id: ctx.span_id.to_vec(),
        parent_span_id: ctx.parent.map(|p| p.to_vec()).unwrap_or_default(),
        // The W3C flags (sampled), and whether the parent is remote (it is the client's).
        flags: 1 | 0x100 | if ctx.parent.is_some() { 0x200 } else { 0 },
        name: bounded(&name).to_string(),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: ctx.start_unix_nanos,
        end_time_unix_nano: unix_nanos().max(ctx.start_unix_nanos),
        attributes,
        status: Some(Status {
            message: if failed {
                f.outcome.to_string()
            } else {
                String::new()
            },
            code: if failed {
                StatusCode::Error as i32
            } else {
                StatusCode::Unset as i32
            },
        }),
        ..Span::default()
    }
}
