//! Every GatewayParameters field, from YAML as a user writes it to the object it shapes.

use super::*;
use serde_json::json;

fn common() -> Common {
    let mut infra_labels = BTreeMap::new();
    infra_labels.insert("team".to_string(), "edge".to_string());
    let mut annotations = BTreeMap::new();
    annotations.insert("from-infrastructure".to_string(), "yes".to_string());
    Common::new("apps", "web", "uid-1", infra_labels, annotations)
}

fn settings() -> DataPlaneSettings {
    DataPlaneSettings {
        image: "ghcr.io/gatehouse-dev/gatehouse:v0.1.0".into(),
        operator_url: "https://gatehouse-operator.gatehouse-system.svc:9901".into(),
        operator_name: "gatehouse-operator.gatehouse-system.svc".into(),
    }
}

fn parameters(yaml: &str) -> GatewayParametersSpec {
    match serde_yaml::from_str(yaml) {
        Ok(p) => p,
        Err(e) => panic!("parameters {yaml}: {e}"),
    }
}

fn deployment_of(yaml: &str, ports: &[u16]) -> Value {
    deployment(
        &common(),
        &settings(),
        &parameters(yaml),
        ports,
        "gatehouse-web-identity",
    )
}

#[test]
fn defaults_give_one_hardened_pod_with_probes_and_a_drain() {
    let d = deployment_of("{}", &[80, 443]);
    let spec = &d["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["terminationGracePeriodSeconds"], 40);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    for absent in [
        "nodeSelector",
        "tolerations",
        "affinity",
        "topologySpreadConstraints",
        "priorityClassName",
    ] {
        assert!(pod.get(absent).is_none(), "{absent}");
    }
    let c = &pod["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], 9902);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    let args: Vec<&str> = c["args"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(args.windows(2).any(|w| w == ["--drain-delay-seconds", "5"]));
    assert!(args.windows(2).any(|w| w == ["--gateway", "apps/web"]));
    // The selector's labels, the infrastructure's labels and annotations on the pods.
    let meta = &spec["template"]["metadata"];
    assert_eq!(
        meta["labels"]["gateway.networking.k8s.io/gateway-name"],
        "web"
    );
    assert_eq!(meta["labels"]["team"], "edge");
    assert_eq!(meta["annotations"]["from-infrastructure"], "yes");
    assert!(disruption_budget(&common(), &parameters("{}")).is_none());
    assert!(autoscaler(&common(), &parameters("{}")).is_none());
}

#[test]
fn a_listener_on_9902_moves_the_health_port() {
    let d = deployment_of("{}", &[9902]);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], 9903);
    // The admin endpoint (health and /metrics) is the named port a PodMonitor scrapes.
    let metrics = c["ports"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "metrics"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(metrics["containerPort"], 9903);
}

#[test]
fn pod_fields_reach_the_pod_template() {
    let d = deployment_of(
        "
replicas: 3
shutdown: {drainDelaySeconds: 10, drainTimeoutSeconds: 50}
pod:
  nodeSelector: {node-role/edge: 'true'}
  tolerations: [{key: edge, operator: Exists, effect: NoSchedule}]
  affinity:
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector: {matchLabels: {app.kubernetes.io/name: gatehouse-dataplane}}
  topologySpreadConstraints:
  - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway}
  priorityClassName: system-cluster-critical
  labels: {cost-center: '42', gateway.networking.k8s.io/gateway-name: stolen}
  annotations: {prometheus.io/scrape: 'true'}
  securityContext: {runAsNonRoot: true, readOnlyRootFilesystem: false}
",
        &[80],
    );
    let spec = &d["spec"];
    assert_eq!(spec["replicas"], 3);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["terminationGracePeriodSeconds"], 65);
    assert_eq!(pod["nodeSelector"]["node-role/edge"], "true");
    assert_eq!(pod["tolerations"][0]["key"], "edge");
    assert_eq!(
        pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"],
        100
    );
    assert_eq!(
        pod["topologySpreadConstraints"][0]["topologyKey"],
        "topology.kubernetes.io/zone"
    );
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    let meta = &spec["template"]["metadata"];
    assert_eq!(meta["labels"]["cost-center"], "42");
    // The labels Gatehouse selects by cannot be taken over.
    assert_eq!(
        meta["labels"]["gateway.networking.k8s.io/gateway-name"],
        "web"
    );
    assert_eq!(meta["annotations"]["prometheus.io/scrape"], "true");
    assert_eq!(meta["annotations"]["from-infrastructure"], "yes");
    let c = &pod["containers"][0];
    assert_eq!(
        c["securityContext"],
        json!({"runAsNonRoot": true, "readOnlyRootFilesystem": false})
    );
}

