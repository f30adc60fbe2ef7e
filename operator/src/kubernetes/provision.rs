//! The Kubernetes infrastructure provider: per Gateway of ours, a ServiceAccount, a
//! Deployment of data planes and a LoadBalancer Service, owned by the Gateway (so they go
//! when it goes), labelled `gateway.networking.k8s.io/gateway-name`, with the Gateway's
//! `spec.infrastructure` labels and annotations propagated. Applied with server-side apply:
//! an unchanged object is not rewritten.

use super::identity::{self, Ca};
use gatehouse_api::{GatewayParametersSpec, ServiceType};
use gatehouse_translate::gwapi::gateways::Gateway;
use gatehouse_translate::store::ObjectKey;
use gatehouse_translate::{DataPlanePlan, infrastructure_name};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service, ServiceAccount};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct DataPlaneSettings {
    /// Image of the data plane pods (our `gatehouse` binary).
    pub image: String,
    /// The operator's config server as data plane pods reach it.
    pub operator_url: String,
    /// The name its certificate carries (`identity::server_name`), which they verify.
    pub operator_name: String,
}

pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
const FIELD_MANAGER: &str = "gatehouse-operator";

/// Where data plane pods find their identity (the Secret mounted as files).
pub const IDENTITY_DIR: &str = "/var/run/gatehouse/identity";

/// Provisions data planes, and their identities from the operator's CA.
pub struct Provisioner {
    pub settings: DataPlaneSettings,
    pub ca: Arc<Ca>,
}

impl Provisioner {
    /// Ensures the data planes of every accepted Gateway, shaped by its resolved parameters.
    pub async fn reconcile(&self, client: &Client, wanted: &BTreeMap<ObjectKey, DataPlanePlan>) {
        for (key, plan) in wanted {
            let gateways: Api<Gateway> = Api::namespaced(client.clone(), &key.namespace);
            let Ok(Some(gateway)) = gateways.get_opt(&key.name).await else {
                continue;
            };
            if let Err(e) = self
                .ensure(client, &gateway, &plan.parameters, &plan.ports)
                .await
            {
                tracing::warn!(gateway = %key, error = %format!("{e:#}"), "provisioning data planes");
            }
        }
    }

