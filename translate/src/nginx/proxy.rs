//! Proxy settings: proxy-connect/-send/-read-timeout, proxy-body-size, backend-protocol.
//! nginx's timeout defaults are 5, 60 and 60 s; without the annotations Gatehouse's own
//! apply (5 s to connect, no idle limit). nginx's body-size default is 1m; Gatehouse has
//! none, so "0" (unlimited) is the same as no annotation.

use super::parsed::PREFIX;
use super::reader::Reader;
use super::values::body_size;
use gatehouse_api::{BackendProtocol, ProxyTimeoutsPolicy, TrafficPolicySpec};

pub fn read_proxy(r: &mut Reader, policy: &mut TrafficPolicySpec) {
    let mut t = ProxyTimeoutsPolicy::default();
    for (name, field) in [
        ("proxy-connect-timeout", &mut t.connect_seconds),
        ("proxy-send-timeout", &mut t.send_seconds),
        ("proxy-read-timeout", &mut t.read_seconds),
    ] {
        if let Some(v) = r.get(name) {
            match v.parse::<u64>() {
                Ok(n) if n > 0 => *field = Some(n),
                _ => r.warnings.push(format!(
                    "annotation {PREFIX}{name}: {v:?} is not a number of seconds; ignored"
                )),
            }
        }
    }
    if t != ProxyTimeoutsPolicy::default() {
        policy.proxy_timeouts = Some(t);
    }
    if let Some(v) = r.get("proxy-body-size") {
        match body_size(v) {
            Some(0) => policy.max_request_body_bytes = None,
            Some(n) => policy.max_request_body_bytes = Some(n),
            None => r.warn("proxy-body-size", v, "is not a size (for example 8m)"),
        }
    }
    if let Some(v) = r.get("backend-protocol") {
        let protocol = match v.to_ascii_uppercase().as_str() {
            "HTTP" => BackendProtocol::Http,
            "HTTPS" => BackendProtocol::Https,
            "GRPC" => BackendProtocol::Grpc,
            "GRPCS" => BackendProtocol::Grpcs,
            _ => {
                r.warn("backend-protocol", v, "is not HTTP, HTTPS, GRPC or GRPCS");
                BackendProtocol::Http
            }
        };
        // HTTP is what no field says.
        policy.backend_protocol = (protocol != BackendProtocol::Http).then_some(protocol);
    }
}
