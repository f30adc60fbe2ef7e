//! The Helm chart (charts/gatehouse), rendered and linted by a real Helm (built from its Go
//! module by scripts/install-helm): what a default install creates, that every value a
//! user sets reaches its object, and that the values schema refuses what would break.
//! The install itself runs on the testbed (`testbed install-gatehouse`, which every
//! Kubernetes test and the conformance run use).

use serde_yaml::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Helm's path (built once; scripts/test has built it before the tests run).
pub(crate) fn helm() -> PathBuf {
    let out = Command::new(repo().join("scripts/install-helm"))
        .output()
        .expect("scripts/install-helm runs");
    assert!(
        out.status.success(),
        "scripts/install-helm: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// `helm template RELEASE charts/gatehouse -n NAMESPACE` with `values` (YAML) and `extra`
/// arguments: the rendered objects, or Helm's error.
fn render(
    release: &str,
    namespace: &str,
    values: &str,
    extra: &[&str],
) -> Result<Vec<Value>, String> {
    render_chart("gatehouse", release, namespace, values, extra)
}

/// `render` for the chart `charts/<chart>`.
fn render_chart(
    chart: &str,
    release: &str,
    namespace: &str,
    values: &str,
    extra: &[&str],
) -> Result<Vec<Value>, String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, values).expect("values written");
    let out = Command::new(helm())
        .args(["template", release])
        .arg(repo().join("charts").join(chart))
        .args(["--namespace", namespace, "--values"])
        .arg(&file)
        .args(extra)
        .output()
        .expect("helm runs");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).expect("helm prints UTF-8");
    Ok(serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("helm printed YAML"))
        .filter(|v| !v.is_null())
        .collect())
}

use serde::Deserialize;

fn kind_named<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"].as_str() == Some(kind) && o["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} in {}", kinds(objects).join(", ")))
}

fn kinds(objects: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or("?"),
                o["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect();
    k.sort();
    k
}

/// A container's args, as strings.
fn args_of(container: &Value) -> Vec<&str> {
    container["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

/// Runs Helm against the testbed's API server (`args`, then its kubeconfig); fails the test
/// with Helm's message when it fails.
pub(crate) fn helm_on_testbed(args: &[&str]) {
    let out = Command::new(helm())
        .args(args)
        .arg("--kubeconfig")
        .arg(gatehouse_testbed::kubeconfig_path())
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn yaml(s: &str) -> Value {
    serde_yaml::from_str(s).expect("test YAML")
}

#[test]
fn the_chart_lints_and_renders_the_operator_with_its_defaults() {
    let lint = Command::new(helm())
        .args(["lint", "--strict"])
        .arg(repo().join("charts/gatehouse"))
        .output()
        .expect("helm lint runs");
    assert!(
        lint.status.success(),
        "helm lint --strict: {}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );

    let objects =
        render("gatehouse", "gatehouse-system", "{}", &["--include-crds"]).expect("renders");
    assert_eq!(
        kinds(&objects),
        [
            "ClusterRole/gatehouse",
            "ClusterRole/gatehouse-uninstall",
            "ClusterRoleBinding/gatehouse",
            "ClusterRoleBinding/gatehouse-uninstall",
            "CustomResourceDefinition/gatewayparameters.gatehouse.dev",
            "CustomResourceDefinition/ingressclassparameters.gatehouse.dev",
            "CustomResourceDefinition/trafficpolicies.gatehouse.dev",
            "Deployment/gatehouse-operator",
            "GatewayClass/gatehouse",
            "IngressClass/gatehouse",
            "Job/gatehouse-uninstall",
            "PodDisruptionBudget/gatehouse-operator",
            "Role/gatehouse-leader",
            "Role/gatehouse-uninstall",
            "RoleBinding/gatehouse-leader",
            "RoleBinding/gatehouse-uninstall",
            "Service/gatehouse-operator",
            "ServiceAccount/gatehouse-operator",
            "ServiceAccount/gatehouse-uninstall",
        ]
    );
    // The chart's CRDs are crds/ (a link), as `gatehouse crds` writes them.
    for crd in objects
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
    {
        let name = crd["metadata"]["name"].as_str().unwrap_or_default();
        let (plural, group) = name.split_once('.').unwrap_or_default();
        let on_disk = std::fs::read_to_string(repo().join(format!("crds/{group}_{plural}.yaml")))
            .expect("the CRD is in crds/");
        assert_eq!(crd, &yaml(&on_disk), "{name} differs from crds/");
    }

    let image = format!(
        "ghcr.io/gatehouse-dev/gatehouse:v{}",
        env!("CARGO_PKG_VERSION")
    );
    let deployment = kind_named(&objects, "Deployment", "gatehouse-operator");
    assert_eq!(deployment["metadata"]["namespace"], "gatehouse-system");
    assert_eq!(deployment["spec"]["replicas"], 2);
    // The config Service reaches the leader alone.
    let service = kind_named(&objects, "Service", "gatehouse-operator");
    assert_eq!(
        service["spec"]["selector"]["gatehouse.dev/config-leader"],
        "true"
    );
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["image"].as_str(), Some(image.as_str()));
    let args = args_of(container);
    assert_eq!(
        args,
        [
            "operator",
            "--config-address",
            "0.0.0.0:9901",
            "--admin-address",
            "0.0.0.0:9900",
            "--dataplane-image",
            image.as_str(),
            "--gateway-controller",
            "gatehouse.dev/gateway-controller",
            "--ingress-controller",
            "gatehouse.dev/ingress-controller",
        ]
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"][0],
        "ALL"
    );
    assert_eq!(pod["serviceAccountName"], "gatehouse-operator");
    let pdb = kind_named(&objects, "PodDisruptionBudget", "gatehouse-operator");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let class = kind_named(&objects, "GatewayClass", "gatehouse");
    assert_eq!(
        class["spec"]["controllerName"],
        "gatehouse.dev/gateway-controller"
    );
    assert!(class["spec"]["parametersRef"].is_null());
    let ingress_class = kind_named(&objects, "IngressClass", "gatehouse");
    assert_eq!(
        ingress_class["spec"]["controller"],
        "gatehouse.dev/ingress-controller"
    );
    assert!(ingress_class["metadata"]["annotations"].is_null());
}

/// Everything a chart user sets shows up where Kubernetes reads it, and the class
/// parameters are objects our own types read.
#[test]
fn values_reach_the_objects_they_set() {
    let values = r#"
image: {repository: registry.example/gatehouse, digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
imagePullSecrets: [{name: pull}]
dataPlane: {image: registry.example/gatehouse-dataplane:v9}
operator:
  replicas: 3
  nodeSelector: {node-role: edge}
  tolerations: [{key: edge, operator: Exists, effect: NoSchedule}]
  affinity: {podAntiAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 100, podAffinityTerm: {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app.kubernetes.io/name: gatehouse-operator}}}}]}}
  topologySpreadConstraints: [{maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app.kubernetes.io/name: gatehouse-operator}}}]
  priorityClassName: system-cluster-critical
  podLabels: {team: platform}
  podAnnotations: {example.com/scrape: "true"}
  resources: {requests: {cpu: 250m}}
  extraArgs: [--json-logs]