    /// The Secret holding a Gateway's data plane identity: written when missing, issued by
    /// another CA, or near expiry; otherwise left alone (no rewrite per reconcile).
    async fn ensure_identity(
        &self,
        client: &Client,
        gw: &Gateway,
        meta: &Value,
        secret_name: &str,
    ) -> anyhow::Result<()> {
        let ns = gw.namespace().unwrap_or_default();
        let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let current = api.get_opt(secret_name).await?;
        if current
            .as_ref()
            .and_then(|s| s.data.as_ref())
            .is_some_and(|d| self.ca.identity_is_current(d, &ns, &gw.name_any()))
        {
            return Ok(());
        }
        let issued = self.ca.issue_gateway(&ns, &gw.name_any())?;
        let mut meta = meta.clone();
        meta["name"] = Value::String(secret_name.into());
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": meta,
            "type": "kubernetes.io/tls",
            "stringData": {
                identity::CA_FILE: self.ca.cert_pem(),
                identity::CERT_FILE: issued.cert_pem,
                identity::KEY_FILE: issued.key_pem,
            },
        });
        apply::<Secret>(api, secret_name, secret).await?;
        tracing::info!(gateway = %format!("{ns}/{}", gw.name_any()), "issued data plane identity");
        Ok(())
    }

    async fn ensure(
        &self,
        client: &Client,
        gw: &Gateway,
        parameters: &GatewayParametersSpec,
        ports: &[u16],
    ) -> anyhow::Result<()> {
        let settings = &self.settings;
        let ns = gw.namespace().unwrap_or_default();
        let name = infrastructure_name(&gw.name_any());
        let infra = gw.spec.infrastructure.as_ref();
        let mut labels: BTreeMap<String, String> =
            infra.and_then(|i| i.labels.clone()).unwrap_or_default();
        labels.insert(GATEWAY_NAME_LABEL.into(), gw.name_any());
        labels.insert(
            "app.kubernetes.io/name".into(),
            "gatehouse-dataplane".into(),
        );
        labels.insert("app.kubernetes.io/managed-by".into(), "gatehouse".into());
        let annotations: BTreeMap<String, String> = infra
            .and_then(|i| i.annotations.clone())
            .unwrap_or_default();
        let selector = json!({
            GATEWAY_NAME_LABEL: gw.name_any(),
            "app.kubernetes.io/name": "gatehouse-dataplane",
        });
        let owner = json!([{
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "name": gw.name_any(),
            "uid": gw.meta().uid.clone().unwrap_or_default(),
            "controller": true,
            "blockOwnerDeletion": true,
        }]);
        let meta = json!({
            "name": name,
            "namespace": ns,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": owner,
        });

        let identity_secret = format!("{name}-identity");
        let (drain_delay, drain_timeout) =
            parameters.shutdown.clone().unwrap_or_default().seconds();
        let health_port = health_port(ports);
        self.ensure_identity(client, gw, &meta, &identity_secret)
            .await?;

        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta});
        apply::<ServiceAccount>(Api::namespaced(client.clone(), &ns), &name, sa).await?;

        let deployment = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": parameters.replicas.unwrap_or(1),
                "selector": {"matchLabels": selector},
                // A new pod is ready before an old one goes.
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": {
                    "metadata": {"labels": labels, "annotations": annotations},
                    "spec": {
                        "serviceAccountName": name,
                        "automountServiceAccountToken": false,
                        // The drain (dataplane/src/lifecycle.rs) ends before the SIGKILL.
                        "terminationGracePeriodSeconds": drain_delay + drain_timeout + 5,
                        // Not root, nothing to escalate to; ports under 1024 (80, 443)
                        // through the pod's unprivileged port start, a safe sysctl.
                        "securityContext": {
                            "runAsNonRoot": true,
                            "runAsUser": 65532,
                            "runAsGroup": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"},
                            "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}],
                        },
                        "volumes": [{"name": "identity", "secret": {"secretName": identity_secret}}],
                        "containers": [{
                            "name": "dataplane",
                            "image": settings.image,
                            "args": [
                                "dataplane",
                                "--operator", settings.operator_url,
                                "--operator-name", settings.operator_name,
                                "--gateway", format!("{ns}/{}", gw.name_any()),
                                "--node", "$(POD_NAME)",
                                "--identity", IDENTITY_DIR,
                                "--health-address", format!("0.0.0.0:{health_port}"),
                                "--drain-delay-seconds", drain_delay.to_string(),
                                "--drain-timeout-seconds", drain_timeout.to_string(),
                            ],
                            // Traffic only once a version is applied and its sockets are
                            // open, and none from the moment SIGTERM arrives.
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
                            "securityContext": {
                                "allowPrivilegeEscalation": false,
                                "readOnlyRootFilesystem": true,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "ports": ports.iter().map(|p| json!({"containerPort": p, "protocol": "TCP"})).collect::<Vec<_>>(),
                        }],
                    },
                },
            },
        });
        apply::<Deployment>(Api::namespaced(client.clone(), &ns), &name, deployment).await?;

        let service_type = parameters
            .service
            .as_ref()
            .and_then(|s| s.service_type)
            .unwrap_or(ServiceType::LoadBalancer);
        let mut service_spec = json!({
            "type": service_type.as_str(),
            "selector": selector,
            "ports": ports.iter().map(|p| json!({"name": format!("port-{p}"), "port": p, "targetPort": p, "protocol": "TCP"})).collect::<Vec<_>>(),
        });
        // A static address (spec.addresses) is asked of the load balancer.
        if let Some(ip) = gw
            .spec
            .addresses
            .as_deref()
            .and_then(|a| a.first())
            .filter(|a| matches!(a.r#type.as_deref(), None | Some("IPAddress")))
            .and_then(|a| a.value.clone())
        {
            service_spec["loadBalancerIP"] = Value::String(ip);
        }
        let service =
            json!({"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": service_spec});
        apply::<Service>(Api::namespaced(client.clone(), &ns), &name, service).await?;
        Ok(())
    }
}

/// The port of the data plane's health endpoint: 9902, or the first port above it that no
/// listener of the Gateway uses.
fn health_port(listener_ports: &[u16]) -> u16 {
    (9902..=u16::MAX)
        .find(|p| !listener_ports.contains(p))
        .unwrap_or(9902)
}

async fn apply<K>(api: Api<K>, name: &str, object: Value) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_health_port_is_one_no_listener_uses() {
        assert_eq!(super::health_port(&[80, 443]), 9902);
        assert_eq!(super::health_port(&[9902, 9903, 80]), 9904);
    }
}
