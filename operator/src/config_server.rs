//! The config server: streams versioned model snapshots to data planes over gRPC and
//! collects their ACKs and NACKs.
//!
//! Each stream gets a full snapshot first, then deltas computed against what that stream
//! was last sent. A version is recorded with the Gateway generations it contains, so an
//! ACK tells the status side exactly which generations are programmed.

use gatehouse_model::channel::Sent;
use gatehouse_model::ir::Config;
use gatehouse_model::proto::config_discovery_server::{ConfigDiscovery, ConfigDiscoveryServer};
use gatehouse_model::proto::{self, data_plane_message::Message};
use std::collections::{BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

/// One published version of the whole config.
#[derive(Debug, Clone, Default)]
pub struct Published {
    pub version: u64,
    pub config: Arc<Config>,
}

/// What a data plane said about a version.
#[derive(Debug, Clone)]
pub struct AckEvent {
    pub node: String,
    pub version: u64,
    pub accepted: bool,
    pub error: String,
    /// (listener key, error) for listeners that could not be opened.
    pub listener_errors: Vec<(String, String)>,
    /// Resources the data plane left out of the version: (resource, listener keys, error).
    pub refused: Vec<(String, Vec<String>, String)>,
    /// (gateway key, generation) contained in the acknowledged version.
    pub gateways: Vec<(String, i64)>,
}

#[derive(Clone)]
pub struct ConfigServer {
    snapshots: watch::Receiver<Published>,
    acks: mpsc::Sender<AckEvent>,
    /// Served over mutual TLS: a data plane may subscribe only to the Gateway its client
    /// certificate names (see `identity`).
    require_identity: bool,
    /// Serves only while this is true (the leader), when set: refuses subscriptions
    /// otherwise and ends its streams when it turns false.
    serving: Option<watch::Receiver<bool>>,
}

impl ConfigServer {
    pub fn new(snapshots: watch::Receiver<Published>, acks: mpsc::Sender<AckEvent>) -> Self {
        ConfigServer {
            snapshots,
            acks,
            require_identity: false,
            serving: None,
        }
    }

    /// Serves data planes only while `serving` holds true (see `kubernetes::leader`).
    pub fn serving_while(mut self, serving: watch::Receiver<bool>) -> Self {
        self.serving = Some(serving);
        self
    }

    /// Authorizes each subscription by the client certificate's Gateway identity.
    pub fn requiring_identity(mut self) -> Self {
        self.require_identity = true;
        self
    }

    pub fn into_service(self) -> ConfigDiscoveryServer<Self> {
        ConfigDiscoveryServer::new(self)
            .max_decoding_message_size(gatehouse_model::channel::MAX_REPORT)
            .max_encoding_message_size(gatehouse_model::channel::MAX_MESSAGE)
    }
}

/// The versions a stream was sent, with the (Gateway, generation)s each holds.
type SentVersions = Arc<Mutex<HashMap<u64, Vec<(String, i64)>>>>;

/// Sends a stream each published version (what changed for its Gateways) and records
/// what each version holds for its ACK; ends the stream when this replica stops leading.
async fn send_versions(
    mut snapshots: watch::Receiver<Published>,
    mut serving: Option<watch::Receiver<bool>>,
    gateways: Vec<String>,
    sent_versions: SentVersions,
    tx: mpsc::Sender<Result<proto::ConfigUpdate, Status>>,
) {
    let mut sent = Sent::default();
    loop {
        // Leadership lost: the stream ends, and the data plane redials (reaching the new
        // leader through the Service).
        if serving.as_ref().is_some_and(|s| !*s.borrow()) {
            let _ = tx
                .send(Err(Status::unavailable(
                    "this operator replica stopped leading",
                )))
                .await;
            return;
        }
        let published = snapshots.borrow_and_update().clone();
        let config = filter(&published.config, &gateways);
        if let Some(update) = sent.update(&config, published.version) {
            if let Ok(mut s) = sent_versions.lock() {
                s.insert(published.version, acknowledgeable(&config));
            }
            if tx.send(Ok(update)).await.is_err() {
                return; // The data plane went away.
            }
        }
        let lost_leadership = async {
            match serving.as_mut() {
                Some(s) => {
                    if s.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = snapshots.changed() => if changed.is_err() {
                return; // Shutting down.
            },
            () = lost_leadership => {}
        }
    }
}

/// What an acknowledgement of a config acknowledges: each Gateway's generation ("ns/name"),
/// and each of its ListenerSets' ("gateway-ns/gateway/ns/name").
fn acknowledgeable(config: &Config) -> Vec<(String, i64)> {
    config
        .gateways
        .iter()
        .flat_map(|g| {
            std::iter::once((g.key.clone(), g.generation)).chain(
                g.listener_sets
                    .iter()
                    .map(|s| (format!("{}/{}", g.key, s.key), s.generation)),
            )
        })
        .collect()
}

/// The part of a config that serves the named Gateways (all of it when none are named).
pub fn filter(config: &Config, gateways: &[String]) -> Config {
    if gateways.is_empty() {
        return config.clone();
    }
    let wanted: BTreeSet<&str> = gateways.iter().map(String::as_str).collect();
    let listeners: Vec<_> = config
        .listeners
        .iter()
        .filter(|l| wanted.contains(l.gateway.as_str()))
        .cloned()
        .collect();
    let listener_keys: BTreeSet<&str> = listeners.iter().map(|l| l.key.as_str()).collect();
    let route_tables: Vec<_> = config
        .route_tables
        .iter()
        .filter(|t| listener_keys.contains(t.listener.as_str()))
        .cloned()
        .collect();
    let clusters_used: BTreeSet<&str> = route_tables
        .iter()
        .flat_map(|t| &t.virtual_hosts)
        .flat_map(|v| &v.routes)
        .flat_map(|r| r.clusters())
        .collect();
    let certs_used: BTreeSet<&str> = listeners
        .iter()
        .flat_map(|l| {
            l.certificates
                .iter()
                .map(|c| c.certificate.as_str())
                .chain(l.backend_client_certificate.as_deref())
        })
        .collect();
    Config {
        gateways: config
            .gateways
            .iter()
            .filter(|g| wanted.contains(g.key.as_str()))
            .cloned()
            .collect(),
        clusters: config
            .clusters
            .iter()
            .filter(|c| clusters_used.contains(c.key.as_str()))
            .cloned()
            .collect(),
        certificates: config
            .certificates
            .iter()
            .filter(|c| certs_used.contains(c.key.as_str()))
            .cloned()
            .collect(),
        listeners,
        route_tables,
    }
}

type UpdateStream = Pin<Box<dyn Stream<Item = Result<proto::ConfigUpdate, Status>> + Send>>;

#[tonic::async_trait]
impl ConfigDiscovery for ConfigServer {
    type StreamStream = UpdateStream;

    async fn stream(
        &self,
        request: Request<Streaming<proto::DataPlaneMessage>>,
    ) -> Result<Response<UpdateStream>, Status> {
        if self.serving.as_ref().is_some_and(|s| !*s.borrow()) {
            return Err(Status::unavailable(
                "this operator replica is not the leader; the gatehouse-operator Service reaches the leader",
            ));
        }
        // The Gateway the client certificate names, when identities are required.
        let identity = if self.require_identity {
            let gateway = request
                .peer_certs()
                .and_then(|certs| {
                    certs
                        .first()
                        .and_then(|c| crate::kubernetes::identity::gateway_of_certificate(c))
                })
                .ok_or_else(|| {
                    Status::unauthenticated(
                        "a client certificate naming a Gateway is required on this channel",
                    )
                })?;
            Some(gateway)
        } else {
            None
        };
        let mut inbound = request.into_inner();
        let subscribe = match inbound.message().await? {
            Some(proto::DataPlaneMessage {
                message: Some(Message::Subscribe(s)),
            }) => s,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be Subscribe",
                ));
            }
        };
        if let Some(gateway) = &identity
            && (subscribe.gateways.is_empty() || subscribe.gateways.iter().any(|g| g != gateway))
        {
            tracing::warn!(node = %subscribe.node, identity = %gateway, asked = ?subscribe.gateways, "subscription refused");
            return Err(Status::permission_denied(format!(
                "this certificate is for Gateway {gateway}; it may subscribe to that Gateway only"
            )));
        }
        tracing::info!(node = %subscribe.node, gateways = ?subscribe.gateways, "data plane connected");

        // Versions this stream was sent, with the Gateway generations each contains.
        let sent: SentVersions = Arc::default();
        let (tx, rx) = mpsc::channel(4);

        tokio::spawn(send_versions(
            self.snapshots.clone(),
            self.serving.clone(),
            subscribe.gateways.clone(),
            sent.clone(),
            tx,
        ));

        let acks = self.acks.clone();
        let node = subscribe.node.clone();
        tokio::spawn(async move {
            while let Ok(Some(msg)) = inbound.message().await {
                let Some(Message::Ack(ack)) = msg.message else {
                    continue;
                };
                let gateways = sent
                    .lock()
                    .ok()
                    .and_then(|mut s| {
                        // Older versions can no longer be acknowledged after this one.
                        let g = s.get(&ack.version).cloned();
                        s.retain(|v, _| *v > ack.version);
                        g
                    })
                    .unwrap_or_default();
                if ack.accepted {
                    tracing::debug!(%node, version = ack.version, "data plane applied config");
                } else {
                    tracing::warn!(%node, version = ack.version, error = %ack.error, "data plane refused config");
                }
                // A data plane speaks for the Gateways it was sent, never for others'
                // listeners.
                let ours = |listener: &str| {
                    gateways.iter().any(|(g, _)| {
                        listener
                            .strip_prefix(g.as_str())
                            .is_some_and(|r| r.starts_with('/'))
                    })
                };
                for r in &ack.refused {
                    tracing::warn!(%node, version = ack.version, resource = %r.resource, error = %r.message, "data plane left a resource out");
                }
                let listener_errors = ack
                    .listener_errors
                    .into_iter()
                    .filter(|e| ours(&e.listener))
                    .map(|e| (e.listener, e.message))
                    .collect();
                let refused = ack
                    .refused
                    .into_iter()
                    .map(|r| {
                        let listeners = r.listeners.into_iter().filter(|l| ours(l)).collect();
                        (r.resource, listeners, r.message)
                    })
                    .collect();
                // Bounded: a stream waits (so its data plane does) while the loop catches up.
                let _ = acks
                    .send(AckEvent {
                        node: node.clone(),
                        version: ack.version,
                        accepted: ack.accepted,
                        error: ack.error,
                        listener_errors,
                        refused,
                        gateways,
                    })
                    .await;
            }
            tracing::info!(%node, "data plane disconnected");
        });

        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::filter;
    use crate::source::file::FileSource;
    use gatehouse_translate::{Settings, translate};

    #[test]
    fn a_data_plane_gets_only_what_its_gateways_use() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../translate/testdata/listeners");
        let config = translate(&FileSource::new(&dir).load().store, &Settings::default()).config;
        assert!(config.gateways.len() > 2);

        let one = filter(&config, &["infra/granted".to_string()]);
        assert_eq!(one.gateways.len(), 1);
        assert!(one.listeners.iter().all(|l| l.gateway == "infra/granted"));
        assert!(
            one.route_tables
                .iter()
                .all(|t| t.listener.starts_with("infra/granted/"))
        );
        assert_eq!(
            one.certificates
                .iter()
                .map(|c| c.key.as_str())
                .collect::<Vec<_>>(),
            ["certs/shared-tls"]
        );
        assert_eq!(filter(&config, &[]), config, "no names means every Gateway");
        assert!(
            filter(&config, &["nope/none".to_string()])
                .listeners
                .is_empty()
        );
    }
}
