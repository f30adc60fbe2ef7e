// Package selftest checks a running testbed against what the conformance suite needs: the
// Gateway API base manifests come up Ready, EndpointSlices list real pod addresses, pods
// answer on them, logs stream through the API server, Deployments scale, LoadBalancer
// Services answer, and namespaces delete promptly.
//
// Run with `conformance/testbed up` first; KUBECONFIG (or GATEHOUSE_TESTBED_KUBECONFIG)
// names the cluster. The test process runs in the root network namespace and reaches pod
// and load balancer addresses through the testbed's uplink.
package selftest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
)

const (
	infra = "gateway-conformance-infra"
)

var conformanceNamespaces = []string{infra, "gateway-conformance-app-backend", "gateway-conformance-web-backend"}

func kubeconfig(t *testing.T) string {
	for _, k := range []string{"GATEHOUSE_TESTBED_KUBECONFIG", "KUBECONFIG"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	if _, err := os.Stat("/var/lib/gatehouse-testbed/kubeconfig"); err == nil {
		return "/var/lib/gatehouse-testbed/kubeconfig"
	}
	t.Fatal("no testbed: run `conformance/testbed up` (or set KUBECONFIG)")
	return ""
}

func client(t *testing.T) kubernetes.Interface {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig(t))
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func kubectl(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	bin := "kubectl"
	if d := os.Getenv("TESTBED_BIN"); d != "" {
		bin = filepath.Join(d, "kubectl")
	}
	cmd := exec.Command(bin, append([]string{"--kubeconfig", kubeconfig(t)}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func baseManifests(t *testing.T) string {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api/conformance").Output()
	if err != nil {
		t.Fatalf("locating the conformance module: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "base", "manifests.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(string(b), "{GATEWAY_CLASS_NAME}", "gatehouse")
}

// tlsSecret is what the conformance suite creates at run time for the TLS backends.
func tlsSecret(t *testing.T, ns, name string) *corev1.Secret {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "example.com"},
		DNSNames:     []string{"example.com", "abc.example.com"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Type:       corev1.SecretTypeTLS,
		Data: map[string][]byte{
			"tls.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			"tls.key": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		},
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

type echo struct {
	Path      string `json:"path"`
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
}

func get(url string) (echo, error) {
	// A new connection per request, so a load balancer spreads them.
	c := http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return echo{}, err
	}
	defer resp.Body.Close()
	var e echo
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &e); err != nil {
		return echo{}, fmt.Errorf("%s: %v: %s", url, err, body)
	}
	return e, nil
}

func TestConformanceBaseManifests(t *testing.T) {
	ctx := context.Background()
	c := client(t)
	start := time.Now()
	kubectl(t, baseManifests(t), "apply", "-f", "-")
	for _, s := range [][2]string{{infra, "tls-checks-certificate"}, {infra, "tls-passthrough-checks-certificate"}, {"gateway-conformance-app-backend", "tls-passthrough-checks-certificate"}} {
		if _, err := c.CoreV1().Secrets(s[0]).Create(ctx, tlsSecret(t, s[0], s[1]), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}

	// Every pod of the three namespaces Ready within 2 minutes.
	var pods []corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods = nil
		for _, ns := range conformanceNamespaces {
			list, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, nil
			}
			pods = append(pods, list.Items...)
		}
		if len(pods) < 23 {
			return false, nil
		}
		for i := range pods {
			if !podReady(&pods[i]) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		for _, p := range pods {
			t.Logf("%s/%s phase=%s ready=%v %s", p.Namespace, p.Name, p.Status.Phase, podReady(&p), p.Status.Message)
		}
		t.Fatalf("pods not Ready within 2 minutes: %v", err)
	}
	t.Logf("%d pods Ready %s after applying the base manifests", len(pods), time.Since(start).Round(time.Second))

	// EndpointSlices list the pod addresses.
	slices, err := c.DiscoveryV1().EndpointSlices(infra).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=infra-backend-v1"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, p := range pods {
		if p.Namespace == infra && strings.HasPrefix(p.Name, "infra-backend-v1-") {
			want[p.Status.PodIP] = true
		}
	}
	got := map[string]bool{}
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			for _, a := range e.Addresses {
				got[a] = true
			}
		}
	}
	if len(want) != 2 || fmt.Sprint(want) != fmt.Sprint(got) {
		t.Fatalf("EndpointSlice addresses %v, pod addresses %v", got, want)
	}

	// Each echo pod answers on its own address, naming itself.
	var echoPod *corev1.Pod
	for i, p := range pods {
		if p.Spec.Containers[0].Image == "" || !strings.Contains(p.Spec.Containers[0].Image, "echo-basic") {
			continue
		}
		env := map[string]string{}
		for _, e := range p.Spec.Containers[0].Env {
			env[e.Name] = e.Value
		}
		if env["GRPC_ECHO_SERVER"] != "" || env["TCP_ECHO_SERVER"] != "" || env["UDP_ECHO_SERVER"] != "" {
			continue
		}
		e, err := get(fmt.Sprintf("http://%s:3000/selftest", p.Status.PodIP))
		if err != nil {
			t.Fatalf("%s/%s at %s: %v", p.Namespace, p.Name, p.Status.PodIP, err)
		}
		if e.Pod != p.Name || e.Namespace != p.Namespace {
			t.Fatalf("%s/%s answered as %s/%s", p.Namespace, p.Name, e.Namespace, e.Pod)
		}
		if echoPod == nil && p.Namespace == infra {
			echoPod = &pods[i]
		}
	}

	// Its requests appear in its logs, read through the API server (as the mirror tests do).
	since := metav1.NewTime(time.Now().Add(-time.Second))
	for i := 0; i < 3; i++ {
		if _, err := get(fmt.Sprintf("http://%s:3000/logged-%d", echoPod.Status.PodIP, i)); err != nil {
			t.Fatal(err)
		}
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		raw, err := c.CoreV1().Pods(echoPod.Namespace).GetLogs(echoPod.Name, &corev1.PodLogOptions{
			Container: echoPod.Spec.Containers[0].Name,
			SinceTime: &since,
		}).DoRaw(ctx)
		if err != nil {
			t.Logf("logs: %v", err)
			return false, nil
		}
		return strings.Contains(string(raw), "/logged-2"), nil
	})
	if err != nil {
		t.Fatalf("the echo pod's logs never showed its requests: %v", err)
	}
	// kubectl logs works too.
	if out := kubectl(t, "", "logs", "-n", echoPod.Namespace, echoPod.Name); !strings.Contains(out, "/logged-0") {
		t.Fatalf("kubectl logs: %s", out)
	}
}

func TestScaleLoadBalancerAndNamespaceDeletion(t *testing.T) {
	ctx := context.Background()
	c := client(t)
	ns := fmt.Sprintf("selftest-%d", time.Now().UnixNano()%100000)
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "echo"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(3)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:  "echo",
					Image: "registry.k8s.io/gateway-api/echo-basic:v1.6.1",
					Env: []corev1.EnvVar{
						{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
						{Name: "NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
					},
					ReadinessProbe: &corev1.Probe{
						ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health", Port: intstr.FromInt32(3000)}},
						PeriodSeconds: 1,
					},
				}}},
			},
		},
	}
	if _, err := c.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: ns},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(3000)}},
		},
	}
	if _, err := c.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	readyEndpoints := func(ctx context.Context) int {
		slices, err := c.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=echo"})
		if err != nil {
			return -1
		}
		n := 0
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				if ptr.Deref(e.Conditions.Ready, false) {
					n++
				}
			}
		}
		return n
	}
	poll := func(what string, d time.Duration, f func(context.Context) bool) {
		t.Helper()
		if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, d, true, func(ctx context.Context) (bool, error) { return f(ctx), nil }); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	poll("3 ready endpoints", 2*time.Minute, func(ctx context.Context) bool { return readyEndpoints(ctx) == 3 })

	// The LoadBalancer Service gets an address, and answers on it.
	var lb string
	poll("a load balancer address", 30*time.Second, func(ctx context.Context) bool {
		s, err := c.CoreV1().Services(ns).Get(ctx, "echo", metav1.GetOptions{})
		if err == nil && len(s.Status.LoadBalancer.Ingress) > 0 {
			lb = s.Status.LoadBalancer.Ingress[0].IP
		}
		return lb != ""
	})
	if !strings.HasPrefix(lb, "198.19.") {
		t.Fatalf("load balancer address %s is not from 198.19.0.0/16", lb)
	}
	seen := map[string]bool{}
	poll("answers on the load balancer address", 30*time.Second, func(context.Context) bool {
		e, err := get("http://" + lb + "/lb")
		if err == nil && e.Namespace == ns {
			seen[e.Pod] = true
		}
		return len(seen) == 3
	})

	// Scale 3 -> 1: one Ready pod, one endpoint.
	scale, err := c.AppsV1().Deployments(ns).GetScale(ctx, "echo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = 1
	if _, err := c.AppsV1().Deployments(ns).UpdateScale(ctx, "echo", scale, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll("1 pod and 1 endpoint after scaling to 1", 90*time.Second, func(ctx context.Context) bool {
		pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil || len(pods.Items) != 1 || !podReady(&pods.Items[0]) {
			return false
		}
		return readyEndpoints(ctx) == 1
	})

	// Deleting the namespace completes within 60 seconds.
	start := time.Now()
	if err := c.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll("namespace deletion", 60*time.Second, func(ctx context.Context) bool {
		_, err := c.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	t.Logf("namespace deleted in %s", time.Since(start).Round(100*time.Millisecond))
}

func TestUnknownImageStaysPendingWithAnEvent(t *testing.T) {
	ctx := context.Background()
	c := client(t)
	ns := "default"
	name := fmt.Sprintf("unknown-image-%d", time.Now().UnixNano()%100000)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.com/nothing/here:v1"}}},
	}
	if _, err := c.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer c.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))})
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		events, err := c.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
		if err != nil {
			return false, nil
		}
		for _, e := range events.Items {
			if e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, "image table") {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no event saying why: %v", err)
	}
	p, err := c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Status.Phase != corev1.PodPending {
		t.Fatalf("phase %s, want Pending", p.Status.Phase)
	}
}

