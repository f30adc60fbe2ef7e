//! `bench/run`: Gatehouse, nginx and haproxy as equivalent reverse proxies in front of one
//! backend, driven by the same load generators in the same run. Each proxy is pinned to
//! core 0; the load generator and the backend share core 1. Scenarios run interleaved
//! (every proxy once per round) so drift hits all three alike; the summary is the median
//! of the rounds and each figure is also given as a ratio to nginx's in the same run.
//!
//! Prints one JSON object as its last line; with `--write-docs FILE` also writes the tables
//! of docs/benchmarks.md.

mod apiserver;
mod load;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BACKEND: u16 = 19000;
const PROXY_CORE: &str = "0";
const LOAD_CORE: &str = "1";

/// A proxy under test: its HTTP and HTTPS ports.
#[derive(Clone, Copy)]
struct Proxy {
    name: &'static str,
    http: u16,
    https: u16,
}

const PROXIES: [Proxy; 3] = [
    Proxy {
        name: "gatehouse",
        http: 18080,
        https: 18443,
    },
    Proxy {
        name: "nginx",
        http: 28080,
        https: 28443,
    },
    Proxy {
        name: "haproxy",
        http: 38080,
        https: 38443,
    },
];

/// What a scenario asks of the load generator.
struct Scenario {
    key: &'static str,
    what: &'static str,
    tls: bool,
    path: &'static str,
    /// wrk connections (HTTP/1.1), or h2load clients for HTTP/2.
    connections: u32,
    close: bool,
    h2: bool,
    /// Requests/s offered by `gatehouse-bench load` (latency below saturation); None:
    /// as fast as the proxy answers.
    rate: Option<u64>,
}

const SCENARIOS: [Scenario; 6] = [
    Scenario {
        key: "http1",
        what: "HTTP/1.1 keep-alive, 128 B answers",
        tls: false,
        path: "/bytes/128",
        connections: 64,
        close: false,
        h2: false,
        rate: None,
    },
    Scenario {
        key: "http1_64k",
        what: "HTTP/1.1 keep-alive, 64 KiB answers",
        tls: false,
        path: "/bytes/65536",
        connections: 64,
        close: false,
        h2: false,
        rate: None,
    },
    Scenario {
        key: "http1_close",
        what: "HTTP/1.1, a new connection per request",
        tls: false,
        path: "/bytes/128",
        connections: 16,
        close: true,
        h2: false,
        rate: None,
    },
    Scenario {
        key: "https",
        what: "HTTPS (TLS 1.3) keep-alive, 128 B answers",
        tls: true,
        path: "/bytes/128",
        connections: 64,
        close: false,
        h2: false,
        rate: None,
    },
    Scenario {
        key: "h2",
        what: "HTTP/2 over TLS, 16 clients x 8 streams, 128 B answers",
        tls: true,
        path: "/bytes/128",
        connections: 16,
        close: false,
        h2: true,
        rate: None,
    },
    Scenario {
        key: "http1_rate",
        what: "HTTP/1.1 keep-alive, 128 B answers, 10,000 req/s offered",
        tls: false,
        path: "/bytes/128",
        connections: 32,
        close: false,
        h2: false,
        rate: Some(10_000),
    },
];

/// One measurement: requests/s and latency percentiles in ms (HTTP/2: rps only).
#[derive(Debug, Clone, Default)]
struct Sample {
    rps: f64,
    p50: Option<f64>,
    p99: Option<f64>,
    p999: Option<f64>,
    errors: u64,
    requests: u64,
    /// The proxy's CPU time over the run's wall time (1.0: its core was busy throughout).
    cpu_share: Option<f64>,
}

impl Sample {
    /// Requests/s per core of proxy CPU: what the proxy would do with its core saturated.
    /// On two cores the load generator's core can saturate first; this still compares.
    fn rps_per_core(&self) -> Option<f64> {
        self.cpu_share.filter(|c| *c > 0.0).map(|c| self.rps / c)
    }
}

struct Options {
    quick: bool,
    rounds: usize,
    seconds: u64,
    bin: PathBuf,
    write_docs: Option<PathBuf>,
    /// Phases to run (proxies, scale, apiserver, churn); all when empty.
    only: Vec<String>,
    /// Route table sizes for scale and propagation.
    sizes: Vec<usize>,
}

