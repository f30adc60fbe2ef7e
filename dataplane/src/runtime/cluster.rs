//! A backend as the runtime knows it: its endpoints, TLS settings and round robin.

use super::ejections::Ejections;
use crate::net::upstream_tls::BackendTls;
use gatehouse_model::ir::UpstreamProtocol;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A cluster of endpoints (one backend Service port), compiled.
pub struct Cluster {
    pub key: String,
    pub protocol: UpstreamProtocol,
    pub endpoints: Vec<SocketAddr>,
    /// TLS to the endpoints (BackendTLSPolicy).
    pub tls: Option<BackendTls>,
    next: AtomicUsize,
}

impl Cluster {
    /// Round robin over the endpoints, skipping those this request already tried and those
    /// recently ejected; when every untried endpoint is ejected, an ejected one (it may be
    /// back), and when all were tried, any.
    pub fn pick(&self, tried: &[SocketAddr], ejections: &Ejections) -> Option<SocketAddr> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let candidates = (0..n).map(|k| self.endpoints[(start + k) % n]);
        let mut untried = candidates.clone().filter(|a| !tried.contains(a));
        let first_untried = untried.clone().next();
        untried
            .find(|a| !ejections.is_ejected(a))
            .or(first_untried)
            .or_else(|| candidates.clone().next())
    }
}

/// Compiles one model cluster (its TLS settings checked and loaded).
pub(super) fn compile_cluster(c: &gatehouse_model::ir::Cluster) -> Result<Cluster, String> {
    let tls = c
        .tls
        .as_ref()
        .map(BackendTls::compile)
        .transpose()
        .map_err(|e| format!("Cluster {}: {e}", c.key))?;
    Ok(Cluster {
        key: c.key.clone(),
        protocol: c.protocol,
        endpoints: c.endpoints.clone(),
        tls,
        next: AtomicUsize::new(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_skips_tried_and_ejected_endpoints() {
        let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let c: SocketAddr = "10.0.0.3:80".parse().unwrap();
        let cluster = Cluster {
            key: "k".into(),
            protocol: UpstreamProtocol::Http1,
            endpoints: vec![a, b, c],
            tls: None,
            next: AtomicUsize::new(0),
        };
        let none = Ejections::default();
        // Whatever the round-robin position, a retry never lands on a tried endpoint.
        for _ in 0..6 {
            let picked = cluster.pick(&[a, b], &none);
            assert_eq!(picked, Some(c));
        }
        // Ejected endpoints are skipped by every request while untried healthy ones exist.
        let ejections = Ejections::default();
        ejections.eject(a, std::time::Duration::from_secs(60));
        ejections.eject(b, std::time::Duration::from_secs(60));
        for _ in 0..6 {
            assert_eq!(cluster.pick(&[], &ejections), Some(c));
        }
        // All ejected: still an answer (an ejected endpoint may be back).
        ejections.eject(c, std::time::Duration::from_secs(60));
        assert!(cluster.pick(&[], &ejections).is_some());
        // All tried: any endpoint.
        assert!(cluster.pick(&[a, b, c], &none).is_some());
        // Ejection ends.
        let brief = Ejections::default();
        brief.eject(a, std::time::Duration::ZERO);
        assert!(!brief.is_ejected(&a));
    }
}
