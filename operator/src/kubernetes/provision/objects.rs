//! The objects of one Gateway's data planes, as JSON for server-side apply: a pure
//! function of the Gateway, its resolved GatewayParameters and the operator's settings,
//! tested field by field below. `super::Provisioner` applies them.

use super::settings::{DataPlaneSettings, GATEWAY_NAME_LABEL, IDENTITY_DIR};
use gatehouse_api::{GatewayParametersSpec, ServiceType};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// What every object of a Gateway's data planes shares.
pub struct Common {
    pub namespace: String,
    pub gateway: String,
    /// `gatehouse-<gateway>`: every object's name.
    pub name: String,
    /// The Gateway's `spec.infrastructure` labels and annotations, with ours.
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub owner_uid: String,
}

impl Common {
    pub fn new(
        namespace: &str,
        gateway: &str,
        owner_uid: &str,
        infra_labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
    ) -> Common {
        let mut labels = infra_labels;
        labels.insert(GATEWAY_NAME_LABEL.into(), gateway.into());
        labels.insert(
            "app.kubernetes.io/name".into(),
            "gatehouse-dataplane".into(),
        );
        labels.insert("app.kubernetes.io/managed-by".into(), "gatehouse".into());
        Common {
            namespace: namespace.into(),
            gateway: gateway.into(),
            name: gatehouse_translate::infrastructure_name(gateway),
            labels,
            annotations,
            owner_uid: owner_uid.into(),
        }
    }

    /// The labels the Deployment, Service, PDB select pods by.
    pub fn selector(&self) -> Value {
        json!({
            GATEWAY_NAME_LABEL: self.gateway,
            "app.kubernetes.io/name": "gatehouse-dataplane",
        })
    }

    /// Owned by the Gateway, so they go when it goes.
    pub fn meta(&self) -> Value {
        json!({
            "name": self.name,
            "namespace": self.namespace,
            "labels": self.labels,
            "annotations": self.annotations,
            "ownerReferences": [{
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "Gateway",
                "name": self.gateway,
                "uid": self.owner_uid,
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        })
    }
}

/// The port of the data plane's health endpoint: 9902, or the first port above it that no
/// listener of the Gateway uses.
pub fn health_port(listener_ports: &[u16]) -> u16 {
    (9902..=u16::MAX)
        .find(|p| !listener_ports.contains(p))
        .unwrap_or(9902)
}

pub fn deployment(
    c: &Common,
    settings: &DataPlaneSettings,
    parameters: &GatewayParametersSpec,
    ports: &[u16],
    identity_secret: &str,
) -> Value {
    let (drain_delay, drain_timeout) = parameters.shutdown.clone().unwrap_or_default().seconds();
    let health_port = health_port(ports);
    let pod = parameters.pod.clone().unwrap_or_default();
    let mut pod_labels = pod.labels.clone().unwrap_or_default();
    pod_labels.extend(c.labels.clone());
    let mut pod_annotations = c.annotations.clone();
    pod_annotations.extend(pod.annotations.clone().unwrap_or_default());
    let security_context = pod.security_context.as_ref().map_or_else(
        || {
            json!({
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "capabilities": {"drop": ["ALL"]},
            })
        },
        |s| json!(s),
    );
    let container = json!({
        "name": "dataplane",
        "image": settings.image,
        "args": [
            "dataplane",
            "--operator", settings.operator_url,
            "--operator-name", settings.operator_name,
            "--gateway", format!("{}/{}", c.namespace, c.gateway),
            "--node", "$(POD_NAME)",
            "--identity", IDENTITY_DIR,
            "--health-address", format!("0.0.0.0:{health_port}"),
            "--drain-delay-seconds", drain_delay.to_string(),
            "--drain-timeout-seconds", drain_timeout.to_string(),
        ],
        // Traffic only once a version is applied and its sockets are open, and none from
        // the moment SIGTERM arrives (dataplane/src/lifecycle.rs).
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": health_port},
            "periodSeconds": 1,
            "failureThreshold": 1,
            "timeoutSeconds": 1,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": health_port},
            "periodSeconds": 10,
            "failureThreshold": 3,
            "timeoutSeconds": 2,
        },
        "volumeMounts": [{"name": "identity", "mountPath": IDENTITY_DIR, "readOnly": true}],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "resources": parameters.resources.clone().unwrap_or_default(),
        "securityContext": security_context,
        // The listeners' ports, and the admin endpoint's (named, for a PodMonitor).
        "ports": ports
            .iter()
            .map(|p| json!({"containerPort": p, "protocol": "TCP"}))
            .chain([json!({"name": "metrics", "containerPort": health_port, "protocol": "TCP"})])
            .collect::<Vec<_>>(),
    });
    let mut pod_spec = json!({
        "serviceAccountName": c.name,
        "automountServiceAccountToken": false,
        // The drain ends before the SIGKILL.
        "terminationGracePeriodSeconds": drain_delay + drain_timeout + 5,
        // Not root, nothing to escalate to; ports under 1024 (80, 443) through the pod's
        // unprivileged port start, a safe sysctl.
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
            "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}],
        },
        "volumes": [{"name": "identity", "secret": {"secretName": identity_secret}}],
        "containers": [container],
    });
    let scheduling = [
        ("nodeSelector", pod.node_selector.as_ref().map(|v| json!(v))),
        ("tolerations", pod.tolerations.as_ref().map(|v| json!(v))),
        ("affinity", pod.affinity.as_ref().map(|v| json!(v))),
        (
            "topologySpreadConstraints",
            pod.topology_spread_constraints.as_ref().map(|v| json!(v)),
        ),
        (
            "priorityClassName",
            pod.priority_class_name.as_ref().map(|v| json!(v)),
        ),
    ];
    for (field, value) in scheduling {
        if let Some(v) = value {
            pod_spec[field] = v;
        }
    }
    let mut spec = json!({
        "selector": {"matchLabels": c.selector()},
        // A new pod is ready before an old one goes.
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {
            "metadata": {"labels": pod_labels, "annotations": pod_annotations},
            "spec": pod_spec,
        },
    });
    // With an autoscaler the replica count is its to set: not applied, so not reset.
    if parameters.autoscaling.is_none() {
        spec["replicas"] = json!(parameters.replicas.unwrap_or(1));
    }
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": c.meta(), "spec": spec})
}