impl Options {
    fn runs(&self, phase: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == phase)
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if args.first().is_some_and(|a| a == "requests") {
        let port: u16 = value("--port").context("requests: --port")?.parse()?;
        let count: u64 = value("--count").context("requests: --count")?.parse()?;
        return load::sequential(
            port,
            &value("--host").unwrap_or_else(|| "localhost".into()),
            &value("--path").unwrap_or_else(|| "/".into()),
            count,
        );
    }
    if args.first().is_some_and(|a| a == "load") {
        let number = |name: &str| -> Result<u64> {
            value(name)
                .with_context(|| format!("load: {name} is required"))?
                .parse()
                .with_context(|| format!("load: {name}"))
        };
        return load::run(&load::Load {
            port: u16::try_from(number("--port")?).context("--port")?,
            host: value("--host").unwrap_or_else(|| "localhost".into()),
            path: value("--path").unwrap_or_else(|| "/".into()),
            rate: number("--rate")?.max(1),
            connections: number("--connections")?.max(1),
            seconds: number("--seconds")?.max(1),
        });
    }
    let opts = Options {
        quick,
        rounds: value("--rounds")
            .map(|r| r.parse())
            .transpose()
            .context("--rounds")?
            .unwrap_or(if quick { 1 } else { 5 }),
        seconds: value("--seconds")
            .map(|r| r.parse())
            .transpose()
            .context("--seconds")?
            .unwrap_or(if quick { 3 } else { 10 }),
        bin: value("--bin")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("target/release")),
        write_docs: value("--write-docs").map(PathBuf::from),
        only: value("--only")
            .map(|v| v.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
        sizes: match value("--sizes") {
            Some(v) => v
                .split(',')
                .map(|n| n.parse().context("--sizes"))
                .collect::<Result<_>>()?,
            None if quick => vec![10, 1000],
            None => vec![10, 100, 1000, 10_000, 50_000],
        },
    };
    let dir = tempfile::tempdir()?;
    let mut running = Running::default();
    let result = run(&opts, dir.path(), &mut running);
    drop(running);
    let summary = result?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

/// Processes to stop at the end, whatever happens.
#[derive(Default)]
struct Running(Vec<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = Command::new("kill")
                .args(["-TERM", "--", &format!("-{}", c.id())])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn pinned(core: &str, program: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("taskset");
    c.arg("-c").arg(core).arg(program).args(args);
    c
}

fn spawn(mut cmd: Command, log: &Path, running: &mut Running) -> Result<u32> {
    use std::os::unix::process::CommandExt;
    let out = std::fs::File::create(log)?;
    // Its own process group, so stopping it stops its children (the data plane).
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let pid = child.id();
    running.0.push(child);
    Ok(pid)
}

fn run(opts: &Options, dir: &Path, running: &mut Running) -> Result<Value> {
    // A leftover proxy on a benchmark port would answer in place of the one started here
    // (which fails to bind) and be measured under its name.
    for port in PROXIES
        .iter()
        .flat_map(|p| [p.http, p.https])
        .chain([BACKEND])
    {
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            bail!("port {port} is taken ({e}): stop what listens there and run again");
        }
    }
    let cert = rcgen::generate_simple_self_signed(vec!["bench.example.com".to_string()])?;
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.key_pair.serialize_pem());
    std::fs::write(dir.join("cert.pem"), &cert_pem)?;
    std::fs::write(dir.join("key.pem"), &key_pem)?;
    std::fs::write(dir.join("combined.pem"), format!("{cert_pem}{key_pem}"))?;

    let echo = opts.bin.join("gatehouse-echo");
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

    // Gatehouse: standalone (operator + the data plane it supervises, both pinned).
    let gh_dir = dir.join("gatehouse");
    std::fs::create_dir_all(&gh_dir)?;
    std::fs::write(
        gh_dir.join("config.yaml"),
        gatehouse_config(&cert_pem, &key_pem),
    )?;
    let gatehouse = opts.bin.join("gatehouse");
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

    // nginx: one worker, keep-alive to the backend.
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

