package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type fakeResolver struct {
	mu    sync.Mutex
	addrs []netip.Addr
	err   error
	calls int
}

func (f *fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if host != "app.internal" {
		return nil, fmt.Errorf("unexpected host %q", host)
	}
	return f.addrs, f.err
}

func (f *fakeResolver) set(addrs []netip.Addr, err error) {
	f.mu.Lock()
	f.addrs, f.err = addrs, err
	f.mu.Unlock()
}

func (f *fakeResolver) count() int { f.mu.Lock(); defer f.mu.Unlock(); return f.calls }

// TestHostNamesReResolved: a server given by name is resolved at once and
// again every resolve_interval; a failed lookup keeps the last address.
func TestHostNamesReResolved(t *testing.T) {
	b1 := startBackend(t, "one")
	ap1 := netip.MustParseAddrPort(b1.addr)
	// the second backend listens on another loopback address with the same
	// port, so moving the name from one address to the other moves traffic
	ln, err := net.Listen("tcp", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), ap1.Port()).String())
	if err != nil {
		t.Skipf("127.0.0.2:%d not available: %v", ap1.Port(), err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); serveEcho(ln, "two", &wg) }()
	defer func() { ln.Close(); wg.Wait() }()

	fr := &fakeResolver{addrs: []netip.Addr{ap1.Addr()}}
	listen := freeAddr(t)
	path := tempConfig(t)
	writeConfig(t, path, fmt.Sprintf(`
global: {log: {level: warn}}
frontends: [{name: fe, listen: [%q], default_backend: be}]
backends:
  - name: be
    resolve_interval: 1s
    health: {type: none}
    servers: [{name: s, address: "app.internal:%d"}]
`, listen, ap1.Port()))
	d, err := New(Options{ConfigPath: path, Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Registry: prometheus.NewRegistry(), Resolver: fr})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	resolved := func() string {
		v, err := d.Backend("be")
		if err != nil {
			return ""
		}
		return v.Servers[0].Resolved
	}
	waitFor(t, "first resolution", 5*time.Second, func() bool { return resolved() == b1.addr })
	if name, err := exchange(listen, "x"); err != nil || name != "one" {
		t.Fatalf("via resolved name: %q %v", name, err)
	}
	fr.set(nil, errors.New("SERVFAIL"))
	n := fr.count()
	waitFor(t, "a failed lookup", 5*time.Second, func() bool { return fr.count() > n })
	if got := resolved(); got != b1.addr {
		t.Fatalf("after a failed lookup the address is %q, want the last good %q", got, b1.addr)
	}
	if name, err := exchange(listen, "x"); err != nil || name != "one" {
		t.Fatalf("after a failed lookup: %q %v", name, err)
	}
	fr.set([]netip.Addr{netip.MustParseAddr("::1"), netip.MustParseAddr("127.0.0.2")}, nil)
	waitFor(t, "the new address", 5*time.Second, func() bool { return resolved() == ln.Addr().String() })
	if name, err := exchange(listen, "x"); err != nil || name != "two" {
		t.Fatalf("after the name moved (IPv4 preferred): %q %v", name, err)
	}
}
