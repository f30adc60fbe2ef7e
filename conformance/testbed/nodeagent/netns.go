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
// node (bridge) address and the broadcast address. Like the host-local CNI plugin it goes
// on from the last address it gave out instead of reusing the lowest free one: an address
// freed a moment ago may still sit in a peer's ARP cache with the old pod's MAC, and a new
// pod behind it would be unreachable until that entry expires.
type ipam struct {
	mu     sync.Mutex
	subnet *net.IPNet
	node   net.IP
	used   map[string]bool
	last   uint32
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
	// From .10 so the first addresses stay free for infrastructure.
	const first = uint32(10)
	span := size - 1 - first
	for k := uint32(1); k <= span; k++ {
		i := first + (p.last-first+k)%span
		if p.last < first {
			i = first + (k-1)%span
		}
		ip := make(net.IP, 4)
		binary.BigEndian.PutUint32(ip, base+i)
		if !p.used[ip.String()] {
			p.used[ip.String()] = true
			p.last = i
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
	// Forget any MAC an earlier pod with this address left in the node's ARP cache.
	_ = run("ip", "neigh", "flush", "to", ip.String())
	return nil
}

func deletePodNetwork(netns, hostVeth string) {
	_ = run("ip", "link", "del", hostVeth)
	_ = run("ip", "netns", "del", netns)
}
