//! A Kubernetes client for integration tests, talking to the real API server of the
//! testbed (`conformance/testbed`, see docs/testbed.md).
//!
//! [`client`] uses the running testbed, or brings one up with `conformance/testbed up`
//! (root needed) when there is none. `GATEHOUSE_TESTBED_KUBECONFIG` points at another
//! cluster's kubeconfig instead.

use anyhow::Context;
use std::path::PathBuf;
use tokio::sync::OnceCell;

/// Where `conformance/testbed up` writes its kubeconfig.
pub const DEFAULT_KUBECONFIG: &str = "/var/lib/gatehouse-testbed/kubeconfig";

/// The repository's `conformance/testbed` script.
pub fn testbed_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testbed")
}

/// The testbed's kubeconfig (its admin), for tools such as helm and kubectl.
pub fn kubeconfig_path() -> PathBuf {
    std::env::var_os("GATEHOUSE_TESTBED_KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_KUBECONFIG))
}

/// The testbed's client configuration (its admin), for a client of one's own (for
/// example one that impersonates a ServiceAccount).
pub async fn config() -> anyhow::Result<kube::Config> {
    let path = kubeconfig_path();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .with_context(|| format!("kubeconfig {}", path.display()))
}

async fn connect() -> anyhow::Result<kube::Client> {
    let config = config().await?;
    let client = kube::Client::try_from(config).context("building a client")?;
    client
        .apiserver_version()
        .await
        .context("asking the API server for its version")?;
    Ok(client)
}

static UP: OnceCell<()> = OnceCell::const_new();

/// A client for the testbed's API server, starting the testbed once per process if it is
/// not running.
pub async fn client() -> anyhow::Result<kube::Client> {
    if let Ok(c) = connect().await {
        return Ok(c);
    }
    if std::env::var_os("GATEHOUSE_TESTBED_KUBECONFIG").is_some() {
        return connect().await;
    }
    UP.get_or_try_init(|| async {
        let script = testbed_script();
        let status = tokio::process::Command::new(&script)
            .arg("up")
            .status()
            .await
            .with_context(|| format!("running {} up", script.display()))?;
        anyhow::ensure!(
            status.success(),
            "{} up failed ({status})",
            script.display()
        );
        Ok(())
    })
    .await?;
    connect().await
}

/// A namespace name unique to this test run.
pub fn unique_namespace(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{:05}", std::process::id(), nanos % 100_000)
}
