//! Canary Ingresses: only with `canary: "true"`; otherwise the canary-* annotations are
//! ignored, as ingress-nginx does.

use super::parsed::{Canary, PREFIX};
use super::reader::Reader;
use super::values::{parse_bool, valid_chars};

pub fn read_canary(r: &mut Reader) -> Option<Canary> {
    match r.get("canary").map(parse_bool) {
        Some(Some(true)) => {}
        Some(Some(false)) | None => return None,
        Some(None) => {
            let v = r.get("canary").unwrap_or_default();
            r.warnings.push(format!(
                "annotation {PREFIX}canary: {v:?} is not a boolean; ignored"
            ));
            return None;
        }
    }
    let mut c = Canary {
        weight_total: 100,
        ..Default::default()
    };
    let token = |name: &str, r: &mut Reader| {
        let v: String = r
            .get(name)?
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if valid_chars(&v, "/-._~:") {
            Some(v)
        } else {
            r.warnings.push(format!(
                "annotation {PREFIX}{name}: {v:?} has characters a header or cookie name cannot have; ignored"
            ));
            None
        }
    };
    c.by_header = token("canary-by-header", r);
    c.by_header_value = token("canary-by-header-value", r);
    c.by_cookie = token("canary-by-cookie", r);
    if let Some(v) = r.get("canary-by-header-pattern") {
        match regex::Regex::new(v) {
            Ok(_) => c.by_header_pattern = Some(v.to_string()),
            Err(e) => r.warnings.push(format!(
                "annotation {PREFIX}canary-by-header-pattern: {v:?} is not a regular expression ({e}); ignored"
            )),
        }
    }
    for (name, field) in [
        ("canary-weight", &mut c.weight),
        ("canary-weight-total", &mut c.weight_total),
    ] {
        if let Some(v) = r.get(name) {
            match v.parse::<u32>() {
                Ok(n) => *field = n,
                Err(_) => r.warnings.push(format!(
                    "annotation {PREFIX}{name}: {v:?} is not a whole number; ignored"
                )),
            }
        }
    }
    Some(c)
}
