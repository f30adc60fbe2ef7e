//! The Kubernetes infrastructure provider: per Gateway of ours, a ServiceAccount, a
//! Deployment of data planes and a LoadBalancer Service, and a PodDisruptionBudget and a
//! HorizontalPodAutoscaler when its GatewayParameters ask for them; owned by the Gateway
//! (so they go when it goes), labelled `gateway.networking.k8s.io/gateway-name`, with the
//! Gateway's `spec.infrastructure` labels and annotations propagated. `objects.rs` builds
//! them (pure, tested field by field); this file applies them with server-side apply (an
//! unchanged object is not rewritten) and deletes a PDB or autoscaler no longer asked for.

use crate::kubernetes::identity::{self, Ca};
use gatehouse_api::GatewayParametersSpec;
use gatehouse_translate::DataPlanePlan;
use gatehouse_translate::gwapi::gateways::Gateway;
use gatehouse_translate::store::ObjectKey;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

use super::objects;
use super::settings::DataPlaneSettings;

const FIELD_MANAGER: &str = "gatehouse-operator";
/// Holds a data plane Deployment's replica count once an autoscaler owns it.
const REPLICAS_HANDOVER_MANAGER: &str = "gatehouse-replicas-handover";

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
        let ns = gw.namespace().unwrap_or_default();
        let infra = gw.spec.infrastructure.as_ref();
        let common = objects::Common::new(
            &ns,
            &gw.name_any(),
            &gw.meta().uid.clone().unwrap_or_default(),
            infra.and_then(|i| i.labels.clone()).unwrap_or_default(),
            infra
                .and_then(|i| i.annotations.clone())
                .unwrap_or_default(),
        );
        let name = common.name.clone();
        let meta = common.meta();

        let identity_secret = format!("{name}-identity");
        self.ensure_identity(client, gw, &meta, &identity_secret)
            .await?;

        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta});
        apply::<ServiceAccount>(Api::namespaced(client.clone(), &ns), &name, sa).await?;

        let deployment =
            objects::deployment(&common, &self.settings, parameters, ports, &identity_secret);
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        if parameters.autoscaling.is_some() {
            hand_replicas_over(&deployments, &name).await?;
        }
        apply(deployments, &name, deployment).await?;

        // A static address (spec.addresses) is asked of the load balancer.
        let static_ip = gw
            .spec
            .addresses
            .as_deref()
            .and_then(|a| a.first())
            .filter(|a| matches!(a.r#type.as_deref(), None | Some("IPAddress")))
            .and_then(|a| a.value.clone());
        let service = objects::service(&common, parameters, ports, static_ip);
        apply::<Service>(Api::namespaced(client.clone(), &ns), &name, service).await?;

        let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
        match objects::disruption_budget(&common, parameters) {
            Some(pdb) => apply(budgets, &name, pdb).await?,
            None => delete_if_ours(budgets, &name, &common.owner_uid).await?,
        }
        let autoscalers: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns);
        match objects::autoscaler(&common, parameters) {
            Some(hpa) => apply(autoscalers, &name, hpa).await?,
            None => delete_if_ours(autoscalers, &name, &common.owner_uid).await?,
        }
        Ok(())
    }
}

/// Deletes an object of ours (owned by the Gateway `owner_uid`) the parameters no longer
/// ask for (a PDB, an autoscaler); one of the same name someone else made stays.
async fn delete_if_ours<K>(api: Api<K>, name: &str, owner_uid: &str) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let Some(existing) = api.get_opt(name).await? else {
        return Ok(());
    };
    if !existing
        .owner_references()
        .iter()
        .any(|o| o.uid == owner_uid)
    {
        return Ok(());
    }
    match api.delete(name, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// With an autoscaler the replica count is its to set, so Gatehouse stops applying
/// `replicas`. A field a manager stops applying is removed, and the Deployment would fall
/// back to 1 pod until the autoscaler's next sync; so another field manager first takes
/// the current count over (server-side apply's handover), and the Deployment keeps its
/// size.
async fn hand_replicas_over(api: &Api<Deployment>, name: &str) -> Result<(), kube::Error> {
    let Some(replicas) = api
        .get_opt(name)
        .await?
        .and_then(|d| d.spec)
        .and_then(|s| s.replicas)
    else {
        return Ok(());
    };
    let object = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas},
    });
    api.patch(
        name,
        &PatchParams::apply(REPLICAS_HANDOVER_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map(|_| ())
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
