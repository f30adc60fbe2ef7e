//! Tracing as the model carries it: where a Gateway's spans go, over which OTLP transport,
//! and how many of the undecided requests are traced. The endpoint is checked here, once,
//! for the operator (a condition on the GatewayParameters' Gateway) and the data plane
//! (which refuses what does not pass): it becomes a socket address and a fixed path, never
//! text in a request line.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Resource attributes a Gateway may add to its spans.
pub const MAX_RESOURCE_ATTRIBUTES: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tracing {
    /// `http://host:port`.
    pub endpoint: String,
    pub protocol: TraceProtocol,
    /// 0..=100: of the requests without a sampling decision, the share traced.
    pub sampling_percent: u32,
    pub service_name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resource_attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TraceProtocol {
    #[default]
    Grpc,
    Http,
}

/// The collector's host (a DNS name or an address, IPv6 without brackets) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collector {
    pub host: String,
    pub port: u16,
}

impl Tracing {
    /// Whether it can be served: an endpoint `http://host:port` (a trailing `/` allowed), a
    /// percentage, a service name and attributes within bounds.
    pub fn check(&self) -> Result<Collector, String> {
        if self.sampling_percent > 100 {
            return Err(format!(
                "samplingPercent: {} is not within 0..100",
                self.sampling_percent
            ));
        }
        if self.service_name.is_empty() || self.service_name.len() > 128 {
            return Err("serviceName: 1 to 128 characters".into());
        }
        if self.resource_attributes.len() > MAX_RESOURCE_ATTRIBUTES {
            return Err(format!(
                "resourceAttributes: {} entries, at most {MAX_RESOURCE_ATTRIBUTES}",
                self.resource_attributes.len()
            ));
        }
        if let Some((k, _)) = self
            .resource_attributes
            .iter()
            .find(|(k, v)| k.is_empty() || k.len() > 128 || v.len() > 256)
        {
            return Err(format!(
                "resourceAttributes: {k:?}: a key of 1 to 128 characters, a value of at most 256"
            ));
        }
        collector(&self.endpoint).map_err(|e| format!("endpoint: {:?}: {e}", self.endpoint))
    }
}

fn collector(endpoint: &str) -> Result<Collector, &'static str> {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return Err(if endpoint.starts_with("https://") {
            "https is not supported; send to a collector agent over plaintext http://"
        } else {
            "not http://host:port"
        });
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, port) = v6.split_once("]:").ok_or("not http://[address]:port")?;
            host.parse::<std::net::Ipv6Addr>()
                .map_err(|_| "not an IPv6 address in brackets")?;
            (host, port)
        }
        None => authority.rsplit_once(':').ok_or("no port")?,
    };
    let port: u16 = port.parse().map_err(|_| "the port is not a number")?;
    if port == 0 {
        return Err("port 0");
    }
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b':');
    if !name_ok {
        return Err("the host is not a DNS name or an address");
    }
    Ok(Collector {
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(endpoint: &str) -> Result<Collector, String> {
        Tracing {
            endpoint: endpoint.into(),
            protocol: TraceProtocol::Grpc,
            sampling_percent: 10,
            service_name: "gatehouse".into(),
            resource_attributes: BTreeMap::new(),
        }
        .check()
    }

    #[test]
    fn endpoints_are_a_host_and_a_port_over_plain_http() {
        let c = at("http://otel-collector.observability:4317").expect("usable");
        assert_eq!(
            (c.host.as_str(), c.port),
            ("otel-collector.observability", 4317)
        );
        assert_eq!(at("http://10.0.0.1:4318/").map(|c| c.port), Ok(4318));
        let v6 = at("http://[fd00::1]:4317").expect("usable");
        assert_eq!(v6.host, "fd00::1");
        for bad in [
            "https://collector:4317",
            "collector:4317",
            "http://collector",
            "http://collector:0",
            "http://collector:4317/v1/traces",
            "http://coll ector:4317",
            "http://collector:4317\r\nHost: x",
            "http://[nope]:4317",
        ] {
            assert!(at(bad).is_err(), "{bad}");
        }
    }
}