    // haproxy: one thread, connection reuse to the backend.
    std::fs::write(dir.join("haproxy.cfg"), haproxy_config(dir))?;
    let haproxy_cfg = dir.join("haproxy.cfg").display().to_string();
    let haproxy_pid = spawn(
        pinned(
            PROXY_CORE,
            Path::new("haproxy"),
            &["-db", "-f", &haproxy_cfg],
        ),
        &dir.join("haproxy.log"),
        running,
    )?;

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
    let lua = dir.join("report.lua");
    std::fs::write(&lua, WRK_REPORT)?;
    let churn_lua = dir.join("churn.lua");
    std::fs::write(&churn_lua, format!("{WRK_REPORT}{CHURN_CHECK}"))?;

    // Each proxy runs in a process group of its own (its workers, Gatehouse's data plane).
    let group = |name: &str| match name {
        "gatehouse" => gatehouse_pid,
        "nginx" => nginx_pid,
        _ => haproxy_pid,
    };
    // (scenario, proxy) -> samples
    let mut samples: BTreeMap<(&str, &str), Vec<Sample>> = BTreeMap::new();
    let rounds = if opts.runs("proxies") { opts.rounds } else { 0 };
    for round in 0..rounds {
        for s in &SCENARIOS {
            for p in PROXIES {
                let cpu_before = group_cpu_seconds(group(p.name))?;
                let started = Instant::now();
                let mut sample = measure(s, p, opts.seconds, &lua, &opts.bin)
                    .with_context(|| format!("{} against {}", s.key, p.name))?;
                let wall = started.elapsed().as_secs_f64();
                let cpu = group_cpu_seconds(group(p.name))? - cpu_before;
                sample.cpu_share = (cpu > 0.0).then(|| cpu / wall);
                eprintln!(
                    "round {} {:<12} {:<9} {:>10.0} req/s  cpu {:>4.0}%  p50 {:>7} p99 {:>7} p99.9 {:>7} errors {}",
                    round + 1,
                    s.key,
                    p.name,
                    sample.rps,
                    sample.cpu_share.unwrap_or(0.0) * 100.0,
                    ms(sample.p50),
                    ms(sample.p99),
                    ms(sample.p999),
                    sample.errors
                );
                samples.entry((s.key, p.name)).or_default().push(sample);
            }
        }
    }
    let rss_mb = dataplane_rss_mb()?;
    let sizes: &[usize] = if opts.runs("scale") { &opts.sizes } else { &[] };
    let changes = if opts.quick { 20 } else { 100 };
    let scale = route_scale(&gh_dir, sizes, opts.seconds, &lua, changes)?;
    let apiserver = if !opts.runs("apiserver") {
        vec![]
    } else if !apiserver::possible() {
        eprintln!("propagation against the API server: skipped (the testbed needs root)");
        vec![]
    } else {
        let sizes: &[usize] = if opts.quick {
            &[100]
        } else {
            &[100, 1000, 10_000]
        };
        apiserver_propagation(&opts.bin, sizes, changes, dir, running)?
    };
    let (churn_gatehouse, churn_nginx) = if opts.runs("churn") {
        (
            churn(&Churner::Gatehouse(&gh_dir), opts.seconds, &churn_lua)?,
            churn(
                &Churner::Nginx {
                    dir: &nginx_dir,
                    pid: nginx_pid,
                },
                opts.seconds,
                &churn_lua,
            )?,
        )
    } else {
        Default::default()
    };

