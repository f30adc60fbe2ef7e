//! Gatehouse's own Kubernetes API (group `gatehouse.dev`).
//!
//! These Rust types are the single definition of our CRDs: `gatehouse crds` prints the
//! CustomResourceDefinitions generated from them into crds/, and CI fails when crds/ is
//! stale. Kept apart from the operator so the schema has no dependency on how it is used.

use k8s_openapi::api::core::v1::{
    Affinity, ResourceRequirements, SecurityContext, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const GROUP: &str = "gatehouse.dev";

/// How a Gateway's data planes run. Named by a GatewayClass's `spec.parametersRef`
/// (defaults for every Gateway of the class) or by a Gateway's
/// `spec.infrastructure.parametersRef` (for that Gateway; its fields win over the class's).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "gatehouse.dev",
    version = "v1alpha1",
    kind = "GatewayParameters",
    plural = "gatewayparameters",
    shortname = "gwparams",
    doc = "How a Gateway's data planes run: replicas, resources, scheduling, disruption budget, autoscaling, Service, client limits, shutdown",
    namespaced,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".spec.replicas","description":"Data plane pods (without an autoscaler)"}"#,
    printcolumn = r#"{"name":"Max","type":"integer","jsonPath":".spec.autoscaling.maxReplicas","description":"The autoscaler's maximum"}"#,
    printcolumn = r#"{"name":"Service","type":"string","jsonPath":".spec.service.type","description":"The data plane Service's type"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GatewayParametersSpec {
    /// Data plane pods per Gateway (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,
    /// CPU and memory of the data plane container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The Service in front of the data planes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceParameters>,
    /// Timeouts and caps for the Gateway's clients; each unset field keeps its default
    /// (docs/security.md lists them beside nginx's and Envoy's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients: Option<ClientParameters>,
    /// How a data plane pod stops (a rollout, a scale-down, a node drain) without failing
    /// a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown: Option<ShutdownParameters>,
    /// Where the data plane pods run and what they carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodParameters>,
    /// A PodDisruptionBudget for the data plane pods (none by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_disruption_budget: Option<DisruptionBudgetParameters>,
    /// A HorizontalPodAutoscaler for the data plane Deployment; with it, `replicas` is
    /// left to the autoscaler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingParameters>,
    /// Traces of the Gateway's requests, exported over OTLP (none by default). The Gateway's
    /// own tracing, when it has one, replaces its class's as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TracingParameters>,
}

/// Where and how often the data planes send a span per request (W3C Trace Context in,
/// OpenTelemetry's OTLP out).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TracingParameters {
    /// The collector: `http://host:port`, as OTEL_EXPORTER_OTLP_ENDPOINT (OTLP/HTTP sends
    /// to its `/v1/traces`). Plaintext only: a collector agent beside the data planes.
    #[schemars(length(min = 1, max = 253))]
    pub endpoint: String,
    /// OTLP over gRPC (`GRPC`, the default, port 4317 by convention) or over HTTP with
    /// protobuf bodies (`HTTP`, 4318).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<TracingProtocol>,
    /// Of the requests that come without a sampling decision (no `traceparent`), the
    /// percentage traced, by trace id (default 100). A request whose `traceparent` says
    /// sampled or not is traced or not, whatever this says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub sampling_percent: Option<u32>,
    /// The spans' `service.name` (default `gatehouse`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub service_name: Option<String>,
    /// Further resource attributes of every span (`deployment.environment: prod`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub resource_attributes: Option<BTreeMap<String, String>>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum TracingProtocol {
    #[default]
    #[serde(rename = "GRPC")]
    Grpc,
    #[serde(rename = "HTTP")]
    Http,
}

/// The data plane pods' scheduling and metadata, as in a PodSpec.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Added to the pods' labels (the ones Gatehouse selects them by stay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Added to the pods' annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// The data plane container's securityContext, in place of Gatehouse's (non-root,
    /// read-only root filesystem, no capabilities, no privilege escalation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
}

/// A PodDisruptionBudget: one of the two (given both, minAvailable is used; neither,
/// maxUnavailable 1).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DisruptionBudgetParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
}

/// A HorizontalPodAutoscaler (autoscaling/v2) on CPU.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingParameters {
    /// Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: Option<i32>,
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Average CPU utilisation to hold, in percent of the pods' CPU request (default 80).
    #[serde(
        default,
        rename = "targetCPUUtilizationPercentage",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: Option<i32>,
}

/// A data plane's drain on SIGTERM: unready at once, serving for `drainDelaySeconds`
/// while the load balancer and kube-proxy stop sending new connections, then listeners
/// closed and requests in flight given `drainTimeoutSeconds` to finish. The pod's
/// termination grace period is the sum plus 5 s.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShutdownParameters {
    /// Seconds of serving, unready, before the listeners close (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 300))]
    pub drain_delay_seconds: Option<u32>,
    /// Seconds requests in flight have after the listeners closed (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub drain_timeout_seconds: Option<u32>,
}

