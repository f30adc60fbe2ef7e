//! ingress-nginx annotations (`nginx.ingress.kubernetes.io/*`), read into the same typed
//! TrafficPolicy spec the CRD has (`gatehouse_api::TrafficPolicySpec`, compiled into the
//! model by `policy::compile` for both front-ends) plus the settings only an Ingress has
//! (`IngressSettings`). Never into configuration text: a value is parsed, checked and kept
//! as data, or refused.
//!
//! What an invalid value does follows ingress-nginx v1.15 (docs/ingress.md): most are
//! ignored with a warning and the default applies; a few refuse the whole Ingress (the
//! redirect group, and every `*-snippet`, which Gatehouse never runs); a bad source range
//! denies the Ingress's paths (503), so a typo never opens what was meant to be closed.

mod affinity;
mod auth;
mod canary;
mod cors;
mod limits;
mod parsed;
mod paths;
mod proxy;
mod reader;
pub mod values;

pub use cors::{CORS_HEADERS, CORS_METHODS};
pub use parsed::{Canary, IngressSettings, PREFIX, Parsed, www_twin};

use reader::Reader;
use std::collections::BTreeMap;

/// The annotations translation applies to traffic; any other under the prefix gets a
/// warning (an Event in Kubernetes) saying it is ignored.
const APPLIED: &[&str] = &[
    "app-root",
    "temporal-redirect",
    "temporal-redirect-code",
    "permanent-redirect",
    "permanent-redirect-code",
    "ssl-redirect",
    "force-ssl-redirect",
    "proxy-connect-timeout",
    "proxy-send-timeout",
    "proxy-read-timeout",
    "proxy-body-size",
    "backend-protocol",
    "canary",
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
    "canary-by-cookie",
    "canary-weight",
    "canary-weight-total",
    "rewrite-target",
    "use-regex",
    "enable-cors",
    "cors-allow-origin",
    "cors-allow-methods",
    "cors-allow-headers",
    "cors-allow-credentials",
    "cors-expose-headers",
    "cors-max-age",
    "from-to-www-redirect",
    "allowlist-source-range",
    "whitelist-source-range",
    "denylist-source-range",
    "limit-rps",
    "limit-rpm",
    "limit-connections",
    "limit-burst-multiplier",
    "limit-allowlist",
    "limit-whitelist",
    "upstream-hash-by",
    "affinity",
    "affinity-mode",
    "session-cookie-name",
    "session-cookie-path",
    "session-cookie-max-age",
    "session-cookie-expires",
    "session-cookie-samesite",
    "session-cookie-domain",
    "session-cookie-secure",
    "auth-url",
    "auth-method",
    "auth-response-headers",
    "auth-signin",
];