    let med = |s: &str, p: &str, f: fn(&Sample) -> Option<f64>| {
        median(
            samples
                .get(&(s, p))
                .into_iter()
                .flatten()
                .filter_map(f)
                .collect(),
        )
    };
    let rps = |x: &Sample| Some(x.rps);
    let per_core = |x: &Sample| x.rps_per_core();
    let p99 = |x: &Sample| x.p99;
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some((a / b * 100.0).round() / 100.0),
        _ => None,
    };
    let mut summary = serde_json::Map::new();
    for s in &SCENARIOS {
        for peer in ["nginx", "haproxy"] {
            summary.insert(
                format!("{}_rps_vs_{peer}", s.key),
                json!(ratio(med(s.key, "gatehouse", rps), med(s.key, peer, rps))),
            );
            summary.insert(
                format!("{}_rps_per_core_vs_{peer}", s.key),
                json!(ratio(
                    med(s.key, "gatehouse", per_core),
                    med(s.key, peer, per_core)
                )),
            );
            // Each round's ratio as well: rounds on a shared machine drift together, so
            // the spread of same-round ratios says how far the medians can be trusted.
            let ours = samples.get(&(s.key, "gatehouse")).into_iter().flatten();
            let theirs = samples.get(&(s.key, peer)).into_iter().flatten();
            let each: Vec<Option<f64>> = ours
                .zip(theirs)
                .map(|(g, q)| ratio(g.rps_per_core(), q.rps_per_core()))
                .collect();
            summary.insert(
                format!("{}_rps_per_core_vs_{peer}_each_round", s.key),
                json!(each),
            );
            if !s.h2 {
                summary.insert(
                    format!("{}_p99_vs_{peer}", s.key),
                    json!(ratio(med(s.key, "gatehouse", p99), med(s.key, peer, p99))),
                );
            }
        }
    }
    summary.insert("rss_mb_1_route".into(), json!(rss_mb));
    for s in &scale {
        let n = size(s.routes);
        summary.insert(format!("rps_{n}_routes"), json!(s.rps.round()));
        summary.insert(format!("rss_mb_{n}_routes"), json!(s.rss_mb));
        if !s.propagation.is_empty() {
            summary.insert(
                format!("propagation_p50_ms_standalone_{n}"),
                json!(percentile(&s.propagation, 50.0)),
            );
            summary.insert(
                format!("propagation_p99_ms_standalone_{n}"),
                json!(percentile(&s.propagation, 99.0)),
            );
        }
    }
    if let (Some(small), Some(large)) = (scale.first(), scale.last()) {
        summary.insert(
            format!(
                "rps_{}_vs_{}_routes",
                size(large.routes),
                size(small.routes)
            ),
            json!(ratio(Some(large.rps), Some(small.rps))),
        );
    }
    for (n, ms) in &apiserver {
        let n = size(*n);
        summary.insert(
            format!("propagation_p50_ms_apiserver_{n}"),
            json!(percentile(ms, 50.0)),
        );
        summary.insert(
            format!("propagation_p99_ms_apiserver_{n}"),
            json!(percentile(ms, 99.0)),
        );
    }
    for (name, c) in [("gatehouse", &churn_gatehouse), ("nginx", &churn_nginx)] {
        summary.insert(format!("churn_failed_{name}"), json!(c.errors));
        summary.insert(format!("churn_requests_{name}"), json!(c.requests));
        summary.insert(format!("churn_p99_ms_{name}"), json!(c.p99));
    }
    // Keys the issue names that this harness does not measure yet: null, never a guess.
    for key in [
        "propagation_p99_ms_standalone_10k",
        "propagation_p99_ms_apiserver_10k",
        "rss_mb_10k_routes",
    ] {
        summary.entry(key).or_insert(Value::Null);
    }
    summary.insert("rounds".into(), json!(opts.rounds));
    summary.insert("seconds".into(), json!(opts.seconds));
    summary.insert("quick".into(), json!(opts.quick));

    if let Some(path) = &opts.write_docs {
        let mut doc = String::new();
        doc.push_str(&format!(
            "| scenario | proxy | req/s (median of {}) | proxy CPU | req/s per core | p50 ms | p99 ms | p99.9 ms | req/s vs nginx | per core vs nginx | p99 vs nginx |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
            opts.rounds
        ));
        for s in &SCENARIOS {
            for p in PROXIES {
                let x = |f: fn(&Sample) -> Option<f64>| med(s.key, p.name, f);
                doc.push_str(&format!(
                    "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    s.what,
                    p.name,
                    x(rps).unwrap_or(0.0),
                    x(|v| v.cpu_share).map_or("-".into(), |c| format!("{:.0} %", c * 100.0)),
                    x(per_core).map_or("-".into(), |r| format!("{r:.0}")),
                    ms(x(|v| v.p50)),
                    ms(x(p99)),
                    ms(x(|v| v.p999)),
                    ratio(x(rps), med(s.key, "nginx", rps))
                        .map_or("-".into(), |r| format!("{r:.2}")),
                    ratio(x(per_core), med(s.key, "nginx", per_core))
                        .map_or("-".into(), |r| format!("{r:.2}")),
                    ratio(x(p99), med(s.key, "nginx", p99))
                        .map_or("-".into(), |r| format!("{r:.2}")),
                ));
            }
        }
        std::fs::write(path, doc)?;
    }
    Ok(Value::Object(summary))
}