impl ShutdownParameters {
    pub const DEFAULT_DRAIN_DELAY_SECONDS: u32 = 5;
    pub const DEFAULT_DRAIN_TIMEOUT_SECONDS: u32 = 30;

    /// (drain delay, drain timeout) in seconds, defaults filled in and bounds applied (a
    /// file in standalone mode meets no API server's schema).
    pub fn seconds(&self) -> (u32, u32) {
        (
            self.drain_delay_seconds
                .unwrap_or(Self::DEFAULT_DRAIN_DELAY_SECONDS)
                .min(300),
            self.drain_timeout_seconds
                .unwrap_or(Self::DEFAULT_DRAIN_TIMEOUT_SECONDS)
                .clamp(1, 3600),
        )
    }
}

/// The bounds of `ClientParameters`' numbers, inclusive: the CRD's schema holds them, and
/// translation checks them again (a file in standalone mode meets no API server).
pub mod client_bounds {
    pub const HEADER_TIMEOUT_SECONDS: (u32, u32) = (1, 3600);
    pub const IDLE_TIMEOUT_SECONDS: (u32, u32) = (1, 86400);
    pub const MAX_CONNECTIONS: (u32, u32) = (1, 1_000_000);
    pub const MAX_REQUEST_HEADER_BYTES: (u32, u32) = (1024, 1_048_576);
    pub const MAX_REQUEST_HEADERS: (u32, u32) = (8, 1000);
    pub const UPSTREAM_RESPONSE_HEADER_TIMEOUT_SECONDS: (u32, u32) = (1, 3600);
    pub const HTTP2_PING_INTERVAL_SECONDS: (u32, u32) = (0, 3600);
}

/// How the Gateway treats its clients: what a client may take and hold, and how its
/// address is learned.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientParameters {
    /// The whole request head, from its first byte (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = client_bounds::HEADER_TIMEOUT_SECONDS.0, max = client_bounds::HEADER_TIMEOUT_SECONDS.1))]
    pub header_timeout_seconds: Option<u32>,
    /// A kept-alive connection between requests, an HTTP/2 connection with no stream
    /// (default 75).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = client_bounds::IDLE_TIMEOUT_SECONDS.0, max = client_bounds::IDLE_TIMEOUT_SECONDS.1))]
    pub idle_timeout_seconds: Option<u32>,
    /// Open client connections per port; more are closed at once (default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = client_bounds::MAX_CONNECTIONS.0, max = client_bounds::MAX_CONNECTIONS.1))]
    pub max_connections: Option<u32>,
    /// A request head's size in bytes; larger is answered 431 (default 65536).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = client_bounds::MAX_REQUEST_HEADER_BYTES.0, max = client_bounds::MAX_REQUEST_HEADER_BYTES.1))]
    pub max_request_header_bytes: Option<u32>,
    /// A request head's header count; more is answered 431 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = client_bounds::MAX_REQUEST_HEADERS.0, max = client_bounds::MAX_REQUEST_HEADERS.1))]
    pub max_request_headers: Option<u32>,
    /// A backend's answer head, from the request sent; 504 when exceeded (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = client_bounds::UPSTREAM_RESPONSE_HEADER_TIMEOUT_SECONDS.0, max = client_bounds::UPSTREAM_RESPONSE_HEADER_TIMEOUT_SECONDS.1))]
    pub upstream_response_header_timeout_seconds: Option<u32>,
    /// An HTTP/2 PING on every client connection this often; a connection whose peer does
    /// not answer one within 20 s (or the interval, when shorter) is closed. 0: none
    /// (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(
        min = client_bounds::HTTP2_PING_INTERVAL_SECONDS.0,
        max = client_bounds::HTTP2_PING_INTERVAL_SECONDS.1
    ))]
    pub http2_ping_interval_seconds: Option<u32>,
    /// Every connection starts with a PROXY protocol header (v1 or v2) from the load
    /// balancer in front, whose source address is the client's (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<bool>,
    /// Networks (CIDR or address) of proxies whose X-Forwarded-For is believed: the client
    /// is the last address of the chain not in them. Empty (the default): the client is
    /// the connection's peer, and a client's X-Forwarded-For is replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub trusted_proxies: Option<Vec<String>>,
    /// Pass on header names with underscores (default false, as nginx's
    /// underscores_in_headers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_underscore_headers: Option<bool>,
    /// One JSON line per request (time, client, method, host, path, status, bytes,
    /// durations, upstream, route, request id, user agent, TLS) on the data planes'
    /// standard output (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log: Option<bool>,
    /// Give a request without X-Request-ID one, sent to the backend and logged; one the
    /// client sent is passed on (default false: passed on, none generated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_request_id: Option<bool>,
}

