//! `gatehouse`: one binary, three roles.
//!
//! - `operator`: sources -> translation -> config server (a YAML directory with `--file`;
//!   Kubernetes mode arrives with the Kubernetes source).
//! - `dataplane`: dials an operator and serves what it is told.
//! - `standalone DIR`: both on one machine: the file operator plus a data plane process it
//!   starts and supervises, connected over the real gRPC channel.

use clap::{Parser, Subcommand};

/// mimalloc: glibc's malloc and free were about 9% of the data plane's CPU under load
/// (perf, `bench/run`); mimalloc's per-thread free lists cost less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use gatehouse_operator::file_operator::{FileOperator, FileOperatorOptions};
use gatehouse_translate::Settings;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "Gateway API and Ingress controller with a Pingora data plane"
)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator: translate resources and serve config to data planes. Without
    /// --file it watches the Kubernetes API (in-cluster config or KUBECONFIG) and writes
    /// status there (leader only, Lease in $POD_NAMESPACE, default gatehouse-system).
    Operator {
        /// Read resources from this directory of YAML instead of a Kubernetes API server.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Image of the data plane pods provisioned per Gateway (Kubernetes mode).
        #[arg(long, default_value = concat!("ghcr.io/gatehouse-dev/gatehouse:v", env!("CARGO_PKG_VERSION")))]
        dataplane_image: String,
        /// Where data planes run when watching the Kubernetes API: `kubernetes` (a
        /// Deployment and LoadBalancer Service per Gateway, mutual TLS) or `host` (one data
        /// plane process on this machine, listeners on --address, plain gRPC on loopback).
        #[arg(long, default_value = "kubernetes", value_parser = ["kubernetes", "host"])]
        infrastructure: String,
        #[command(flatten)]
        common: OperatorArgs,
    },
    /// Run a data plane that takes its config from an operator.
    Dataplane {
        /// The operator's config server, e.g. http://127.0.0.1:9901
        #[arg(long)]
        operator: String,
        /// Gateways to serve ("namespace/name"); all when none is given.
        #[arg(long = "gateway")]
        gateways: Vec<String>,
        /// Name reported to the operator.
        #[arg(long, default_value = "dataplane")]
        node: String,
        /// Directory with ca.crt, tls.crt and tls.key: dial the operator over mutual TLS
        /// (how provisioned data planes run; the operator issues the identity).
        #[arg(long)]
        identity: Option<PathBuf>,
        /// Name the operator's certificate must carry.
        #[arg(long, default_value = gatehouse_operator::kubernetes::identity::SERVER_NAME)]
        operator_name: String,
        /// Where /readyz and /healthz (the kubelet's probes) and /metrics answer; none when
        /// not given.
        #[arg(long)]
        health_address: Option<SocketAddr>,
        /// After SIGTERM, seconds to keep serving (unready) before closing the listeners,
        /// while the load balancer stops sending new connections.
        #[arg(long, default_value_t = 0)]
        drain_delay_seconds: u64,
        /// Seconds connections may take to finish after the listeners closed.
        #[arg(long, default_value_t = 30)]
        drain_timeout_seconds: u64,
    },
    /// Write Gatehouse's CustomResourceDefinitions (generated from api/src/lib.rs) into DIR,
    /// one file per CRD; with --check, fail when DIR differs from what would be written.
    Crds {
        dir: PathBuf,
        #[arg(long)]
        check: bool,
    },
    /// Print Gateway API HTTPRoutes and TrafficPolicies equivalent to the Ingresses (and
    /// their ingress-nginx annotations) of a directory of YAML or, with --cluster, of the
    /// cluster; the report of every semantic difference goes to stderr. With --verify,
    /// compile both into the model and compare every distinguishing request; any
    /// difference is printed with a request that shows it and the exit status is 1.
    Convert {
        /// Directory of YAML: the Ingresses with their IngressClasses, parameters,
        /// Gateways and Services.
        dir: Option<PathBuf>,
        /// Read from the Kubernetes API (in-cluster config or KUBECONFIG) instead.
        #[arg(long, conflicts_with = "dir")]
        cluster: bool,
        #[arg(long)]
        verify: bool,
        /// Verify these routes (a file of YAML, e.g. edited output) instead of the
        /// conversion's own.
        #[arg(long, requires = "verify")]
        routes: Option<PathBuf>,
        /// Convert the Ingresses of this IngressClass (repeatable). By default: the files'
        /// classes of Gatehouse when they have some, else ingress-nginx's (controller
        /// k8s.io/ingress-nginx), else class nginx and the unclassed.
        #[arg(long = "ingress-class", value_name = "NAME")]
        ingress_class: Vec<String>,
        /// The Gateway the routes attach to, NAMESPACE/NAME[:SECTION] (default: the one
        /// the class's IngressClassParameters names, else a placeholder the report names).
        #[arg(long, value_name = "NAMESPACE/NAME[:SECTION]")]
        gateway: Option<gatehouse_migrate::setup::GatewayTarget>,
    },
    /// Remove what the operator made in the cluster: stop the operator (scale its
    /// Deployment to zero), then delete the data planes it provisioned for Gateways of its
    /// controllerName, its Lease and its CA Secret. The chart runs it before `helm
    /// uninstall` deletes the release.
    Uninstall {
        /// The operator's Deployment, in $POD_NAMESPACE (default gatehouse-system).
        #[arg(long, default_value = "gatehouse-operator")]
        operator_deployment: String,
        #[arg(long, default_value = gatehouse_translate::GATEWAY_CONTROLLER)]
        gateway_controller: String,
        /// Seconds the operator's pods may take to stop.
        #[arg(long, default_value_t = 120)]
        timeout_seconds: u64,
    },
    /// Run operator and data plane on this machine from a directory of YAML.
    Standalone {
        /// Directory of YAML documents (read recursively, re-applied on change).
        dir: PathBuf,
        #[command(flatten)]
        common: OperatorArgs,
    },
}

