//! One listener of a Gateway or ListenerSet: protocol, route kinds, namespaces, hostname,
//! TLS material and client certificate validation, with its status; and conflicts between
//! a Gateway's own listeners.

use super::planned::{AllowedNamespaces, Owner, PlannedListener, label_selector};
use crate::backends::Backends;
use crate::gwapi::gateways::{
    GatewayListeners, GatewayListenersAllowedRoutesNamespacesFrom, GatewayListenersTlsMode,
};
use crate::meta::join;
use crate::settings::GATEWAY_GROUP;
use crate::status::{Condition, ListenerStatus, reason};
use crate::store::{ObjectKey, Store};
use gatehouse_model::ir::{HostMatch, Protocol, SniCertificate};

pub fn set_listener(ls: &mut ListenerStatus, type_: &str, ok: bool, reason: &str, msg: &str) {
    crate::status::set_condition(&mut ls.conditions, Condition::new(type_, ok, reason, msg));
}

/// One listener planned, with its status.
pub fn plan_listener(
    store: &Store,
    gateway: &ObjectKey,
    owner: &Owner,
    l: &GatewayListeners,
    frontend: Option<&crate::client_certificates::PortValidation>,
    synthetic: bool,
) -> (PlannedListener, ListenerStatus) {
    let mut ls = ListenerStatus {
        name: l.name.clone(),
        ..Default::default()
    };
    let protocol = match l.protocol.as_str() {
        "HTTP" => Some(Protocol::Http),
        "HTTPS" => Some(Protocol::Https),
        _ => None,
    };
    let mut accepted = true;
    if protocol.is_none() {
        accepted = false;
        set_listener(
            &mut ls,
            reason::ACCEPTED,
            false,
            reason::UNSUPPORTED_PROTOCOL,
            &format!(
                "protocol {:?} is not supported; use HTTP or HTTPS",
                l.protocol
            ),
        );
    }
    let (allows_http_routes, mut resolved) = route_kinds(l, protocol.is_some(), &mut ls);
    let hostname = l
        .hostname
        .as_deref()
        .map(HostMatch::gateway)
        .unwrap_or(HostMatch::Any);
    let mut tls = TlsMaterial::default();
    if protocol == Some(Protocol::Https) {
        let context = TlsContext {
            store,
            gateway,
            owner,
            hostname: &hostname,
            synthetic,
        };
        tls = context.resolve(l, frontend, &mut ls);
        accepted &= tls.accepted;
        resolved &= tls.resolved;
    }

    if accepted {
        set_listener(
            &mut ls,
            reason::ACCEPTED,
            true,
            reason::ACCEPTED,
            "listener accepted",
        );
    }
    if resolved {
        set_listener(
            &mut ls,
            reason::RESOLVED_REFS,
            true,
            reason::RESOLVED_REFS,
            "all references resolved",
        );
    }
    set_listener(
        &mut ls,
        reason::CONFLICTED,
        false,
        reason::NO_CONFLICTS,
        "no conflicts",
    );
    // HTTPS is served when at least one certificate resolved; a bad ref among good ones
    // is reported (ResolvedRefs=False) without taking the listener down.
    // Conditions in one order: Accepted, ResolvedRefs, Conflicted, Programmed.
    let rank = |t: &str| {
        [
            reason::ACCEPTED,
            reason::RESOLVED_REFS,
            reason::CONFLICTED,
            reason::PROGRAMMED,
        ]
        .iter()
        .position(|x| *x == t)
        .unwrap_or(9)
    };
    ls.conditions.sort_by_key(|c| rank(&c.type_));
    let https_ok = protocol != Some(Protocol::Https) || !tls.certificates.is_empty() || synthetic;
    let served = accepted && https_ok && protocol.is_some();
    let gateway_key = join(&gateway.namespace, &gateway.name);
    let listener = PlannedListener {
        // Unique on the Gateway: listener names repeat across ListenerSets.
        key: match owner {
            Owner::Gateway(_) => format!("{gateway_key}/{}", l.name),
            Owner::ListenerSet(set) => {
                format!("{gateway_key}/{}/{}/{}", set.namespace, set.name, l.name)
            }
        },
        owner: owner.clone(),
        name: l.name.clone(),
        port: u16::try_from(l.port).unwrap_or(0),
        protocol: protocol.unwrap_or(Protocol::Http),
        spec_protocol: l.protocol.clone(),
        hostname,
        allowed_namespaces: allowed_namespaces(l),
        allows_http_routes,
        certificates: tls.certificates,
        client_validation: tls.client_validation,
        served: served && l.port > 0 && l.port <= 65535,
        attached_routes: 0,
    };
    if !listener.served {
        set_listener(
            &mut ls,
            reason::PROGRAMMED,
            false,
            reason::INVALID,
            "listener is not valid and is not served",
        );
    }
    ls.conditions.sort_by_key(|c| rank(&c.type_));
    (listener, ls)
}

