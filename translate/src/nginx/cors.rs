//! enable-cors and the cors-* annotations, with ingress-nginx's defaults.

use super::parsed::PREFIX;
use super::reader::Reader;
use super::values::{cors_origin_ok, parse_bool, valid_chars};
use gatehouse_api::CorsPolicy;

/// cors-allow-methods' default.
pub const CORS_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
/// cors-allow-headers' default.
pub const CORS_HEADERS: &str = "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";
/// cors-max-age's default: 20 days.
const CORS_MAX_AGE: u32 = 1_728_000;

pub fn read_cors(r: &mut Reader) -> Option<CorsPolicy> {
    match r.get("enable-cors").map(parse_bool) {
        Some(Some(true)) => {}
        Some(Some(false)) | None => return None,
        Some(None) => {
            r.warnings.push(format!(
                "annotation {PREFIX}enable-cors: not a boolean; ignored"
            ));
            return None;
        }
    }
    let mut origins: Vec<String> = Vec::new();
    for o in r
        .get("cors-allow-origin")
        .unwrap_or("*")
        .split(',')
        .map(str::trim)
    {
        if cors_origin_ok(o) {
            origins.push(o.to_string());
        } else {
            r.warnings.push(format!(
                "annotation {PREFIX}cors-allow-origin: entry {o:?} is not an origin; skipped"
            ));
        }
    }
    if origins.iter().any(|o| o == "*") {
        origins = vec!["*".to_string()];
    }
    let allow_credentials = match r.get("cors-allow-credentials").map(parse_bool) {
        Some(Some(b)) => b,
        None => true,
        Some(None) => {
            r.warnings.push(format!(
                "annotation {PREFIX}cors-allow-credentials: not a boolean; ignored"
            ));
            true
        }
    };
    let list = |name: &str, default: &str, r: &mut Reader| match r.get(name) {
        None => default.to_string(),
        Some(v) if valid_chars(v, ", -_*") => v.to_string(),
        Some(v) => {
            r.warnings.push(format!(
                "annotation {PREFIX}{name}: {v:?} is not a list of names; ignored"
            ));
            default.to_string()
        }
    };
    let max_age = match r.get("cors-max-age").map(str::parse::<u32>) {
        None => CORS_MAX_AGE,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            r.warnings.push(format!(
                "annotation {PREFIX}cors-max-age: not a number of seconds; ignored"
            ));
            CORS_MAX_AGE
        }
    };
    Some(CorsPolicy {
        allow_origins: origins,
        allow_methods: list("cors-allow-methods", CORS_METHODS, r),
        allow_headers: list("cors-allow-headers", CORS_HEADERS, r),
        expose_headers: list("cors-expose-headers", "", r),
        allow_credentials,
        max_age,
    })
}
