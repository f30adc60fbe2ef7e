package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// env resolves a container's environment: the service variables a kubelet adds, envFrom,
// then env (value, fieldRef, secretKeyRef, configMapKeyRef), plus PATH from the host.
func (p *podRuntime) env(pod *corev1.Pod, c corev1.Container) ([]string, error) {
	ctx := context.Background()
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	set("PATH", os.Getenv("PATH"))
	set("HOME", "/root")
	set("HOSTNAME", pod.Name)
	set("KUBERNETES_SERVICE_HOST", p.a.cfg.serviceHost)
	set("KUBERNETES_SERVICE_PORT", "443")
	set("KUBERNETES_PORT", "tcp://"+p.a.cfg.serviceHost+":443")
	// Service links, as the kubelet gives them: NAME_SERVICE_HOST/PORT for every Service of
	// the pod's namespace (the testbed has no cluster DNS).
	if pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks {
		if svcs, err := p.a.client.CoreV1().Services(pod.Namespace).List(ctx, metav1.ListOptions{}); err == nil {
			for _, svc := range svcs.Items {
				if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == "None" || len(svc.Spec.Ports) == 0 {
					continue
				}
				prefix := strings.ToUpper(strings.ReplaceAll(svc.Name, "-", "_"))
				set(prefix+"_SERVICE_HOST", svc.Spec.ClusterIP)
				set(prefix+"_SERVICE_PORT", strconv.Itoa(int(svc.Spec.Ports[0].Port)))
				for _, port := range svc.Spec.Ports {
					if port.Name != "" {
						set(prefix+"_SERVICE_PORT_"+strings.ToUpper(strings.ReplaceAll(port.Name, "-", "_")), strconv.Itoa(int(port.Port)))
					}
				}
			}
		}
	}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm, err := p.a.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, from.ConfigMapRef.Name, metav1.GetOptions{})
			if err != nil {
				if ptr.Deref(from.ConfigMapRef.Optional, false) {
					continue
				}
				return nil, fmt.Errorf("envFrom configMap %s: %v", from.ConfigMapRef.Name, err)
			}
			for k, v := range cm.Data {
				set(from.Prefix+k, v)
			}
		case from.SecretRef != nil:
			s, err := p.a.client.CoreV1().Secrets(pod.Namespace).Get(ctx, from.SecretRef.Name, metav1.GetOptions{})
			if err != nil {
				if ptr.Deref(from.SecretRef.Optional, false) {
					continue
				}
				return nil, fmt.Errorf("envFrom secret %s: %v", from.SecretRef.Name, err)
			}
			for k, v := range s.Data {
				set(from.Prefix+k, string(v))
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, e.Value)
			continue
		}
		v, err := p.valueFrom(ctx, pod, e.ValueFrom)
		if err != nil {
			return nil, fmt.Errorf("env %s: %v", e.Name, err)
		}
		set(e.Name, v)
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vars[k])
	}
	return out, nil
}

