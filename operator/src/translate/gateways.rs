//! Gateways and their listeners: which are ours, where they bind, which are valid, and the
//! certificates they offer.

use super::backends::Backends;
use super::{GATEWAY_GROUP, Infrastructure, Settings, age, join};
use crate::gwapi::gateways::{
    Gateway, GatewayListeners, GatewayListenersAllowedRoutesNamespacesFrom, GatewayListenersTlsMode,
};
use crate::status::{Condition, ListenerStatus, StatusReport, reason};
use crate::store::{ObjectKey, Store};
use gatehouse_api::GatewayParametersSpec;
use gatehouse_model::ir::{self, Config, HostMatch, Protocol, SniCertificate};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// Which namespaces may attach routes to a listener.
#[derive(Debug, Clone, PartialEq)]
pub enum AllowedNamespaces {
    Same,
    All,
    Selector(LabelSelector),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
    /// (key, operator, values)
    pub match_expressions: Vec<(String, String, Vec<String>)>,
}

impl LabelSelector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|(k, op, values)| {
                let value = labels.get(k);
                match op.as_str() {
                    "In" => value.is_some_and(|v| values.contains(v)),
                    "NotIn" => value.is_none_or(|v| !values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }
}

/// Who declared a listener: the Gateway itself or one of its ListenerSets. Status, route
/// attachment (parentRef kind, sectionName, allowedRoutes "Same") and ReferenceGrants are
/// the owner's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Gateway(ObjectKey),
    ListenerSet(ObjectKey),
}

impl Owner {
    pub fn kind(&self) -> &'static str {
        match self {
            Owner::Gateway(_) => "Gateway",
            Owner::ListenerSet(_) => "ListenerSet",
        }
    }

    pub fn key(&self) -> &ObjectKey {
        match self {
            Owner::Gateway(k) | Owner::ListenerSet(k) => k,
        }
    }
}

