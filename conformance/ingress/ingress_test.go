// Package ingress runs the scenarios of the upstream Ingress conformance suite
// (kubernetes-sigs/ingress-controller-conformance: default_backend, host_rules,
// path_rules, ingress_class, load_balancing) against Gatehouse on the testbed. The
// upstream runner's module is not available from the Go module proxy, so the scenarios
// are written here, one subtest per upstream scenario, with the upstream manifests and
// assertions; see docs/conformance.md.
//
// The environment, like the upstream runner's `--ingress-class`: an IngressClass
// `gatehouse-conformance` served by a Gateway with HTTP on 80 and HTTPS on 443, whose
// IngressClassParameters turn off the HTTPS redirect (ingress-nginx's ssl-redirect
// ConfigMap setting; the suite sends plain HTTP to a host that has TLS).
package ingress

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

const (
	className = "gatehouse-conformance"
	infraNS   = "gatehouse-ingress-conformance"
	echoImage = "registry.k8s.io/gateway-api/echo-basic:v1.6.1"
	// How long a change may take to show in traffic or status.
	patience = 60 * time.Second
)

type env struct {
	kube *kubernetes.Clientset
	dyn  dynamic.Interface
}

func setup(t *testing.T) *env {
	t.Helper()
	path := os.Getenv("KUBECONFIG")
	if path == "" {
		path = "/var/lib/gatehouse-testbed/kubeconfig"
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatalf("kubeconfig %s: %v (run conformance/run INGRESS)", path, err)
	}
	e := &env{kube: kubernetes.NewForConfigOrDie(cfg), dyn: dynamic.NewForConfigOrDie(cfg)}
	ctx := context.Background()
	_, err = e.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: infraNS}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("namespace: %v", err)
	}
	certPEM, keyPEM := selfSigned(t, "default.invalid")
	e.apply(t, &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: "default-cert", Namespace: infraNS},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM},
	})
	e.applyYAML(t, fmt.Sprintf(`
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: ingress, namespace: %[1]s}
spec:
  gatewayClassName: gatehouse
  listeners:
  - {name: http, protocol: HTTP, port: 80, allowedRoutes: {namespaces: {from: All}}}
  - name: https
    protocol: HTTPS
    port: 443
    allowedRoutes: {namespaces: {from: All}}
    tls: {certificateRefs: [{name: default-cert}]}
---
apiVersion: gatehouse.dev/v1alpha1
kind: IngressClassParameters
metadata: {name: %[2]s}
spec:
  gatewayRef: {namespace: %[1]s, name: ingress}
  sslRedirect: false
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: %[2]s}
spec:
  controller: gatehouse.dev/ingress-controller
  parameters: {apiGroup: gatehouse.dev, kind: IngressClassParameters, name: %[2]s}
`, infraNS, className))
	return e
}

// apply server-side applies a typed object.
func (e *env) apply(t *testing.T, obj any) {
	t.Helper()
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	e.applyYAML(t, string(b))
}

// applyYAML server-side applies every document of a YAML text.
func (e *env) applyYAML(t *testing.T, text string) {
	t.Helper()
	for _, doc := range strings.Split(text, "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var u unstructured.Unstructured
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatalf("yaml: %v", err)
		}
		gvk := u.GroupVersionKind()
		kind := strings.ToLower(gvk.Kind)
		plural := kind + "s" // Gateway -> gateways
		switch {
		case strings.HasSuffix(kind, "ss"): // IngressClass -> ingressclasses
			plural = kind + "es"
		case strings.HasSuffix(kind, "s"): // IngressClassParameters -> ingressclassparameters
			plural = kind
		}
		res := e.dyn.Resource(schema.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: plural})
		var ri dynamic.ResourceInterface = res
		if ns := u.GetNamespace(); ns != "" {
			ri = res.Namespace(ns)
		}
		data, err := json.Marshal(u.Object)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ri.Patch(context.Background(), u.GetName(), "application/apply-patch+yaml", data,
			metav1.PatchOptions{FieldManager: "ingress-conformance", Force: ptr.To(true)}); err != nil {
			t.Fatalf("apply %s %s: %v", gvk.Kind, u.GetName(), err)
		}
	}
}