podDisruptionBudget: {minAvailable: 1}
serviceAccount: {name: edge-operator, annotations: {iam.example/role: edge}}
gatewayClass:
  name: edge
  parameters: {replicas: 3, clients: {idleTimeoutSeconds: 30, http2PingIntervalSeconds: 0}}
ingressClass:
  name: edge-ingress
  default: true
  parameters: {}
"#;
    let objects = render("edge", "infra", values, &[]).expect("renders");
    let deployment = kind_named(&objects, "Deployment", "edge-gatehouse-operator");
    assert_eq!(deployment["metadata"]["namespace"], "infra");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let template = &deployment["spec"]["template"];
    let pod = &template["spec"];
    let set = yaml(values);
    for field in [
        "nodeSelector",
        "tolerations",
        "affinity",
        "topologySpreadConstraints",
    ] {
        assert_eq!(pod[field], set["operator"][field], "{field}");
    }
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(pod["imagePullSecrets"], set["imagePullSecrets"]);
    assert_eq!(pod["serviceAccountName"], "edge-operator");
    assert_eq!(template["metadata"]["labels"]["team"], "platform");
    assert_eq!(
        template["metadata"]["annotations"]["example.com/scrape"],
        "true"
    );
    let container = &pod["containers"][0];
    assert_eq!(
        container["image"].as_str().unwrap_or_default(),
        "registry.example/gatehouse@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    );
    // Helm merges maps: the request set, the default limit kept.
    assert_eq!(container["resources"]["requests"]["cpu"], "250m");
    assert_eq!(container["resources"]["limits"]["memory"], "512Mi");
    let args = serde_yaml::to_string(&container["args"]).unwrap_or_default();
    assert!(
        args.contains("registry.example/gatehouse-dataplane:v9"),
        "{args}"
    );
    assert!(args.contains("--json-logs"), "{args}");
    // Data planes find the operator by this Service's name in any namespace.
    assert_eq!(
        kind_named(&objects, "Service", "gatehouse-operator")["metadata"]["namespace"],
        "infra"
    );
    let pdb = kind_named(&objects, "PodDisruptionBudget", "edge-gatehouse-operator");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert!(pdb["spec"]["maxUnavailable"].is_null());
    let sa = kind_named(&objects, "ServiceAccount", "edge-operator");
    assert_eq!(sa["metadata"]["annotations"]["iam.example/role"], "edge");
    let binding = kind_named(&objects, "ClusterRoleBinding", "edge-gatehouse");
    assert_eq!(binding["subjects"][0]["name"], "edge-operator");
    assert_eq!(binding["subjects"][0]["namespace"], "infra");

    let class = kind_named(&objects, "GatewayClass", "edge");
    assert_eq!(
        class["spec"]["parametersRef"],
        yaml("{group: gatehouse.dev, kind: GatewayParameters, name: edge, namespace: infra}")
    );
    let parameters = kind_named(&objects, "GatewayParameters", "edge");
    let parsed: gatehouse_api::GatewayParameters =
        serde_yaml::from_value(parameters.clone()).expect("our GatewayParameters type reads it");
    assert_eq!(parsed.spec.replicas, Some(3));
    let clients = parsed.spec.clients.expect("clients");
    assert_eq!(clients.idle_timeout_seconds, Some(30));
    assert_eq!(clients.http2_ping_interval_seconds, Some(0));
    let ingress_class = kind_named(&objects, "IngressClass", "edge-ingress");
    assert_eq!(
        ingress_class["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"],
        "true"
    );
    // An empty parameters map creates nothing.
    assert!(ingress_class["spec"]["parameters"].is_null());
}

