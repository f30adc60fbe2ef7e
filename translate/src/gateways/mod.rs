//! Gateways and their listeners: which are ours, where they bind, which are valid, and the
//! certificates they offer. `plan` decides; route front-ends attach to the planned
//! listeners; `emit` writes the model's Gateways and Listeners.

mod classes;
mod emit;
mod listener;
mod listener_sets;
mod plan;
mod planned;

pub use emit::finish;
pub use plan::plan;
pub use planned::{LabelSelector, Owner, PlannedGateway, PlannedListener, parent};
