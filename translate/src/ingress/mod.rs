//! Ingress v1: classes, the Gateway that serves each class, and rules attached to that
//! Gateway's listeners beside HTTPRoutes.
//!
//! Choices where Ingress leaves room (documented in docs/ingress.md):
//! - `ImplementationSpecific` paths match as `Prefix` (element-wise), never as a string
//!   prefix: `/foo` matches `/foo/bar` but not `/foobar`.
//! - Two Ingresses with the same host and path: the older one wins (then namespace/name),
//!   the same rule HTTPRoutes follow.
//! - Ingresses respect the serving listener's `allowedRoutes.namespaces`, so the platform
//!   team's Gateway decides which namespaces may attach, whatever the API.

mod attach;
mod canary;
mod classes;
mod hosts;
mod service_backend;

pub use attach::attach_all;
pub use canary::{CanaryKey, canary_paths};
pub use classes::{
    ClassDefaults, DEFAULT_CLASS_ANNOTATION, DEFAULT_GATEWAY_NAMESPACE, IngressPlan,
    LEGACY_CLASS_ANNOTATION, ServedIngress, class_name, plan_classes, served,
};
pub use hosts::HostFacts;
