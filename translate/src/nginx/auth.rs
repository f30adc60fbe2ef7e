//! External auth: auth-url, auth-method, auth-response-headers, auth-signin. What cannot
//! be honoured closes the paths (503), never opens them.

use super::parsed::PREFIX;
use super::reader::Reader;
use super::values::{HTTP_METHODS, auth_url, valid_chars};
use gatehouse_api::ExternalAuthPolicy;

pub fn read_auth(r: &mut Reader) -> Option<ExternalAuthPolicy> {
    let v = r.get("auth-url")?;
    if let Err(e) = auth_url(v) {
        r.deny(format!(
            "annotation {PREFIX}auth-url: {v:?} {e}; every path of the Ingress answers 503"
        ));
        return None;
    }
    let mut auth = ExternalAuthPolicy {
        url: v.to_string(),
        method: Some("GET".into()),
        response_headers: vec![],
        signin: None,
    };
    if let Some(m) = r.get("auth-method") {
        if HTTP_METHODS.contains(&m) {
            auth.method = Some(m.to_string());
        } else {
            r.deny(format!(
                "annotation {PREFIX}auth-method: {m:?} is not an HTTP method; every path of the Ingress answers 503"
            ));
        }
    }
    if let Some(h) = r.get("auth-response-headers") {
        let names: Vec<String> = h
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        if names.iter().all(|n| valid_chars(n, "-_")) {
            auth.response_headers = names;
        } else {
            r.deny(format!(
                "annotation {PREFIX}auth-response-headers: {h:?} is not a list of header names; every path of the Ingress answers 503"
            ));
        }
    }
    if let Some(s) = r.get("auth-signin") {
        if (s.starts_with("http://") || s.starts_with("https://"))
            && s.bytes().all(|b| b.is_ascii_graphic())
        {
            auth.signin = Some(s.to_string());
        } else {
            r.warn("auth-signin", s, "is not an http(s) URL");
        }
    }
    Some(auth)
}
