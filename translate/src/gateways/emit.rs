//! The model's Gateways and Listeners from the planned Gateways, and the final
//! attachedRoutes counts in status.

use super::planned::PlannedGateway;
use crate::meta::join;
use crate::status::StatusReport;
use crate::store::{ObjectKey, Store};
use gatehouse_model::ir::{self, Config};
use std::collections::BTreeMap;

/// Emits the model's Gateways and Listeners and the final attachedRoutes counts.
pub fn finish(
    gateways: &BTreeMap<ObjectKey, PlannedGateway>,
    config: &mut Config,
    status: &mut StatusReport,
    _store: &Store,
) {
    for g in gateways.values() {
        let gkey = join(&g.key.namespace, &g.key.name);
        for l in &g.listeners {
            let owner = l.owner.key();
            if let Some(ls) = status
                .objects
                .get_mut(&StatusReport::key(
                    l.owner.kind(),
                    &owner.namespace,
                    &owner.name,
                ))
                .and_then(|st| std::sync::Arc::make_mut(st).listener_mut(&l.name))
            {
                ls.attached_routes = l.attached_routes;
            }
        }
        let served: Vec<_> = g.listeners.iter().filter(|l| l.served).collect();
        if served.is_empty() {
            continue;
        }
        config.gateways.push(ir::Gateway {
            key: gkey.clone(),
            generation: g.generation,
            listener_sets: g
                .listener_sets
                .iter()
                .filter(|s| s.accepted)
                .map(|s| ir::Generation {
                    key: join(&s.key.namespace, &s.key.name),
                    generation: s.generation,
                })
                .collect(),
        });
        for l in served {
            config.listeners.push(ir::Listener {
                key: l.key.clone(),
                gateway: gkey.clone(),
                name: l.name.clone(),
                address: g.address,
                port: l.port,
                protocol: l.protocol,
                hostname: l.hostname.clone(),
                certificates: l.certificates.clone(),
                client_validation: l.client_validation.clone(),
                backend_client_certificate: g.backend_client_certificate.clone(),
                limits: g.client_limits,
                forwarding: g.forwarding.clone(),
            });
        }
    }
}
