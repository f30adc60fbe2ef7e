//! The config channel, data plane side: dial the operator, subscribe, apply each version,
//! ACK or NACK it. When the operator is gone, keep serving and redial with backoff; on
//! reconnect the operator sends a full snapshot.

use super::received::Received;
use crate::data_plane::{DataPlane, LARGE_UPDATE, large_update_applied};
use gatehouse_model::proto::config_discovery_client::ConfigDiscoveryClient;
use gatehouse_model::proto::{self, data_plane_message::Message};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// Where the config channel goes and what it asks for.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// "http://127.0.0.1:9901"
    pub operator: String,
    pub node: String,
    /// "namespace/name"; empty for all.
    pub gateways: Vec<String>,
    /// Mutual TLS to the operator: a directory with `ca.crt` (the operator's CA), `tls.crt`
    /// and `tls.key` (this data plane's identity), read at every connect so a rotated
    /// identity is picked up. Without it the channel is plain gRPC (standalone, loopback).
    pub identity: Option<PathBuf>,
    /// The name the operator's certificate must carry.
    pub server_name: String,
}

/// The TLS settings of one connection, from the identity directory.
fn tls_config(dir: &Path, server_name: &str) -> anyhow::Result<ClientTlsConfig> {
    let read = |file: &str| {
        let path = dir.join(file);
        std::fs::read(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    };
    Ok(ClientTlsConfig::new()
        .domain_name(server_name)
        .ca_certificate(Certificate::from_pem(read("ca.crt")?))
        .identity(Identity::from_pem(read("tls.crt")?, read("tls.key")?)))
}

/// Runs forever: one stream at a time, redialled with exponential backoff (100 ms to 5 s),
/// each wait drawn between half and all of it: a restarted operator is not dialled by
/// every data plane in the same millisecond.
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
        tokio::time::sleep(jittered(backoff)).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One connection; returns whether any version was received (to reset the backoff).
async fn stream_once(
    settings: &ClientSettings,
    dataplane: &Arc<DataPlane>,
) -> anyhow::Result<bool> {
    // An operator gone without a FIN (its pod killed with its network, its node lost)
    // would hold an idle stream for ever: HTTP/2 PINGs find it within 10 s, and the data
    // plane redials (reaching the new leader through the Service).
    let mut endpoint = tonic::transport::Endpoint::from_shared(settings.operator.clone())?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .tcp_keepalive(Some(Duration::from_secs(10)));
    if let Some(dir) = &settings.identity {
        endpoint = endpoint.tls_config(tls_config(dir, &settings.server_name)?)?;
    }
    let channel = endpoint.connect().await?;
    // A first snapshot carries every route: 50,000 routes are ~18 MB, far over tonic's
    // 4 MiB default. The operator is trusted (mutual TLS in a cluster).
    let mut client = ConfigDiscoveryClient::new(channel)
        .max_decoding_message_size(gatehouse_model::channel::MAX_MESSAGE)
        .max_encoding_message_size(gatehouse_model::channel::MAX_MESSAGE);
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

    let mut received = Received::default();
    let mut any = false;
    while let Some(update) = updates.message().await? {
        any = true;
        let started = std::time::Instant::now();
        let (version, full) = (update.version, update.full);
        let resources = update.upserts.len() + update.removals.len();
        received.apply(&update);
        // The bodies go now: what they carried is decoded.
        drop(update);
        let decode_ms = started.elapsed().as_secs_f64() * 1000.0;
        let ack = dataplane.apply_received(&mut received, version);
        let compile_ms = started.elapsed().as_secs_f64() * 1000.0 - decode_ms;
        dataplane
            .metrics()
            .apply_seconds
            .observe(started.elapsed().as_secs_f64());
        if resources >= LARGE_UPDATE {
            large_update_applied();
        }
        let ack = match ack {
            Ok(applied) => {
                for r in applied.refused.iter().take(REPORTED_REFUSALS) {
                    tracing::warn!(version, resource = %r.resource, error = %r.error, "left out of the version; the rest applies");
                }
                tracing::info!(
                    version,
                    full,
                    resources,
                    decode_ms = format!("{decode_ms:.1}"),
                    compile_ms = format!("{compile_ms:.1}"),
                    "applied config"
                );
                proto::Ack {
                    version,
                    accepted: true,
                    error: String::new(),
                    listener_errors: applied
                        .listener_errors
                        .into_iter()
                        .map(|(listener, message)| proto::ListenerError { listener, message })
                        .collect(),
                    refused: reported_refusals(applied.refused),
                }
            }
            Err(error) => {
                tracing::warn!(version, %error, "refused config; previous version keeps serving");
                proto::Ack {
                    version,
                    accepted: false,
                    error,
                    listener_errors: vec![],
                    refused: vec![],
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

/// Refused resources reported one by one (and logged) per version; the rest are reported
/// together. A version refusing many (one tenant's thousands of broken routes) must not
/// make an acknowledgement the operator cannot take (4 MiB) or a log flood.
const REPORTED_REFUSALS: usize = 500;

/// Longest reason reported for one refused resource.
const REPORTED_REASON: usize = 1024;

/// The acknowledgement's refused list: the first `REPORTED_REFUSALS` as they are (reasons
/// cut at `REPORTED_REASON` bytes), then one entry for the rest naming every listener they
/// touch (so each listener still learns it is missing something).
fn reported_refusals(refused: Vec<crate::runtime::Refused>) -> Vec<proto::Refused> {
    let total = refused.len();
    let mut out = Vec::with_capacity(total.min(REPORTED_REFUSALS + 1));
    let mut rest_listeners = std::collections::BTreeSet::new();
    for r in refused {
        if out.len() < REPORTED_REFUSALS {
            let mut message = r.error;
            if message.len() > REPORTED_REASON {
                let mut cut = REPORTED_REASON;
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                message.truncate(cut);
                message.push_str(" ...");
            }
            out.push(proto::Refused {
                resource: r.resource,
                listeners: r.listeners,
                message,
            });
        } else {
            rest_listeners.extend(r.listeners);
        }
    }
    if total > REPORTED_REFUSALS {
        out.push(proto::Refused {
            resource: format!("{} more resources", total - REPORTED_REFUSALS),
            listeners: rest_listeners.into_iter().collect(),
            message: "also left out; the data plane's log has the first of them".into(),
        });
    }
    out
}

/// A wait between half of `backoff` and all of it.
fn jittered(backoff: Duration) -> Duration {
    backoff.mul_f64(rand::random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_reported_within_bounds() {
        let refused: Vec<crate::runtime::Refused> = (0..2000)
            .map(|i| crate::runtime::Refused {
                resource: format!("VirtualHost l{i} h"),
                listeners: vec![format!("ns/gw/l{}", i % 7)],
                error: "é".repeat(2000),
            })
            .collect();
        let reported = reported_refusals(refused);
        assert_eq!(reported.len(), REPORTED_REFUSALS + 1);
        assert!(reported[0].message.len() <= REPORTED_REASON + 4);
        let rest = &reported[REPORTED_REFUSALS];
        assert_eq!(rest.resource, "1500 more resources");
        assert_eq!(rest.listeners.len(), 7);
        let few = reported_refusals(vec![crate::runtime::Refused {
            resource: "Cluster c".into(),
            listeners: vec![],
            error: "bad".into(),
        }]);
        assert_eq!(few.len(), 1);
        assert_eq!(few[0].message, "bad");
    }
}
