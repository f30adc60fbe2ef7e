//! The peers Gatehouse is measured against, nginx (one worker) and haproxy (one thread):
//! their configurations, equivalent to Gatehouse's, and starting them on the proxy core.

use crate::process::{Running, pinned, spawn};
use crate::topology::{BACKEND, PROXY_CORE};
use anyhow::Result;
use std::path::{Path, PathBuf};

/// Starts nginx: one worker, keep-alive to the backend, its prefix `dir`/nginx (with the
/// `churn` directory of server blocks it includes). Returns that prefix and its master's
/// pid (its process group).
pub fn start_nginx(dir: &Path, running: &mut Running) -> Result<(PathBuf, u32)> {
    let nginx_dir = dir.join("nginx");
    std::fs::create_dir_all(nginx_dir.join("logs"))?;
    std::fs::write(nginx_dir.join("nginx.conf"), nginx_config(dir))?;
    let nginx_prefix = format!("{}/", nginx_dir.display());
    let nginx_conf = nginx_dir.join("nginx.conf").display().to_string();
    std::fs::create_dir_all(nginx_dir.join("churn"))?;
    let nginx_pid = spawn(
        pinned(
            PROXY_CORE,
            Path::new("nginx"),
            &["-p", &nginx_prefix, "-c", &nginx_conf],
        ),
        &dir.join("nginx.log"),
        running,
    )?;
    Ok((nginx_dir, nginx_pid))
}

/// Starts haproxy: one thread, connection reuse to the backend. Returns its pid (its
/// process group).
pub fn start_haproxy(dir: &Path, running: &mut Running) -> Result<u32> {
    std::fs::write(dir.join("haproxy.cfg"), haproxy_config(dir))?;
    let haproxy_cfg = dir.join("haproxy.cfg").display().to_string();
    spawn(
        pinned(
            PROXY_CORE,
            Path::new("haproxy"),
            &["-db", "-f", &haproxy_cfg],
        ),
        &dir.join("haproxy.log"),
        running,
    )
}

fn nginx_config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "worker_processes 1;
daemon off;
pid {d}/nginx/nginx.pid;
error_log {d}/nginx/logs/error.log warn;
# Room for the slow-client phase's 8,000 held connections and their upstreams.
worker_rlimit_nofile 65536;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  # No cap on requests per connection, as Gatehouse and haproxy have none (nginx's default
  # 1000 would make wrk reconnect and h2load stop).
  keepalive_requests 1000000;
  upstream backend {{ server 127.0.0.1:{BACKEND}; keepalive 128; keepalive_requests 1000000; }}
  # Routes the churn phase adds and removes (one server block per file). The benchmark's
  # own server below is the default one for its port, or the first of these would be.
  include {d}/nginx/churn/*.conf;
  server {{
    listen 28080 reuseport default_server;
    listen 28443 ssl http2 reuseport default_server;
    ssl_certificate {d}/cert.pem;
    ssl_certificate_key {d}/key.pem;
    ssl_protocols TLSv1.3;
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
    }}
  }}
}}
"
    )
}

fn haproxy_config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "global
  nbthread 1
  # Room for the slow-client phase's 8,000 held connections (haproxy wants two files per
  # connection under a hard limit of 20,000 here).
  maxconn 9500
  ssl-default-bind-options ssl-min-ver TLSv1.3
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend bench
  bind 127.0.0.1:38080
  bind 127.0.0.1:38443 ssl crt {d}/combined.pem alpn h2,http/1.1
  default_backend echo
backend echo
  server s1 127.0.0.1:{BACKEND}
"
    )
}
