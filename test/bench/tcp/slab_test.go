package main

import (
	"maps"
	"net"
	"slices"
	"testing"
)

func TestSlabGrowth(t *testing.T) {
	before := map[string]int64{"TCP": 1000, "filp": 500, "gone": 300, "same": 7}
	after := map[string]int64{"TCP": 5096, "filp": 400, "new": 2048, "same": 7}
	g := slabGrowth(before, after)
	want := map[string]int64{"TCP": 4096, "filp": -100, "new": 2048, "gone": -300}
	if !maps.Equal(g, want) {
		t.Errorf("slabGrowth = %v, want %v", g, want)
	}
	r := idleResult{slabByCache: g}
	if top := r.topSlab(2); !slices.Equal(top, []string{"TCP +4 KiB", "new +2 KiB"}) {
		t.Errorf("topSlab(2) = %q", top)
	}
	if top := r.topSlab(10); len(top) != 4 {
		t.Errorf("topSlab(10) gave %d caches, want all 4", len(top))
	}
}

// TestSlabInUse reads this machine's /proc/slabinfo (root only).
// With a TCP connection of its own open, the TCP socket cache has objects
// in use.
func TestSlabInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m, err := slabInUse()
	if err != nil {
		t.Skipf("/proc/slabinfo not readable (needs root): %v", err)
	}
	if m["TCP"] <= 0 {
		t.Errorf("no TCP socket in use in /proc/slabinfo's TCP cache (%d caches read)", len(m))
	}
}

func TestTCPAlloc(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	n, err := tcpAlloc()
	if err != nil {
		t.Fatal(err)
	}
	if n < 1 {
		t.Errorf("TCP alloc %d with a listener open, want at least 1", n)
	}
}

func TestTCPOutSegs(t *testing.T) {
	if tcpOutSegs() <= 0 {
		t.Error("tcpOutSegs: no count read from /proc/net/snmp")
	}
}
