//! What one config version serves: its sockets (`Bind`), each with the listeners sharing
//! it (most specific hostname first), their host tables and TLS acceptor. How a request
//! walks from a bind to its route is in `lookup`.

use super::hosts::HostTable;
use gatehouse_model::ir::{ClientLimits, HostMatch, Protocol};
use pingora_core::listeners::tls::Acceptor;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Everything a data plane serves for one config version.
pub struct Runtime {
    pub version: u64,
    /// By bind address: addresses from config, not from clients, so a fast hash is safe
    /// (every request looks its bind up).
    pub binds: Binds,
}

/// The binds of a version by address.
pub type Binds = HashMap<SocketAddr, Arc<Bind>, rustc_hash::FxBuildHasher>;

impl Runtime {
    /// No binds: what serves before the first version.
    pub fn empty() -> Self {
        Runtime {
            version: 0,
            binds: Binds::default(),
        }
    }

    /// The bind a connection arrived on, by its local address (or the wildcard bind).
    pub fn bind(&self, local: SocketAddr) -> Option<&Arc<Bind>> {
        self.binds.get(&local).or_else(|| {
            let any = match local {
                SocketAddr::V4(_) => std::net::IpAddr::from([0, 0, 0, 0]),
                SocketAddr::V6(_) => std::net::IpAddr::from([0u16; 8]),
            };
            self.binds.get(&SocketAddr::new(any, local.port()))
        })
    }
}

/// One socket: the listeners of one Gateway sharing an address and port.
pub struct Bind {
    pub addr: SocketAddr,
    pub protocol: Protocol,
    /// Most specific hostname first.
    pub listeners: Vec<CompiledListener>,
    /// TLS acceptor for HTTPS binds: one per certificate set, reused across versions.
    pub tls: Option<Arc<Acceptor>>,
    /// Its clients' timeouts and caps (its Gateway's).
    pub limits: ClientLimits,
    /// How its clients' addresses are learned and their headers passed on.
    pub clients: Arc<crate::http::forwarding::ClientRules>,
    /// Where requests no listener of the socket took are counted.
    pub unmatched: Arc<crate::metrics::RouteSeries>,
}

/// One listener of a bind, as compiled.
pub struct CompiledListener {
    pub key: String,
    pub hostname: HostMatch,
    /// Presented to TLS backends that ask for a client certificate.
    pub backend_client: Option<Arc<pingora_core::utils::tls::CertKey>>,
    /// Its virtual hosts; shared with the versions that did not change them.
    pub hosts: Arc<HostTable>,
    /// Where its requests that no route took are counted.
    pub unrouted: Arc<crate::metrics::RouteSeries>,
}