// TestPodProcesses: env from every source, volumes at their mountPaths, restartPolicy, and
// deletion within the grace period of a process that ignores SIGTERM. The containers run
// the host's /bin/sh (a command naming a host program runs as written).
func TestPodProcesses(t *testing.T) {
	ctx := context.Background()
	c := client(t)
	ns := fmt.Sprintf("selftest-proc-%d", time.Now().UnixNano()%100000)
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer c.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	if _, err := c.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "s"},
		StringData: map[string]string{"password": "hunter2", "file.txt": "secret-file"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cm"},
		Data:       map[string]string{"mode": "fast", "app.conf": "listen 80"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	image := "registry.k8s.io/gateway-api/echo-basic:v1.6.1"
	pod := func(name string, policy corev1.RestartPolicy, script string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.PodSpec{
				RestartPolicy:                 policy,
				TerminationGracePeriodSeconds: ptr.To(int64(2)),
				Volumes: []corev1.Volume{
					{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s"}}},
					{Name: "conf", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}}},
					{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				},
				Containers: []corev1.Container{{
					Name:    "main",
					Image:   image,
					Command: []string{"/bin/sh", "-c", script},
					Env: []corev1.EnvVar{
						{Name: "LITERAL", Value: "plain"},
						{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
						{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}, Key: "password"}}},
						{Name: "MODE", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}, Key: "mode"}}},
					},
					VolumeMounts: []corev1.VolumeMount{
						{Name: "sec", MountPath: "/etc/testbed-selftest/secret"},
						{Name: "conf", MountPath: "/etc/testbed-selftest/conf"},
						{Name: "scratch", MountPath: "/tmp/testbed-selftest-scratch"},
					},
				}},
			},
		}
	}
	create := func(p *corev1.Pod) {
		if _, err := c.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	getPod := func(name string) *corev1.Pod {
		p, err := c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	poll := func(what string, f func() bool) {
		t.Helper()
		if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) { return f(), nil }); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	// Env and volumes, then exit 3 with restartPolicy Never: phase Failed, exit code 3.
	create(pod("once", corev1.RestartPolicyNever, `echo "env $LITERAL $PASSWORD $MODE $POD_IP"; `+
		`echo "files $(cat /etc/testbed-selftest/secret/file.txt) $(cat /etc/testbed-selftest/conf/app.conf)"; `+
		`echo scratch > /tmp/testbed-selftest-scratch/f && echo "scratch $(cat /tmp/testbed-selftest-scratch/f)"; exit 3`))
	poll("pod once Failed", func() bool { return getPod("once").Status.Phase == corev1.PodFailed })
	p := getPod("once")
	if term := p.Status.ContainerStatuses[0].State.Terminated; term == nil || term.ExitCode != 3 {
		t.Fatalf("want terminated with exit code 3: %+v", p.Status.ContainerStatuses[0].State)
	}
	logs := kubectl(t, "", "logs", "-n", ns, "once")
	for _, want := range []string{"env plain hunter2 fast " + p.Status.PodIP, "files secret-file listen 80", "scratch scratch"} {
		if !strings.Contains(logs, want) {
			t.Fatalf("logs lack %q:\n%s", want, logs)
		}
	}

	// restartPolicy Always: an exiting container is restarted.
	create(pod("again", corev1.RestartPolicyAlways, "echo started; sleep 0.2; exit 1"))
	poll("pod again restarted", func() bool {
		cs := getPod("again").Status.ContainerStatuses
		return len(cs) == 1 && cs[0].RestartCount >= 2
	})

	// A process that ignores SIGTERM is killed after the 2 s grace period.
	create(pod("stubborn", corev1.RestartPolicyAlways, "trap '' TERM; echo ready; while true; do sleep 0.1; done"))
	poll("pod stubborn Ready", func() bool { return podReady(getPod("stubborn")) })
	start := time.Now()
	if err := c.CoreV1().Pods(ns).Delete(ctx, "stubborn", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll("pod stubborn gone", func() bool {
		_, err := c.CoreV1().Pods(ns).Get(ctx, "stubborn", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	if took := time.Since(start); took < 2*time.Second || took > 10*time.Second {
		t.Fatalf("deletion took %s; want the 2 s grace period, then a kill", took)
	}
}