impl ClientParameters {
    /// These with every field `over` sets taking its place.
    pub fn overridden_by(&self, over: &ClientParameters) -> ClientParameters {
        ClientParameters {
            header_timeout_seconds: over.header_timeout_seconds.or(self.header_timeout_seconds),
            idle_timeout_seconds: over.idle_timeout_seconds.or(self.idle_timeout_seconds),
            max_connections: over.max_connections.or(self.max_connections),
            max_request_header_bytes: over
                .max_request_header_bytes
                .or(self.max_request_header_bytes),
            max_request_headers: over.max_request_headers.or(self.max_request_headers),
            upstream_response_header_timeout_seconds: over
                .upstream_response_header_timeout_seconds
                .or(self.upstream_response_header_timeout_seconds),
            http2_ping_interval_seconds: over
                .http2_ping_interval_seconds
                .or(self.http2_ping_interval_seconds),
            proxy_protocol: over.proxy_protocol.or(self.proxy_protocol),
            trusted_proxies: over
                .trusted_proxies
                .clone()
                .or_else(|| self.trusted_proxies.clone()),
            keep_underscore_headers: over
                .keep_underscore_headers
                .or(self.keep_underscore_headers),
            access_log: over.access_log.or(self.access_log),
            generate_request_id: over.generate_request_id.or(self.generate_request_id),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceParameters {
    /// Service type (default LoadBalancer).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub service_type: Option<ServiceType>,
    /// Added to the Service's annotations (a cloud load balancer's settings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// `Local` keeps the client's source address and skips the second hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<ExternalTrafficPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_class: Option<String>,
    /// Client networks the load balancer admits (CIDRs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub load_balancer_source_ranges: Option<Vec<String>>,
    /// The node port of a listener port (NodePort and LoadBalancer Services); the others
    /// are allocated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_ports: Option<Vec<NodePort>>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ExternalTrafficPolicy {
    Cluster,
    Local,
}

impl ExternalTrafficPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ExternalTrafficPolicy::Cluster => "Cluster",
            ExternalTrafficPolicy::Local => "Local",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodePort {
    /// A listener's port.
    pub port: u16,
    #[schemars(range(min = 1, max = 65535))]
    pub node_port: u16,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    LoadBalancer,
    NodePort,
    ClusterIP,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::LoadBalancer => "LoadBalancer",
            ServiceType::NodePort => "NodePort",
            ServiceType::ClusterIP => "ClusterIP",
        }
    }
}

impl GatewayParametersSpec {
    /// These parameters with every field `over` sets taking its place (Gateway over class).
    pub fn overridden_by(&self, over: &GatewayParametersSpec) -> GatewayParametersSpec {
        GatewayParametersSpec {
            replicas: over.replicas.or(self.replicas),
            resources: over.resources.clone().or_else(|| self.resources.clone()),
            service: over.service.clone().or_else(|| self.service.clone()),
            clients: match (&self.clients, &over.clients) {
                (Some(a), Some(b)) => Some(a.overridden_by(b)),
                (a, b) => b.clone().or_else(|| a.clone()),
            },
            pod: over.pod.clone().or_else(|| self.pod.clone()),
            pod_disruption_budget: over
                .pod_disruption_budget
                .clone()
                .or_else(|| self.pod_disruption_budget.clone()),
            autoscaling: over
                .autoscaling
                .clone()
                .or_else(|| self.autoscaling.clone()),
            tracing: over.tracing.clone().or_else(|| self.tracing.clone()),
            shutdown: match (&self.shutdown, &over.shutdown) {
                (Some(a), Some(b)) => Some(ShutdownParameters {
                    drain_delay_seconds: b.drain_delay_seconds.or(a.drain_delay_seconds),
                    drain_timeout_seconds: b.drain_timeout_seconds.or(a.drain_timeout_seconds),
                }),
                (a, b) => b.clone().or_else(|| a.clone()),
            },
        }
    }
}

/// What serves the Ingresses of an IngressClass, and how, named by the IngressClass's
/// `spec.parameters`. Pointing a class at an existing Gateway lets its Ingresses and
/// HTTPRoutes share that Gateway's listeners during a migration.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "gatehouse.dev",
    version = "v1alpha1",
    kind = "IngressClassParameters",
    plural = "ingressclassparameters",
    shortname = "icparams",
    doc = "The Gateway that serves an IngressClass's Ingresses, and the class's defaults",
    printcolumn = r#"{"name":"Gateway Namespace","type":"string","jsonPath":".spec.gatewayRef.namespace","description":"The Gateway serving the class's Ingresses (none: one made for the class)"}"#,
    printcolumn = r#"{"name":"Gateway","type":"string","jsonPath":".spec.gatewayRef.name"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IngressClassParametersSpec {
    /// The Gateway whose listeners serve this class's Ingresses; without it, a Gateway
    /// made for the class (HTTP on 80, HTTPS on 443 when an Ingress has TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_ref: Option<GatewayReference>,
    /// Whether plain HTTP to a host with TLS is redirected to HTTPS when an Ingress does
    /// not say (`nginx.ingress.kubernetes.io/ssl-redirect`); true when unset, as
    /// ingress-nginx's `ssl-redirect` ConfigMap setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_redirect: Option<bool>,
    /// Strict-Transport-Security on HTTPS answers for hosts with TLS; sent with nginx's
    /// defaults when unset (ingress-nginx's `hsts` ConfigMap settings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsts: Option<Hsts>,
}

