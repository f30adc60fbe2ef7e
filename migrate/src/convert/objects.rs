//! The typed Gateway API and Gatehouse objects `convert` writes: HTTPRoute rules, matches,
//! backend references and redirect filters (gateway-api's types), TrafficPolicies (ours).
//! Serialised by serde, so field names and value spellings are the APIs' own.

use gatehouse_api::{PolicyTargetReference, TrafficPolicy, TrafficPolicySpec};
use gatehouse_model::ir::FixedRedirect;
use gatehouse_translate::GATEWAY_GROUP;
use gatehouse_translate::gwapi::httproutes::{
    HttpRoute, HttpRouteParentRefs, HttpRouteRules, HttpRouteRulesBackendRefs,
    HttpRouteRulesFilters, HttpRouteRulesFiltersRequestRedirect,
    HttpRouteRulesFiltersRequestRedirectPath, HttpRouteRulesFiltersRequestRedirectPathType,
    HttpRouteRulesFiltersRequestRedirectScheme, HttpRouteRulesFiltersType, HttpRouteRulesMatches,
    HttpRouteRulesMatchesHeaders, HttpRouteRulesMatchesHeadersType, HttpRouteRulesMatchesPath,
    HttpRouteRulesMatchesPathType, HttpRouteSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Annotation on every converted object naming the Ingress it came from.
pub const CONVERTED_FROM: &str = "gatehouse.dev/converted-from";

/// Rules an HTTPRoute may have (the Gateway API CRD's maxItems).
pub const MAX_RULES: usize = 16;

/// One object `convert` writes.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(untagged)]
pub enum Converted {
    Route(Box<HttpRoute>),
    Policy(Box<TrafficPolicy>),
}

/// Name, namespace and the annotation naming the Ingress an object came from.
pub fn metadata(name: &str, namespace: &str, from: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        annotations: Some([(CONVERTED_FROM.to_string(), from.to_string())].into()),
        ..Default::default()
    }
}

/// An HTTPRoute with its parents, hostnames (none: any host) and rules.
pub fn route(
    metadata: ObjectMeta,
    parents: Vec<HttpRouteParentRefs>,
    hostnames: &[String],
    rules: Vec<HttpRouteRules>,
) -> HttpRoute {
    HttpRoute {
        metadata,
        spec: HttpRouteSpec {
            hostnames: (!hostnames.is_empty()).then(|| hostnames.to_vec()),
            parent_refs: Some(parents),
            rules: Some(rules),
            use_default_gateways: None,
        },
        status: None,
    }
}

/// A TrafficPolicy on HTTPRoutes of its namespace, by name.
pub fn policy(metadata: ObjectMeta, targets: &[String], spec: TrafficPolicySpec) -> TrafficPolicy {
    let target_refs = targets
        .iter()
        .map(|t| PolicyTargetReference {
            group: GATEWAY_GROUP.into(),
            kind: "HTTPRoute".into(),
            name: t.clone(),
            section_name: None,
        })
        .collect();
    TrafficPolicy {
        metadata,
        spec: TrafficPolicySpec {
            target_refs,
            ..spec
        },
        status: None,
    }
}

/// A parentRef to a Gateway (its namespace only when it differs from the route's).
pub fn parent(
    gateway: &str,
    namespace: Option<&str>,
    section: Option<&str>,
) -> HttpRouteParentRefs {
    HttpRouteParentRefs {
        name: gateway.to_string(),
        namespace: namespace.map(str::to_string),
        section_name: section.map(str::to_string),
        ..Default::default()
    }
}

/// How a converted rule matches its path.
pub enum PathKind {
    Exact,
    Prefix,
    Regex,
}

/// One match: a path, and a header when given.
pub fn path_match(
    kind: &PathKind,
    value: &str,
    header: Option<HttpRouteRulesMatchesHeaders>,
) -> HttpRouteRulesMatches {
    let r#type = match kind {
        PathKind::Exact => HttpRouteRulesMatchesPathType::Exact,
        PathKind::Prefix => HttpRouteRulesMatchesPathType::PathPrefix,
        PathKind::Regex => HttpRouteRulesMatchesPathType::RegularExpression,
    };
    HttpRouteRulesMatches {
        path: Some(HttpRouteRulesMatchesPath {
            r#type: Some(r#type),
            value: Some(value.to_string()),
        }),
        headers: header.map(|h| vec![h]),
        ..Default::default()
    }
}

/// A header match: exact, or a regular expression.
pub fn header(name: &str, value: String, regex: bool) -> HttpRouteRulesMatchesHeaders {
    HttpRouteRulesMatchesHeaders {
        name: name.to_string(),
        value,
        r#type: regex.then_some(HttpRouteRulesMatchesHeadersType::RegularExpression),
    }
}

/// A rule: one match, the filters, and the backends.
pub fn rule(
    matches: HttpRouteRulesMatches,
    filters: Vec<HttpRouteRulesFilters>,
    backends: Vec<HttpRouteRulesBackendRefs>,
) -> HttpRouteRules {
    HttpRouteRules {
        matches: Some(vec![matches]),
        filters: (!filters.is_empty()).then_some(filters),
        backend_refs: (!backends.is_empty()).then_some(backends),
        ..Default::default()
    }
}

/// A backendRef to a Service port of the route's namespace.
pub fn backend(service: &str, port: i32) -> HttpRouteRulesBackendRefs {
    HttpRouteRulesBackendRefs {
        name: service.to_string(),
        port: Some(port),
        ..Default::default()
    }
}

/// A RequestRedirect filter.
pub fn redirect(redirect: HttpRouteRulesFiltersRequestRedirect) -> HttpRouteRulesFilters {
    HttpRouteRulesFilters {
        r#type: HttpRouteRulesFiltersType::RequestRedirect,
        request_redirect: Some(redirect),
        ..Default::default()
    }
}

/// A redirect replacing the whole path.
pub fn full_path(path: &str) -> HttpRouteRulesFiltersRequestRedirectPath {
    HttpRouteRulesFiltersRequestRedirectPath {
        r#type: HttpRouteRulesFiltersRequestRedirectPathType::ReplaceFullPath,
        replace_full_path: Some(path.to_string()),
        replace_prefix_match: None,
    }
}

/// permanent-/temporal-redirect as a RequestRedirect; None when no RequestRedirect says
/// the same (a query in the URL, a code other than 301, 302, 303, 307, 308, a scheme other
/// than http or https).
pub fn fixed_redirect(r: &FixedRedirect) -> Option<HttpRouteRulesFilters> {
    let (scheme, rest) = r.location.split_once("://")?;
    if rest.contains('?') || !matches!(r.status, 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let scheme = match scheme {
        "http" => HttpRouteRulesFiltersRequestRedirectScheme::Http,
        "https" => HttpRouteRulesFiltersRequestRedirectScheme::Https,
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse::<u16>().ok()?)),
        None => (authority, None),
    };
    Some(redirect(HttpRouteRulesFiltersRequestRedirect {
        scheme: Some(scheme),
        hostname: Some(host.to_string()),
        path: Some(full_path(path)),
        port: port.map(i32::from),
        status_code: Some(i64::from(r.status)),
    }))
}
