//! Data plane reports folded into translation's status: a Gateway (or ListenerSet) is
//! `Programmed` only for a generation some data plane acknowledged, a listener a data
//! plane could not open says `PortUnavailable` with the error, and a listener whose
//! resources the data plane left out of a version (a certificate it could not load, a
//! virtual host it could not compile) says which.

use crate::config_server::AckEvent;
use gatehouse_translate::status::{Condition, StatusReport, reason, set_condition};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What data planes reported, folded into the translation's status: Programmed turns True
/// only for Gateway generations a data plane acknowledged, and listeners a data plane could
/// not open say so.
#[derive(Debug, Default, Clone)]
pub struct DataPlaneReports {
    /// Highest acknowledged generation per Gateway ("namespace/name").
    acked: BTreeMap<String, i64>,
    /// Listener key -> why it could not be opened, from the latest accepted version.
    listener_errors: BTreeMap<String, String>,
    /// The latest refusal, until a later version is accepted.
    last_refusal: Option<String>,
    /// Listener key -> resources of the latest accepted version left out for it:
    /// (resource, why).
    left_out: BTreeMap<String, Vec<(String, String)>>,
}

impl DataPlaneReports {
    pub fn record(&mut self, ack: &AckEvent) {
        if !ack.accepted {
            self.last_refusal = Some(format!(
                "data plane {} refused version {}: {}",
                ack.node, ack.version, ack.error
            ));
            return;
        }
        self.last_refusal = None;
        for (gateway, generation) in &ack.gateways {
            let g = self.acked.entry(gateway.clone()).or_insert(*generation);
            *g = (*g).max(*generation);
        }
        let gateways: Vec<&str> = ack.gateways.iter().map(|(g, _)| g.as_str()).collect();
        self.listener_errors
            .retain(|l, _| !gateways.iter().any(|g| l.starts_with(&format!("{g}/"))));
        self.listener_errors
            .extend(ack.listener_errors.iter().cloned());
        self.left_out
            .retain(|l, _| !gateways.iter().any(|g| l.starts_with(&format!("{g}/"))));
        for (resource, listeners, error) in &ack.refused {
            for l in listeners {
                self.left_out
                    .entry(l.clone())
                    .or_default()
                    .push((resource.clone(), error.clone()));
            }
        }
    }

    /// The translation's report with Programmed filled in, for Gateways and ListenerSets.
    pub fn apply(&self, report: &StatusReport) -> StatusReport {
        let mut out = report.clone();
        for shared in out.objects.values_mut() {
            let pending = shared
                .condition(reason::PROGRAMMED)
                .is_some_and(|c| c.reason == reason::PENDING);
            if !pending {
                continue;
            }
            // What an acknowledgement names (see server.rs), which also prefixes the
            // keys of the object's listeners.
            let key = match (shared.kind.as_str(), &shared.parent) {
                ("Gateway", _) => format!("{}/{}", shared.namespace, shared.name),
                ("ListenerSet", Some(gateway)) => {
                    format!("{gateway}/{}/{}", shared.namespace, shared.name)
                }
                _ => continue,
            };
            // Only Gateways and ListenerSets waiting for a data plane are copied to change.
            let st = Arc::make_mut(shared);
            let programmed = self.acked.get(&key).is_some_and(|g| *g >= st.generation);
            let generation = st.generation;
            let mut failed = 0;
            let mut served = 0;
            for l in &mut st.listeners {
                if l.conditions.iter().any(|c| c.type_ == reason::PROGRAMMED) {
                    continue; // Not served: already Programmed=False from translation.
                }
                served += 1;
                let error = self.listener_errors.get(&format!("{key}/{}", l.name));
                let mut c = match (error, programmed) {
                    (Some(e), _) => {
                        failed += 1;
                        Condition::new(
                            reason::PROGRAMMED,
                            false,
                            reason::PORT_UNAVAILABLE,
                            e.clone(),
                        )
                    }
                    (None, true) => {
                        Condition::new(reason::PROGRAMMED, true, reason::PROGRAMMED, "listening")
                    }
                    (None, false) => Condition::new(
                        reason::PROGRAMMED,
                        false,
                        reason::PENDING,
                        "waiting for the data plane",
                    ),
                };
                c.observed_generation = generation;
                set_condition(&mut l.conditions, c);
                let listener = format!("{key}/{}", l.name);
                if let Some(left_out) = self.left_out.get(&listener) {
                    let mut c = left_out_condition(left_out);
                    c.observed_generation = generation;
                    set_condition(&mut l.conditions, c);
                }
            }
            if programmed && (served == 0 || failed < served) {
                st.set(Condition::new(
                    reason::PROGRAMMED,
                    true,
                    reason::PROGRAMMED,
                    "the data plane applied this generation",
                ));
            } else if programmed {
                st.set(Condition::new(
                    reason::PROGRAMMED,
                    false,
                    reason::INVALID,
                    "no listener could be opened",
                ));
            } else if let Some(refusal) = &self.last_refusal {
                st.set(Condition::new(
                    reason::PROGRAMMED,
                    false,
                    reason::INVALID,
                    refusal.clone(),
                ));
            }
        }
        out
    }
}

/// What a listener says when the data plane left resources of it out: a certificate is a
/// reference that did not resolve (served without it, ResolvedRefs=False); anything else
/// leaves the listener not wholly programmed.
fn left_out_condition(left_out: &[(String, String)]) -> Condition {
    let message = left_out
        .iter()
        .map(|(resource, error)| format!("the data plane left {resource} out: {error}"))
        .collect::<Vec<_>>()
        .join("; ");
    if left_out.iter().all(|(r, _)| r.starts_with("Certificate ")) {
        Condition::new(
            reason::RESOLVED_REFS,
            false,
            reason::INVALID_CERTIFICATE_REF,
            message,
        )
    } else {
        Condition::new(reason::PROGRAMMED, false, reason::INVALID, message)
    }
}
