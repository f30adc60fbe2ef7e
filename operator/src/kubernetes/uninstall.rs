//! `gatehouse uninstall`: what `helm uninstall` runs before it deletes the release (a
//! pre-delete hook Job, charts/gatehouse/templates/uninstall.yaml).
//!
//! Helm deletes what the chart rendered; the operator made more: each Gateway's data plane
//! Deployment, Service, ServiceAccount, identity Secret, PodDisruptionBudget and autoscaler,
//! and in its own namespace the leader Lease and the CA Secret. The Gateways outlive the
//! install (they are the users'), and so would their data planes, serving the last config
//! with no operator, had nobody removed them. Order matters: the operator is scaled to zero
//! and awaited first, or it would apply a data plane again as soon as it saw it deleted.
//!
//! Only objects of this install go: a provisioned object is deleted when the Gateway that
//! owns it is of a GatewayClass with this install's controllerName (another install's
//! Gateways keep theirs), or when that Gateway is already gone.

use gatehouse_translate::gwapi::gatewayclasses::GatewayClass;
use gatehouse_translate::gwapi::gateways::Gateway;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The labels every provisioned object carries (`provision::objects::Common`).
const PROVISIONED: &str =
    "app.kubernetes.io/managed-by=gatehouse,app.kubernetes.io/name=gatehouse-dataplane";

pub struct UninstallOptions {
    /// The release's namespace: the operator, its Lease and its CA Secret.
    pub namespace: String,
    /// The operator's Deployment, scaled to zero first.
    pub operator_deployment: String,
    /// This install's GatewayClass controllerName.
    pub gateway_controller: String,
    /// How long the operator's pods may take to go.
    pub timeout: Duration,
}

pub async fn uninstall(client: Client, opts: &UninstallOptions) -> anyhow::Result<()> {
    stop_operator(&client, opts).await?;
    let mut owners = GatewayOwnership::new(client.clone(), &opts.gateway_controller);
    let mut deleted = 0;
    deleted += delete_provisioned::<Deployment>(&client, &mut owners).await?;
    deleted += delete_provisioned::<HorizontalPodAutoscaler>(&client, &mut owners).await?;
    deleted += delete_provisioned::<PodDisruptionBudget>(&client, &mut owners).await?;
    deleted += delete_provisioned::<Service>(&client, &mut owners).await?;
    deleted += delete_provisioned::<ServiceAccount>(&client, &mut owners).await?;
    deleted += delete_provisioned::<Secret>(&client, &mut owners).await?;
    let ns = &opts.namespace;
    deleted += delete_named::<Lease>(&client, ns, super::leader::LEASE_NAME).await? as usize;
    deleted += delete_named::<Secret>(&client, ns, super::identity::CA_SECRET).await? as usize;
    tracing::info!(deleted, "uninstall: the operator's objects are gone");
    Ok(())
}

/// Scales the operator to zero and waits until none of its pods is left.
async fn stop_operator(client: &Client, opts: &UninstallOptions) -> anyhow::Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &opts.namespace);
    let name = &opts.operator_deployment;
    let Some(deployment) = deployments
        .get_opt(name)
        .await
        .map_err(|e| anyhow::anyhow!("reading Deployment {}/{name}: {e}", opts.namespace))?
    else {
        tracing::info!(deployment = %name, "uninstall: no operator Deployment");
        return Ok(());
    };
    let selector = deployment
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref())
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .filter(|s| !s.is_empty())
        .ok_or_else(|| anyhow::anyhow!("Deployment {name} selects its pods by no label"))?;
    let patch = serde_json::json!({"spec": {"replicas": 0}});
    deployments
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| anyhow::anyhow!("scaling Deployment {name} to zero: {e}"))?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &opts.namespace);
    let deadline = Instant::now() + opts.timeout;
    loop {
        let left = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| anyhow::anyhow!("listing the operator's pods ({selector}): {e}"))?
            .items
            .len();
        if left == 0 {
            tracing::info!(deployment = %name, "uninstall: the operator is stopped");
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "{left} operator pods ({selector}) still there after {:?}",
                opts.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether a Gateway is this install's, asked once per Gateway.
struct GatewayOwnership {
    client: Client,
    controller: String,
    known: BTreeMap<(String, String), bool>,
}

impl GatewayOwnership {
    fn new(client: Client, controller: &str) -> GatewayOwnership {
        GatewayOwnership {
            client,
            controller: controller.into(),
            known: BTreeMap::new(),
        }
    }

    /// True when the Gateway `namespace/name` is gone or of a class of this install.
    async fn ours(&mut self, namespace: &str, name: &str) -> anyhow::Result<bool> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(ours) = self.known.get(&key) {
            return Ok(*ours);
        }
        let gateways: Api<Gateway> = Api::namespaced(self.client.clone(), namespace);
        let ours = match gateways
            .get_opt(name)
            .await
            .map_err(|e| anyhow::anyhow!("reading Gateway {namespace}/{name}: {e}"))?
        {
            None => true,
            Some(gateway) => {
                let class = &gateway.spec.gateway_class_name;
                let classes: Api<GatewayClass> = Api::all(self.client.clone());
                classes
                    .get_opt(class)
                    .await
                    .map_err(|e| anyhow::anyhow!("reading GatewayClass {class}: {e}"))?
                    .is_some_and(|c| c.spec.controller_name == self.controller)
            }
        };
        self.known.insert(key, ours);
        Ok(ours)
    }
}

/// Deletes every provisioned object of kind `K` whose owning Gateway is ours.
async fn delete_provisioned<K>(
    client: &Client,
    owners: &mut GatewayOwnership,
) -> anyhow::Result<usize>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let kind = K::kind(&());
    let all: Api<K> = Api::all(client.clone());
    let objects = all
        .list(&ListParams::default().labels(PROVISIONED))
        .await
        .map_err(|e| anyhow::anyhow!("listing {kind}s ({PROVISIONED}): {e}"))?;
    let mut deleted = 0;
    for object in objects.items {
        let namespace = object.namespace().unwrap_or_default();
        let Some(gateway) = object.owner_references().iter().find(|o| {
            o.kind == "Gateway" && o.api_version.starts_with("gateway.networking.k8s.io/")
        }) else {
            continue;
        };
        if !owners.ours(&namespace, &gateway.name).await? {
            continue;
        }
        let name = object.name_any();
        if delete_named::<K>(client, &namespace, &name).await? {
            tracing::info!(%kind, object = %format!("{namespace}/{name}"), "uninstall: deleted");
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Deletes `namespace/name`; false when it was not there.
async fn delete_named<K>(client: &Client, namespace: &str, name: &str) -> anyhow::Result<bool>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(anyhow::anyhow!(
            "deleting {} {namespace}/{name}: {e}",
            K::kind(&())
        )),
    }
}