/// allowedRoutes.kinds: only HTTPRoute for HTTP(S) listeners. Whether HTTPRoutes may
/// attach, and whether every kind named is supported (ResolvedRefs).
fn route_kinds(l: &GatewayListeners, http: bool, ls: &mut ListenerStatus) -> (bool, bool) {
    let mut allows_http_routes = http;
    let mut resolved = true;
    if let Some(kinds) = l.allowed_routes.as_ref().and_then(|a| a.kinds.as_ref()) {
        let mut invalid = Vec::new();
        allows_http_routes = false;
        for k in kinds {
            let group = k.group.as_deref().unwrap_or(GATEWAY_GROUP);
            if group == GATEWAY_GROUP && k.kind == "HTTPRoute" && http {
                allows_http_routes = true;
            } else {
                invalid.push(format!("{group}/{}", k.kind));
            }
        }
        if !invalid.is_empty() {
            resolved = false;
            set_listener(
                ls,
                reason::RESOLVED_REFS,
                false,
                reason::INVALID_ROUTE_KINDS,
                &format!("route kinds not supported: {}", invalid.join(", ")),
            );
        }
    }
    if allows_http_routes {
        ls.supported_kinds = vec!["HTTPRoute".into()];
    }
    (allows_http_routes, resolved)
}

/// allowedRoutes.namespaces.
fn allowed_namespaces(l: &GatewayListeners) -> AllowedNamespaces {
    match l
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref())
    {
        None => AllowedNamespaces::Same,
        Some(ns) => match &ns.from {
            None | Some(GatewayListenersAllowedRoutesNamespacesFrom::Same) => {
                AllowedNamespaces::Same
            }
            Some(GatewayListenersAllowedRoutesNamespacesFrom::All) => AllowedNamespaces::All,
            Some(GatewayListenersAllowedRoutesNamespacesFrom::Selector) => {
                AllowedNamespaces::Selector(label_selector!(ns.selector.as_ref()))
            }
        },
    }
}

/// What an HTTPS listener's TLS settings resolve to.
struct TlsMaterial {
    certificates: Vec<SniCertificate>,
    client_validation: Option<gatehouse_model::ir::ClientValidation>,
    /// False when the listener cannot be accepted (passthrough, no usable client CA).
    accepted: bool,
    /// False when a reference did not resolve (ResolvedRefs=False, already set).
    resolved: bool,
}

impl Default for TlsMaterial {
    fn default() -> Self {
        TlsMaterial {
            certificates: vec![],
            client_validation: None,
            accepted: true,
            resolved: true,
        }
    }
}

/// Who asks for an HTTPS listener's TLS material, and for which hostname.
struct TlsContext<'a> {
    store: &'a Store,
    gateway: &'a ObjectKey,
    owner: &'a Owner,
    hostname: &'a HostMatch,
    synthetic: bool,
}

impl TlsContext<'_> {
    /// The listener's certificates by reference and its client certificate validation.
    fn resolve(
        &self,
        l: &GatewayListeners,
        frontend: Option<&crate::client_certificates::PortValidation>,
        ls: &mut ListenerStatus,
    ) -> TlsMaterial {
        let mut out = TlsMaterial::default();
        let tls = l.tls.as_ref();
        if matches!(
            tls.and_then(|t| t.mode.as_ref()),
            Some(GatewayListenersTlsMode::Passthrough)
        ) {
            out.accepted = false;
            set_listener(
                ls,
                reason::ACCEPTED,
                false,
                reason::UNSUPPORTED_PROTOCOL,
                "tls.mode Passthrough needs protocol TLS, which Gatehouse does not serve yet",
            );
        }
        let refs = tls
            .and_then(|t| t.certificate_refs.as_deref())
            .unwrap_or_default();
        let mut problems = Vec::new();
        for (i, r) in refs.iter().enumerate() {
            let group = r.group.as_deref().unwrap_or("");
            let kind = r.kind.as_deref().unwrap_or("Secret");
            let ns = r
                .namespace
                .as_deref()
                .unwrap_or(&self.owner.key().namespace);
            if !(group.is_empty() || group == "core") || kind != "Secret" {
                problems.push((
                    reason::INVALID_CERTIFICATE_REF,
                    format!("tls.certificateRefs[{i}]: kind {group}/{kind} is not a Secret"),
                ));
                continue;
            }
            let (owner_kind, owner_key) = (self.owner.kind(), self.owner.key());
            if let Err(e) = crate::references::may_read(
                self.store, owner_kind, owner_key, "Secret", ns, &r.name,
            ) {
                problems.push((
                    reason::REF_NOT_PERMITTED,
                    format!("tls.certificateRefs[{i}]: {e}"),
                ));
                continue;
            }
            match Backends::certificate(self.store, ns, &r.name) {
                Ok(cert) => out.certificates.push(SniCertificate {
                    server_names: match self.hostname {
                        HostMatch::Any => vec![],
                        h => vec![h.clone()],
                    },
                    certificate: cert,
                }),
                Err(e) => problems.push((
                    reason::INVALID_CERTIFICATE_REF,
                    format!("tls.certificateRefs[{i}]: {e}"),
                )),
            }
        }
        // A synthetic Ingress Gateway gets its certificates from the Ingresses' spec.tls.
        if refs.is_empty() && !self.synthetic {
            problems.push((
                reason::INVALID_CERTIFICATE_REF,
                "tls.certificateRefs: an HTTPS listener needs at least one certificate".into(),
            ));
        }
        // Client certificate validation: a listener none of whose CAs resolve is not
        // served (it would accept clients it was told to refuse).
        if let Some(v) = frontend {
            let (validation, ca_problems) =
                crate::client_certificates::resolve(self.store, self.gateway, v);
            if validation.is_none() {
                out.accepted = false;
                set_listener(
                    ls,
                    reason::ACCEPTED,
                    false,
                    reason::NO_VALID_CA_CERTIFICATE,
                    "spec.tls.frontend: no CA certificate reference of this port resolves",
                );
            }
            problems.extend(ca_problems);
            out.client_validation = validation;
        }
        if let Some((r, _)) = problems.first() {
            out.resolved = false;
            let msg = problems
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            set_listener(ls, reason::RESOLVED_REFS, false, r, &msg);
        }
        out
    }
}