/// The Service in front of the data planes; `static_ip` is the Gateway's requested address.
pub fn service(
    c: &Common,
    parameters: &GatewayParametersSpec,
    ports: &[u16],
    static_ip: Option<String>,
) -> Value {
    let p = parameters.service.clone().unwrap_or_default();
    let service_type = p.service_type.unwrap_or(ServiceType::LoadBalancer);
    let node_ports = p.node_ports.clone().unwrap_or_default();
    let exposes_nodes = service_type != ServiceType::ClusterIP;
    let ports: Vec<Value> = ports
        .iter()
        .map(|port| {
            let mut v = json!({"name": format!("port-{port}"), "port": port, "targetPort": port, "protocol": "TCP"});
            if let Some(n) = node_ports.iter().find(|n| n.port == *port)
                && exposes_nodes
            {
                v["nodePort"] = json!(n.node_port);
            }
            v
        })
        .collect();
    let mut spec = json!({
        "type": service_type.as_str(),
        "selector": c.selector(),
        "ports": ports,
    });
    if exposes_nodes && let Some(policy) = p.external_traffic_policy {
        spec["externalTrafficPolicy"] = json!(policy.as_str());
    }
    if service_type == ServiceType::LoadBalancer {
        if let Some(ip) = static_ip {
            spec["loadBalancerIP"] = json!(ip);
        }
        if let Some(class) = &p.load_balancer_class {
            spec["loadBalancerClass"] = json!(class);
        }
        if let Some(ranges) = &p.load_balancer_source_ranges {
            spec["loadBalancerSourceRanges"] = json!(ranges);
        }
    }
    let mut meta = c.meta();
    if let Some(extra) = &p.annotations {
        let mut annotations = c.annotations.clone();
        annotations.extend(extra.clone());
        meta["annotations"] = json!(annotations);
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec})
}

/// The PodDisruptionBudget the parameters ask for, if any.
pub fn disruption_budget(c: &Common, parameters: &GatewayParametersSpec) -> Option<Value> {
    let p = parameters.pod_disruption_budget.as_ref()?;
    let mut spec = json!({"selector": {"matchLabels": c.selector()}});
    if let Some(v) = &p.min_available {
        spec["minAvailable"] = json!(v);
    }
    // Both given (the API server would refuse the budget): minAvailable, the stricter.
    if let Some(v) = p
        .max_unavailable
        .as_ref()
        .filter(|_| p.min_available.is_none())
    {
        spec["maxUnavailable"] = json!(v);
    }
    // Neither given: at most one pod down at a time.
    if p.min_available.is_none() && p.max_unavailable.is_none() {
        spec["maxUnavailable"] = json!(1);
    }
    Some(
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": c.meta(), "spec": spec}),
    )
}

/// The HorizontalPodAutoscaler the parameters ask for, if any.
pub fn autoscaler(c: &Common, parameters: &GatewayParametersSpec) -> Option<Value> {
    let p = parameters.autoscaling.as_ref()?;
    let min = p.min_replicas.unwrap_or(1);
    Some(json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": c.meta(),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": c.name},
            "minReplicas": min,
            "maxReplicas": p.max_replicas.max(min),
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization",
                "averageUtilization": p.target_cpu_utilization_percentage.unwrap_or(80),
            }}}],
        },
    }))
}

#[cfg(test)]
#[path = "objects_tests.rs"]
mod tests;
