// Command nodeagent is the testbed's kubelet: it registers one Node that stays Ready and
// runs every Pod bound to it as plain processes, each Pod in its own network namespace with
// an address on the testbed bridge. It also serves the kubelet API for `kubectl logs` and
// gives LoadBalancer Services addresses from a pool.
//
// There are no containers: an image maps to a local binary by repository (images.go).
// virtual-kubelet's node library is not available from the module proxy here, and kwok
// fakes pod status rather than running processes, so the node and pod status plumbing is
// our own, kept small.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

type config struct {
	kubeconfig  string
	nodeName    string
	nodeIP      net.IP
	podCIDR     *net.IPNet
	bridge      string
	stateDir    string
	kubeletPort int
	lbCIDR      *net.IPNet
	images      string
	tlsCert     string
	tlsKey      string
	serviceHost string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "exec-container" {
		execContainer(os.Args[2:])
		return
	}
	var c config
	var nodeIP, podCIDR, lbCIDR string
	flag.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig of the API server")
	flag.StringVar(&c.nodeName, "node-name", "testbed", "name of the Node")
	flag.StringVar(&nodeIP, "node-ip", "198.18.0.1", "the node's address (the bridge address)")
	flag.StringVar(&podCIDR, "pod-cidr", "198.18.0.0/17", "pod addresses (the bridge subnet)")
	flag.StringVar(&c.bridge, "bridge", "tb0", "bridge pods attach to")
	flag.StringVar(&c.stateDir, "state-dir", "/var/lib/gatehouse-testbed/node", "pod logs and volumes")
	flag.IntVar(&c.kubeletPort, "kubelet-port", 10250, "kubelet API port")
	flag.StringVar(&lbCIDR, "lb-cidr", "198.19.0.0/16", "LoadBalancer addresses")
	flag.StringVar(&c.images, "images", "", "image table: lines of 'repository binary-path'")
	flag.StringVar(&c.tlsCert, "tls-cert", "", "kubelet API serving certificate")
	flag.StringVar(&c.tlsKey, "tls-key", "", "kubelet API serving key")
	flag.StringVar(&c.serviceHost, "kubernetes-service-host", "198.18.128.1", "KUBERNETES_SERVICE_HOST given to pods")
	flag.Parse()

	c.nodeIP = net.ParseIP(nodeIP)
	var err error
	if _, c.podCIDR, err = net.ParseCIDR(podCIDR); err != nil {
		log.Fatalf("--pod-cidr: %v", err)
	}
	if _, c.lbCIDR, err = net.ParseCIDR(lbCIDR); err != nil {
		log.Fatalf("--lb-cidr: %v", err)
	}
	images, err := loadImages(c.images)
	if err != nil {
		log.Fatalf("--images: %v", err)
	}
	rest, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		log.Fatalf("kubeconfig: %v", err)
	}
	rest.QPS, rest.Burst = 50, 100
	client, err := kubernetes.NewForConfig(rest)
	if err != nil {
		log.Fatalf("client: %v", err)
	}

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()

	agent := newAgent(c, client, images)
	if err := agent.registerNode(ctx); err != nil {
		log.Fatalf("register node: %v", err)
	}
	go agent.heartbeat(ctx)
	go agent.serveKubeletAPI(ctx)
	go runLoadBalancerAllocator(ctx, client, c.lbCIDR)
	agent.runPods(ctx)
	agent.stopAll()
	fmt.Fprintln(os.Stderr, "nodeagent stopped")
}