/// The schema refuses values that would render a broken install, naming the value.
#[test]
fn the_values_schema_refuses_what_would_break_the_install() {
    for (values, names) in [
        ("operator: {replicas: -1}", "replicas"),
        ("operator: {replica: 2}", "replica"),
        ("image: {pullPolicy: Sometimes}", "pullPolicy"),
        ("image: {digest: latest}", "digest"),
        ("operator: {configPort: 70000}", "configPort"),
        ("ingressClass: {name: Not_A_Name}", "name"),
        (
            "podDisruptionBudget: {maxUnavailable: half}",
            "maxUnavailable",
        ),
    ] {
        let err = render("gatehouse", "gatehouse-system", values, &[])
            .err()
            .unwrap_or_else(|| panic!("{values}: rendered"));
        assert!(err.contains(names), "{values}: {err}");
    }
}

/// The uninstall Job runs before helm deletes the release, as the install's own
/// controllerName, and it and its RBAC go once it has succeeded; off, none of it renders.
#[test]
fn the_uninstall_hook_stops_the_operator_of_this_install_first() {
    let objects = render(
        "edge",
        "edge-system",
        "gatewayClass: {controllerName: example.com/edge}",
        &[],
    )
    .expect("renders");
    let job = kind_named(&objects, "Job", "edge-gatehouse-uninstall");
    for hooked in objects
        .iter()
        .filter(|o| o["metadata"]["name"] == "edge-gatehouse-uninstall")
    {
        let annotations = &hooked["metadata"]["annotations"];
        assert_eq!(annotations["helm.sh/hook"], "pre-delete", "{hooked:?}");
        assert_eq!(
            annotations["helm.sh/hook-delete-policy"],
            "before-hook-creation,hook-succeeded"
        );
    }
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "edge-gatehouse-uninstall");
    assert_eq!(pod["restartPolicy"], "Never");
    let args = args_of(&pod["containers"][0]);
    assert_eq!(
        args,
        [
            "uninstall",
            "--operator-deployment",
            "edge-gatehouse-operator",
            "--gateway-controller",
            "example.com/edge",
            "--timeout-seconds",
            "300",
        ]
    );
    let class = kind_named(&objects, "GatewayClass", "gatehouse");
    assert_eq!(class["spec"]["controllerName"], "example.com/edge");

    let off = render("edge", "edge-system", "uninstall: {cleanup: false}", &[]).expect("renders");
    assert!(
        !kinds(&off).iter().any(|k| k.ends_with("-uninstall")),
        "{:?}",
        kinds(&off)
    );
}