#[test]
fn an_autoscaler_takes_the_replica_count() {
    let p = "{replicas: 3, autoscaling: {minReplicas: 2, maxReplicas: 10, targetCPUUtilizationPercentage: 60}}";
    let d = deployment_of(p, &[80]);
    assert!(
        d["spec"].get("replicas").is_none(),
        "left to the autoscaler"
    );
    let hpa = autoscaler(&common(), &parameters(p)).unwrap_or_default();
    assert_eq!(hpa["kind"], "HorizontalPodAutoscaler");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "gatehouse-web");
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    assert_eq!(hpa["spec"]["maxReplicas"], 10);
    assert_eq!(
        hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        60
    );
    let defaults =
        autoscaler(&common(), &parameters("{autoscaling: {maxReplicas: 4}}")).unwrap_or_default();
    assert_eq!(defaults["spec"]["minReplicas"], 1);
    assert_eq!(
        defaults["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        80
    );
}

#[test]
fn a_disruption_budget_selects_the_data_planes() {
    let pdb = disruption_budget(
        &common(),
        &parameters("{podDisruptionBudget: {minAvailable: '50%'}}"),
    )
    .unwrap_or_default();
    assert_eq!(pdb["kind"], "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], "50%");
    assert!(pdb["spec"].get("maxUnavailable").is_none());
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"]["gateway.networking.k8s.io/gateway-name"],
        "web"
    );
    assert_eq!(pdb["metadata"]["ownerReferences"][0]["kind"], "Gateway");
    let one =
        disruption_budget(&common(), &parameters("{podDisruptionBudget: {}}")).unwrap_or_default();
    assert_eq!(one["spec"]["maxUnavailable"], 1);
    let two = disruption_budget(
        &common(),
        &parameters("{podDisruptionBudget: {maxUnavailable: 2}}"),
    )
    .unwrap_or_default();
    assert_eq!(two["spec"]["maxUnavailable"], 2);
    let both = disruption_budget(
        &common(),
        &parameters("{podDisruptionBudget: {minAvailable: 1, maxUnavailable: 2}}"),
    )
    .unwrap_or_default();
    assert_eq!(both["spec"]["minAvailable"], 1);
    assert!(both["spec"].get("maxUnavailable").is_none(), "{both}");
}

#[test]
fn service_fields_reach_the_service() {
    let p = parameters(
        "
service:
  annotations: {service.beta.kubernetes.io/aws-load-balancer-type: nlb}
  externalTrafficPolicy: Local
  loadBalancerClass: service.k8s.aws/nlb
  loadBalancerSourceRanges: [203.0.113.0/24]
  nodePorts: [{port: 80, nodePort: 30080}]
",
    );
    let s = service(&common(), &p, &[80, 443], Some("198.51.100.7".into()));
    let spec = &s["spec"];
    assert_eq!(spec["type"], "LoadBalancer");
    assert_eq!(spec["externalTrafficPolicy"], "Local");
    assert_eq!(spec["loadBalancerClass"], "service.k8s.aws/nlb");
    assert_eq!(spec["loadBalancerSourceRanges"][0], "203.0.113.0/24");
    assert_eq!(spec["loadBalancerIP"], "198.51.100.7");
    assert_eq!(spec["ports"][0]["nodePort"], 30080);
    assert!(spec["ports"][1].get("nodePort").is_none());
    let annotations = &s["metadata"]["annotations"];
    assert_eq!(
        annotations["service.beta.kubernetes.io/aws-load-balancer-type"],
        "nlb"
    );
    assert_eq!(annotations["from-infrastructure"], "yes");
}

#[test]
fn a_cluster_ip_service_takes_no_node_or_load_balancer_fields() {
    let p = parameters(
        "service: {type: ClusterIP, externalTrafficPolicy: Local, loadBalancerClass: x, nodePorts: [{port: 80, nodePort: 30080}]}",
    );
    let s = service(&common(), &p, &[80], Some("198.51.100.7".into()));
    let spec = &s["spec"];
    assert_eq!(spec["type"], "ClusterIP");
    for absent in [
        "externalTrafficPolicy",
        "loadBalancerClass",
        "loadBalancerIP",
    ] {
        assert!(spec.get(absent).is_none(), "{absent}");
    }
    assert!(spec["ports"][0].get("nodePort").is_none());
}
