//! ListenerSets: merged after their Gateway's own listeners (oldest set first) when the
//! Gateway allows them, conflicts resolved by precedence, and their own status once the
//! Gateway's fate is known.

use super::listener::{accepted_condition, plan_listener, set_listener};
use super::planned::{Owner, PlannedListener, PlannedListenerSet, label_selector};
use crate::gwapi::gateways::{Gateway, GatewayListeners};
use crate::meta::{age, join};
use crate::settings::GATEWAY_GROUP;
use crate::status::{Condition, ListenerStatus, StatusReport, reason};
use crate::store::{ObjectKey, Store};

/// A ListenerSet's place in its Gateway's merged listener list.
pub struct MergedSet {
    key: ObjectKey,
    generation: i64,
    /// Indexes of its listeners; None when the Gateway does not allow it.
    listeners: Option<std::ops::Range<usize>>,
}

/// Whether the Gateway's `spec.allowedListeners` admits ListenerSets from `namespace`
/// (none when unset).
fn allows_listener_sets(store: &Store, gateway: &Gateway, namespace: &str) -> bool {
    use crate::gwapi::gateways::GatewayAllowedListenersNamespacesFrom as From;
    let Some(ns) = gateway
        .spec
        .allowed_listeners
        .as_ref()
        .and_then(|a| a.namespaces.as_ref())
    else {
        return false;
    };
    match ns.from {
        Some(From::All) => true,
        Some(From::Same) => gateway.metadata.namespace.as_deref() == Some(namespace),
        Some(From::Selector) => {
            label_selector!(ns.selector.as_ref()).matches(&store.namespace_labels(namespace))
        }
        Some(From::None) | None => false,
    }
}

/// Appends the listeners of every ListenerSet the Gateway allows, oldest set first (then
/// namespace/name), after the Gateway's own. A listener that collides with an earlier one
/// (same port and another protocol, or same port and hostname) is conflicted; the
/// earlier keeps serving. Sets the Gateway does not allow get Accepted=False NotAllowed.
pub fn merge_listener_sets(
    store: &Store,
    gateway: &Gateway,
    listeners: &mut Vec<PlannedListener>,
    listener_status: &mut Vec<ListenerStatus>,
    status: &mut StatusReport,
) -> Vec<MergedSet> {
    let gateway_key = ObjectKey::of(gateway);
    let mut sets: Vec<_> = store
        .listener_sets
        .values()
        .filter(|set| {
            let p = &set.spec.parent_ref;
            let ns = set.metadata.namespace.as_deref().unwrap_or_default();
            p.group.as_deref().unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
                && p.kind.as_deref().unwrap_or("Gateway") == "Gateway"
                && ObjectKey::new(p.namespace.as_deref().unwrap_or(ns), p.name.as_str())
                    == gateway_key
        })
        .collect();
    sets.sort_by_key(|set| age(&set.metadata));

    let mut merged = Vec::new();
    for set in sets {
        let key = ObjectKey::of(&**set);
        let generation = set.metadata.generation.unwrap_or(0);
        if !allows_listener_sets(store, gateway, &key.namespace) {
            let msg = format!(
                "Gateway {gateway_key} does not allow ListenerSets from namespace {} (spec.allowedListeners)",
                key.namespace
            );
            let st = status.entry("ListenerSet", &key.namespace, &key.name, generation);
            st.set(Condition::new(
                reason::ACCEPTED,
                false,
                reason::NOT_ALLOWED,
                msg.clone(),
            ));
            st.set(Condition::new(
                reason::PROGRAMMED,
                false,
                reason::NOT_ALLOWED,
                msg,
            ));
            merged.push(MergedSet {
                key,
                generation,
                listeners: None,
            });
            continue;
        }
        // ListenerSet and Gateway listeners are one schema (ListenerEntry) generated as
        // two Rust types; read the set's through the Gateway's.
        let spec: Vec<GatewayListeners> = set
            .spec
            .listeners
            .iter()
            .map(|l| {
                serde_json::to_value(l)
                    .and_then(serde_json::from_value)
                    .unwrap_or_else(|_| GatewayListeners {
                        name: l.name.clone(),
                        port: l.port,
                        protocol: l.protocol.clone(),
                        ..Default::default()
                    })
            })
            .collect();
        let owner = Owner::ListenerSet(key.clone());
        let first = listeners.len();
        for l in &spec {
            let frontend = crate::client_certificates::for_port(gateway, l.port);
            let (planned, ls) =
                plan_listener(store, &gateway_key, &owner, l, frontend.as_ref(), false);
            listeners.push(planned);
            listener_status.push(ls);
        }
        // Within a set too, an earlier listener wins (the Gateway's own conflicting
        // listeners are all refused instead: there the spec names no order).
        mark_precedence_conflicts(listeners, listener_status, first);
        merged.push(MergedSet {
            key,
            generation,
            listeners: Some(first..listeners.len()),
        });
    }
    merged
}

