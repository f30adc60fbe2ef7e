//! Paths, rewrites and redirects: rewrite-target, use-regex, app-root, temporal- and
//! permanent-redirect (an invalid URL refuses the Ingress, as ingress-nginx rejects it),
//! ssl-redirect, force-ssl-redirect, from-to-www-redirect.

use super::parsed::{IngressSettings, PREFIX};
use super::reader::Reader;
use super::values::{parse_bool, valid_chars};
use gatehouse_api::TrafficPolicySpec;
use gatehouse_model::ir::FixedRedirect;

pub fn read_paths(r: &mut Reader, policy: &mut TrafficPolicySpec, ingress: &mut IngressSettings) {
    if let Some(v) = r.get("rewrite-target") {
        if valid_chars(v, "-._~/:$") && (v.is_empty() || v.starts_with('/') || v.starts_with('$')) {
            policy.rewrite_target = Some(v.to_string());
        } else {
            r.warn("rewrite-target", v, "is not a path");
        }
    }
    if let Some(v) = r.get("use-regex") {
        match parse_bool(v) {
            Some(b) => ingress.use_regex = b,
            None => r.warn("use-regex", v, "is not a boolean"),
        }
    }
    if let Some(v) = r.get("app-root") {
        if v.starts_with('/') && valid_chars(v, "-._~/:%") {
            ingress.app_root = Some(v.to_string());
        } else {
            r.warn("app-root", v, "is not a relative path");
        }
    }
}

pub fn read_redirects(r: &mut Reader, ingress: &mut IngressSettings) {
    let code = |v: Option<&str>, range: std::ops::RangeInclusive<u16>, default: u16| {
        v.and_then(|c| c.parse::<u16>().ok())
            .filter(|c| range.contains(c))
            .unwrap_or(default)
    };
    let redirect_url = |name: &str, v: &str| -> Result<String, String> {
        if valid_chars(v, "-._~/:,?&=") {
            Ok(v.to_string())
        } else {
            Err(format!(
                "annotation {PREFIX}{name}: {v:?} has characters a redirect URL cannot have; the Ingress is not served"
            ))
        }
    };
    if let Some(v) = r.get("temporal-redirect") {
        match redirect_url("temporal-redirect", v) {
            Ok(url) if url.starts_with("http://") || url.starts_with("https://") => {
                ingress.redirect = Some(FixedRedirect {
                    location: url,
                    status: code(r.get("temporal-redirect-code"), 300..=307, 302),
                })
            }
            Ok(_) => r.warn("temporal-redirect", v, "is not an http or https URL"),
            Err(e) => r.refuse(e),
        }
    }
    if let (None, Some(v)) = (&ingress.redirect, r.get("permanent-redirect")) {
        match redirect_url("permanent-redirect", v) {
            Ok(url) => {
                ingress.redirect = Some(FixedRedirect {
                    location: url,
                    status: code(r.get("permanent-redirect-code"), 300..=308, 301),
                })
            }
            Err(e) => r.refuse(e),
        }
    }
    if let Some(v) = r.get("ssl-redirect") {
        match parse_bool(v) {
            Some(b) => ingress.ssl_redirect = Some(b),
            None => r.warn("ssl-redirect", v, "is not a boolean"),
        }
    }
    for (name, field) in [
        ("force-ssl-redirect", &mut ingress.force_ssl_redirect),
        ("from-to-www-redirect", &mut ingress.from_to_www_redirect),
    ] {
        if let Some(v) = r.get(name) {
            match parse_bool(v) {
                Some(b) => *field = b,
                None => r.warnings.push(format!(
                    "annotation {PREFIX}{name}: {v:?} is not a boolean; ignored"
                )),
            }
        }
    }
}