/// Reads an Ingress's annotations, in ingress-nginx's order of checks (which decides which
/// refusal is reported when there are several).
pub fn parse(annotations: &BTreeMap<String, String>) -> Parsed {
    let mut r = Reader::new(annotations);
    let mut p = Parsed::default();

    // Snippets are configuration text: never run, and the Ingress is refused so nobody
    // believes it is in effect.
    for key in r.keys() {
        if let Some(name) = key.strip_prefix(PREFIX)
            && name.ends_with("-snippet")
        {
            r.refuse(format!(
                "annotation {key}: snippets are configuration text, which Gatehouse never runs; the Ingress is not served"
            ));
        }
    }
    paths::read_paths(&mut r, &mut p.policy, &mut p.ingress);
    paths::read_redirects(&mut r, &mut p.ingress);
    p.ingress.canary = canary::read_canary(&mut r);
    proxy::read_proxy(&mut r, &mut p.policy);
    p.policy.cors = cors::read_cors(&mut r);
    limits::read_source_ranges(&mut r, &mut p.policy);
    limits::read_rate_limits(&mut r, &mut p.policy);
    p.policy.external_auth = auth::read_auth(&mut r);
    p.policy.session_affinity = affinity::read_affinity(&mut r);

    // Everything else under the prefix: not supported (yet), said once per annotation.
    for key in r.keys() {
        if let Some(name) = key.strip_prefix(PREFIX)
            && !APPLIED.contains(&name)
            && !name.ends_with("-snippet")
        {
            r.warnings.push(format!(
                "annotation {key} is not supported by Gatehouse yet; ignored"
            ));
        }
    }
    p.warnings = r.warnings;
    p.refused = r.refused;
    p.ingress.denied = r.denied;
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_api::BackendProtocol;
    use gatehouse_model::ir::FixedRedirect;

    fn parse_map(pairs: &[(&str, &str)]) -> Parsed {
        parse(
            &pairs
                .iter()
                .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn defaults_are_nginx_defaults() {
        let p = parse_map(&[]);
        assert_eq!(p, Parsed::default(), "no policy, no Ingress settings");
        assert_eq!(p.ingress.ssl_redirect, None, "the class decides");
        assert_eq!(p.policy.max_request_body_bytes, None);
        assert_eq!(p.policy.proxy_timeouts, None);
    }

    #[test]
    fn snippets_refuse_the_ingress() {
        let p = parse_map(&[("configuration-snippet", "more_set_headers \"x: y\";")]);
        assert!(p.refused.unwrap().contains("configuration-snippet"));
        let p = parse_map(&[("server-snippet", "")]);
        assert!(p.refused.is_some(), "even empty");
    }

    #[test]
    fn booleans_are_go_booleans() {
        let ssl = |v: &str| parse_map(&[("ssl-redirect", v)]).ingress.ssl_redirect;
        assert_eq!(ssl("false"), Some(false));
        assert_eq!(ssl("F"), Some(false));
        assert_eq!(ssl("True"), Some(true));
        let p = parse_map(&[("ssl-redirect", "no")]);
        assert_eq!(p.ingress.ssl_redirect, None, "invalid: default kept");
        assert_eq!(p.warnings.len(), 1);
    }

    #[test]
    fn redirects_codes_and_refusal() {
        let p = parse_map(&[("permanent-redirect", "https://new.example.com/x")]);
        assert_eq!(
            p.ingress.redirect,
            Some(FixedRedirect {
                location: "https://new.example.com/x".into(),
                status: 301
            })
        );
        let p = parse_map(&[
            ("permanent-redirect", "https://a.example/"),
            ("permanent-redirect-code", "308"),
        ]);
        assert_eq!(p.ingress.redirect.unwrap().status, 308);
        let p = parse_map(&[
            ("permanent-redirect", "https://a.example/"),
            ("permanent-redirect-code", "200"),
        ]);
        assert_eq!(
            p.ingress.redirect.unwrap().status,
            301,
            "out of range: default"
        );
        // Temporal wins over permanent; its range ends at 307.
        let p = parse_map(&[
            ("permanent-redirect", "https://a.example/"),
            ("temporal-redirect", "https://b.example/"),
            ("temporal-redirect-code", "308"),
        ]);
        assert_eq!(
            p.ingress.redirect,
            Some(FixedRedirect {
                location: "https://b.example/".into(),
                status: 302
            })
        );
        let p = parse_map(&[("permanent-redirect", "https://a.example/{x}")]);
        assert!(p.refused.is_some());
    }

    #[test]
    fn canary_needs_canary_true() {
        let p = parse_map(&[("canary-weight", "30")]);
        assert_eq!(p.ingress.canary, None);
        let p = parse_map(&[
            ("canary", "true"),
            ("canary-weight", "30"),
            ("canary-by-header", "X-Canary"),
        ]);
        let c = p.ingress.canary.unwrap();
        assert_eq!(
            (c.weight, c.weight_total, c.by_header.as_deref()),
            (30, 100, Some("X-Canary"))
        );
    }

    #[test]
    fn sizes_timeouts_protocols() {
        assert_eq!(
            parse_map(&[("proxy-body-size", "8m")])
                .policy
                .max_request_body_bytes,
            Some(8 << 20)
        );
        assert_eq!(
            parse_map(&[("proxy-body-size", "0")])
                .policy
                .max_request_body_bytes,
            None
        );
        assert_eq!(
            parse_map(&[("proxy-body-size", "512")])
                .policy
                .max_request_body_bytes,
            Some(512)
        );
        assert_eq!(
            parse_map(&[("proxy-body-size", "1t")])
                .policy
                .max_request_body_bytes,
            None
        );
        assert_eq!(
            parse_map(&[("proxy-read-timeout", "5s")])
                .policy
                .proxy_timeouts,
            None
        );
        assert_eq!(
            parse_map(&[("proxy-read-timeout", "5")])
                .policy
                .proxy_timeouts
                .and_then(|t| t.read_seconds),
            Some(5)
        );
        assert_eq!(
            parse_map(&[("backend-protocol", "grpc")])
                .policy
                .backend_protocol,
            Some(BackendProtocol::Grpc)
        );
        assert_eq!(
            parse_map(&[("backend-protocol", "FCGI")])
                .policy
                .backend_protocol,
            None,
            "HTTP: no field"
        );
    }

    #[test]
    fn cors_defaults_and_origins() {
        let c = parse_map(&[("enable-cors", "true")]).policy.cors.unwrap();
        assert_eq!(c.allow_origins, vec!["*"]);
        assert!(c.allow_credentials);
        assert_eq!(c.max_age, 1_728_000);
        assert_eq!(c.allow_methods, CORS_METHODS);
        let p = parse_map(&[
            ("enable-cors", "true"),
            (
                "cors-allow-origin",
                "https://a.example, https://*.b.example:8443, not an origin",
            ),
        ]);
        assert_eq!(
            p.policy.cors.unwrap().allow_origins,
            vec!["https://a.example", "https://*.b.example:8443"]
        );
        assert_eq!(
            p.warnings
                .iter()
                .filter(|w| w.contains("is not an origin"))
                .count(),
            1
        );
    }

    #[test]
    fn unknown_annotations_are_reported() {
        let p = parse_map(&[("limit-rate", "5"), ("app-root", "/app")]);
        assert_eq!(p.ingress.app_root.as_deref(), Some("/app"));
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].contains("limit-rate"));
        // Read, but not applied to traffic yet: said so.
        let p = parse_map(&[("auth-keepalive", "5")]);
        assert!(p.warnings[0].contains("not supported by Gatehouse yet"));
    }

    #[test]
    fn ranges_and_limits() {
        let p = parse_map(&[
            ("whitelist-source-range", "10.0.0.0/8, 192.0.2.7"),
            ("limit-rps", "5"),
            ("limit-whitelist", "10.1.0.0/16"),
        ]);
        assert_eq!(
            p.policy.source_access.unwrap().allow,
            vec!["10.0.0.0/8", "192.0.2.7"]
        );
        let limit = p.policy.rate_limit.unwrap();
        assert_eq!(limit.requests_per_second, Some(5));
        assert_eq!(
            limit.burst_multiplier,
            Some(5),
            "nginx's default, written out"
        );
        assert_eq!(limit.exempt, vec!["10.1.0.0/16"]);
        // A bad range closes the paths; a bad rate refuses the Ingress.
        let p = parse_map(&[("denylist-source-range", "10.0.0.0/33")]);
        assert!(p.ingress.denied.is_some() && p.refused.is_none());
        let p = parse_map(&[("limit-rpm", "ten")]);
        assert!(p.refused.is_some());
    }
}
