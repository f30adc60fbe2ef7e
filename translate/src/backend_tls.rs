//! BackendTLSPolicy: TLS from the data planes to a Service's pods, with the CA, server
//! name and subjectAltNames the policy names, and its status per Gateway that uses the
//! Service (the policy's ancestors).

use crate::settings::GATEWAY_GROUP;
use crate::status::{Condition, ParentRef, ParentStatus, StatusReport, reason};
use crate::store::{ObjectKey, Store};
use gatehouse_model::ir::{Config, SubjectAltName, UpstreamTls, UpstreamTrust};
use gateway_api::apis::standard::backendtlspolicies::{
    BackendTlsPolicy, BackendTlsPolicyValidationSubjectAltNamesType as SanType,
};
use std::collections::{BTreeMap, BTreeSet};

/// What a policy applies to: a Service, or one port of it (by name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Target {
    namespace: String,
    service: String,
    section: Option<String>,
}

#[derive(Debug, Clone)]
struct Plan {
    key: ObjectKey,
    generation: i64,
    tls: UpstreamTls,
    /// ResolvedRefs=False (reason, message) when a CA reference does not resolve.
    unresolved: Option<(&'static str, String)>,
}

/// Every policy by target, the one in force first (oldest, then namespace/name).
#[derive(Debug, Default)]
pub struct BackendTlsPolicies {
    by_target: BTreeMap<Target, Vec<Plan>>,
}

impl BackendTlsPolicies {
    pub fn plan(store: &Store) -> Self {
        let mut policies: Vec<&BackendTlsPolicy> =
            store.backend_tls_policies.values().map(|p| &**p).collect();
        policies.sort_by_key(|p| crate::meta::age(&p.metadata));
        let mut by_target: BTreeMap<Target, Vec<Plan>> = BTreeMap::new();
        for policy in policies {
            let plan = plan_policy(store, policy);
            for t in &policy.spec.target_refs {
                if !(t.group.is_empty() || t.group == "core") || t.kind != "Service" {
                    continue; // Only Services carry backends here.
                }
                by_target
                    .entry(Target {
                        namespace: plan.key.namespace.clone(),
                        service: t.name.clone(),
                        section: t.section_name.clone(),
                    })
                    .or_default()
                    .push(plan.clone());
            }
        }
        BackendTlsPolicies { by_target }
    }

    /// No policy targets a Service: nothing to report.
    pub fn is_empty(&self) -> bool {
        self.by_target.is_empty()
    }

    /// The TLS a Service port is reached with: a policy naming the port wins over one
    /// naming the whole Service.
    pub fn for_port(
        &self,
        namespace: &str,
        service: &str,
        port_name: Option<&str>,
    ) -> Option<UpstreamTls> {
        let target = |section: Option<&str>| Target {
            namespace: namespace.into(),
            service: service.into(),
            section: section.map(str::to_string),
        };
        port_name
            .and_then(|n| self.by_target.get(&target(Some(n))))
            .or_else(|| self.by_target.get(&target(None)))
            .and_then(|plans| plans.first())
            .map(|p| p.tls.clone())
    }