/// Conflicts of each listener from `first` on with the served listeners before it (in
/// merged order), which take precedence: another protocol on the same port, or the same
/// port and hostname.
fn mark_precedence_conflicts(
    listeners: &mut [PlannedListener],
    status: &mut [ListenerStatus],
    first: usize,
) {
    for (i, ls) in status.iter_mut().enumerate().skip(first) {
        let (earlier, rest) = listeners.split_at_mut(i);
        let l = &mut rest[0];
        let conflict = earlier
            .iter()
            .filter(|e| e.served && e.port == l.port)
            .find_map(|e| {
                if e.spec_protocol != l.spec_protocol {
                    Some((
                        reason::PROTOCOL_CONFLICT,
                        format!(
                            "port {} is already used with protocol {} by {} {} listener {}",
                            l.port,
                            e.spec_protocol,
                            e.owner.kind(),
                            e.owner.key(),
                            e.name
                        ),
                    ))
                } else if e.hostname == l.hostname {
                    Some((
                        reason::HOSTNAME_CONFLICT,
                        format!(
                            "port {} and hostname are already used by {} {} listener {}",
                            l.port,
                            e.owner.kind(),
                            e.owner.key(),
                            e.name
                        ),
                    ))
                } else {
                    None
                }
            });
        if let Some((r, msg)) = conflict {
            l.served = false;
            set_listener(ls, reason::CONFLICTED, true, r, &msg);
            set_listener(ls, reason::ACCEPTED, false, r, &msg);
            set_listener(ls, reason::PROGRAMMED, false, r, &msg);
        }
    }
}

/// Each allowed ListenerSet's own conditions and listener statuses, once the Gateway's
/// fate is known; returns what route attachment and the model need of them.
pub fn finish_listener_sets(
    gateway: &ObjectKey,
    gateway_accepted: bool,
    sets: &[MergedSet],
    listeners: &[PlannedListener],
    listener_status: &mut [ListenerStatus],
    status: &mut StatusReport,
) -> Vec<PlannedListenerSet> {
    let mut planned = Vec::new();
    for set in sets {
        let mut accepted = false;
        if let Some(range) = &set.listeners {
            let own = &listeners[range.clone()];
            let st = status.entry(
                "ListenerSet",
                &set.key.namespace,
                &set.key.name,
                set.generation,
            );
            st.parent = Some(join(&gateway.namespace, &gateway.name));
            let refused = if !gateway_accepted {
                Some((
                    reason::PARENT_NOT_ACCEPTED,
                    format!("Gateway {gateway} is not accepted"),
                ))
            } else if !own.iter().any(|l| l.served) {
                Some((
                    reason::LISTENERS_NOT_VALID,
                    "no listener is valid".to_string(),
                ))
            } else {
                None
            };
            match refused {
                Some((r, msg)) => {
                    st.set(Condition::new(reason::ACCEPTED, false, r, msg.clone()));
                    st.set(Condition::new(reason::PROGRAMMED, false, r, msg));
                }
                None => {
                    accepted = true;
                    st.set(accepted_condition(
                        own,
                        &format!("attached to Gateway {gateway}"),
                    ));
                    st.set(Condition::new(
                        reason::PROGRAMMED,
                        false,
                        reason::PENDING,
                        "waiting for the data plane to apply this generation",
                    ));
                }
            }
            st.listeners = listener_status[range.clone()].to_vec();
            for ls in &mut st.listeners {
                for c in &mut ls.conditions {
                    c.observed_generation = set.generation;
                }
            }
        }
        planned.push(PlannedListenerSet {
            key: set.key.clone(),
            generation: set.generation,
            accepted,
        });
    }
    planned
}
