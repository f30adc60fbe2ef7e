//! Planning Gateways: the data plane parameters, addresses, listeners (the Gateway's own,
//! then its ListenerSets'), the sockets they claim, and the Gateway's conditions.

use super::classes::{classes, parameters};
use super::listener::{accepted_condition, mark_conflicts, plan_listener, set_listener};
use super::listener_sets::{finish_listener_sets, merge_listener_sets};
use super::planned::{Owner, PlannedGateway, PlannedListener};
use crate::backends::Backends;
use crate::gwapi::gateways::Gateway;
use crate::meta::age;
use crate::settings::{Infrastructure, Settings};
use crate::status::{Condition, ListenerStatus, ObjectStatus, StatusReport, reason};
use crate::store::{ObjectKey, Store};
use gatehouse_api::GatewayParametersSpec;
use gatehouse_model::ir;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

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

/// Where a Gateway binds and what status reports as its addresses, or why it cannot be
/// served at the address it asked for.
struct GatewayAddresses {
    /// Where listeners bind.
    bind: IpAddr,
    published: Vec<String>,
    /// An address of a type or value Gatehouse cannot serve: the Gateway is refused.
    error: Option<String>,
    /// Kubernetes: the load balancer gave another address than the one asked for.
    unusable: Option<String>,
}

/// A Gateway refused as a whole: (Accepted reason, Programmed reason, message).
type Refusal = (&'static str, &'static str, String);

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
    let (dataplane, mut parameters_error) =
        dataplane_parameters(store, gateway, &key, class_parameters);
    let (client_limits, mut forwarding) = match client_settings(dataplane.clients.as_ref()) {
        Ok(settings) => settings,
        Err(e) => {
            parameters_error.get_or_insert(format!("spec.infrastructure.{e}"));
            Default::default()
        }
    };
    match tracing_settings(dataplane.tracing.as_ref()) {
        Ok(tracing) => forwarding.tracing = tracing,
        Err(e) => {
            parameters_error.get_or_insert(format!("spec.infrastructure.{e}"));
        }
    }
    let addresses = addresses(store, settings, gateway, &key);

    // The Gateway's own listeners, then its ListenerSets' in precedence order: one list,
    // with each listener's status beside it until it goes to its owner.
    let owner = Owner::Gateway(key.clone());
    let mut listeners = Vec::new();
    let mut listener_status = Vec::new();
    for l in &gateway.spec.listeners {
        let frontend = crate::client_certificates::for_port(gateway, l.port);
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
    if addresses.error.is_none() && settings.infrastructure == Infrastructure::Host {
        claim_sockets(
            &key,
            addresses.bind,
            &mut listeners,
            &mut listener_status,
            sockets,
        );
    }

    // The Gateway's conditions reflect its own listeners only (GEP-1713).
    let own_listeners = &listeners[..own];
    let any_served = own_listeners.iter().any(|l| l.served);
    let refusal: Option<Refusal> = parameters_error
        .map(|m| (reason::INVALID_PARAMETERS, reason::INVALID, m))
        .or(addresses
            .error
            .clone()
            .map(|m| (reason::UNSUPPORTED_ADDRESS, reason::ADDRESS_NOT_USABLE, m)));
    let st = status.entry("Gateway", &key.namespace, &key.name, generation);
    set_gateway_conditions(
        st,
        settings,
        &key,
        synthetic,
        refusal.as_ref(),
        &addresses,
        own_listeners,
    );
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
        address: addresses.bind,
        published: addresses.published,
        listeners,
        client_limits,
        forwarding,
        dataplane,
        synthetic,
        accepted: gateway_accepted,
        listener_sets,
        backend_client_certificate: backend_client.and_then(Result::ok),
    }
}

