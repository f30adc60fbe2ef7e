package main

import (
	"net"
	"testing"
)

// A freed address is not handed out again while others are free: a peer's ARP cache may
// still map it to the old pod.
func TestIPAMDoesNotReuseAFreedAddressAtOnce(t *testing.T) {
	_, subnet, _ := net.ParseCIDR("198.18.0.0/28")
	p := newIPAM(subnet, net.ParseIP("198.18.0.1"))
	a, err := p.allocate()
	if err != nil || a.String() != "198.18.0.10" {
		t.Fatalf("first address %v, %v", a, err)
	}
	p.release(a)
	b, _ := p.allocate()
	if b.Equal(a) {
		t.Fatalf("reused %v at once", a)
	}
	// Addresses .10 to .14 exist (.15 is broadcast): after the end, back to the start.
	for _, want := range []string{"198.18.0.12", "198.18.0.13", "198.18.0.14", "198.18.0.10"} {
		got, err := p.allocate()
		if err != nil || got.String() != want {
			t.Fatalf("got %v, %v; want %s", got, err, want)
		}
	}
	if _, err := p.allocate(); err == nil {
		t.Fatal("a full subnet gave out an address")
	}
}
