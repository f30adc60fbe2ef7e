//! What reading an Ingress's annotations gives: the TrafficPolicy spec they amount to
//! (the same type the CRD has, compiled by the same `policy::compile`), the settings only an
//! Ingress has, and what was ignored or refused.

use gatehouse_api::TrafficPolicySpec;
use gatehouse_model::ir::FixedRedirect;

/// The prefix of every ingress-nginx annotation.
pub const PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// The outcome of reading an Ingress's annotations.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parsed {
    /// Everything a TrafficPolicy can say (rate limits, source ranges, body size, affinity,
    /// external auth, timeouts, backend protocol, rewrite target, CORS), with nginx's
    /// defaults written out where the policy's would differ. `target_refs` is empty.
    pub policy: TrafficPolicySpec,
    /// What only an Ingress has: redirects, canaries, regex mode.
    pub ingress: IngressSettings,
    /// Values ignored (their default applies) and annotations not supported: each names
    /// the annotation and why.
    pub warnings: Vec<String>,
    /// Why the whole Ingress is refused (nginx would not load it either).
    pub refused: Option<String>,
}

/// The annotations with no TrafficPolicy field: they decide how an Ingress's rules become
/// routes, not what a route does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IngressSettings {
    /// Every path of the host is a case-insensitive regular expression (nginx `~*`).
    pub use_regex: bool,
    /// `/` of each host answers 302 to this path.
    pub app_root: Option<String>,
    /// permanent-redirect or temporal-redirect: every path answers with this redirect.
    pub redirect: Option<FixedRedirect>,
    /// None: the IngressClass's default (true unless its parameters say otherwise).
    pub ssl_redirect: Option<bool>,
    /// Plain HTTP is redirected to HTTPS even for hosts without TLS.
    pub force_ssl_redirect: bool,
    /// The www. twin of each host (or the host without www.) redirects to it.
    pub from_to_www_redirect: bool,
    /// The Ingress is a canary of the Ingress with the same host and path.
    pub canary: Option<Canary>,
    /// Why every path of the Ingress answers 503 (an invalid source range or auth setting:
    /// a typo never opens what was meant to be closed).
    pub denied: Option<String>,
}

/// canary: "true" and its companions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Canary {
    /// A header sending the request to the canary ("always") or not ("never").
    pub by_header: Option<String>,
    /// The header's value that sends to the canary, instead of "always".
    pub by_header_value: Option<String>,
    /// A regular expression on the header's value that sends to the canary.
    pub by_header_pattern: Option<String>,
    /// A cookie sending the request to the canary ("always") or not ("never").
    pub by_cookie: Option<String>,
    /// The canary's share of the rest, out of `weight_total`.
    pub weight: u32,
    /// What weights are out of (100 by default).
    pub weight_total: u32,
}

/// The host from-to-www-redirect sends to `host`: its www. twin, or the host without www.
pub fn www_twin(host: &str) -> String {
    match host.strip_prefix("www.") {
        Some(bare) => bare.to_string(),
        None => format!("www.{host}"),
    }
}
