//! What an installation decides for translation: which controller names are ours, where
//! data planes run and which address a Gateway without one binds.

use std::net::IpAddr;

/// What translation is told of its installation.
#[derive(Debug, Clone)]
pub struct Settings {
    /// GatewayClasses with this controllerName are ours.
    pub gateway_controller: String,
    /// IngressClasses with this controller are ours.
    pub ingress_controller: String,
    /// Address Gateway listeners bind when a Gateway has no spec.addresses.
    pub default_address: IpAddr,
    /// HTTP and HTTPS ports of the default Gateway made for an IngressClass without
    /// parameters.
    pub ingress_ports: (u16, u16),
    /// Where data planes run, which decides addresses.
    pub infrastructure: Infrastructure,
}

/// Where data planes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Infrastructure {
    /// On this machine (standalone): listeners bind the Gateway's address, and all
    /// Gateways share one host, so two cannot use one address and port.
    #[default]
    Host,
    /// One data plane Deployment per Gateway behind a LoadBalancer Service: listeners bind
    /// every address of their pod, and the Gateway's address is the Service's.
    Kubernetes,
}

/// Name of the Deployment, Service and ServiceAccount of a Gateway's data planes.
pub fn infrastructure_name(gateway: &str) -> String {
    format!("gatehouse-{gateway}")
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            gateway_controller: GATEWAY_CONTROLLER.into(),
            ingress_controller: INGRESS_CONTROLLER.into(),
            default_address: IpAddr::from([127, 0, 0, 1]),
            ingress_ports: (80, 443),
            infrastructure: Infrastructure::Host,
        }
    }
}

/// Our GatewayClass controllerName by default.
pub const GATEWAY_CONTROLLER: &str = "gatehouse.dev/gateway-controller";
/// Our IngressClass controller by default.
pub const INGRESS_CONTROLLER: &str = "gatehouse.dev/ingress-controller";
/// The Gateway API group.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