// newNamespace makes a random namespace, deleted when the test ends.
func (e *env) newNamespace(t *testing.T) string {
	t.Helper()
	ns, err := e.kube.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "ingress-conformance-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("namespace: %v", err)
	}
	t.Cleanup(func() {
		_ = e.kube.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	return ns.Name
}

// deployIngress creates an echo Deployment and Service (port 8080 named http) for every
// Service the Ingress names, as the upstream runner does, then the Ingress with our class.
func (e *env) deployIngress(t *testing.T, ns, manifest string, replicas int32) *networkingv1.Ingress {
	t.Helper()
	var ing networkingv1.Ingress
	if err := yaml.Unmarshal([]byte(manifest), &ing); err != nil {
		t.Fatalf("ingress yaml: %v", err)
	}
	ing.Namespace = ns
	if ing.Spec.IngressClassName == nil {
		ing.Spec.IngressClassName = ptr.To(className)
	}
	services := map[string]bool{}
	if b := ing.Spec.DefaultBackend; b != nil && b.Service != nil {
		services[b.Service.Name] = true
	}
	for _, r := range ing.Spec.Rules {
		if r.HTTP == nil {
			continue
		}
		for _, p := range r.HTTP.Paths {
			if p.Backend.Service != nil {
				services[p.Backend.Service.Name] = true
			}
		}
	}
	ctx := context.Background()
	for svc := range services {
		labels := map[string]string{"app": svc}
		_, err := e.kube.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: svc},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To(replicas),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{
						Name:  "ingress-conformance-echo",
						Image: echoImage,
						Env: []corev1.EnvVar{
							{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
							{Name: "NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
							{Name: "INGRESS_NAME", Value: ing.Name},
							{Name: "SERVICE_NAME", Value: svc},
						},
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 3000}},
					}}},
				},
			},
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			continue // Another Ingress of the test uses the Service too.
		}
		if err != nil {
			t.Fatalf("deployment %s: %v", svc, err)
		}
		_, err = e.kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: svc},
			Spec: corev1.ServiceSpec{
				Selector: labels,
				Ports:    []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(3000)}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("service %s: %v", svc, err)
		}
	}
	created, err := e.kube.NetworkingV1().Ingresses(ns).Create(ctx, &ing, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("ingress: %v", err)
	}
	return created
}

// address waits for the Ingress's status.loadBalancer address.
func (e *env) address(t *testing.T, ns, name string) string {
	t.Helper()
	var addr string
	eventually(t, "the Ingress status shows the IP address", func() bool {
		ing, err := e.kube.NetworkingV1().Ingresses(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil || len(ing.Status.LoadBalancer.Ingress) == 0 {
			return false
		}
		lb := ing.Status.LoadBalancer.Ingress[0]
		addr = lb.IP
		if addr == "" {
			addr = lb.Hostname
		}
		return addr != ""
	})
	return addr
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// echoed is what the echo server reports of the request it got.
type echoed struct {
	Path      string              `json:"path"`
	Host      string              `json:"host"`
	Method    string              `json:"method"`
	Proto     string              `json:"proto"`
	Headers   map[string][]string `json:"headers"`
	Namespace string              `json:"namespace"`
	Ingress   string              `json:"ingress"`
	Service   string              `json:"service"`
	Pod       string              `json:"pod"`
}

type answer struct {
	status  int
	proto   string
	headers http.Header
	echo    echoed
}

// send makes one request to the Ingress address with the Host (and for https the SNI) of
// the URL, as the upstream runner does; `roots` verifies the server for https.
func send(method, rawURL, addr string, roots *x509.CertPool) (answer, error) {
	req, err := http.NewRequest(method, rawURL, nil)
	if err != nil {
		return answer{}, err
	}
	port := "80"
	if req.URL.Scheme == "https" {
		port = "443"
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return dialer.DialContext(ctx, network, net.JoinHostPort(addr, port))
			},
			TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: req.URL.Hostname()},
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, proto: resp.Proto, headers: resp.Header}
	_ = json.Unmarshal(body, &a.echo)
	return a, nil
}

