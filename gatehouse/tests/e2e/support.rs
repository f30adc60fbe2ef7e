//! Test support: a Gatehouse (file operator + data plane over the real gRPC channel) on a
//! loopback address of its own, echo backends, YAML helpers and real HTTP/TLS clients.

use gatehouse_operator::file_operator::{FileOperator, FileOperatorOptions};
use gatehouse_translate::Settings;
use serde_json::Value;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

static NEXT_IP: AtomicU8 = AtomicU8::new(1);

/// Each test gets its own 127.77.N.1, so every test can use the same ports in parallel.
pub fn next_ip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        77,
        NEXT_IP.fetch_add(1, Ordering::Relaxed),
        1,
    ))
}

pub struct Gatehouse {
    pub dir: tempfile::TempDir,
    pub ip: IpAddr,
    pub admin: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Gatehouse {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Gatehouse {
    /// Starts an operator on an empty directory and a data plane connected to it.
    pub async fn start() -> Gatehouse {
        Self::start_in(tempfile::tempdir().expect("temp dir"), None).await
    }

    /// As `start`, with the operator given the directory as a path relative to the working
    /// directory (as `gatehouse standalone examples/quickstart` is).
    /// The directory is the system's temporary one, reached by `..` from the working
    /// directory, so the test writes nothing into the source tree.
    pub async fn start_relative() -> Gatehouse {
        let dir = tempfile::tempdir().expect("temp dir");
        let cwd = std::env::current_dir().expect("working directory");
        let depth = cwd.components().count().saturating_sub(1);
        let relative = PathBuf::from("../".repeat(depth))
            .join(dir.path().strip_prefix("/").expect("an absolute temp dir"));
        assert!(relative.is_relative());
        Self::start_in(dir, Some(relative)).await
    }

    async fn start_in(dir: tempfile::TempDir, given: Option<PathBuf>) -> Gatehouse {
        let ip = next_ip();
        let operator = FileOperator::bind(FileOperatorOptions {
            dir: given.unwrap_or_else(|| dir.path().to_path_buf()),
            settings: Settings {
                default_address: ip,
                ingress_ports: (18080, 18443),
                ..Settings::default()
            },
            config_address: "127.0.0.1:0".parse().expect("addr"),
            admin_address: "127.0.0.1:0".parse().expect("addr"),
            dataplane_admin: None,
        })
        .await
        .expect("bind operator");
        let config = operator.config_address().expect("config addr");
        let admin = operator.admin_address().expect("admin addr");
        let mut tasks = vec![tokio::spawn(async move {
            let _ = operator.run().await;
        })];
        tasks.push(spawn_dataplane(config));
        Gatehouse {
            dir,
            ip,
            admin,
            tasks,
        }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Writes a file in place, as an editor would.
    pub fn write(&self, file: &str, yaml: &str) {
        std::fs::write(self.path(file), yaml).expect("write yaml");
    }

    /// Starts an echo backend on this test's address and declares its Service and
    /// EndpointSlice (service port 80). Returns the backend's port.
    pub async fn backend(&self, name: &str) -> u16 {
        let port = spawn_echo(self.ip, 0, name).await.port();
        self.write(
            &format!("svc-{name}.yaml"),
            &service(name, self.ip, &[port]),
        );
        port
    }

    pub async fn status(&self) -> Value {
        let url = format!("http://{}/status", self.admin);
        match client().get(url).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    /// The status of one object, e.g. "HTTPRoute default/app", once `pred` holds.
    pub async fn wait_status(&self, object: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let status = self.status().await;
            if pred(&status["objects"][object]) {
                return status["objects"][object].clone();
            }
            if start.elapsed() > Duration::from_secs(10) {
                panic!("status of {object} never matched; last: {status:#}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_programmed(&self, gateway: &str) {
        self.wait_status(&format!("Gateway {gateway}"), |g| {
            condition(g, "Programmed").is_some_and(|c| c["status"] == "True")
        })
        .await;
    }

    pub fn url(&self, port: u16, path: &str) -> String {
        format!("http://{}:{port}{path}", self.ip)
    }
}

/// Starts an echo backend answering as `pod` (port 0: any free port). It lives as long as
/// the test's runtime.
pub async fn spawn_echo(ip: IpAddr, port: u16, pod: &str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind((ip, port))
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(gatehouse_echo::serve(
        listener,
        gatehouse_echo::Identity {
            pod: pod.into(),
            namespace: "default".into(),
            service: pod.into(),
        },
    ));
    addr
}

/// A model config with one HTTP listener `default/gw/http` on `ip:8080`, the given routes
/// on one catch-all virtual host, and one cluster `default/app:80` at `backend`.
pub fn one_listener_config(
    ip: IpAddr,
    backend: SocketAddr,
    routes: Vec<gatehouse_model::ir::Route>,
    generation: i64,
) -> gatehouse_model::ir::Config {
    use gatehouse_model::ir::*;
    Config {
        gateways: vec![Gateway {
            key: "default/gw".into(),
            generation,
            listener_sets: vec![],
        }],
        listeners: vec![Listener {
            key: "default/gw/http".into(),
            gateway: "default/gw".into(),
            name: "http".into(),
            address: ip,
            port: 8080,
            protocol: Protocol::Http,
            hostname: HostMatch::Any,
            certificates: vec![],
            client_validation: None,
            backend_client_certificate: None,
            limits: Default::default(),
            forwarding: Default::default(),
        }],
        route_tables: vec![RouteTable {
            listener: "default/gw/http".into(),
            virtual_hosts: vec![std::sync::Arc::new(VirtualHost {
                hostname: HostMatch::Any,
                routes: routes.into_iter().map(std::sync::Arc::new).collect(),
            })],
        }],
        clusters: vec![Cluster {
            key: "default/app:80".into(),
            protocol: UpstreamProtocol::Http1,
            endpoints: vec![backend],
            tls: None,
        }],
        certificates: vec![],
    }
}

/// A route on `path` to the cluster `default/app:80`.
pub fn route_to_app(
    path: gatehouse_model::ir::PathMatch,
    weight: u32,
) -> gatehouse_model::ir::Route {
    use gatehouse_model::ir::*;
    let source = RouteSource {
        kind: "HTTPRoute".into(),
        namespace: "default".into(),
        name: "r".into(),
        rule: 0,
    };
    Route {
        backends: vec![WeightedBackend {
            weight,
            target: BackendTarget::Cluster("default/app:80".into()),
            filters: vec![],
        }],
        ..Route::new(source, RouteMatch::path_only(path))
    }
}

/// Steady load: one client sending requests with `host` until `stop` is set. Returns
/// (ok, failed) counts; failures are printed.
pub fn load(url: String, host: &'static str, stop: Arc<AtomicBool>) -> JoinHandle<(u64, u64)> {
    tokio::spawn(async move {
        let c = client();
        let (mut ok, mut failed) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            match c.get(&url).header("host", host).send().await {
                Ok(r) if r.status() == 200 => ok += 1,
                other => {
                    failed += 1;
                    eprintln!("load: {other:?}");
                }
            }
        }
        (ok, failed)
    })
}

/// Stops load tasks and adds up their (ok, failed) counts.
pub async fn stop_load(stop: &AtomicBool, loads: Vec<JoinHandle<(u64, u64)>>) -> (u64, u64) {
    stop.store(true, Ordering::Relaxed);
    let mut total = (0, 0);
    for l in loads {
        let (ok, failed) = l.await.expect("load task");
        total = (total.0 + ok, total.1 + failed);
    }
    total
}

pub fn spawn_dataplane(config: SocketAddr) -> JoinHandle<()> {
    tokio::spawn(async move {
        let dataplane = gatehouse_dataplane::DataPlane::new();
        gatehouse_dataplane::channel::client::run(
            gatehouse_dataplane::channel::client::ClientSettings {
                operator: format!("http://{config}"),
                node: "test".into(),
                gateways: vec![],
                identity: None,
                server_name: String::new(),
            },
            dataplane,
        )
        .await;
    })
}

/// A condition of an object or listener status by type.
pub fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Polls `check` every 20 ms for up to 10 s.
pub async fn wait_for<F, Fut>(what: &str, check: F) -> Result<Duration, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_up_to(what, Duration::from_secs(10), check).await
}

/// Polls `check` every 20 ms for up to `limit`.
pub async fn wait_up_to<F, Fut>(
    what: &str,
    limit: Duration,
    mut check: F,
) -> Result<Duration, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return Ok(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("timed out waiting for {what}"))
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// GET with a Host header; returns status, the echo JSON (or Null) and the headers.
pub async fn get(url: &str, host: &str) -> (u16, Value, reqwest::header::HeaderMap) {
    request(&client(), reqwest::Method::GET, url, host, &[]).await
}

pub async fn request(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = client.request(method, url).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::Null),
        headers,
    )
}

/// Which echo backend answered: its pod name, else the status code, else the error (so
/// `wait_for` can retry while a listener or load balancer comes up).
pub async fn pod(url: &str, host: &str) -> String {
    let resp = match client().get(url).header("host", host).send().await {
        Ok(r) => r,
        Err(e) => return format!("error: {e}"),
    };
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status == 200 {
        body["pod"].as_str().unwrap_or_default().to_string()
    } else {
        format!("{status}")
    }
}

/// An HTTPRoute `default/app` on Gateway `gw`, every request to Service `app` port 80.
pub const ROUTE_TO_APP: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: app
  namespace: default
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{name: app, port: 80}]
";

pub const CLASS: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: gatehouse
spec:
  controllerName: gatehouse.dev/gateway-controller
";

/// A GatewayClass and a Gateway `default/gw` with the given listeners (YAML list items).
pub fn gateway(listeners: &str) -> String {
    format!(
        "{CLASS}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
  namespace: default
spec:
  gatewayClassName: gatehouse
  listeners:
{listeners}"
    )
}

/// A GatewayClass and a Gateway `default/gw` with one HTTP listener per port, routes
/// allowed from all namespaces.
pub fn http_gateway(ports: &[u16]) -> String {
    let mut y = String::new();
    for p in ports {
        y.push_str(&format!(
            "  - name: http-{p}
    protocol: HTTP
    port: {p}
    allowedRoutes:
      namespaces:
        from: All
"
        ));
    }
    gateway(&y)
}

/// A Service (port 80 named http) and an EndpointSlice with one endpoint per port.
pub fn service(name: &str, ip: IpAddr, ports: &[u16]) -> String {
    let mut y = format!(
        "apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: default
spec:
  ports:
  - name: http
    port: 80
"
    );
    for (i, p) in ports.iter().enumerate() {
        y.push_str(&format!(
            "---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-{i}
  namespace: default
  labels:
    kubernetes.io/service-name: {name}
addressType: IPv4
ports:
- name: http
  port: {p}
endpoints:
- addresses: [\"{ip}\"]
"
        ));
    }
    y
}

/// A self-signed certificate and key for the given names, as a kubernetes.io/tls Secret.
pub fn tls_secret(name: &str, names: &[&str]) -> (String, Vec<u8>) {
    tls_secret_in("default", name, names, false)
}

/// A kubernetes.io/tls Secret in `namespace`; with `wrong_key`, the private key is another
/// certificate's (the Secret a careless tenant applies).
pub fn tls_secret_in(
    namespace: &str,
    name: &str,
    names: &[&str],
    wrong_key: bool,
) -> (String, Vec<u8>) {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let cert = rcgen::generate_simple_self_signed(names.clone()).expect("certificate");
    let key = if wrong_key {
        rcgen::generate_simple_self_signed(names)
            .expect("certificate")
            .key_pair
    } else {
        cert.key_pair
    };
    let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let yaml = format!(
        "apiVersion: v1
kind: Secret
metadata:
  name: {name}
  namespace: {namespace}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}  tls.key: |
{}",
        indent(&cert.cert.pem()),
        indent(&key.serialize_pem())
    );
    (yaml, cert.cert.der().to_vec())
}

/// Connects with TLS (SNI `sni`, or none) and returns the DER of the certificate served
/// (empty when the connection or handshake fails).
pub async fn served_certificate(addr: SocketAddr, sni: Option<&str>) -> Vec<u8> {
    use std::sync::{Arc, Mutex};
    use tokio_rustls::rustls;

    #[derive(Debug)]
    struct Capture(Mutex<Vec<u8>>, Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for Capture {
        fn verify_server_cert(
            &self,
            end_entity: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            if let Ok(mut c) = self.0.lock() {
                *c = end_entity.to_vec();
            }
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.1.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.1.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.1.signature_verification_algorithms.supported_schemes()
        }
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let capture = Arc::new(Capture(Mutex::new(vec![]), provider.clone()));
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    config.enable_sni = sni.is_some();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    // Empty when nothing answers: callers wait for a certificate, so no panic here.
    let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else {
        return vec![];
    };
    // Without SNI rustls still needs a name to verify against; the verifier ignores it.
    let name = rustls::pki_types::ServerName::try_from(sni.unwrap_or("no-sni.invalid").to_string())
        .expect("server name");
    if connector.connect(name, tcp).await.is_err() {
        return vec![];
    }
    capture.0.lock().map(|c| c.clone()).unwrap_or_default()
}
