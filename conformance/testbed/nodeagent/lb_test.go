package main

import (
	"net"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestLoadBalancerHonoursAChangedRequestInThePool(t *testing.T) {
	_, pool, _ := net.ParseCIDR("198.19.0.0/24")
	svc := func(requested, assigned string) *corev1.Service {
		s := &corev1.Service{}
		s.Spec.LoadBalancerIP = requested
		if assigned != "" {
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: assigned}}
		}
		return s
	}
	cases := []struct {
		requested, assigned string
		want                bool
	}{
		{"", "", true},                        // nothing yet
		{"198.19.0.9", "", true},              // nothing yet, a request
		{"", "198.19.0.1", false},             // has one, asks nothing
		{"198.19.0.9", "198.19.0.9", false},   // has what it asked
		{"198.19.0.9", "198.19.0.1", true},    // asks for another in the pool
		{"198.51.100.7", "198.19.0.1", false}, // asks for one outside the pool: keeps its own
	}
	for _, c := range cases {
		if got := needsAddress(svc(c.requested, c.assigned), pool); got != c.want {
			t.Errorf("requested %q assigned %q: needsAddress = %v, want %v", c.requested, c.assigned, got, c.want)
		}
	}
	used := map[string]bool{"198.19.0.1": true}
	if got := nextFree(pool, used, "198.51.100.7"); got != "198.19.0.2" {
		t.Errorf("a request outside the pool gets the lowest free address, got %q", got)
	}
	if got := nextFree(pool, used, "198.19.0.9"); got != "198.19.0.9" {
		t.Errorf("a free address in the pool is given as asked, got %q", got)
	}
}