/// HTTP Strict Transport Security sent on answers over HTTPS: ingress-nginx's `hsts*`
/// ConfigMap settings, with its defaults.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Hsts {
    /// Whether the header is sent at all (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `max-age` in seconds (default 31536000, one year).
    #[serde(default = "one_year")]
    pub max_age: u64,
    /// Adds `includeSubDomains` (default true).
    #[serde(default = "yes")]
    pub include_sub_domains: bool,
    /// Adds `preload` (default false).
    #[serde(default)]
    pub preload: bool,
}

fn yes() -> bool {
    true
}

fn one_year() -> u64 {
    31_536_000
}

impl Default for Hsts {
    fn default() -> Self {
        Hsts {
            enabled: true,
            max_age: one_year(),
            include_sub_domains: true,
            preload: false,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayReference {
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Only these listeners (by name) serve the class's Ingresses; every listener that
    /// admits the Ingress's namespace when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub section_names: Vec<String>,
}

mod policy;
pub use policy::*;

/// Every CRD of ours.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        GatewayParameters::crd(),
        IngressClassParameters::crd(),
        TrafficPolicy::crd(),
    ]
}

/// The file name of a CRD in crds/ (`<group>_<plural>.yaml`, as Gateway API names them).
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

/// The YAML of a CRD as crds/ holds it.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    Ok(format!(
        "# Generated by `gatehouse crds crds/` from api/src/lib.rs; do not edit.\n{}",
        serde_yaml::to_string(crd)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_overrides_class_field_by_field() {
        let class = GatewayParametersSpec {
            replicas: Some(2),
            service: Some(ServiceParameters {
                service_type: Some(ServiceType::NodePort),
                ..Default::default()
            }),
            ..Default::default()
        };
        let gateway = GatewayParametersSpec {
            replicas: Some(3),
            ..Default::default()
        };
        let merged = class.overridden_by(&gateway);
        assert_eq!(merged.replicas, Some(3));
        assert_eq!(
            merged.service.and_then(|s| s.service_type),
            Some(ServiceType::NodePort)
        );
    }

    #[test]
    fn shutdown_fields_merge_and_default() {
        let class = GatewayParametersSpec {
            shutdown: Some(ShutdownParameters {
                drain_delay_seconds: Some(10),
                drain_timeout_seconds: Some(60),
            }),
            ..Default::default()
        };
        let gateway = GatewayParametersSpec {
            shutdown: Some(ShutdownParameters {
                drain_delay_seconds: Some(0),
                drain_timeout_seconds: None,
            }),
            ..Default::default()
        };
        let merged = class.overridden_by(&gateway).shutdown.unwrap_or_default();
        assert_eq!(merged.seconds(), (0, 60));
        assert_eq!(ShutdownParameters::default().seconds(), (5, 30));
        let out_of_bounds = ShutdownParameters {
            drain_delay_seconds: Some(100_000),
            drain_timeout_seconds: Some(0),
        };
        assert_eq!(out_of_bounds.seconds(), (300, 1));
    }

    /// crds/ is generated from these types; a change to them must come with a regenerated
    /// crds/ (`cargo run --bin gatehouse -- crds crds`).
    #[test]
    fn crds_directory_is_current() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
        for crd in crds() {
            let path = dir.join(file_name(&crd));
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                on_disk == to_yaml(&crd).unwrap_or_default(),
                "{} is stale: run `cargo run --bin gatehouse -- crds crds`",
                path.display()
            );
        }
    }

    #[test]
    fn crds_have_schemas_and_names() {
        for crd in crds() {
            let v = &crd.spec.versions[0];
            assert!(v.schema.is_some(), "{} has a schema", crd.spec.names.kind);
            assert!(to_yaml(&crd).is_ok());
        }
        assert_eq!(
            file_name(&GatewayParameters::crd()),
            "gatehouse.dev_gatewayparameters.yaml"
        );
    }
}
