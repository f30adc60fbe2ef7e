//! What ingress-nginx decides per host from all Ingresses together: which hosts have TLS,
//! which are in regex mode, which are named at all.

use super::classes::ServedIngress;
use crate::store::ObjectKey;
use std::collections::BTreeSet;

/// What ingress-nginx decides per host from all Ingresses together.
#[derive(Debug, Default)]
pub struct HostFacts {
    /// Hosts (lowercase) with a certificate: some Ingress naming the host has a non-empty
    /// spec.tls. Plain HTTP to them is redirected to HTTPS (ssl-redirect).
    tls: BTreeSet<(ObjectKey, String)>,
    /// Hosts in regex mode: some Ingress for the host uses use-regex or rewrite-target, so
    /// every path of the host, whatever its Ingress, matches as a case-insensitive
    /// regular expression from the start of the path (nginx `location ~*`).
    regex: BTreeSet<(ObjectKey, String)>,
    /// Every host some Ingress names (from-to-www-redirect leaves those alone).
    named: BTreeSet<(ObjectKey, String)>,
}

impl HostFacts {
    /// The facts of every host the Ingresses name.
    pub fn of(ingresses: &[ServedIngress]) -> HostFacts {
        let mut facts = HostFacts::default();
        for o in ingresses {
            let (ingress, gateway) = (o.ingress, o.gateway);
            let Some(spec) = &ingress.spec else { continue };
            let (policy, n) = (&o.annotations.policy, &o.annotations.ingress);
            if n.canary.is_none() {
                for rule in spec.rules.iter().flatten() {
                    let host = rule.host.clone().unwrap_or_default().to_ascii_lowercase();
                    facts.named.insert((gateway.clone(), host));
                    let rewrites = policy.rewrite_target.as_ref().is_some_and(|t| {
                        rule.http
                            .iter()
                            .flat_map(|h| &h.paths)
                            .any(|p| p.path.as_deref().unwrap_or("/") != t)
                    });
                    if n.use_regex || rewrites {
                        let host = rule.host.clone().unwrap_or_default().to_ascii_lowercase();
                        facts.regex.insert((gateway.clone(), host));
                    }
                }
            }
            if spec.tls.as_ref().is_none_or(Vec::is_empty) {
                continue;
            }
            for rule in spec.rules.iter().flatten() {
                if let Some(host) = rule.host.as_deref().filter(|h| !h.is_empty()) {
                    facts
                        .tls
                        .insert((gateway.clone(), host.to_ascii_lowercase()));
                }
            }
        }
        facts
    }

    /// Whether some Ingress on the Gateway names the host.
    pub fn named(&self, gateway: &ObjectKey, host: &str) -> bool {
        self.named
            .contains(&(gateway.clone(), host.to_ascii_lowercase()))
    }

    /// Whether the host's paths match as nginx's case-insensitive regular expressions.
    pub fn regex_mode(&self, gateway: &ObjectKey, host: &str) -> bool {
        self.regex
            .contains(&(gateway.clone(), host.to_ascii_lowercase()))
    }

    /// Whether some Ingress gives the host a certificate.
    pub fn has_tls(&self, gateway: &ObjectKey, host: &str) -> bool {
        self.tls
            .contains(&(gateway.clone(), host.to_ascii_lowercase()))
    }
}
