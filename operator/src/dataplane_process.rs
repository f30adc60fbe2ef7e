//! The host infrastructure provider: runs a data plane as a child process of this machine
//! and restarts it if it exits.

use std::path::PathBuf;
use std::time::Duration;

/// Keeps one `gatehouse dataplane` child running against `operator_url`, its admin
/// endpoint (health, metrics) on `admin` when given.
pub async fn supervise_dataplane(
    exe: PathBuf,
    operator_url: String,
    node: String,
    admin: Option<std::net::SocketAddr>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg("dataplane")
            .arg("--operator")
            .arg(&operator_url)
            .arg("--node")
            .arg(&node)
            .kill_on_drop(true);
        if let Some(admin) = admin {
            cmd.arg("--health-address").arg(admin.to_string());
        }
        // The child must not outlive us, even when we are killed with SIGKILL.
        // SAFETY: prctl is async-signal-safe and touches only the calling (child) process.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(mut child) => {
                tracing::info!(pid = child.id().unwrap_or(0), "data plane started");
                let started = std::time::Instant::now();
                match child.wait().await {
                    Ok(status) => tracing::warn!(%status, "data plane exited; restarting"),
                    Err(e) => tracing::warn!(error = %e, "waiting for the data plane failed"),
                }
                if started.elapsed() > Duration::from_secs(10) {
                    backoff = Duration::from_millis(200);
                }
            }
            Err(e) => {
                tracing::error!(exe = %exe.display(), error = %e, "cannot start the data plane")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
