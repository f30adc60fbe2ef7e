package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
)

// ipam hands out pod addresses from the bridge subnet, skipping the network address, the
// node (bridge) address and the broadcast address.
type ipam struct {
	mu     sync.Mutex
	subnet *net.IPNet
	node   net.IP
	used   map[string]bool
}

func newIPAM(subnet *net.IPNet, node net.IP) *ipam {
	return &ipam{subnet: subnet, node: node, used: map[string]bool{node.String(): true}}
}

func (p *ipam) allocate() (net.IP, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	base := binary.BigEndian.Uint32(p.subnet.IP.To4())
	ones, bits := p.subnet.Mask.Size()
	size := uint32(1) << uint(bits-ones)
	// Start at .10 so the first addresses stay free for infrastructure.
	for i := uint32(10); i < size-1; i++ {
		ip := make(net.IP, 4)
		binary.BigEndian.PutUint32(ip, base+i)
		if !p.used[ip.String()] {
			p.used[ip.String()] = true
			return ip, nil
		}
	}
	return nil, fmt.Errorf("pod subnet %s is full", p.subnet)
}

func (p *ipam) release(ip net.IP) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.used, ip.String())
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// podNetwork gives a pod its own network namespace with eth0 on the bridge.
func podNetwork(netns, hostVeth, bridge string, ip net.IP, subnet *net.IPNet, gateway net.IP) error {
	ones, _ := subnet.Mask.Size()
	_ = run("ip", "netns", "del", netns) // a leftover from a crashed agent
	_ = run("ip", "link", "del", hostVeth)
	steps := [][]string{
		{"ip", "netns", "add", netns},
		{"ip", "link", "add", hostVeth, "type", "veth", "peer", "name", "eth0", "netns", netns},
		{"ip", "link", "set", hostVeth, "master", bridge},
		{"ip", "link", "set", hostVeth, "up"},
		{"ip", "-n", netns, "addr", "add", fmt.Sprintf("%s/%d", ip, ones), "dev", "eth0"},
		{"ip", "-n", netns, "link", "set", "eth0", "up"},
		{"ip", "-n", netns, "link", "set", "lo", "up"},
		{"ip", "-n", netns, "route", "add", "default", "via", gateway.String()},
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			_ = run("ip", "netns", "del", netns)
			return err
		}
	}
	return nil
}

func deletePodNetwork(netns, hostVeth string) {
	_ = run("ip", "link", "del", hostVeth)
	_ = run("ip", "netns", "del", netns)
}