/// Listeners on one port must agree on protocol and differ in hostname.
pub fn mark_conflicts(
    spec: &[GatewayListeners],
    listeners: &mut [PlannedListener],
    status: &mut [ListenerStatus],
) {
    for i in 0..spec.len() {
        let mut conflict = None;
        for j in 0..spec.len() {
            if i == j || spec[i].port != spec[j].port {
                continue;
            }
            if spec[i].protocol != spec[j].protocol {
                conflict = Some((
                    reason::PROTOCOL_CONFLICT,
                    format!(
                        "port {} is also used with protocol {} by listener {}",
                        spec[i].port, spec[j].protocol, spec[j].name
                    ),
                ));
                break;
            }
            if spec[i].hostname == spec[j].hostname {
                conflict = Some((
                    reason::HOSTNAME_CONFLICT,
                    format!("listener {} uses the same port and hostname", spec[j].name),
                ));
            }
        }
        if let Some((r, msg)) = conflict {
            listeners[i].served = false;
            set_listener(&mut status[i], reason::CONFLICTED, true, r, &msg);
            set_listener(&mut status[i], reason::ACCEPTED, false, r, &msg);
            set_listener(
                &mut status[i],
                reason::PROGRAMMED,
                false,
                reason::INVALID,
                &msg,
            );
        }
    }
}

/// Accepted=True of a Gateway with at least one served listener; the reason is
/// ListenersNotValid when some other listener is not valid.
pub fn accepted_condition(listeners: &[PlannedListener], msg: &str) -> Condition {
    let invalid: Vec<&str> = listeners
        .iter()
        .filter(|l| !l.served)
        .map(|l| l.name.as_str())
        .collect();
    if invalid.is_empty() {
        Condition::new(reason::ACCEPTED, true, reason::ACCEPTED, msg)
    } else {
        Condition::new(
            reason::ACCEPTED,
            true,
            reason::LISTENERS_NOT_VALID,
            format!("listeners not valid: {}", invalid.join(", ")),
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::{gateway_with, is, listener_condition, translated};

    #[test]
    fn a_protocol_other_than_http_or_https_is_not_accepted() {
        let out = translated(&gateway_with("[{name: tcp, port: 9000, protocol: TCP}]"));
        let gw = "Gateway infra/gw";
        assert_eq!(
            listener_condition(&out, gw, "tcp", "Accepted"),
            is("False", "UnsupportedProtocol")
        );
        assert_eq!(
            listener_condition(&out, gw, "tcp", "Programmed"),
            is("False", "Invalid")
        );
        assert!(out.config.listeners.is_empty(), "nothing served");
    }

    #[test]
    fn two_listeners_with_one_port_and_hostname_conflict() {
        let out = translated(&gateway_with(
            "[{name: a, port: 80, protocol: HTTP}, {name: b, port: 80, protocol: HTTP}, {name: c, port: 80, protocol: HTTP, hostname: c.example}]",
        ));
        let gw = "Gateway infra/gw";
        for l in ["a", "b"] {
            assert_eq!(
                listener_condition(&out, gw, l, "Conflicted"),
                is("True", "HostnameConflict")
            );
        }
        assert_eq!(
            listener_condition(&out, gw, "c", "Conflicted"),
            is("False", "NoConflicts")
        );
        assert_eq!(out.config.listeners.len(), 1, "only c is served");
    }

    #[test]
    fn https_without_a_certificate_is_not_served() {
        let out = translated(&gateway_with("[{name: https, port: 443, protocol: HTTPS}]"));
        assert_eq!(
            listener_condition(&out, "Gateway infra/gw", "https", "ResolvedRefs"),
            is("False", "InvalidCertificateRef")
        );
        assert!(out.config.listeners.is_empty());
    }

    #[test]
    fn route_kinds_other_than_httproute_are_invalid() {
        let out = translated(&gateway_with(
            "[{name: http, port: 80, protocol: HTTP, allowedRoutes: {kinds: [{kind: TCPRoute}]}}]",
        ));
        assert_eq!(
            listener_condition(&out, "Gateway infra/gw", "http", "ResolvedRefs"),
            is("False", "InvalidRouteKinds")
        );
    }
}