    /// Status of every policy, per Gateway whose routes use a port it targets.
    /// `origins` maps cluster keys to their (namespace, Service, port name).
    pub fn report(
        &self,
        origins: &BTreeMap<String, (String, String, Option<String>)>,
        config: &Config,
        status: &mut StatusReport,
    ) {
        // Clusters each Gateway's route tables use.
        let gateway_of: BTreeMap<&str, &str> = config
            .listeners
            .iter()
            .map(|l| (l.key.as_str(), l.gateway.as_str()))
            .collect();
        let mut used: BTreeSet<(&str, &str)> = BTreeSet::new();
        for table in &config.route_tables {
            let Some(gateway) = gateway_of.get(table.listener.as_str()) else {
                continue;
            };
            for route in table.virtual_hosts.iter().flat_map(|v| &v.routes) {
                for cluster in route.clusters() {
                    used.insert((gateway, cluster));
                }
            }
        }
        // (policy, gateway) -> whether the policy loses a conflict on a port the Gateway
        // uses.
        let mut ancestors: BTreeMap<(ObjectKey, String), bool> = BTreeMap::new();
        for (target, plans) in &self.by_target {
            let gateways: BTreeSet<&str> = used
                .iter()
                .filter(|(_, c)| {
                    origins.get(*c).is_some_and(|(ns, svc, port)| {
                        *ns == target.namespace
                            && *svc == target.service
                            && target
                                .section
                                .as_ref()
                                .is_none_or(|s| Some(s) == port.as_ref())
                    })
                })
                .map(|(g, _)| *g)
                .collect();
            for gateway in gateways {
                for (i, plan) in plans.iter().enumerate() {
                    *ancestors
                        .entry((plan.key.clone(), gateway.to_string()))
                        .or_default() |= i > 0;
                }
            }
        }
        for ((policy, gateway), conflicted) in ancestors {
            let Some(plan) = self.by_target.values().flatten().find(|p| p.key == policy) else {
                continue;
            };
            let (gw_ns, gw_name) = gateway.split_once('/').unwrap_or(("", &gateway));
            let generation = plan.generation;
            let unusable = match &plan.tls.trust {
                UpstreamTrust::Unusable(m) => Some(m.clone()),
                _ => None,
            };
            let accepted = if conflicted {
                Condition::new(
                    reason::ACCEPTED,
                    false,
                    reason::CONFLICTED,
                    "an older BackendTLSPolicy targets the same Service port",
                )
            } else if let Some(msg) = unusable {
                Condition::new(
                    reason::ACCEPTED,
                    false,
                    reason::NO_VALID_CA_CERTIFICATE,
                    msg,
                )
            } else {
                Condition::new(
                    reason::ACCEPTED,
                    true,
                    reason::ACCEPTED,
                    "Accepted by Gatehouse",
                )
            };
            let resolved = match &plan.unresolved {
                Some((r, msg)) => Condition::new(reason::RESOLVED_REFS, false, r, msg.clone()),
                None => Condition::new(
                    reason::RESOLVED_REFS,
                    true,
                    reason::RESOLVED_REFS,
                    "all references resolved",
                ),
            };
            let mut conditions = vec![accepted, resolved];
            for c in &mut conditions {
                c.observed_generation = generation;
            }
            let st = status.entry(
                "BackendTLSPolicy",
                &policy.namespace,
                &policy.name,
                generation,
            );
            st.parents.push(ParentStatus {
                parent_ref: ParentRef {
                    group: GATEWAY_GROUP.into(),
                    kind: "Gateway".into(),
                    namespace: gw_ns.into(),
                    name: gw_name.into(),
                    section_name: None,
                    port: None,
                },
                conditions,
            });
        }
    }
}

/// Reads one policy: its TLS settings, Unusable when no CA resolves.
fn plan_policy(store: &Store, policy: &BackendTlsPolicy) -> Plan {
    let key = ObjectKey::of(policy);
    let v = &policy.spec.validation;
    let mut pem = String::new();
    let mut unresolved = None;
    for (i, r) in v.ca_certificate_refs.iter().flatten().enumerate() {
        let at = format!("spec.validation.caCertificateRefs[{i}]");
        if !(r.group.is_empty() || r.group == "core") || r.kind != "ConfigMap" {
            unresolved.get_or_insert((
                reason::INVALID_KIND,
                format!("{at}: {}/{} is not a ConfigMap", r.group, r.kind),
            ));
            continue;
        }
        match crate::tls_material::ca_pem(store, &key.namespace, &r.name) {
            Ok(p) => {
                pem.push_str(&p);
                if !p.ends_with('\n') {
                    pem.push('\n');
                }
            }
            Err(e) => {
                unresolved
                    .get_or_insert((reason::INVALID_CA_CERTIFICATE_REF, format!("{at}: {e}")));
            }
        }
    }
    let trust = if !pem.is_empty() {
        UpstreamTrust::CaPem(pem)
    } else if v.well_known_ca_certificates.as_deref() == Some("System") {
        UpstreamTrust::System
    } else {
        UpstreamTrust::Unusable(match (&unresolved, &v.well_known_ca_certificates) {
            (Some((_, msg)), _) => format!("no CA certificate reference resolves: {msg}"),
            (None, Some(other)) => {
                format!(
                    "spec.validation.wellKnownCACertificates: {other:?} is not supported; use System"
                )
            }
            (None, None) => "spec.validation names no CA certificates".into(),
        })
    };
    let subject_alt_names = v
        .subject_alt_names
        .iter()
        .flatten()
        .filter_map(|s| match s.r#type {
            SanType::Hostname => s.hostname.clone().map(SubjectAltName::Hostname),
            SanType::Uri => s.uri.clone().map(SubjectAltName::Uri),
        })
        .collect();
    Plan {
        generation: policy.metadata.generation.unwrap_or(0),
        key,
        tls: UpstreamTls {
            hostname: v.hostname.clone(),
            trust,
            subject_alt_names,
        },
        unresolved,
    }
}
