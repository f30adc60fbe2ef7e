//! What a data plane counts and how it is exposed: per-route request series recorded by
//! both request paths (`series`, `histogram`), and the registry that encodes them with the
//! rest as Prometheus text (`registry`), served on the data plane's admin endpoint
//! (`/metrics`, beside `/readyz` and `/healthz`).

pub mod histogram;
pub mod registry;
pub mod series;

pub use registry::{CONTENT_TYPE, CertificateLabels, Metrics, SocketLabels};
pub use series::{Event, Observed, RouteSeries, SeriesLabels};