#[derive(clap::Args)]
struct OperatorArgs {
    /// Address Gateway listeners bind when a Gateway has no spec.addresses.
    #[arg(long, default_value = "127.0.0.1")]
    address: IpAddr,
    /// Config server (gRPC) address for data planes.
    #[arg(long, default_value = "127.0.0.1:9901")]
    config_address: SocketAddr,
    /// Admin endpoint: /status, /config, /metrics, /healthz.
    #[arg(long, default_value = "127.0.0.1:9900")]
    admin_address: SocketAddr,
    /// Standalone mode: the data plane's admin endpoint (/metrics, /readyz, /healthz),
    /// whose metrics the operator's /metrics shows after its own.
    #[arg(long, default_value = "127.0.0.1:9902")]
    dataplane_admin_address: SocketAddr,
    /// HTTP and HTTPS ports of the Gateway made for an IngressClass without parameters.
    #[arg(long, default_value = "80,443", value_parser = parse_ports)]
    ingress_ports: (u16, u16),
    /// GatewayClasses with this controllerName are served (two installs in one cluster
    /// each take their own).
    #[arg(long, default_value = gatehouse_translate::GATEWAY_CONTROLLER)]
    gateway_controller: String,
    /// IngressClasses with this controller are served.
    #[arg(long, default_value = gatehouse_translate::INGRESS_CONTROLLER)]
    ingress_controller: String,
}

fn parse_ports(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once(',')
        .ok_or("expected HTTP,HTTPS, e.g. 80,443")?;
    Ok((
        a.trim().parse().map_err(|e| format!("{a}: {e}"))?,
        b.trim().parse().map_err(|e| format!("{b}: {e}"))?,
    ))
}

impl OperatorArgs {
    fn options(&self, dir: PathBuf) -> FileOperatorOptions {
        FileOperatorOptions {
            dir,
            settings: Settings {
                default_address: self.address,
                ingress_ports: self.ingress_ports,
                gateway_controller: self.gateway_controller.clone(),
                ingress_controller: self.ingress_controller.clone(),
                ..Settings::default()
            },
            config_address: self.config_address,
            admin_address: self.admin_address,
            dataplane_admin: None,
        }
    }
}

fn write_crds(dir: &std::path::Path, check: bool) -> anyhow::Result<()> {
    let mut stale = vec![];
    for crd in gatehouse_api::crds() {
        let path = dir.join(gatehouse_api::file_name(&crd));
        let yaml = gatehouse_api::to_yaml(&crd)?;
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
                stale.push(path.display().to_string());
            }
        } else {
            std::fs::create_dir_all(dir)?;
            std::fs::write(&path, yaml).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    if !stale.is_empty() {
        anyhow::bail!(
            "stale or missing, regenerate with `cargo run --bin gatehouse -- crds {}`: {}",
            dir.display(),
            stale.join(", ")
        );
    }
    Ok(())
}