/// A route count as the summary's keys spell it: 10, 1k, 10k.
fn size(n: usize) -> String {
    if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}"))
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Prints requests/s, errors and latency percentiles (µs) as one JSON line when wrk ends.
/// Errors include the answers a `response` hook counted as `wrong` (only the churn script
/// has one: a hook on every answer slows wrk).
const WRK_REPORT: &str = r#"
local threads = {}
function setup(thread) table.insert(threads, thread) end
done = function(summary, latency, requests)
  local wrong = 0
  for _, t in ipairs(threads) do wrong = wrong + (t:get("wrong") or 0) end
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout + wrong
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors":%d,"p50":%d,"p99":%d,"p999":%d}\n',
    summary.requests, summary.duration, errors,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"#;

/// For churn: an answer other than the stable route's 200 that wrk would not call an
/// error (a 3xx from another route) is a failure too.
const CHURN_CHECK: &str = r#"
wrong = 0
function response(status, headers, body)
  if status ~= 200 and status < 400 then wrong = wrong + 1 end
end
"#;

/// What one route table size gave.
struct Scale {
    routes: usize,
    rps: f64,
    rss_mb: f64,
    /// Standalone propagation with this many routes in the table (none under 100).
    propagation: Vec<f64>,
}

/// Requests/s (HTTP/1.1 keep-alive, to a route in the middle), data plane RSS, and (from
/// 100 routes up) propagation with `n` HTTPRoutes on the listener: one hostname each,
/// prefixes, every 10th with a header match and every 50th with a regular expression path.
fn route_scale(
    dir: &Path,
    sizes: &[usize],
    seconds: u64,
    lua: &Path,
    changes: usize,
) -> Result<Vec<Scale>> {
    let mut out = vec![];
    for &n in sizes {
        let yaml = gatehouse_bench::scale_routes(n);
        std::fs::write(dir.join("routes.yaml"), yaml)?;
        let (host, path) = gatehouse_bench::scale_target(n);
        let last = format!("r{}.bench.example.com", n - 1);
        let last_path = format!("/p{}/x", (n - 1) % 100);
        wait_for_route(
            &last,
            &last_path,
            "302",
            Duration::from_secs(60 + n as u64 / 200),
        )
        .with_context(|| format!("{n} routes never served"))?;
        wait_for_route(&host, &path, "200", Duration::from_secs(10))?;
        let rps = keep_alive_load(
            seconds,
            lua,
            &host,
            &format!("http://127.0.0.1:{}{path}", PROXIES[0].http),
        )?
        .rps;
        let rss_mb = dataplane_rss_mb()?.unwrap_or(0.0);
        eprintln!("routes {n:>6}: {rps:>10.0} req/s, data plane RSS {rss_mb} MB");
        let propagation = if n >= 100 {
            propagation_ms(dir, n, changes)?
        } else {
            vec![]
        };
        out.push(Scale {
            routes: n,
            rps,
            rss_mb,
            propagation,
        });
    }
    Ok(out)
}

