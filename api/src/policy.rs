//! TrafficPolicy: what Gateway API has no field for (rate limits, source address lists,
//! request body size, HSTS, session affinity, external authorization, proxy timeouts, the
//! backend protocol, ingress-nginx's redirect and CORS behaviour), attached to HTTPRoutes
//! by `targetRefs` in the Gateway API policy attachment pattern (GEP-713).
//!
//! Every ingress-nginx annotation Gatehouse applies has a field here, so `gatehouse
//! convert` loses nothing when it moves an Ingress to an HTTPRoute.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Policies for the requests of HTTPRoutes, or of one rule of an HTTPRoute (by rule name).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "gatehouse.dev",
    version = "v1alpha1",
    kind = "TrafficPolicy",
    plural = "trafficpolicies",
    shortname = "tpol",
    doc = "Rate limits, source address lists, body size, HSTS, affinity, external auth and more for HTTPRoutes",
    status = "PolicyStatus",
    namespaced,
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.targetRefs[0].name","description":"The first HTTPRoute it applies to"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.ancestors[0].conditions[?(@.type==\"Accepted\")].status","description":"Accepted by the first Gateway of its routes"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.ancestors[0].conditions[?(@.type==\"Accepted\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicySpec {
    /// HTTPRoutes of the policy's namespace; `sectionName` picks one rule by its name.
    /// Where a rule policy and a route policy both set a field, the rule policy's wins;
    /// between two policies on one target, the oldest.
    #[schemars(length(min = 1, max = 16))]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Requests per client address; over the limit is answered 503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitPolicy>,
    /// Client addresses let in or refused (403).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_access: Option<SourceAccessPolicy>,
    /// Largest request body in bytes; a larger one is answered 413.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_body_bytes: Option<u64>,
    /// Strict-Transport-Security on answers over HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsts: Option<crate::Hsts>,
    /// How an endpoint is chosen: a cookie pinning a client to one, or a hash of parts
    /// of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<SessionAffinityPolicy>,
    /// Every request is first checked by another HTTP service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_auth: Option<ExternalAuthPolicy>,
    /// Limits on the connection to the backend, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_timeouts: Option<ProxyTimeoutsPolicy>,
    /// How the backend is spoken to; HTTP when unset. HTTPS and GRPCS are TLS without
    /// certificate verification (as ingress-nginx's backend-protocol; use a
    /// BackendTLSPolicy to verify).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_protocol: Option<BackendProtocol>,
    /// On plain-HTTP listeners, answer 308 with the https:// URL instead (paths under
    /// /.well-known/acme-challenge excepted), as ingress-nginx's ssl-redirect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_redirect: Option<bool>,
    /// With a RegularExpression path match, the path sent to the backend: this template
    /// with `$1`..`$9` replaced by the match's groups (ingress-nginx rewrite-target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_target: Option<String>,
    /// How the rules' RequestRedirect filters treat the request's query and a trailing
    /// slash (ingress-nginx's redirects drop the one or the other).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<RedirectPolicy>,
    /// Cross-origin resource sharing with ingress-nginx's semantics (enable-cors); for
    /// new routes prefer the HTTPRoute CORS filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsPolicy>,
}

/// A Gateway API LocalPolicyTargetReferenceWithSectionName.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTargetReference {
    /// gateway.networking.k8s.io
    pub group: String,
    /// HTTPRoute
    pub kind: String,
    pub name: String,
    /// A rule's name; the whole route when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitPolicy {
    /// Requests per second per client address (nginx's leaky bucket, no delay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// Burst allowed above the rate, as a multiple of it (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_multiplier: Option<u32>,
    /// Requests in progress at once per client address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<u32>,
    /// Networks never limited (CIDR or address).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exempt: Vec<String>,
    /// Count IPv6 clients by this prefix length (64 counts one /64 as one client, so a
    /// host cycling through its addresses is one client); each address when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 8, max = 128))]
    pub ipv6_prefix: Option<u8>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceAccessPolicy {
    /// When not empty, only these networks are let in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Networks refused, checked first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionAffinityPolicy {
    /// A cookie the data plane sets (wins over hashBy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<CookieAffinityPolicy>,
    /// Consistent hashing of these parts joined: nginx variables from a fixed vocabulary
    /// (`$request_uri`, `$uri`, `$remote_addr`, `$host`, `$http_<header>`,
    /// `$cookie_<name>`, `$arg_<name>`) and plain text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_by: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CookieAffinityPolicy {
    pub name: String,
    /// The route's path when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
    /// Seconds from now, written as an Expires date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Secure always; otherwise only on HTTPS requests.
    #[serde(default)]
    pub secure: bool,
    /// The cookie pins one endpoint while it lives; otherwise it holds a key hashed onto
    /// the endpoints ("balanced").
    #[serde(default)]
    pub persistent: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalAuthPolicy {
    /// http://host[:port]/path?query; a host `svc.ns` (or `svc.ns.svc[.cluster.local]`)
    /// goes to that Service's endpoints.
    pub url: String,
    /// The check's method (default GET).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Headers of the check's answer copied onto the request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_headers: Vec<String>,
    /// Where a 401 sends the client instead (with `rd=` the original URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signin: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyTimeoutsPolicy {
    /// Establishing a connection (504 when exceeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_seconds: Option<u64>,
    /// Longest wait between two writes to the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_seconds: Option<u64>,
    /// Longest wait between two reads from the backend (504 when exceeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_seconds: Option<u64>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum BackendProtocol {
    Http,
    Https,
    Grpc,
    Grpcs,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedirectPolicy {
    /// The Location carries no query.
    #[serde(default)]
    pub drop_query: bool,
    /// A trailing slash of the path is dropped ("/a/" redirects to "/a").
    #[serde(default)]
    pub strip_trailing_slash: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CorsPolicy {
    /// Origins ("https://a.example", "https://*.example" for one label), or ["*"].
    pub allow_origins: Vec<String>,
    pub allow_methods: String,
    pub allow_headers: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub expose_headers: String,
    #[serde(default)]
    pub allow_credentials: bool,
    pub max_age: u32,
}

/// Gateway API PolicyStatus: conditions per ancestor (the Gateways of the targeted routes).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    #[serde(default)]
    pub ancestors: Vec<PolicyAncestorStatus>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyAncestorStatus {
    pub ancestor_ref: AncestorReference,
    pub controller_name: String,
    #[serde(default)]
    pub conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AncestorReference {
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}
