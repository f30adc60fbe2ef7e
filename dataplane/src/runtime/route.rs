//! A compiled route: its model route plus what serving needs compiled (matchers, backends
//! as clusters, mirrors, CORS, access lists, limits, external auth), and how a model route
//! is compiled into one. How a request is matched against it is in `lookup`.

use super::cluster::Cluster;
use crate::policies::limits::{Access, Limit};
use gatehouse_model::ir::{BackendTarget, Cors, Filter, PathMatch, StringMatch, UpstreamProtocol};
use gatehouse_model::validate::anchored_regex;
use std::sync::Arc;

/// A route ready to serve: its model route (`Deref`: source, filters, timeouts, retry,
/// body limit and balance are read there, not copied) plus what serving needs compiled:
/// matchers, backends as clusters, access lists and limits. Rare parts are boxed, so ten
/// thousand routes cost little more than their model.
pub struct CompiledRoute {
    /// The model route it was compiled from.
    pub model: Arc<gatehouse_model::ir::Route>,
    pub path: PathRule,
    pub method: Option<http::Method>,
    pub headers: Vec<(http::HeaderName, ValueRule)>,
    pub query: Vec<(String, ValueRule)>,
    pub backends: Vec<CompiledBackend>,
    pub total_weight: u64,
    /// Where copies of each request go (RequestMirror filters).
    pub mirrors: Vec<CompiledMirror>,
    pub cors: Option<Box<Cors>>,
    pub nginx_cors: Option<Box<gatehouse_model::ir::NginxCors>>,
    pub access: Option<Box<Access>>,
    pub rate_limit: Option<Box<Limit>>,
    /// The check and, when it names a Service, that Service's cluster.
    pub external_auth: Option<Box<(gatehouse_model::ir::ExternalAuth, Option<Arc<Cluster>>)>>,
    /// The Strict-Transport-Security value for HTTPS answers.
    pub hsts: Option<String>,
    /// Served by the direct HTTP/1 path (`http::direct`): no filters or policies, and every
    /// backend a plain HTTP/1 cluster, so proxying is forwarding plus X-Forwarded-*.
    pub direct: bool,
    /// Where its requests are counted (the same series for the same Gateway, listener and
    /// route in every version).
    pub series: Arc<crate::metrics::RouteSeries>,
}

impl CompiledRoute {
    /// The backend a request goes to, by weight, with its index; None when every weight is
    /// 0 (the request is answered 500). Both request paths choose through here, so a route
    /// gives one answer whichever path serves it.
    pub fn choose_backend(&self) -> Option<(usize, &CompiledBackend)> {
        if self.total_weight == 0 {
            return None;
        }
        if let [only] = self.backends.as_slice() {
            return Some((0, only));
        }
        let sample = rand::random_range(0..self.total_weight);
        let mut acc = 0u64;
        self.backends.iter().enumerate().find(|(_, b)| {
            acc += u64::from(b.weight);
            sample < acc
        })
    }
}

impl std::ops::Deref for CompiledRoute {
    type Target = gatehouse_model::ir::Route;

    fn deref(&self) -> &Self::Target {
        &self.model
    }
}

/// A RequestMirror filter: the cluster copies go to, and the share of requests copied
/// (`numerator` in `denominator`).
pub struct CompiledMirror {
    pub cluster: Arc<Cluster>,
    pub numerator: u32,
    pub denominator: u32,
}

impl CompiledMirror {
    /// Whether this request is mirrored, given a uniform sample in [0, denominator).
    pub fn takes(&self, sample: u32) -> bool {
        sample < self.numerator
    }
}

/// A route's path match.
pub enum PathRule {
    Exact(String),
    Prefix(String),
    Regex(regex::Regex),
}

/// A header or query parameter value match.
pub enum ValueRule {
    Exact(String),
    Regex(regex::Regex),
}

/// One backend of a route: its weight, where it sends, and its own filters.
pub struct CompiledBackend {
    pub weight: u32,
    pub target: Target,
    pub filters: Vec<Filter>,
}

/// Where a backend sends: a cluster, or nowhere (why, answered 500).
pub enum Target {
    Cluster(Arc<Cluster>),
    Invalid(String),
}