/// Milliseconds from writing a new route file (standalone mode) to its first answer (a 302
/// of its own, since the catch-all route answers 200 for any host), over `changes` changes
/// on top of a table of `size` routes; the new files are removed afterwards.
fn propagation_ms(dir: &Path, size: usize, changes: usize) -> Result<Vec<f64>> {
    let mut out = vec![];
    for k in 0..changes {
        let host = format!("new{k}.bench.example.com");
        let yaml = format!(
            "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: new{k}, namespace: default}}
spec:
  parentRefs: [{{name: bench, sectionName: http}}]
  hostnames: [{host}]
  rules:
  - filters: [{{type: RequestRedirect, requestRedirect: {{statusCode: 302, hostname: done.example.com}}}}]
"
        );
        let start = Instant::now();
        std::fs::write(dir.join(format!("new-{k}.yaml")), yaml)?;
        wait_for_route(&host, "/", "302", Duration::from_secs(30))?;
        out.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    for k in 0..changes {
        std::fs::remove_file(dir.join(format!("new-{k}.yaml")))?;
    }
    wait_for_route(
        &format!("new{}.bench.example.com", changes - 1),
        "/",
        "200",
        Duration::from_secs(30),
    )?;
    eprintln!(
        "propagation at {size} routes over {changes} changes (file): p50 {} ms, p90 {} ms, p99 {} ms",
        ms(percentile(&out, 50.0)),
        ms(percentile(&out, 90.0)),
        ms(percentile(&out, 99.0))
    );
    Ok(out)
}

/// Propagation through the testbed's API server at each size: the operator of this build
/// watching it, its data plane on this machine (core 0 for both, as standalone).
fn apiserver_propagation(
    bin: &Path,
    sizes: &[usize],
    changes: usize,
    dir: &Path,
    running: &mut Running,
) -> Result<Vec<(usize, Vec<f64>)>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (client, ns) = rt.block_on(apiserver::prepare())?;
    let result = (|| -> Result<Vec<(usize, Vec<f64>)>> {
        let args = apiserver::operator_command(bin);
        let mut cmd = Command::new("taskset");
        cmd.arg("-c").arg(PROXY_CORE).args(&args);
        for (k, v) in apiserver::operator_env(&ns) {
            cmd.env(k, v);
        }
        spawn(cmd, &dir.join("operator-apiserver.log"), running)?;
        let wait =
            |host: &str| wait_for(apiserver::PORT, host, "/", "302", Duration::from_secs(30));
        let mut out = vec![];
        let mut present = 0;
        for &n in sizes {
            rt.block_on(apiserver::create_routes(&client, &ns, present, n))?;
            present = n;
            wait_for(
                apiserver::PORT,
                &format!("r{}.bench.example.com", n - 1),
                "/",
                "302",
                apiserver::settle_limit(n),
            )
            .with_context(|| format!("{n} routes through the API server never served"))?;
            let ms = rt.block_on(apiserver::propagation_ms(&client, &ns, n, changes, wait))?;
            eprintln!(
                "propagation at {n} routes over {changes} changes (API server): p50 {} ms, p90 {} ms, p99 {} ms",
                crate::ms(percentile(&ms, 50.0)),
                crate::ms(percentile(&ms, 90.0)),
                crate::ms(percentile(&ms, 99.0))
            );
            out.push((n, ms));
        }
        Ok(out)
    })();
    rt.block_on(apiserver::clean_up(&client, &ns));
    result
}

/// Where churn's route changes go.
enum Churner<'a> {
    /// Standalone Gatehouse: one route file written and one removed per change.
    Gatehouse(&'a Path),
    /// nginx: server blocks in an included directory, then a reload (SIGHUP to the master).
    Nginx { dir: &'a Path, pid: u32 },
}

/// Changes per second while the load runs, each adding one route and removing one; nginx
/// gets them in batches, one reload per `NGINX_BATCH` changes (as ingress-nginx batches
/// its reloads), since a reload per change would be a test of nginx's process spawning.
const CHURN_PER_SECOND: u64 = 100;
const NGINX_BATCH: u64 = 10;
/// Routes present at any time while churning.
const CHURN_LIVE: u64 = 20;

/// What the load saw while routes changed.
#[derive(Default)]
struct Churn {
    requests: u64,
    errors: u64,
    p99: Option<f64>,
}

/// Failed requests (connect, read, write errors, timeouts, any answer but the route's
/// 200) of a steady keep-alive load on a route that never changes, while `CHURN_PER_SECOND` other
/// routes are added and removed.
fn churn(to: &Churner, seconds: u64, lua: &Path) -> Result<Churn> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let (name, port) = match to {
        Churner::Gatehouse(_) => ("gatehouse", PROXIES[0].http),
        Churner::Nginx { .. } => ("nginx", PROXIES[1].http),
    };
    let changed = std::thread::scope(|scope| -> Result<(Sample, u64)> {
        let churner = scope.spawn(|| -> Result<u64> {
            let tick = Duration::from_micros(1_000_000 / CHURN_PER_SECOND);
            let mut next = Instant::now();
            let mut k: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                match to {
                    Churner::Gatehouse(dir) => {
                        std::fs::write(dir.join(format!("churn-{k}.yaml")), churn_route(k))?;
                        if k >= CHURN_LIVE {
                            let _ = std::fs::remove_file(
                                dir.join(format!("churn-{}.yaml", k - CHURN_LIVE)),
                            );
                        }
                    }
                    Churner::Nginx { dir, pid } => {
                        std::fs::write(
                            dir.join("churn").join(format!("{k}.conf")),
                            format!(
                                "server {{ listen 28080; server_name churn{k}.bench.example.com; return 302 http://done.example.com/; }}\n"
                            ),
                        )?;
                        if k >= CHURN_LIVE {
                            let _ = std::fs::remove_file(
                                dir.join("churn").join(format!("{}.conf", k - CHURN_LIVE)),
                            );
                        }
                        if (k + 1).is_multiple_of(NGINX_BATCH) {
                            Command::new("kill")
                                .args(["-HUP", &pid.to_string()])
                                .status()
                                .context("reloading nginx")?;
                        }
                    }
                }
                k += 1;
                next += tick;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            Ok(k)
        });
        let load = keep_alive_load(
            seconds,
            lua,
            "bench.example.com",
            &format!("http://127.0.0.1:{port}/bytes/128"),
        );
        stop.store(true, Ordering::Relaxed);
        let changes = churner
            .join()
            .map_err(|_| anyhow!("the churning thread panicked"))??;
        Ok((load?, changes))
    })?;
    let (load, changes) = changed;
    // The changes were applied, not just written: the last route added answers its 302
    // (nginx: the last one its last reload took in).
    let last = match to {
        Churner::Gatehouse(_) => changes.checked_sub(1),
        Churner::Nginx { .. } => (changes / NGINX_BATCH * NGINX_BATCH).checked_sub(1),
    };
    if let Some(last) = last {
        wait_for(
            port,
            &format!("churn{last}.bench.example.com"),
            "/",
            "302",
            Duration::from_secs(30),
        )
        .with_context(|| format!("{name} never served the last route churn added"))?;
    }
    let requests = load.requests;
    eprintln!(
        "churn {name:<9}: {changes} route changes, {requests} requests, {} failed, p99 {} ms",
        load.errors,
        ms(load.p99)
    );
    Ok(Churn {
        requests,
        errors: load.errors,
        p99: load.p99,
    })
}

