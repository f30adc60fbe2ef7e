//! The config channel, data plane side: dial the operator, subscribe, apply each version,
//! ACK or NACK it. When the operator is gone, keep serving and redial with backoff; on
//! reconnect the operator sends a full snapshot.

use crate::DataPlane;
use gatehouse_model::channel::ResourceSet;
use gatehouse_model::ir::Config;
use gatehouse_model::proto::config_discovery_client::ConfigDiscoveryClient;
use gatehouse_model::proto::{self, data_plane_message::Message};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// "http://127.0.0.1:9901"
    pub operator: String,
    pub node: String,
    /// "namespace/name"; empty for all.
    pub gateways: Vec<String>,
}

/// Runs forever: one stream at a time, redialled with exponential backoff (100 ms to 5 s).
pub async fn run(settings: ClientSettings, dataplane: Arc<DataPlane>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match stream_once(&settings, &dataplane).await {
            Ok(applied) => {
                tracing::warn!(operator = %settings.operator, "config stream ended");
                if applied {
                    backoff = Duration::from_millis(100);
                }
            }
            Err(e) => {
                tracing::warn!(operator = %settings.operator, error = %e, "config stream failed")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One connection; returns whether any version was received (to reset the backoff).
async fn stream_once(
    settings: &ClientSettings,
    dataplane: &Arc<DataPlane>,
) -> anyhow::Result<bool> {
    let channel = tonic::transport::Endpoint::from_shared(settings.operator.clone())?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .connect()
        .await?;
    let mut client = ConfigDiscoveryClient::new(channel);
    let (tx, rx) = mpsc::channel(16);
    tx.send(proto::DataPlaneMessage {
        message: Some(Message::Subscribe(proto::Subscribe {
            node: settings.node.clone(),
            gateways: settings.gateways.clone(),
        })),
    })
    .await?;
    let mut updates = client.stream(ReceiverStream::new(rx)).await?.into_inner();
    tracing::info!(operator = %settings.operator, "config stream open");

    let mut received = ResourceSet::default();
    let mut any = false;
    while let Some(update) = updates.message().await? {
        any = true;
        received.apply(&update);
        let ack = match received.decode_all() {
            Err(e) => Err(e.to_string()),
            Ok(resources) => {
                let config = Config::from_resources(resources);
                dataplane.apply(&config, update.version)
            }
        };
        let ack = match ack {
            Ok(listener_errors) => {
                tracing::info!(
                    version = update.version,
                    full = update.full,
                    "applied config"
                );
                proto::Ack {
                    version: update.version,
                    accepted: true,
                    error: String::new(),
                    listener_errors: listener_errors
                        .into_iter()
                        .map(|(listener, message)| proto::ListenerError { listener, message })
                        .collect(),
                }
            }
            Err(error) => {
                tracing::warn!(version = update.version, %error, "refused config; previous version keeps serving");
                proto::Ack {
                    version: update.version,
                    accepted: false,
                    error,
                    listener_errors: vec![],
                }
            }
        };
        tx.send(proto::DataPlaneMessage {
            message: Some(Message::Ack(ack)),
        })
        .await?;
    }
    Ok(any)
}