/// The clients' timeouts, caps and forwarding: the defaults, with what the parameters
/// set; an unusable trusted proxy network is the parameters' error.
fn client_settings(
    p: Option<&gatehouse_api::ClientParameters>,
) -> Result<(ir::ClientLimits, ir::Forwarding), String> {
    let mut limits = ir::ClientLimits::default();
    let mut forwarding = ir::Forwarding::default();
    let Some(p) = p else {
        return Ok((limits, forwarding));
    };
    use gatehouse_api::client_bounds as bounds;
    let ms = |s: u32| u64::from(s) * 1000;
    // The CRD's bounds, checked again: a file in standalone mode meets no API server, and a
    // zero timeout or cap would close every connection.
    let checked = |field: &str, v: Option<u32>, (min, max): (u32, u32)| match v {
        Some(n) if n < min || n > max => Err(format!(
            "parametersRef: GatewayParameters spec.clients.{field}: {n} is not within {min}..{max}"
        )),
        v => Ok(v),
    };
    if let Some(s) = checked(
        "headerTimeoutSeconds",
        p.header_timeout_seconds,
        bounds::HEADER_TIMEOUT_SECONDS,
    )? {
        limits.header_timeout_ms = ms(s);
    }
    if let Some(s) = checked(
        "idleTimeoutSeconds",
        p.idle_timeout_seconds,
        bounds::IDLE_TIMEOUT_SECONDS,
    )? {
        limits.idle_timeout_ms = ms(s);
    }
    if let Some(n) = checked("maxConnections", p.max_connections, bounds::MAX_CONNECTIONS)? {
        limits.max_connections = n;
    }
    if let Some(n) = checked(
        "maxRequestHeaderBytes",
        p.max_request_header_bytes,
        bounds::MAX_REQUEST_HEADER_BYTES,
    )? {
        limits.max_header_bytes = n;
    }
    if let Some(n) = checked(
        "maxRequestHeaders",
        p.max_request_headers,
        bounds::MAX_REQUEST_HEADERS,
    )? {
        limits.max_headers = n;
    }
    if let Some(s) = checked(
        "upstreamResponseHeaderTimeoutSeconds",
        p.upstream_response_header_timeout_seconds,
        bounds::UPSTREAM_RESPONSE_HEADER_TIMEOUT_SECONDS,
    )? {
        limits.upstream_header_timeout_ms = ms(s);
    }
    if let Some(s) = checked(
        "http2PingIntervalSeconds",
        p.http2_ping_interval_seconds,
        bounds::HTTP2_PING_INTERVAL_SECONDS,
    )? {
        limits.h2_ping_interval_ms = ms(s);
    }
    forwarding.proxy_protocol = p.proxy_protocol.unwrap_or(false);
    forwarding.keep_underscore_headers = p.keep_underscore_headers.unwrap_or(false);
    forwarding.access_log = p.access_log.unwrap_or(false);
    forwarding.generate_request_id = p.generate_request_id.unwrap_or(false);
    for (i, n) in p.trusted_proxies.iter().flatten().enumerate() {
        ir::parse_network(n).map_err(|e| {
            format!("parametersRef: GatewayParameters spec.clients.trustedProxies[{i}]: {n:?}: {e}")
        })?;
        forwarding.trusted_proxies.push(n.clone());
    }
    Ok((limits, forwarding))
}

/// Where the Gateway's spans go: the parameters' tracing with its defaults, checked as the
/// data plane checks it.
fn tracing_settings(
    p: Option<&gatehouse_api::TracingParameters>,
) -> Result<Option<Box<ir::Tracing>>, String> {
    let Some(p) = p else {
        return Ok(None);
    };
    let tracing = ir::Tracing {
        endpoint: p.endpoint.clone(),
        protocol: match p.protocol.unwrap_or_default() {
            gatehouse_api::TracingProtocol::Grpc => ir::TraceProtocol::Grpc,
            gatehouse_api::TracingProtocol::Http => ir::TraceProtocol::Http,
        },
        sampling_percent: p.sampling_percent.unwrap_or(100),
        service_name: p
            .service_name
            .clone()
            .unwrap_or_else(|| "gatehouse".to_string()),
        resource_attributes: p.resource_attributes.clone().unwrap_or_default(),
    };
    tracing
        .check()
        .map_err(|e| format!("parametersRef: GatewayParameters spec.tracing.{e}"))?;
    Ok(Some(Box::new(tracing)))
}

/// Data plane shape: the class's parameters, overridden field by field by the Gateway's;
/// with why the Gateway's own cannot be used.
fn dataplane_parameters(
    store: &Store,
    gateway: &Gateway,
    key: &ObjectKey,
    class_parameters: &GatewayParametersSpec,
) -> (GatewayParametersSpec, Option<String>) {
    let own_parameters = match gateway
        .spec
        .infrastructure
        .as_ref()
        .and_then(|i| i.parameters_ref.as_ref())
    {
        None => Ok(GatewayParametersSpec::default()),
        Some(p) => parameters(store, &p.group, &p.kind, &key.namespace, &p.name),
    };
    match own_parameters {
        Ok(own) => (class_parameters.overridden_by(&own), None),
        Err(e) => (
            class_parameters.clone(),
            Some(format!("spec.infrastructure.{e}")),
        ),
    }
}

