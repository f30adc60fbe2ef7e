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
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, values).expect("values written");
    let out = Command::new(helm())
        .args(["template", release])
        .arg(repo().join("charts/gatehouse"))
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
            "ClusterRoleBinding/gatehouse",
            "CustomResourceDefinition/gatewayparameters.gatehouse.dev",
            "CustomResourceDefinition/ingressclassparameters.gatehouse.dev",
            "CustomResourceDefinition/trafficpolicies.gatehouse.dev",
            "Deployment/gatehouse-operator",
            "GatewayClass/gatehouse",
            "IngressClass/gatehouse",
            "PodDisruptionBudget/gatehouse-operator",
            "Role/gatehouse-leader",
            "RoleBinding/gatehouse-leader",
            "Service/gatehouse-operator",
            "ServiceAccount/gatehouse-operator",
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
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
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