/// A route of its own host, answering 302 (churn adds and removes these).
fn churn_route(k: u64) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: churn{k}, namespace: default}}
spec:
  parentRefs: [{{name: bench, sectionName: http}}]
  hostnames: [churn{k}.bench.example.com]
  rules:
  - filters: [{{type: RequestRedirect, requestRedirect: {{statusCode: 302, hostname: done.example.com}}}}]
"
    )
}

/// Nearest-rank percentile, rounded to 0.1 ms.
fn percentile(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some((v[rank.clamp(1, v.len()) - 1] * 10.0).round() / 10.0)
}

/// Polls Gatehouse's HTTP port until `host` and `path` answer `status` (every millisecond).
fn wait_for_route(host: &str, path: &str, status: &str, limit: Duration) -> Result<()> {
    wait_for(PROXIES[0].http, host, path, status, limit)
}

/// Polls a port until `host` and `path` answer `status` (every millisecond).
fn wait_for(port: u16, host: &str, path: &str, status: &str, limit: Duration) -> Result<()> {
    let start = Instant::now();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(request.as_bytes());
            let mut answer = [0u8; 12];
            if s.read_exact(&mut answer).is_ok() && answer.ends_with(status.as_bytes()) {
                return Ok(());
            }
        }
        if start.elapsed() > limit {
            bail!("{host}{path} did not answer {status} within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn measure(s: &Scenario, p: Proxy, seconds: u64, lua: &Path, bin: &Path) -> Result<Sample> {
    let scheme = if s.tls { "https" } else { "http" };
    let port = if s.tls { p.https } else { p.http };
    if let Some(rate) = s.rate {
        let cmd = pinned(
            LOAD_CORE,
            &bin.join("gatehouse-bench"),
            &[
                "load",
                "--port",
                &port.to_string(),
                "--host",
                "bench.example.com",
                "--path",
                s.path,
                "--rate",
                &rate.to_string(),
                "--connections",
                &s.connections.to_string(),
                "--seconds",
                &seconds.to_string(),
            ],
        );
        return run_reporting(cmd, "gatehouse-bench load");
    }
    let url = format!("{scheme}://127.0.0.1:{port}{}", s.path);
    if s.h2 {
        let out = pinned(
            LOAD_CORE,
            Path::new("h2load"),
            &[
                "-c",
                &s.connections.to_string(),
                "-m",
                "8",
                "-D",
                &seconds.to_string(),
                "--warm-up-time",
                "1",
                &url,
            ],
        )
        .output()
        .context("running h2load")?;
        let text = String::from_utf8_lossy(&out.stdout);
        // "finished in 3.00s, 41234.56 req/s, 6.12MB/s" and "requests: ... N failed, N errored"
        let rps = text
            .lines()
            .find(|l| l.starts_with("finished in"))
            .and_then(|l| l.split(", ").nth(1))
            .and_then(|f| f.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
            .ok_or_else(|| anyhow!("h2load printed no rate: {text}"))?;
        let failed = text
            .lines()
            .find(|l| l.starts_with("requests:"))
            .map(|l| {
                l.split(", ")
                    .filter(|f| f.ends_with("failed") || f.ends_with("errored"))
                    .filter_map(|f| f.split_whitespace().next()?.parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(0);
        return Ok(Sample {
            rps,
            errors: failed,
            ..Default::default()
        });
    }
    let duration = format!("{seconds}s");
    let connections = s.connections.to_string();
    let lua = lua.display().to_string();
    let mut args = vec!["-t1", "-c", &connections, "-d", &duration, "-s", &lua];
    if s.close {
        args.extend(["-H", "Connection: close"]);
    }
    args.push(&url);
    run_wrk(&args)
}

/// wrk with 64 keep-alive connections on one `url` with this Host for `seconds`.
fn keep_alive_load(seconds: u64, lua: &Path, host: &str, url: &str) -> Result<Sample> {
    run_wrk(&[
        "-t1",
        "-c64",
        "-d",
        &format!("{seconds}s"),
        "-s",
        &lua.display().to_string(),
        "-H",
        &format!("Host: {host}"),
        url,
    ])
}

/// Runs wrk on the load core with the report script among `args`, and reads its report.
fn run_wrk(args: &[&str]) -> Result<Sample> {
    run_reporting(pinned(LOAD_CORE, Path::new("wrk"), args), "wrk")
}

/// Runs a load generator that ends with a JSON report line (wrk with its script, or
/// `gatehouse-bench load`) and reads the report.
fn run_reporting(mut cmd: Command, what: &str) -> Result<Sample> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| {
            anyhow!(
                "{what} printed no report: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let v: Value = serde_json::from_str(line)?;
    let n = |k: &str| v[k].as_f64().unwrap_or(0.0);
    Ok(Sample {
        rps: n("requests") / (n("duration_us") / 1e6).max(1e-9),
        p50: Some(n("p50") / 1000.0),
        p99: Some(n("p99") / 1000.0),
        p999: Some(n("p999") / 1000.0),
        errors: n("errors") as u64,
        requests: n("requests") as u64,
        cpu_share: None,
    })
}

/// CPU seconds (user and system) used so far by the processes of a process group.
fn group_cpu_seconds(pgid: u32) -> Result<f64> {
    // USER_HZ: the unit of /proc/<pid>/stat times, 100 on every Linux architecture.
    const TICKS: f64 = 100.0;
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc")? {
        let Ok(stat) = std::fs::read_to_string(entry?.path().join("stat")) else {
            continue;
        };
        // After "pid (comm)": state, ppid, pgrp, ..., utime (12th), stime (13th).
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|g| g.parse::<u32>().ok()) != Some(pgid) {
            continue;
        }
        for i in [11, 12] {
            ticks += fields
                .get(i)
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(ticks as f64 / TICKS)
}

/// Resident memory of the Gatehouse data plane process, in MB.
fn dataplane_rss_mb() -> Result<Option<f64>> {
    for entry in std::fs::read_dir("/proc")? {
        let path = entry?.path();
        let Ok(cmdline) = std::fs::read(path.join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_dataplane = args.first().is_some_and(|a| a.ends_with(b"gatehouse"))
            && args.get(1).is_some_and(|a| *a == b"dataplane");
        if !is_dataplane {
            continue;
        }
        let status = std::fs::read_to_string(path.join("status"))?;
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok());
        return Ok(kb.map(|kb| (kb / 1024.0 * 10.0).round() / 10.0));
    }
    Ok(None)
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

fn nginx_config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "worker_processes 1;
daemon off;
pid {d}/nginx/nginx.pid;
error_log {d}/nginx/logs/error.log warn;
events {{ worker_connections 8192; }}
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
  maxconn 4000
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