/// A LabelSelector from any of the generated selector types (they share one shape).
macro_rules! label_selector {
    ($sel:expr) => {{
        let sel = $sel;
        LabelSelector {
            match_labels: sel.and_then(|s| s.match_labels.clone()).unwrap_or_default(),
            match_expressions: sel
                .and_then(|s| s.match_expressions.as_ref())
                .map(|e| {
                    e.iter()
                        .map(|x| {
                            (
                                x.key.clone(),
                                x.operator.clone(),
                                x.values.clone().unwrap_or_default(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }};
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedListener {
    pub key: String,
    pub owner: Owner,
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
    /// The protocol as written (HTTP, HTTPS, TLS, TCP, ...), for conflicts.
    pub spec_protocol: String,
    pub hostname: HostMatch,
    pub allowed_namespaces: AllowedNamespaces,
    /// Whether HTTPRoutes may attach (allowedRoutes.kinds includes it or is unset).
    pub allows_http_routes: bool,
    pub certificates: Vec<SniCertificate>,
    pub client_validation: Option<ir::ClientValidation>,
    /// Valid and not conflicted: gets a socket and a route table.
    pub served: bool,
    pub attached_routes: i32,
}

impl PlannedListener {
    /// Whether objects in `namespace` (with these labels) may attach to this listener;
    /// "Same" is the namespace of the listener's owner (Gateway or ListenerSet).
    pub fn admits(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        match &self.allowed_namespaces {
            AllowedNamespaces::Same => namespace == self.owner.key().namespace,
            AllowedNamespaces::All => true,
            AllowedNamespaces::Selector(sel) => sel.matches(labels),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedGateway {
    pub key: ObjectKey,
    pub generation: i64,
    /// Where listeners bind.
    pub address: IpAddr,
    /// What status reports as the Gateway's addresses (and its Ingresses').
    pub published: Vec<String>,
    pub listeners: Vec<PlannedListener>,
    /// How its data planes run (Kubernetes provider).
    pub dataplane: GatewayParametersSpec,
    /// Made for an IngressClass, not an API object.
    pub synthetic: bool,
    pub accepted: bool,
    /// Every ListenerSet naming this Gateway as its parent, allowed or not.
    pub listener_sets: Vec<PlannedListenerSet>,
    /// Certificate key presented to backends asking for a client certificate.
    pub backend_client_certificate: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedListenerSet {
    pub key: ObjectKey,
    pub generation: i64,
    /// Allowed by the Gateway and with at least one valid listener.
    pub accepted: bool,
}

/// Plans every Gateway of one of our GatewayClasses, plus the synthetic Ingress defaults.
pub fn plan(
    store: &Store,
    settings: &Settings,
    synthetic: &[Gateway],
    status: &mut StatusReport,
) -> BTreeMap<ObjectKey, PlannedGateway> {
    let ours = classes(store, settings, status);
    let class_parameters = |g: &Gateway| ours.get(&g.spec.gateway_class_name).cloned();
    let mut gateways: Vec<(&Gateway, bool)> = store
        .gateways
        .values()
        .filter(|g| ours.contains_key(&g.spec.gateway_class_name))
        .map(|g| (&**g, false))
        .chain(synthetic.iter().map(|g| (g, true)))
        .collect();
    // Oldest first: an older Gateway keeps its address and port when a newer one collides.
    gateways.sort_by_key(|(g, _)| age(&g.metadata));

    let mut planned = BTreeMap::new();
    let mut sockets: HashMap<(IpAddr, u16), ObjectKey> = HashMap::new();
    for (gateway, is_synthetic) in gateways {
        let defaults = class_parameters(gateway).unwrap_or_default();
        let p = plan_gateway(
            store,
            settings,
            gateway,
            is_synthetic,
            &defaults,
            &mut sockets,
            status,
        );
        planned.insert(p.key.clone(), p);
    }
    planned
}

/// GatewayClasses whose controllerName is ours and that are accepted, with the data plane
/// parameters their `parametersRef` names (defaults for their Gateways).
fn classes(
    store: &Store,
    settings: &Settings,
    status: &mut StatusReport,
) -> BTreeMap<String, GatewayParametersSpec> {
    let mut ours = BTreeMap::new();
    for class in store.gateway_classes.values() {
        if class.spec.controller_name != settings.gateway_controller {
            continue;
        }
        let name = class.metadata.name.clone().unwrap_or_default();
        let generation = class.metadata.generation.unwrap_or(0);
        let st = status.entry("GatewayClass", "", &name, generation);
        let parameters = match &class.spec.parameters_ref {
            None => Ok(GatewayParametersSpec::default()),
            Some(p) => match p.namespace.as_deref() {
                None if p.group == gatehouse_api::GROUP && p.kind == "GatewayParameters" => Err(
                    "parametersRef: GatewayParameters are namespaced; set parametersRef.namespace"
                        .to_string(),
                ),
                namespace => parameters(store, &p.group, &p.kind, namespace.unwrap_or(""), &p.name),
            },
        };
        match parameters {
            Err(message) => st.set(Condition::new(
                reason::ACCEPTED,
                false,
                reason::INVALID_PARAMETERS,
                message,
            )),
            Ok(parameters) => {
                st.set(Condition::new(
                    reason::ACCEPTED,
                    true,
                    reason::ACCEPTED,
                    "Accepted by Gatehouse",
                ));
                ours.insert(name, parameters);
            }
        }
    }
    ours
}

/// The GatewayParameters a parametersRef names, or why it cannot be used.
fn parameters(
    store: &Store,
    group: &str,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<GatewayParametersSpec, String> {
    if group != gatehouse_api::GROUP || kind != "GatewayParameters" {
        return Err(format!(
            "parametersRef: {group}/{kind} is not supported; name a {}/GatewayParameters",
            gatehouse_api::GROUP
        ));
    }
    store
        .gateway_parameters
        .get(&ObjectKey::new(namespace, name))
        .map(|p| p.spec.clone())
        .ok_or_else(|| format!("parametersRef: GatewayParameters {namespace}/{name} not found"))
}

fn plan_gateway(
    store: &Store,
    settings: &Settings,
    gateway: &Gateway,
    synthetic: bool,
    class_parameters: &GatewayParametersSpec,
    sockets: &mut HashMap<(IpAddr, u16), ObjectKey>,
    status: &mut StatusReport,
) -> PlannedGateway {
    let key = ObjectKey::of(gateway);
    let generation = gateway.metadata.generation.unwrap_or(0);
    // Data plane shape: the class's parameters, overridden field by field by the Gateway's.
    let own_parameters = match gateway
        .spec
        .infrastructure
        .as_ref()
        .and_then(|i| i.parameters_ref.as_ref())
    {
        None => Ok(GatewayParametersSpec::default()),
        Some(p) => parameters(store, &p.group, &p.kind, &key.namespace, &p.name),
    };
    let (dataplane, parameters_error) = match own_parameters {
        Ok(own) => (class_parameters.overridden_by(&own), None),
        Err(e) => (
            class_parameters.clone(),
            Some(format!("spec.infrastructure.{e}")),
        ),
    };

    // Addresses: every entry must be an IP address (the only type Gatehouse serves); the
    // first is bound (standalone) or asked of the load balancer (Kubernetes).
    let mut address_error = None;
    let mut requested = Vec::new();
    for (i, a) in gateway.spec.addresses.iter().flatten().enumerate() {
        let type_ok = matches!(a.r#type.as_deref(), None | Some("IPAddress"));
        match a.value.as_deref().map(str::parse::<IpAddr>) {
            Some(Ok(ip)) if type_ok => requested.push(ip),
            _ => {
                address_error.get_or_insert(format!(
                    "spec.addresses[{i}]: {:?} of type {:?} is not an IP address Gatehouse can serve",
                    a.value.as_deref().unwrap_or_default(),
                    a.r#type.as_deref().unwrap_or("IPAddress")
                ));
            }
        }
    }
    let address = requested
        .first()
        .copied()
        .unwrap_or(settings.default_address);

    // In Kubernetes the pod binds every address; the Gateway's address is its Service's,
    // which must be the one asked for.
    let mut unusable = None;
    let (address, published) = match settings.infrastructure {
        Infrastructure::Host => (address, vec![address.to_string()]),
        Infrastructure::Kubernetes => {
            let assigned = load_balancer_addresses(store, &key);
            if let Some(want) = requested.first()
                && !assigned.is_empty()
                && !assigned.contains(&want.to_string())
            {
                unusable = Some(format!(
                    "spec.addresses[0]: the load balancer cannot give {want} (it assigned {})",
                    assigned.join(", ")
                ));
            }
            if requested.len() > 1 {
                unusable.get_or_insert(format!(
                    "spec.addresses: {} addresses asked for; a Gateway's load balancer has one",
                    requested.len()
                ));
            }
            (IpAddr::from([0, 0, 0, 0]), assigned)
        }
    };
    // The Gateway's own listeners, then its ListenerSets' in precedence order: one list,
    // with each listener's status beside it until it goes to its owner.
    let owner = Owner::Gateway(key.clone());
    let mut listeners = Vec::new();
    let mut listener_status = Vec::new();
    for l in &gateway.spec.listeners {
        let frontend = super::frontend::for_port(gateway, l.port);
        let (planned, ls) = plan_listener(store, &key, &owner, l, frontend.as_ref(), synthetic);
        listeners.push(planned);
        listener_status.push(ls);
    }
    mark_conflicts(
        &gateway.spec.listeners,
        &mut listeners,
        &mut listener_status,
    );
    let own = listeners.len();
    let sets = merge_listener_sets(store, gateway, &mut listeners, &mut listener_status, status);

    // Another (older) Gateway on the same address and port takes precedence.
    for (l, ls) in listeners.iter_mut().zip(&mut listener_status) {
        if !l.served
            || address_error.is_some()
            || settings.infrastructure == Infrastructure::Kubernetes
        {
            continue;
        }
        let taken = sockets.iter().find(|((ip, port), owner)| {
            *port == l.port
                && **owner != key
                && (*ip == address || ip.is_unspecified() || address.is_unspecified())
        });
        if let Some(((ip, port), owner)) = taken {
            l.served = false;
            let msg = format!("{ip}:{port} is already used by Gateway {owner}");
            set_listener(ls, reason::ACCEPTED, false, reason::PORT_UNAVAILABLE, &msg);
            set_listener(
                ls,
                reason::PROGRAMMED,
                false,
                reason::PORT_UNAVAILABLE,
                &msg,
            );
        } else {
            sockets.insert((address, l.port), key.clone());
        }
    }

    // The Gateway's conditions reflect its own listeners only (GEP-1713).
    let own_listeners = &listeners[..own];
    let any_served = own_listeners.iter().any(|l| l.served);
    // A Gateway refused as a whole: (Accepted reason, Programmed reason, message).
    let refusal = parameters_error
        .map(|m| (reason::INVALID_PARAMETERS, reason::INVALID, m))
        .or(address_error.map(|m| (reason::UNSUPPORTED_ADDRESS, reason::ADDRESS_NOT_USABLE, m)));
    let st = status.entry("Gateway", &key.namespace, &key.name, generation);
    if let Some((accepted, programmed, msg)) = &refusal {
        st.set(Condition::new(
            reason::ACCEPTED,
            false,
            accepted,
            msg.clone(),
        ));
        st.set(Condition::new(
            reason::PROGRAMMED,
            false,
            programmed,
            msg.clone(),
        ));
    } else if !any_served && !own_listeners.is_empty() {
        st.set(Condition::new(
            reason::ACCEPTED,
            false,
            reason::LISTENERS_NOT_VALID,
            "no listener is valid",
        ));
        st.set(Condition::new(
            reason::PROGRAMMED,
            false,
            reason::INVALID,
            "no listener is valid",
        ));
    } else if let Some(msg) = &unusable {
        // Accepted (the Gateway is fine), but not served at an address it did not ask for.
        st.set(accepted_condition(own_listeners, "Accepted by Gatehouse"));
        st.set(Condition::new(
            reason::PROGRAMMED,
            false,
            reason::ADDRESS_NOT_USABLE,
            msg.clone(),
        ));
    } else if settings.infrastructure == Infrastructure::Kubernetes
        && published.is_empty()
        && !synthetic
    {
        st.set(accepted_condition(own_listeners, "Accepted by Gatehouse"));
        st.set(Condition::new(
            reason::PROGRAMMED,
            false,
            reason::ADDRESS_NOT_ASSIGNED,
            format!(
                "waiting for Service {}/{} to get a load balancer address",
                key.namespace,
                super::infrastructure_name(&key.name)
            ),
        ));
    } else {
        let msg = if synthetic {
            "made for the Ingresses of an IngressClass that names no Gateway"
        } else {
            "Accepted by Gatehouse"
        };
        st.set(accepted_condition(own_listeners, msg));
        // Programmed turns True when the data plane acknowledges this generation.
        st.set(Condition::new(
            reason::PROGRAMMED,
            false,
            reason::PENDING,
            "waiting for the data plane to apply this generation",
        ));
    }
    if refusal.is_none() && unusable.is_none() {
        st.addresses = published.clone();
    }
    // The client certificate for backends: a bad reference is reported and not used; the
    // Gateway stays accepted (TLS backends that require one refuse the connection).
    let backend_client = backend_client_certificate(store, gateway, &key);
    match &backend_client {
        None => {}
        Some(Ok(_)) => st.set(Condition::new(
            reason::RESOLVED_REFS,
            true,
            reason::RESOLVED_REFS,
            "all references resolved",
        )),
        Some(Err((r, msg))) => st.set(Condition::new(reason::RESOLVED_REFS, false, r, msg.clone())),
    }
    if own_listeners.iter().any(|l| {
        l.client_validation
            .as_ref()
            .is_some_and(|v| v.insecure_fallback)
    }) {
        st.set(Condition::new(
            reason::INSECURE_FRONTEND_VALIDATION_MODE,
            true,
            reason::CONFIGURATION_CHANGED,
            "spec.tls.frontend: AllowInsecureFallback accepts clients without a valid certificate",
        ));
    }
    let gateway_accepted = refusal.is_none() && (any_served || own_listeners.is_empty());
    if !gateway_accepted {
        for l in &mut listeners {
            l.served = false;
        }
    }
    let listener_sets = finish_listener_sets(
        &key,
        gateway_accepted,
        &sets,
        &listeners,
        &mut listener_status,
        status,
    );
    let st = status.entry("Gateway", &key.namespace, &key.name, generation);
    st.attached_listener_sets = Some(listener_sets.iter().filter(|s| s.accepted).count() as i32);
    let mut own_status = listener_status;
    own_status.truncate(own);
    for ls in &mut own_status {
        for c in &mut ls.conditions {
            c.observed_generation = generation;
        }
    }
    st.listeners = own_status;

    PlannedGateway {
        key,
        generation,
        address,
        published,
        listeners,
        dataplane,
        synthetic,
        accepted: gateway_accepted,
        listener_sets,
        backend_client_certificate: backend_client.and_then(Result::ok),
    }
}

/// The Gateway's `spec.tls.backend.clientCertificateRef` as a certificate key, or why it
/// cannot be used; None when it has none.
fn backend_client_certificate(
    store: &Store,
    gateway: &Gateway,
    key: &ObjectKey,
) -> Option<Result<String, (&'static str, String)>> {
    let r = gateway
        .spec
        .tls
        .as_ref()?
        .backend
        .as_ref()?
        .client_certificate_ref
        .as_ref()?;
    let at = "spec.tls.backend.clientCertificateRef";
    let group = r.group.as_deref().unwrap_or("");
    let kind = r.kind.as_deref().unwrap_or("Secret");
    if !(group.is_empty() || group == "core") || kind != "Secret" {
        return Some(Err((
            reason::INVALID_CLIENT_CERTIFICATE_REF,
            format!("{at}: {group}/{kind} is not a Secret"),
        )));
    }
    let ns = r.namespace.as_deref().unwrap_or(&key.namespace);
    if let Err(e) = super::backends::may_read(store, "Gateway", key, "Secret", ns, &r.name) {
        return Some(Err((reason::REF_NOT_PERMITTED, format!("{at}: {e}"))));
    }
    Some(
        Backends::certificate(store, ns, &r.name)
            .map_err(|e| (reason::INVALID_CLIENT_CERTIFICATE_REF, format!("{at}: {e}"))),
    )
}

/// Accepted=True of a Gateway with at least one served listener; the reason is
/// ListenersNotValid when some other listener is not valid.
fn accepted_condition(listeners: &[PlannedListener], msg: &str) -> Condition {
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

/// Addresses of the Service that fronts a Gateway's data planes: its load balancer's, or its
/// cluster IP when the parameters chose a NodePort or ClusterIP Service.
fn load_balancer_addresses(store: &Store, gateway: &ObjectKey) -> Vec<String> {
    let Some(service) = store.services.get(&ObjectKey::new(
        &gateway.namespace,
        super::infrastructure_name(&gateway.name),
    )) else {
        return vec![];
    };
    let spec = service.spec.as_ref();
    if spec.and_then(|s| s.type_.as_deref()) != Some("LoadBalancer") {
        return spec
            .and_then(|s| s.cluster_ip.clone())
            .filter(|ip| !ip.is_empty() && ip != "None")
            .into_iter()
            .collect();
    }
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|ingress| {
            ingress
                .iter()
                .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn set_listener(ls: &mut ListenerStatus, type_: &str, ok: bool, reason: &str, msg: &str) {
    crate::status::set_condition(&mut ls.conditions, Condition::new(type_, ok, reason, msg));
}

fn plan_listener(
    store: &Store,
    gateway: &ObjectKey,
    owner: &Owner,
    l: &GatewayListeners,
    frontend: Option<&super::frontend::PortValidation>,
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
    let mut resolved = true;
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

    // allowedRoutes.kinds: only HTTPRoute for HTTP(S) listeners.
    let mut allows_http_routes = protocol.is_some();
    if let Some(kinds) = l.allowed_routes.as_ref().and_then(|a| a.kinds.as_ref()) {
        let mut invalid = Vec::new();
        allows_http_routes = false;
        for k in kinds {
            let group = k.group.as_deref().unwrap_or(GATEWAY_GROUP);
            if group == GATEWAY_GROUP && k.kind == "HTTPRoute" && protocol.is_some() {
                allows_http_routes = true;
            } else {
                invalid.push(format!("{group}/{}", k.kind));
            }
        }
        if !invalid.is_empty() {
            resolved = false;
            set_listener(
                &mut ls,
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

    let allowed_namespaces = match l
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
    };

    let hostname = l
        .hostname
        .as_deref()
        .map(HostMatch::gateway)
        .unwrap_or(HostMatch::Any);

    // TLS material for HTTPS.
    let mut certificates = Vec::new();
    let mut client_validation = None;
    if protocol == Some(Protocol::Https) {
        let tls = l.tls.as_ref();
        if matches!(
            tls.and_then(|t| t.mode.as_ref()),
            Some(GatewayListenersTlsMode::Passthrough)
        ) {
            accepted = false;
            set_listener(
                &mut ls,
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
            let ns = r.namespace.as_deref().unwrap_or(&owner.key().namespace);
            if !(group.is_empty() || group == "core") || kind != "Secret" {
                problems.push((
                    reason::INVALID_CERTIFICATE_REF,
                    format!("tls.certificateRefs[{i}]: kind {group}/{kind} is not a Secret"),
                ));
                continue;
            }
            if let Err(e) =
                super::backends::may_read(store, owner.kind(), owner.key(), "Secret", ns, &r.name)
            {
                problems.push((
                    reason::REF_NOT_PERMITTED,
                    format!("tls.certificateRefs[{i}]: {e}"),
                ));
                continue;
            }
            match Backends::certificate(store, ns, &r.name) {
                Ok(cert) => certificates.push(SniCertificate {
                    server_names: match &hostname {
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
        if refs.is_empty() && !synthetic {
            problems.push((
                reason::INVALID_CERTIFICATE_REF,
                "tls.certificateRefs: an HTTPS listener needs at least one certificate".into(),
            ));
        }
        // Client certificate validation: a listener none of whose CAs resolve is not
        // served (it would accept clients it was told to refuse).
        if let Some(v) = frontend {
            let (validation, ca_problems) = super::frontend::resolve(store, gateway, v);
            if validation.is_none() {
                accepted = false;
                set_listener(
                    &mut ls,
                    reason::ACCEPTED,
                    false,
                    reason::NO_VALID_CA_CERTIFICATE,
                    "spec.tls.frontend: no CA certificate reference of this port resolves",
                );
            }
            problems.extend(ca_problems);
            client_validation = validation;
        }
        if let Some((r, _)) = problems.first() {
            resolved = false;
            let msg = problems
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            set_listener(&mut ls, reason::RESOLVED_REFS, false, r, &msg);
        }
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
    let https_ok = protocol != Some(Protocol::Https) || !certificates.is_empty() || synthetic;
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
        allowed_namespaces,
        allows_http_routes,
        certificates,
        client_validation,
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

/// Listeners on one port must agree on protocol and differ in hostname.
fn mark_conflicts(
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

/// The Gateway of ours a parentRef (group, kind, namespace, name) leads to, and the
/// owner of the listeners it may attach to; None when the parent is not ours.
pub fn parent(
    gateways: &BTreeMap<ObjectKey, PlannedGateway>,
    group: Option<&str>,
    kind: Option<&str>,
    namespace: &str,
    name: &str,
) -> Option<(ObjectKey, Owner)> {
    if group.unwrap_or(GATEWAY_GROUP) != GATEWAY_GROUP {
        return None;
    }
    let key = ObjectKey::new(namespace, name);
    match kind.unwrap_or("Gateway") {
        "Gateway" => gateways
            .contains_key(&key)
            .then(|| (key.clone(), Owner::Gateway(key))),
        "ListenerSet" => gateways
            .values()
            .find(|g| g.listener_sets.iter().any(|s| s.key == key))
            .map(|g| (g.key.clone(), Owner::ListenerSet(key))),
        _ => None,
    }
}

/// A ListenerSet's place in its Gateway's merged listener list.
struct MergedSet {
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
fn merge_listener_sets(
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
            let frontend = super::frontend::for_port(gateway, l.port);
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
fn finish_listener_sets(
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
            });
        }
    }
}
