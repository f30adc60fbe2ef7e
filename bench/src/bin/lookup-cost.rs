//! `lookup-cost ROUTES ITERATIONS`: compiles the benchmark's table of ROUTES HTTPRoutes the
//! way the data plane does (files -> translation -> `tables::compile`) and looks up the
//! route in the middle ITERATIONS times inside `lookup_loop`, the one function the
//! instruction-count gate (`bench/instructions`, callgrind `--toggle-collect`) counts.

use anyhow::{Context, Result, bail};
use gatehouse_dataplane::runtime::{Bind, RequestView};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [routes, iterations] = args.as_slice() else {
        bail!("usage: lookup-cost ROUTES ITERATIONS");
    };
    let routes: usize = routes.parse().context("ROUTES")?;
    let iterations: u64 = iterations.parse().context("ITERATIONS")?;
    if routes == 0 {
        bail!("ROUTES must be at least 1");
    }

    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("base.yaml"), BASE)?;
    std::fs::write(
        dir.path().join("backend.yaml"),
        gatehouse_bench::backend_service(19000),
    )?;
    std::fs::write(
        dir.path().join("routes.yaml"),
        gatehouse_bench::scale_routes(routes),
    )?;
    let loaded = gatehouse_operator::source::file::FileSource::new(dir.path()).load();
    if let Some(e) = loaded.errors.first() {
        bail!("{e}");
    }
    let settings = gatehouse_translate::Settings::default();
    let config = gatehouse_translate::translate(&loaded.store, &settings).config;
    let runtime = gatehouse_dataplane::runtime::compile(&config, 1)
        .map_err(|e| anyhow::anyhow!("compiling the table: {e}"))?;
    let bind = runtime
        .binds
        .values()
        .next()
        .context("the table has no listener")?;

    let (host, path) = gatehouse_bench::scale_target(routes);
    let found = lookup_loop(bind, &host, &path, iterations);
    if iterations > 0 && found != iterations {
        bail!("{host}{path} found a route {found} times of {iterations}");
    }
    println!("{routes} routes: {iterations} lookups of {host}{path}");
    Ok(())
}

/// The measured part: only the lookups, with the request already parsed.
#[inline(never)]
fn lookup_loop(bind: &Bind, host: &str, path: &str, iterations: u64) -> u64 {
    let headers = http::HeaderMap::new();
    let method = http::Method::GET;
    let mut found = 0;
    for _ in 0..iterations {
        let req = RequestView {
            host: std::hint::black_box(host),
            path: std::hint::black_box(path),
            query: None,
            method: &method,
            headers: gatehouse_dataplane::runtime::Headers::Map(&headers),
        };
        if std::hint::black_box(bind.route(&req)).is_ok() {
            found += 1;
        }
    }
    found
}

const BASE: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gatehouse}
spec: {controllerName: gatehouse.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: bench, namespace: default}
spec:
  gatewayClassName: gatehouse
  listeners:
  - {name: http, protocol: HTTP, port: 18080}
";
