//! Per-route policies and filters, each its own module with its own state: CORS, path and
//! redirect filters, access lists and rate limits, external auth, endpoint choice by
//! affinity or hash, and request mirrors. The proxy (`http::proxy`) applies them; the
//! runtime holds their compiled forms.

pub mod auth;
pub mod balance;
pub mod cors;
pub mod filters;
pub mod limits;
pub mod mirror;
