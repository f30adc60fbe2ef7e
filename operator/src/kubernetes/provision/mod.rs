//! Provisioning a Gateway's data planes in its namespace: `objects.rs` builds the objects
//! from the Gateway and its parameters (pure), `provisioner.rs` applies them, `settings.rs`
//! holds what both need.

mod objects;
mod provisioner;
mod settings;

pub use provisioner::Provisioner;
pub use settings::{DataPlaneSettings, GATEWAY_NAME_LABEL, IDENTITY_DIR};