func (p *podRuntime) valueFrom(ctx context.Context, pod *corev1.Pod, src *corev1.EnvVarSource) (string, error) {
	switch {
	case src.FieldRef != nil:
		p.mu.Lock()
		ip := p.ip
		p.mu.Unlock()
		switch src.FieldRef.FieldPath {
		case "metadata.name":
			return pod.Name, nil
		case "metadata.namespace":
			return pod.Namespace, nil
		case "metadata.uid":
			return string(pod.UID), nil
		case "spec.nodeName":
			return pod.Spec.NodeName, nil
		case "spec.serviceAccountName":
			return pod.Spec.ServiceAccountName, nil
		case "status.podIP":
			return ip.String(), nil
		case "status.hostIP":
			return p.a.cfg.nodeIP.String(), nil
		}
		return "", fmt.Errorf("fieldRef %s is not supported", src.FieldRef.FieldPath)
	case src.SecretKeyRef != nil:
		s, err := p.a.client.CoreV1().Secrets(pod.Namespace).Get(ctx, src.SecretKeyRef.Name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		v, ok := s.Data[src.SecretKeyRef.Key]
		if !ok {
			return "", fmt.Errorf("secret %s has no key %s", src.SecretKeyRef.Name, src.SecretKeyRef.Key)
		}
		return string(v), nil
	case src.ConfigMapKeyRef != nil:
		cm, err := p.a.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, src.ConfigMapKeyRef.Name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		v, ok := cm.Data[src.ConfigMapKeyRef.Key]
		if !ok {
			return "", fmt.Errorf("configMap %s has no key %s", src.ConfigMapKeyRef.Name, src.ConfigMapKeyRef.Key)
		}
		return v, nil
	}
	return "", fmt.Errorf("unsupported valueFrom")
}

// materializeVolumes writes secret, configMap, projected and emptyDir volumes under the
// pod's directory; containers see them at their mountPaths (exec-container bind-mounts).
func (p *podRuntime) materializeVolumes() error {
	ctx := context.Background()
	pod := p.snapshot()
	for _, v := range pod.Spec.Volumes {
		dir := filepath.Join(p.dir, "volumes", v.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		switch {
		case v.EmptyDir != nil:
		case v.Secret != nil:
			s, err := p.a.client.CoreV1().Secrets(pod.Namespace).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
			if err != nil {
				if ptr.Deref(v.Secret.Optional, false) {
					continue
				}
				return fmt.Errorf("volume %s: secret %s: %v", v.Name, v.Secret.SecretName, err)
			}
			if err := writeKeys(dir, bytesMap(s.Data), v.Secret.Items); err != nil {
				return err
			}
		case v.ConfigMap != nil:
			cm, err := p.a.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
			if err != nil {
				if ptr.Deref(v.ConfigMap.Optional, false) {
					continue
				}
				return fmt.Errorf("volume %s: configMap %s: %v", v.Name, v.ConfigMap.Name, err)
			}
			if err := writeKeys(dir, cm.Data, v.ConfigMap.Items); err != nil {
				return err
			}
		case v.Projected != nil:
			if err := p.projected(ctx, pod, dir, v.Projected); err != nil {
				return fmt.Errorf("volume %s: %v", v.Name, err)
			}
		default:
			return fmt.Errorf("volume %s: only secret, configMap, projected and emptyDir volumes are supported", v.Name)
		}
	}
	return nil
}

// projected covers what the ServiceAccount admission plugin adds to every pod: a token, the
// cluster CA (configMap kube-root-ca.crt) and the namespace (downwardAPI).
func (p *podRuntime) projected(ctx context.Context, pod *corev1.Pod, dir string, v *corev1.ProjectedVolumeSource) error {
	for _, src := range v.Sources {
		switch {
		case src.ServiceAccountToken != nil:
			tr, err := p.a.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, pod.Spec.ServiceAccountName, &authv1.TokenRequest{
				Spec: authv1.TokenRequestSpec{
					Audiences:         nonEmpty(src.ServiceAccountToken.Audience),
					ExpirationSeconds: ptr.To(int64(86400)),
					BoundObjectRef:    &authv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
				},
			}, metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("service account token: %v", err)
			}
			if err := os.WriteFile(filepath.Join(dir, src.ServiceAccountToken.Path), []byte(tr.Status.Token), 0o644); err != nil {
				return err
			}
		case src.ConfigMap != nil:
			cm, err := p.a.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, src.ConfigMap.Name, metav1.GetOptions{})
			if err != nil {
				if ptr.Deref(src.ConfigMap.Optional, false) {
					continue
				}
				return fmt.Errorf("configMap %s: %v", src.ConfigMap.Name, err)
			}
			if err := writeKeys(dir, cm.Data, src.ConfigMap.Items); err != nil {
				return err
			}
		case src.Secret != nil:
			s, err := p.a.client.CoreV1().Secrets(pod.Namespace).Get(ctx, src.Secret.Name, metav1.GetOptions{})
			if err != nil {
				if ptr.Deref(src.Secret.Optional, false) {
					continue
				}
				return fmt.Errorf("secret %s: %v", src.Secret.Name, err)
			}
			if err := writeKeys(dir, bytesMap(s.Data), src.Secret.Items); err != nil {
				return err
			}
		case src.DownwardAPI != nil:
			for _, item := range src.DownwardAPI.Items {
				if item.FieldRef == nil {
					continue
				}
				v, err := p.valueFrom(ctx, pod, &corev1.EnvVarSource{FieldRef: item.FieldRef})
				if err != nil {
					return err
				}
				if err := writeFile(filepath.Join(dir, item.Path), v); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

func bytesMap(m map[string][]byte) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}

func writeKeys(dir string, data map[string]string, items []corev1.KeyToPath) error {
	if len(items) == 0 {
		for k, v := range data {
			if err := writeFile(filepath.Join(dir, k), v); err != nil {
				return err
			}
		}
		return nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			return fmt.Errorf("key %s not found", it.Key)
		}
		if err := writeFile(filepath.Join(dir, it.Path), v); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(path, v string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(v), 0o644)
}

// portNumber resolves a probe port (number or container port name).
func portNumber(c corev1.Container, port string) (int, error) {
	if n, err := strconv.Atoi(port); err == nil {
		return n, nil
	}
	for _, cp := range c.Ports {
		if cp.Name == port {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("container %s has no port named %s", c.Name, port)
}
