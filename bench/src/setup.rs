//! Everything the phases measure, started before the first one: the echo backend,
//! standalone Gatehouse with its configuration, nginx and haproxy (`peers`), a
//! self-signed certificate for all three, and wrk's report scripts.

use crate::peers::{start_haproxy, start_nginx};
use crate::probe::wait_for;
use crate::process::{Running, pinned, spawn};
use crate::sample::{Scripts, write_scripts};
use crate::topology::{BACKEND, LOAD_CORE, PROXIES, PROXY_CORE};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What `start` started, and where.
pub struct Started {
    /// Standalone Gatehouse's configuration directory (the route files go there).
    pub gatehouse_dir: PathBuf,
    /// nginx's prefix (churn's server blocks go in its `churn` directory).
    pub nginx_dir: PathBuf,
    gatehouse_pid: u32,
    pub nginx_pid: u32,
    haproxy_pid: u32,
    pub scripts: Scripts,
}

impl Started {
    /// The process group of the proxy of this name: each proxy runs in one of its own (its
    /// workers, Gatehouse's data plane).
    pub fn group(&self, name: &str) -> u32 {
        match name {
            "gatehouse" => self.gatehouse_pid,
            "nginx" => self.nginx_pid,
            _ => self.haproxy_pid,
        }
    }
}

/// Starts the backend and the three proxies (logs and configuration in `dir`, binaries of
/// this build in `bin`) and waits until each proxy answers.
pub fn start(bin: &Path, dir: &Path, running: &mut Running) -> Result<Started> {
    ports_free()?;
    let (cert_pem, key_pem) = write_certificate(dir)?;
    start_backend(bin, dir, running)?;
    let (gatehouse_dir, gatehouse_pid) = start_gatehouse(bin, dir, &cert_pem, &key_pem, running)?;
    let (nginx_dir, nginx_pid) = start_nginx(dir, running)?;
    let haproxy_pid = start_haproxy(dir, running)?;
    for p in PROXIES {
        wait_for(
            p.http,
            "bench.example.com",
            "/bytes/1",
            "200",
            Duration::from_secs(60),
        )
        .with_context(|| {
            format!(
                "{} never answered on {}; logs in {}",
                p.name,
                p.http,
                dir.display()
            )
        })?;
    }
    Ok(Started {
        gatehouse_dir,
        nginx_dir,
        gatehouse_pid,
        nginx_pid,
        haproxy_pid,
        scripts: write_scripts(dir)?,
    })
}

/// A leftover proxy on a benchmark port would answer in place of the one started here
/// (which fails to bind) and be measured under its name.
fn ports_free() -> Result<()> {
    for port in PROXIES
        .iter()
        .flat_map(|p| [p.http, p.https])
        .chain([BACKEND])
    {
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            bail!("port {port} is taken ({e}): stop what listens there and run again");
        }
    }
    Ok(())
}

/// A self-signed certificate for bench.example.com in `dir`: cert.pem, key.pem, and both
/// in combined.pem (haproxy's). Returns the certificate and key in PEM.
fn write_certificate(dir: &Path) -> Result<(String, String)> {
    let cert = rcgen::generate_simple_self_signed(vec!["bench.example.com".to_string()])?;
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.key_pair.serialize_pem());
    std::fs::write(dir.join("cert.pem"), &cert_pem)?;
    std::fs::write(dir.join("key.pem"), &key_pem)?;
    std::fs::write(dir.join("combined.pem"), format!("{cert_pem}{key_pem}"))?;
    Ok((cert_pem, key_pem))
}

/// The echo backend, on the load core.
fn start_backend(bin: &Path, dir: &Path, running: &mut Running) -> Result<()> {
    let echo = bin.join("gatehouse-echo");
    spawn(
        pinned(
            LOAD_CORE,
            &echo,
            &[
                "--listen",
                &format!("127.0.0.1:{BACKEND}"),
                "--pod",
                "bench",
            ],
        ),
        &dir.join("echo.log"),
        running,
    )?;
    Ok(())
}

/// Gatehouse standalone (operator + the data plane it supervises, both pinned), its
/// configuration in `dir`/gatehouse. Returns that directory and the operator's pid (its
/// process group).
fn start_gatehouse(
    bin: &Path,
    dir: &Path,
    cert_pem: &str,
    key_pem: &str,
    running: &mut Running,
) -> Result<(PathBuf, u32)> {
    let gh_dir = dir.join("gatehouse");
    std::fs::create_dir_all(&gh_dir)?;
    std::fs::write(
        gh_dir.join("config.yaml"),
        gatehouse_config(cert_pem, key_pem),
    )?;
    let gatehouse = bin.join("gatehouse");
    let gh_dir_arg = gh_dir.display().to_string();
    let gatehouse_pid = spawn(
        pinned(
            PROXY_CORE,
            &gatehouse,
            &[
                "standalone",
                &gh_dir_arg,
                "--config-address",
                "127.0.0.1:19901",
                "--admin-address",
                "127.0.0.1:19900",
            ],
        ),
        &dir.join("gatehouse.log"),
        running,
    )?;
    Ok((gh_dir, gatehouse_pid))
}

fn gatehouse_config(cert: &str, key: &str) -> String {
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: gatehouse}}
spec: {{controllerName: gatehouse.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: bench, namespace: default}}
spec:
  gatewayClassName: gatehouse
  listeners:
  - {{name: http, protocol: HTTP, port: 18080}}
  - name: https
    protocol: HTTPS
    port: 18443
    tls: {{certificateRefs: [{{name: bench-tls}}]}}
---
apiVersion: v1
kind: Secret
metadata: {{name: bench-tls, namespace: default}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}  tls.key: |
{}---
{}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: bench, namespace: default}}
spec:
  parentRefs: [{{name: bench}}]
  rules:
  - backendRefs: [{{name: backend, port: 80}}]
",
        indent(cert),
        indent(key),
        gatehouse_bench::backend_service(BACKEND)
    )
}