// expect waits until a request gets the status (and, when service is not empty, is
// served by it), then returns that answer.
func expect(t *testing.T, method, rawURL, addr string, roots *x509.CertPool, status int, service string) answer {
	t.Helper()
	var last answer
	var lastErr error
	deadline := time.Now().Add(patience)
	for {
		last, lastErr = send(method, rawURL, addr, roots)
		if lastErr == nil && last.status == status && (service == "" || last.echo.Service == service) {
			return last
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: want %d from %q, got %d from %q (error %v)", method, rawURL, status, service, last.status, last.echo.Service, lastErr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func selfSigned(t *testing.T, host string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
}

func TestIngressConformance(t *testing.T) {
	e := setup(t)
	t.Run("default_backend", func(t *testing.T) { defaultBackend(t, e) })
	t.Run("host_rules", func(t *testing.T) { hostRules(t, e) })
	t.Run("path_rules", func(t *testing.T) { pathRules(t, e) })
	t.Run("ingress_class", func(t *testing.T) { ingressClass(t, e) })
	t.Run("load_balancing", func(t *testing.T) { loadBalancing(t, e) })
}

func defaultBackend(t *testing.T, e *env) {
	ns := e.newNamespace(t)
	e.deployIngress(t, ns, `
metadata: {name: default-backend}
spec:
  defaultBackend:
    service:
      name: echo-service
      port: {number: 8080}
`, 1)
	addr := e.address(t, ns, "default-backend")
	for _, c := range []struct{ method, host, path string }{
		{"GET", "my-host", ""},
		{"GET", "my-host", "sub-path"},
		{"POST", "some-host", ""},
		{"PUT", "", "resource"},
		{"DELETE", "some-host", "resource"},
		{"PATCH", "my-host", "resource"},
	} {
		t.Run(c.method+" "+c.host+"/"+c.path, func(t *testing.T) {
			host := c.host
			if host == "" {
				host = addr // No host: the address itself, as the upstream runner.
			}
			a := expect(t, c.method, "http://"+host+"/"+c.path, addr, nil, 200, "echo-service")
			if a.proto != "HTTP/1.1" {
				t.Errorf("response proto %q", a.proto)
			}
			for _, h := range []string{"Content-Length", "Content-Type", "Date", "Server"} {
				if a.headers.Get(h) == "" {
					t.Errorf("response header %s missing: %v", h, a.headers)
				}
			}
			if a.echo.Method != c.method || a.echo.Path != "/"+c.path || a.echo.Proto != "HTTP/1.1" {
				t.Errorf("request seen as %s %s %s", a.echo.Method, a.echo.Path, a.echo.Proto)
			}
			if ua := a.echo.Headers["User-Agent"]; len(ua) == 0 || ua[0] != "Go-http-client/1.1" {
				t.Errorf("request User-Agent %v", ua)
			}
		})
	}
}

func hostRules(t *testing.T, e *env) {
	ns := e.newNamespace(t)
	certPEM, keyPEM := selfSigned(t, "foo.bar.com")
	_, err := e.kube.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "conformance-tls"},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	e.deployIngress(t, ns, `
metadata: {name: host-rules}
spec:
  tls:
  - hosts: [foo.bar.com]
    secretName: conformance-tls
  rules:
  - host: "*.foo.com"
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: wildcard-foo-com, port: {number: 8080}}}
  - host: foo.bar.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: foo-bar-com, port: {name: http}}}
`, 1)
	addr := e.address(t, ns, "host-rules")
	t.Run("TLS to foo.bar.com verifies and reaches foo-bar-com", func(t *testing.T) {
		a := expect(t, "GET", "https://foo.bar.com", addr, roots, 200, "foo-bar-com")
		if a.echo.Host != "foo.bar.com" {
			t.Errorf("request host %q", a.echo.Host)
		}
	})
	t.Run("foo.bar.com reaches foo-bar-com", func(t *testing.T) {
		a := expect(t, "GET", "http://foo.bar.com", addr, nil, 200, "foo-bar-com")
		if a.echo.Host != "foo.bar.com" {
			t.Errorf("request host %q", a.echo.Host)
		}
	})
	t.Run("subdomain.bar.com does not match", func(t *testing.T) {
		expect(t, "GET", "http://subdomain.bar.com", addr, nil, 404, "")
	})
	t.Run("bar.foo.com matches the wildcard", func(t *testing.T) {
		a := expect(t, "GET", "http://bar.foo.com", addr, nil, 200, "wildcard-foo-com")
		if a.echo.Host != "bar.foo.com" {
			t.Errorf("request host %q", a.echo.Host)
		}
	})
	t.Run("baz.bar.foo.com: the wildcard covers one label", func(t *testing.T) {
		expect(t, "GET", "http://baz.bar.foo.com", addr, nil, 404, "")
	})
	t.Run("foo.com: the wildcard needs a label", func(t *testing.T) {
		expect(t, "GET", "http://foo.com", addr, nil, 404, "")
	})
}

func pathRules(t *testing.T, e *env) {
	ns := e.newNamespace(t)
	e.deployIngress(t, ns, `
metadata: {name: path-rules}
spec:
  rules:
  - host: exact-path-rules
    http:
      paths:
      - {path: /foo, pathType: Exact, backend: {service: {name: foo-exact, port: {number: 8080}}}}
  - host: prefix-path-rules
    http:
      paths:
      - {path: /foo, pathType: Prefix, backend: {service: {name: foo-prefix, port: {number: 8080}}}}
      - {path: /aaa/bbb, pathType: Prefix, backend: {service: {name: aaa-slash-bbb-prefix, port: {number: 8080}}}}
      - {path: /aaa, pathType: Prefix, backend: {service: {name: aaa-prefix, port: {number: 8080}}}}
  - host: mixed-path-rules
    http:
      paths:
      - {path: /foo, pathType: Prefix, backend: {service: {name: foo-prefix, port: {number: 8080}}}}
      - {path: /foo, pathType: Exact, backend: {service: {name: foo-exact, port: {number: 8080}}}}
  - host: trailing-slash-path-rules
    http:
      paths:
      - {path: /aaa/bbb/, pathType: Prefix, backend: {service: {name: aaa-slash-bbb-slash-prefix, port: {number: 8080}}}}
      - {path: /foo/, pathType: Exact, backend: {service: {name: foo-slash-exact, port: {number: 8080}}}}
`, 1)
	addr := e.address(t, ns, "path-rules")
	for _, c := range []struct {
		url     string
		status  int
		service string
	}{
		{"http://exact-path-rules/foo", 200, "foo-exact"},
		{"http://exact-path-rules/foo/", 404, ""},
		{"http://exact-path-rules/FOO", 404, ""},
		{"http://exact-path-rules/bar", 404, ""},
		{"http://prefix-path-rules/foo", 200, "foo-prefix"},
		{"http://prefix-path-rules/foo/", 200, "foo-prefix"},
		{"http://prefix-path-rules/FOO", 404, ""},
		{"http://prefix-path-rules/aaa/bbb", 200, "aaa-slash-bbb-prefix"},
		{"http://prefix-path-rules/aaa/bbb/ccc", 200, "aaa-slash-bbb-prefix"},
		{"http://prefix-path-rules/aaa/ccc", 200, "aaa-prefix"},
		{"http://prefix-path-rules/aaaccc", 404, ""},
		{"http://mixed-path-rules/foo", 200, "foo-exact"},
		{"http://trailing-slash-path-rules/aaa/bbb", 200, "aaa-slash-bbb-slash-prefix"},
		{"http://trailing-slash-path-rules/aaa/bbb/", 200, "aaa-slash-bbb-slash-prefix"},
		{"http://trailing-slash-path-rules/foo", 404, ""},
	} {
		t.Run(c.url, func(t *testing.T) {
			expect(t, "GET", c.url, addr, nil, c.status, c.service)
		})
	}
}

func ingressClass(t *testing.T, e *env) {
	ns := e.newNamespace(t)
	e.deployIngress(t, ns, `
metadata: {name: test-ingress-class}
spec:
  ingressClassName: some-invalid-class-name
  rules:
  - host: ingress-class
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: ingress-class-prefix, port: {number: 8080}}}}
`, 1)
	// The upstream step waits a while and checks the status stays empty. Here: an Ingress
	// of our class made after it gets its address; by then ours would have had one too.
	e.deployIngress(t, ns, `
metadata: {name: control}
spec:
  rules:
  - host: control
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: ingress-class-prefix, port: {number: 8080}}}}
`, 0)
	e.address(t, ns, "control")
	ing, err := e.kube.NetworkingV1().Ingresses(ns).Get(context.Background(), "test-ingress-class", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ing.Status.LoadBalancer.Ingress) != 0 {
		t.Errorf("an Ingress of another class got an address: %v", ing.Status.LoadBalancer.Ingress)
	}
}

func loadBalancing(t *testing.T, e *env) {
	ns := e.newNamespace(t)
	e.deployIngress(t, ns, `
metadata: {name: load-balancing}
spec:
  defaultBackend:
    service:
      name: echo-service
      port: {number: 8080}
`, 10)
	addr := e.address(t, ns, "load-balancing")
	eventually(t, "10 ready pods behind echo-service", func() bool {
		d, err := e.kube.AppsV1().Deployments(ns).Get(context.Background(), "echo-service", metav1.GetOptions{})
		return err == nil && d.Status.ReadyReplicas == 10
	})
	pods := map[string]bool{}
	eventually(t, "100 requests reach 10 different pods", func() bool {
		pods = map[string]bool{}
		for range 100 {
			a, err := send("GET", "http://load-balancing", addr, nil)
			if err != nil || a.status != 200 {
				return false
			}
			pods[a.echo.Pod] = true
		}
		return len(pods) == 10
	})
}
