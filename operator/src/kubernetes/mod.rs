//! Kubernetes mode: the Kubernetes source feeding the operator loop, leader election on a
//! coordination Lease (`leader`), the status writer (`status_writer`), data plane
//! provisioning (`provision`), the config channel's identities (`identity`), and what
//! `helm uninstall` runs first to remove what the operator made (`uninstall`).
//!
//! With provisioned data planes, only the leader serves them config (`leader` says how
//! they reach it); only the leader writes status and provisions, and only what changed
//! (conditions keep their lastTransitionTime while their status holds).

pub mod identity;
pub mod leader;
pub mod provision;
pub mod status_writer;
pub mod uninstall;

use crate::admin;
use crate::control_loop::{Desired, run};
use crate::source::kube::KubeSource;
use gatehouse_translate::Settings;
use identity::Ca;
use kube::Client;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tokio::sync::watch;

pub use status_writer::{STATUS_WRITES, SUPPORTED_FEATURES};

#[derive(Debug, Clone)]
pub struct KubeOperatorOptions {
    pub settings: Settings,
    pub config_address: SocketAddr,
    pub admin_address: SocketAddr,
    /// Namespace of the leader-election Lease.
    pub lease_namespace: String,
    /// This replica's name in the Lease (the pod name in a cluster).
    pub identity: String,
    /// Provision a data plane Deployment and LoadBalancer Service per Gateway, with an
    /// identity from the operator's CA; the config channel then requires mutual TLS.
    /// Without it data planes are run by someone else over plain gRPC (tests run one in
    /// process).
    pub dataplanes: Option<provision::DataPlaneSettings>,
    /// This replica's pod (in the Lease's namespace), labelled while it leads. Without it
    /// (one process, not in a cluster) the pod is not labelled.
    pub pod_name: Option<String>,
}

pub async fn run_kube(client: Client, opts: KubeOperatorOptions) -> anyhow::Result<()> {
    let grpc = tokio::net::TcpListener::bind(opts.config_address)
        .await
        .map_err(|e| anyhow::anyhow!("config server {}: {e}", opts.config_address))?;
    let admin = admin::AdminEndpoint {
        listener: admin::bind(opts.admin_address).await?,
        metrics: Default::default(),
        dataplane: None,
    };
    let source = KubeSource::start(&client);
    tracing::info!("waiting for the first list of every watched kind");
    source.ready().await;

    let leader = Arc::new(AtomicBool::new(false));
    let (leading_tx, leading) = watch::channel(false);
    tokio::spawn(show_leadership(leading.clone(), admin.metrics.clone()));
    tokio::spawn(leader::lead(
        client.clone(),
        opts.lease_namespace.clone(),
        opts.identity.clone(),
        leader.clone(),
        leading_tx,
    ));
    if let Some(pod) = opts.pod_name.clone() {
        tokio::spawn(leader::label_pod(
            client.clone(),
            opts.lease_namespace.clone(),
            pod,
            leading.clone(),
        ));
    }
    tokio::spawn(leader::release_on_shutdown(
        client.clone(),
        opts.lease_namespace.clone(),
        opts.identity.clone(),
        leader.clone(),
    ));
    // Data planes we provision talk to us over mutual TLS with identities from our CA.
    let (provisioner, tls) = match opts.dataplanes.clone() {
        Some(settings) => {
            let ca = Arc::new(Ca::load_or_create(&client, &opts.lease_namespace).await?);
            let server = ca.issue_server(&settings.operator_name)?;
            let tls = tonic::transport::ServerTlsConfig::new()
                .identity(tonic::transport::Identity::from_pem(
                    &server.cert_pem,
                    &server.key_pem,
                ))
                .client_ca_root(tonic::transport::Certificate::from_pem(ca.cert_pem()));
            (Some(provision::Provisioner { settings, ca }), Some(tls))
        }
        None => (None, None),
    };
    let (status_tx, status_rx) = watch::channel(Arc::new(Desired::default()));
    let recorder = kube::runtime::events::Recorder::new(
        client.clone(),
        kube::runtime::events::Reporter {
            controller: "gatehouse-operator".into(),
            instance: Some(opts.identity.clone()),
        },
    );
    tokio::spawn(status_writer::write_status(
        client,
        status_rx,
        leader,
        opts.settings.gateway_controller.clone(),
        provisioner,
        recorder,
    ));
    // Provisioned data planes are served by the leader alone (it hears every ACK); one on
    // this host is served by this process whatever the Lease says.
    let serving = opts.dataplanes.is_some().then_some(leading);
    run(
        source,
        opts.settings,
        grpc,
        admin,
        Some(status_tx),
        tls,
        serving,
    )
    .await
}

/// Keeps the leader gauge at 1 while this replica leads.
async fn show_leadership(
    mut leading: watch::Receiver<bool>,
    metrics: Arc<crate::metrics::OperatorMetrics>,
) {
    loop {
        metrics.leader.set(i64::from(*leading.borrow_and_update()));
        if leading.changed().await.is_err() {
            return;
        }
    }
}