/// Compiles one model route, its clusters found by `cluster`.
pub(super) fn compile_route(
    r: &Arc<gatehouse_model::ir::Route>,
    cluster: &dyn Fn(&str) -> Option<Arc<Cluster>>,
    series: Arc<crate::metrics::RouteSeries>,
) -> Result<CompiledRoute, String> {
    let regex = |p: &str| anchored_regex(p).map_err(|e| format!("invalid regex {p:?}: {e}"));
    let value = |v: &StringMatch| -> Result<ValueRule, String> {
        Ok(match v {
            StringMatch::Exact(s) => ValueRule::Exact(s.clone()),
            StringMatch::Regex(p) => ValueRule::Regex(regex(p)?),
        })
    };
    let m = &r.matcher;
    let path = match &m.path {
        PathMatch::Exact(p) => PathRule::Exact(p.clone()),
        PathMatch::Prefix(p) => PathRule::Prefix(p.clone()),
        PathMatch::Regex(p) => PathRule::Regex(regex(p)?),
    };
    let method = m
        .method
        .as_deref()
        .map(|s| http::Method::from_bytes(s.as_bytes()).map_err(|e| format!("method {s:?}: {e}")))
        .transpose()?;
    let headers = m
        .headers
        .iter()
        .map(|h| {
            let name = http::HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|e| format!("header name {:?}: {e}", h.name))?;
            Ok((name, value(&h.value)?))
        })
        .collect::<Result<_, String>>()?;
    let query = m
        .query
        .iter()
        .map(|q| Ok((q.name.clone(), value(&q.value)?)))
        .collect::<Result<_, String>>()?;
    let backends: Vec<CompiledBackend> = r
        .backends
        .iter()
        .map(|b| CompiledBackend {
            weight: b.weight,
            target: match &b.target {
                BackendTarget::Cluster(k) => match cluster(k) {
                    Some(c) => Target::Cluster(c),
                    None => Target::Invalid(format!("unknown cluster {k}")),
                },
                BackendTarget::Invalid(reason) => Target::Invalid(reason.clone()),
            },
            filters: b.filters.clone(),
        })
        .collect();
    let mirrors = r
        .filters
        .iter()
        .filter_map(|f| match f {
            Filter::Mirror(m) => Some(m),
            _ => None,
        })
        .filter_map(|m| match &m.target {
            // A mirror whose backend cannot be served mirrors nothing; the route still serves.
            BackendTarget::Cluster(k) => cluster(k).map(|c| CompiledMirror {
                cluster: c,
                numerator: m.numerator.min(m.denominator),
                denominator: m.denominator.max(1),
            }),
            BackendTarget::Invalid(_) => None,
        })
        .collect();
    let cors = r.filters.iter().find_map(|f| match f {
        Filter::Cors(c) => Some(c.clone()),
        _ => None,
    });
    let direct = r.filters.is_empty()
        && r.timeouts.is_default()
        && r.retry.is_none()
        && r.access.is_none()
        && r.rate_limit.is_none()
        && r.balance.is_none()
        && r.external_auth.is_none()
        && r.hsts.is_none()
        && !backends.is_empty()
        && backends.iter().all(|b| {
            b.filters.is_empty()
                && matches!(&b.target, Target::Cluster(c)
                    if c.protocol == UpstreamProtocol::Http1 && c.tls.is_none())
        });
    Ok(CompiledRoute {
        series,
        direct,
        model: r.clone(),
        path,
        method,
        headers,
        query,
        mirrors,
        cors: cors.map(Box::new),
        nginx_cors: r.filters.iter().find_map(|f| match f {
            Filter::NginxCors(c) => Some(Box::new(c.clone())),
            _ => None,
        }),
        access: r
            .access
            .as_ref()
            .map(|a| Access::compile(a).map(Box::new))
            .transpose()?,
        rate_limit: r
            .rate_limit
            .as_ref()
            .map(|l| Limit::compile(l).map(Box::new))
            .transpose()?,
        hsts: r.hsts.as_ref().map(|h| h.header_value()),
        external_auth: match &r.external_auth {
            None => None,
            Some(a) => {
                let cluster = match &a.cluster {
                    None => None,
                    Some(k) => Some(
                        cluster(k).ok_or_else(|| format!("external auth: cluster {k} missing"))?,
                    ),
                };
                Some(Box::new(((**a).clone(), cluster)))
            }
        },
        total_weight: backends.iter().map(|b| u64::from(b.weight)).sum(),
        backends,
    })
}