/// Addresses: every entry must be an IP address (the only type Gatehouse serves); the
/// first is bound (standalone) or asked of the load balancer (Kubernetes). In Kubernetes
/// the pod binds every address; the Gateway's address is its Service's, which must be the
/// one asked for.
fn addresses(
    store: &Store,
    settings: &Settings,
    gateway: &Gateway,
    key: &ObjectKey,
) -> GatewayAddresses {
    let mut error = None;
    let mut requested = Vec::new();
    for (i, a) in gateway.spec.addresses.iter().flatten().enumerate() {
        let type_ok = matches!(a.r#type.as_deref(), None | Some("IPAddress"));
        match a.value.as_deref().map(str::parse::<IpAddr>) {
            Some(Ok(ip)) if type_ok => requested.push(ip),
            _ => {
                error.get_or_insert(format!(
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
    let mut unusable = None;
    let (bind, published) = match settings.infrastructure {
        Infrastructure::Host => (address, vec![address.to_string()]),
        Infrastructure::Kubernetes => {
            let assigned = load_balancer_addresses(store, key);
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
    GatewayAddresses {
        bind,
        published,
        error,
        unusable,
    }
}

/// On one host, each served listener claims its address and port; another (older) Gateway
/// on the same address and port takes precedence.
fn claim_sockets(
    key: &ObjectKey,
    address: IpAddr,
    listeners: &mut [PlannedListener],
    listener_status: &mut [ListenerStatus],
    sockets: &mut HashMap<(IpAddr, u16), ObjectKey>,
) {
    for (l, ls) in listeners.iter_mut().zip(listener_status) {
        if !l.served {
            continue;
        }
        let taken = sockets.iter().find(|((ip, port), owner)| {
            *port == l.port
                && *owner != key
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
}

/// The Gateway's Accepted and Programmed conditions and its addresses.
fn set_gateway_conditions(
    st: &mut ObjectStatus,
    settings: &Settings,
    key: &ObjectKey,
    synthetic: bool,
    refusal: Option<&Refusal>,
    addresses: &GatewayAddresses,
    own_listeners: &[PlannedListener],
) {
    let any_served = own_listeners.iter().any(|l| l.served);
    if let Some((accepted, programmed, msg)) = refusal {
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
    } else if let Some(msg) = &addresses.unusable {
        // Accepted (the Gateway is fine), but not served at an address it did not ask for.
        st.set(accepted_condition(own_listeners, "Accepted by Gatehouse"));
        st.set(Condition::new(
            reason::PROGRAMMED,
            false,
            reason::ADDRESS_NOT_USABLE,
            msg.clone(),
        ));
    } else if settings.infrastructure == Infrastructure::Kubernetes
        && addresses.published.is_empty()
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
                crate::settings::infrastructure_name(&key.name)
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
    if refusal.is_none() && addresses.unusable.is_none() {
        st.addresses = addresses.published.clone();
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
    if let Err(e) = crate::references::may_read(store, "Gateway", key, "Secret", ns, &r.name) {
        return Some(Err((reason::REF_NOT_PERMITTED, format!("{at}: {e}"))));
    }
    Some(
        Backends::certificate(store, ns, &r.name)
            .map_err(|e| (reason::INVALID_CLIENT_CERTIFICATE_REF, format!("{at}: {e}"))),
    )
}

/// Addresses of the Service that fronts a Gateway's data planes: its load balancer's, or its
/// cluster IP when the parameters chose a NodePort or ClusterIP Service.
fn load_balancer_addresses(store: &Store, gateway: &ObjectKey) -> Vec<String> {
    let Some(service) = store.services.get(&ObjectKey::new(
        &gateway.namespace,
        crate::settings::infrastructure_name(&gateway.name),
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

#[cfg(test)]
mod tests {
    use crate::test_support::{
        HTTP_ALL, condition, gateway_with, is, listener_condition, translated,
    };

    #[test]
    fn the_older_gateway_keeps_a_shared_address_and_port() {
        let yaml = gateway_with(HTTP_ALL)
            + "---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: newer, namespace: infra, creationTimestamp: '2030-01-01T00:00:00Z'}
spec:
  gatewayClassName: gatehouse
  listeners: [{name: http, port: 80, protocol: HTTP}]
";
        let out = translated(&yaml);
        assert_eq!(
            listener_condition(&out, "Gateway infra/newer", "http", "Accepted"),
            is("False", "PortUnavailable")
        );
        assert_eq!(
            listener_condition(&out, "Gateway infra/gw", "http", "Accepted"),
            is("True", "Accepted")
        );
    }

    #[test]
    fn an_address_that_is_not_an_ip_refuses_the_gateway() {
        let yaml = gateway_with(HTTP_ALL).replace(
            "  gatewayClassName: gatehouse\n",
            "  gatewayClassName: gatehouse\n  addresses: [{type: Hostname, value: gw.example}]\n",
        );
        let out = translated(&yaml);
        assert_eq!(
            condition(&out, "Gateway infra/gw", "Accepted"),
            is("False", "UnsupportedAddress")
        );
        assert!(
            out.config.listeners.is_empty(),
            "a refused Gateway serves nothing"
        );
    }

    /// A Gateway's parameters set its clients' limits on every listener; unset ones keep
    /// the defaults.
    /// The test Gateway with GatewayParameters whose `spec.clients` is `clients`.
    fn with_clients(clients: &str) -> String {
        gateway_with(HTTP_ALL).replace(
            "  gatewayClassName: gatehouse\n",
            "  gatewayClassName: gatehouse\n  infrastructure: {parametersRef: {group: gatehouse.dev, kind: GatewayParameters, name: p}}\n",
        ) + &format!("---
apiVersion: gatehouse.dev/v1alpha1
kind: GatewayParameters
metadata: {{name: p, namespace: infra}}
spec: {{clients: {clients}}}
")
    }

    #[test]
    fn client_limits_come_from_the_gateways_parameters() {
        let out = translated(&with_clients(
            "{headerTimeoutSeconds: 2, maxConnections: 7}",
        ));
        let limits = out.config.listeners[0].limits;
        assert_eq!(limits.header_timeout_ms, 2000);
        assert_eq!(limits.max_connections, 7);
        assert_eq!(
            limits.idle_timeout_ms,
            gatehouse_model::ir::ClientLimits::default().idle_timeout_ms
        );
    }

    /// `spec.tracing` reaches every listener with its defaults; an endpoint the data plane
    /// cannot send to refuses the Gateway with the field named.
    #[test]
    fn tracing_comes_from_the_gateways_parameters() {
        let with_tracing = |tracing: &str| {
            with_clients("{}").replace(
                "spec: {clients: {}}",
                &format!("spec: {{tracing: {tracing}}}"),
            )
        };
        let out = translated(&with_tracing(
            "{endpoint: 'http://otel.observability:4317'}",
        ));
        let t = out.config.listeners[0]
            .forwarding
            .tracing
            .clone()
            .expect("tracing");
        assert_eq!(t.endpoint, "http://otel.observability:4317");
        assert_eq!(t.protocol, gatehouse_model::ir::TraceProtocol::Grpc);
        assert_eq!(
            (t.sampling_percent, t.service_name.as_str()),
            (100, "gatehouse")
        );
        assert!(
            out.config
                .listeners
                .iter()
                .all(|l| l.forwarding.tracing.is_some())
        );

        let out = translated(&with_tracing("{endpoint: 'https://otel:4317'}"));
        let c = out.status.objects["Gateway infra/gw"]
            .condition("Accepted")
            .expect("an Accepted condition");
        assert_eq!(c.status, "False", "{c:?}");
        assert!(c.message.contains("spec.tracing.endpoint"), "{c:?}");
    }

    /// Numbers outside the CRD's bounds (a file meets no API server) refuse the Gateway
    /// with the field named, rather than close every connection at once.
    #[test]
    fn client_limits_outside_their_bounds_are_refused() {
        let out = translated(&with_clients("{maxConnections: 0}"));
        let accepted = &out.status.objects["Gateway infra/gw"];
        let c = accepted
            .condition("Accepted")
            .expect("an Accepted condition");
        assert_eq!(c.status, "False", "{c:?}");
        assert!(
            c.message.contains("spec.clients.maxConnections: 0"),
            "{c:?}"
        );
    }

    #[test]
    fn a_gateway_waits_for_its_data_plane_to_be_programmed() {
        let out = translated(&gateway_with(HTTP_ALL));
        assert_eq!(
            condition(&out, "Gateway infra/gw", "Programmed"),
            is("False", "Pending")
        );
        assert_eq!(
            out.status.objects["Gateway infra/gw"].addresses,
            ["127.0.0.1"]
        );
    }
}