/// `gatehouse convert`: YAML on stdout, the report (and the verdict) on stderr.
fn convert(
    files: &gatehouse_translate::store::Store,
    selection: &gatehouse_migrate::setup::Selection,
    verify: bool,
    routes: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let settings = Settings::default();
    let prepared = gatehouse_migrate::setup::prepare(files, selection, &settings)
        .map_err(anyhow::Error::msg)?;
    for line in &prepared.report {
        eprintln!("# {line}");
    }
    let store = &prepared.store;
    let conversion = gatehouse_migrate::convert::convert(store, &settings);
    let yaml = gatehouse_migrate::to_yaml(&conversion).map_err(anyhow::Error::msg)?;
    print!("{yaml}");
    for note in &conversion.notes {
        eprintln!("# {note}");
    }
    if !verify {
        return Ok(());
    }
    let checked = match routes {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => yaml,
    };
    let converted = gatehouse_migrate::converted_store(store, &conversion, &checked)
        .map_err(anyhow::Error::msg)?;
    let verdict =
        gatehouse_migrate::verify(store, &converted, &settings).map_err(anyhow::Error::msg)?;
    eprint!("{}", verdict.describe());
    eprintln!(
        "verify: {} Ingresses, {} requests compared, {} differences",
        conversion.replaced.len(),
        verdict.probes,
        verdict.differences.len()
    );
    if !verdict.differences.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}

/// The operator's namespace (the downward API's POD_NAMESPACE): its Lease, its CA Secret
/// and its Service live there.
fn operator_namespace() -> String {
    std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "gatehouse-system".into())
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Standard error: standard output carries the data plane's access log lines.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    runtime(&cli.command)?.block_on(run(cli.command))
}

/// The tokio runtime for a command. A data plane with one core (a pod's CPU limit, a
/// pinned process) runs on one thread, as an nginx worker does: no work-stealing queues,
/// no cross-thread wake-ups, nothing to hand between threads. Otherwise one worker per core.
fn runtime(command: &Command) -> anyhow::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut builder = if matches!(command, Command::Dataplane { .. }) && cores == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("starting the tokio runtime: {e}"))
}