/// The gatehouse-crds chart carries upstream's CRDs of the channel asked for (put there by
/// scripts/chart-gateway-api-crds, as before packaging), of the release the testbed and the
/// conformance run use, marked to stay on uninstall.
#[test]
fn the_crd_chart_installs_the_gateway_api_crds_of_the_channel_asked_for() {
    let script = Command::new(repo().join("scripts/chart-gateway-api-crds"))
        .output()
        .expect("scripts/chart-gateway-api-crds runs");
    assert!(
        script.status.success(),
        "scripts/chart-gateway-api-crds: {}",
        String::from_utf8_lossy(&script.stderr)
    );
    let lint = Command::new(helm())
        .args(["lint", "--strict"])
        .arg(repo().join("charts/gatehouse-crds"))
        .output()
        .expect("helm lint runs");
    assert!(lint.status.success(), "helm lint --strict gatehouse-crds");
    let versions = std::fs::read_to_string(repo().join("conformance/testbed/versions.env"))
        .expect("versions.env");
    let pinned = versions
        .lines()
        .find_map(|l| l.strip_prefix("GATEWAY_API_VERSION="))
        .expect("GATEWAY_API_VERSION pinned");
    let chart: Value = yaml(
        &std::fs::read_to_string(repo().join("charts/gatehouse-crds/Chart.yaml"))
            .expect("Chart.yaml"),
    );
    assert_eq!(chart["appVersion"].as_str(), Some(pinned));
    for (channel, count) in [("standard", 10), ("experimental", 13)] {
        let values = format!("gatewayAPI: {{channel: {channel}}}");
        let objects =
            render_chart("gatehouse-crds", "crds", "default", &values, &[]).expect("renders");
        assert_eq!(objects.len(), count, "{channel}: {:?}", kinds(&objects));
        for crd in &objects {
            assert_eq!(crd["kind"], "CustomResourceDefinition");
            let annotations = &crd["metadata"]["annotations"];
            assert_eq!(annotations["helm.sh/resource-policy"], "keep", "{crd:?}");
            assert_eq!(annotations["gateway.networking.k8s.io/channel"], channel);
            assert_eq!(
                annotations["gateway.networking.k8s.io/bundle-version"],
                pinned
            );
        }
        assert!(
            objects
                .iter()
                .any(|c| c["metadata"]["name"] == "httproutes.gateway.networking.k8s.io")
        );
    }
    let refused = render_chart(
        "gatehouse-crds",
        "crds",
        "default",
        "gatewayAPI: {channel: beta}",
        &[],
    );
    assert!(refused.is_err(), "an unknown channel is refused");
}

/// With metrics values on: PodMonitors for the operator's replicas (admin port) and the
/// data planes (their "metrics" port, any namespace), and the ingress-nginx recording rules
/// as a PrometheusRule, the same rules as the file promtool and the Prometheus test check.
#[test]
fn the_monitoring_objects_scrape_both_and_carry_the_recording_rules() {
    let objects = render(
        "gatehouse",
        "gatehouse-system",
        "metrics: {podMonitor: {enabled: true, labels: {release: prom}}, prometheusRule: {enabled: true}, grafanaDashboard: {enabled: true}}",
        &[],
    )
    .expect("renders");
    let operator = kind_named(&objects, "PodMonitor", "gatehouse-operator");
    assert_eq!(operator["spec"]["podMetricsEndpoints"][0]["port"], "admin");
    assert_eq!(operator["metadata"]["labels"]["release"], "prom");
    let dataplanes = kind_named(&objects, "PodMonitor", "gatehouse-dataplanes");
    assert_eq!(dataplanes["spec"]["namespaceSelector"]["any"], true);
    assert_eq!(
        dataplanes["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        "gatehouse-dataplane"
    );
    assert_eq!(
        dataplanes["spec"]["podMetricsEndpoints"][0]["port"],
        "metrics"
    );
    let rules = kind_named(&objects, "PrometheusRule", "gatehouse-ingress-nginx-compat");
    let file: Value = yaml(
        &std::fs::read_to_string(repo().join("charts/gatehouse/rules/ingress-nginx-compat.yaml"))
            .expect("the rules file"),
    );
    assert_eq!(rules["spec"]["groups"], file["groups"]);
    let dashboard = kind_named(&objects, "ConfigMap", "gatehouse-dashboard");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped: serde_json::Value = serde_json::from_str(
        dashboard["data"]["gatehouse.json"]
            .as_str()
            .unwrap_or_default(),
    )
    .expect("the dashboard is JSON");
    let on_disk: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("charts/gatehouse/dashboards/gatehouse.json"))
            .expect("the dashboard file"),
    )
    .expect("JSON");
    assert_eq!(shipped, on_disk);
    let off = render("gatehouse", "gatehouse-system", "{}", &[]).expect("renders");
    assert!(!off.iter().any(|o| o["kind"] == "PodMonitor"
        || o["kind"] == "PrometheusRule"
        || o["kind"] == "ConfigMap"));
}
