//! The operator on a directory of YAML (`gatehouse operator --file DIR`, and the operator
//! half of `gatehouse standalone`): the watched directory feeding the operator loop.

use crate::admin;
use crate::control_loop::run;
use crate::source::file::WatchedDirectory;
use gatehouse_translate::Settings;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct FileOperatorOptions {
    pub dir: PathBuf,
    pub settings: Settings,
    /// Where data planes dial in (gRPC).
    pub config_address: SocketAddr,
    /// Status, model, health and metrics (HTTP).
    pub admin_address: SocketAddr,
    /// A data plane's admin endpoint whose metrics the admin endpoint's `/metrics` shows
    /// after the operator's (standalone mode).
    pub dataplane_admin: Option<SocketAddr>,
}

/// The file operator with its sockets bound (so callers learn the real addresses before
/// it runs, e.g. to start a data plane against a port picked by the OS).
pub struct FileOperator {
    opts: FileOperatorOptions,
    grpc: tokio::net::TcpListener,
    admin: tokio::net::TcpListener,
}

impl FileOperator {
    pub async fn bind(opts: FileOperatorOptions) -> anyhow::Result<Self> {
        let grpc = tokio::net::TcpListener::bind(opts.config_address)
            .await
            .map_err(|e| anyhow::anyhow!("config server {}: {e}", opts.config_address))?;
        let admin = admin::bind(opts.admin_address).await?;
        Ok(FileOperator { opts, grpc, admin })
    }

    pub fn config_address(&self) -> std::io::Result<SocketAddr> {
        self.grpc.local_addr()
    }

    pub fn admin_address(&self) -> std::io::Result<SocketAddr> {
        self.admin.local_addr()
    }

    /// Runs until the process ends. Bad input never ends it: it becomes errors and
    /// conditions.
    pub async fn run(self) -> anyhow::Result<()> {
        let source = WatchedDirectory::new(&self.opts.dir)?;
        let admin = admin::AdminEndpoint {
            listener: self.admin,
            metrics: Default::default(),
            dataplane: self.opts.dataplane_admin,
        };
        run(
            source,
            self.opts.settings,
            self.grpc,
            admin,
            None,
            None,
            None,
        )
        .await
    }
}