/// `gatehouse operator` against the Kubernetes API.
async fn kube_operator(
    common: OperatorArgs,
    dataplane_image: String,
    infrastructure: &str,
) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| anyhow::anyhow!("connecting to Kubernetes (in-cluster or KUBECONFIG): {e}"))?;
    let mut options = common.options(PathBuf::new());
    let host = infrastructure == "host";
    let dataplanes = if host {
        // Data planes on this machine: one child process over plain gRPC.
        let url = format!("http://{}", options.config_address);
        tokio::spawn(gatehouse_operator::dataplane_process::supervise_dataplane(
            std::env::current_exe()?,
            url,
            "host".into(),
            None,
        ));
        None
    } else {
        options.settings.infrastructure = gatehouse_translate::Infrastructure::Kubernetes;
        // Data plane pods dial the operator's Service (no cluster DNS needed: the
        // kubelet's service links give its address) over mutual TLS, verifying the
        // operator by its Service name.
        let operator_url = match std::env::var("GATEHOUSE_OPERATOR_SERVICE_HOST") {
            Ok(host) => format!("https://{host}:{}", options.config_address.port()),
            Err(_) => format!("https://{}", options.config_address),
        };
        Some(
            gatehouse_operator::kubernetes::provision::DataPlaneSettings {
                image: dataplane_image,
                operator_url,
                operator_name: gatehouse_operator::kubernetes::identity::server_name(
                    &operator_namespace(),
                ),
            },
        )
    };
    gatehouse_operator::kubernetes::run_kube(
        client,
        gatehouse_operator::kubernetes::KubeOperatorOptions {
            settings: options.settings,
            config_address: options.config_address,
            admin_address: options.admin_address,
            lease_namespace: operator_namespace(),
            identity: std::env::var("POD_NAME")
                .unwrap_or_else(|_| format!("gatehouse-operator-{}", std::process::id())),
            pod_name: std::env::var("POD_NAME").ok(),
            dataplanes,
        },
    )
    .await
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Operator {
            file: Some(dir),
            common,
            ..
        } => FileOperator::bind(common.options(dir)).await?.run().await,
        Command::Operator {
            file: None,
            common,
            dataplane_image,
            infrastructure,
        } => kube_operator(common, dataplane_image, &infrastructure).await,
        Command::Dataplane {
            operator,
            gateways,
            node,
            identity,
            operator_name,
            health_address,
            drain_delay_seconds,
            drain_timeout_seconds,
        } => {
            // After a large update, hand freed pages back (`mi_collect`): RSS at 10k routes
            // is what the tables take, not what decoding the first snapshot took.
            // SAFETY: mi_collect takes no pointers; it only walks mimalloc's own heaps.
            gatehouse_dataplane::after_large_update(|| unsafe {
                libmimalloc_sys::mi_collect(true)
            });
            match gatehouse_dataplane::net::raise_open_file_limit() {
                Ok(n) => tracing::info!(open_files = n, "open-file limit"),
                Err(e) => tracing::warn!("open-file limit not raised: {e}"),
            }
            let dataplane = gatehouse_dataplane::DataPlane::new();
            let settings = gatehouse_dataplane::channel::client::ClientSettings {
                operator,
                node,
                gateways,
                identity,
                server_name: operator_name,
            };
            let lifecycle = gatehouse_dataplane::lifecycle::Lifecycle {
                health_address,
                drain_delay: std::time::Duration::from_secs(drain_delay_seconds),
                drain_timeout: std::time::Duration::from_secs(drain_timeout_seconds),
            };
            gatehouse_dataplane::lifecycle::run_until_terminated(settings, dataplane, lifecycle)
                .await
        }
        Command::Crds { dir, check } => write_crds(&dir, check),
        Command::Convert {
            dir,
            cluster,
            verify,
            routes,
            ingress_class,
            gateway,
        } => {
            let store = match (dir, cluster) {
                (Some(dir), _) => {
                    let loaded = gatehouse_operator::source::file::FileSource::new(dir).load();
                    if let Some(e) = loaded.errors.first() {
                        anyhow::bail!("{e}");
                    }
                    std::sync::Arc::unwrap_or_clone(loaded.store)
                }
                (None, true) => {
                    let client = kube::Client::try_default().await.map_err(|e| {
                        anyhow::anyhow!("connecting to Kubernetes (in-cluster or KUBECONFIG): {e}")
                    })?;
                    let mut source = gatehouse_operator::source::kube::KubeSource::start(&client);
                    source.ready().await;
                    std::sync::Arc::unwrap_or_clone(source.snapshot())
                }
                (None, false) => anyhow::bail!("give a directory of YAML, or --cluster"),
            };
            let selection = gatehouse_migrate::setup::Selection {
                classes: ingress_class,
                gateway,
            };
            convert(&store, &selection, verify, routes.as_deref())
        }
        Command::Uninstall {
            operator_deployment,
            gateway_controller,
            timeout_seconds,
        } => {
            let client = kube::Client::try_default().await.map_err(|e| {
                anyhow::anyhow!("connecting to Kubernetes (in-cluster or KUBECONFIG): {e}")
            })?;
            let options = gatehouse_operator::kubernetes::uninstall::UninstallOptions {
                namespace: operator_namespace(),
                operator_deployment,
                gateway_controller,
                timeout: std::time::Duration::from_secs(timeout_seconds),
            };
            gatehouse_operator::kubernetes::uninstall::uninstall(client, &options).await
        }
        Command::Standalone { dir, common } => {
            if !dir.is_dir() {
                anyhow::bail!("{} is not a directory", dir.display());
            }
            let dataplane_admin = common.dataplane_admin_address;
            let options = FileOperatorOptions {
                dataplane_admin: Some(dataplane_admin),
                ..common.options(dir)
            };
            let operator = FileOperator::bind(options).await?;
            let url = format!("http://{}", operator.config_address()?);
            let exe = std::env::current_exe()?;
            tokio::spawn(gatehouse_operator::dataplane_process::supervise_dataplane(
                exe,
                url,
                "standalone".into(),
                Some(dataplane_admin),
            ));
            operator.run().await
        }
    }
}
