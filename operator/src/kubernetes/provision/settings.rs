//! What the provisioner needs to know of the operator, and the names it gives.

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

/// Where data plane pods find their identity (the Secret mounted as files).
pub const IDENTITY_DIR: &str = "/var/run/gatehouse/identity";
