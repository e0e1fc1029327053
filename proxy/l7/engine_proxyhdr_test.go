package l7

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// With proxy_protocol.accept, a client that leaves before sending a whole
// PROXY header is a refused connection, counted as on the goroutine path
// (Frontend.ServeTCP) and the tcp engine (esession.readHeader).
func TestEngineProxyHeaderEOFRefused(t *testing.T) {
	if !onEngine {
		t.Skip("engine only")
	}
	m, _ := NewMetrics(nil)
	h, err := New(Config{Frontend: "web", DefaultBackend: "app"}, fakeBackends{"app": {name: "app"}}, m, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	lp, err := newTestLoop()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var refused atomic.Int64
	adm := &EngineOptions{ProxyHeader: true, ProxyTimeout: 10 * time.Second, Admit: func(_ netip.AddrPort, ok bool) bool {
		if !ok {
			refused.Add(1)
		}
		return ok
	}}
	defer func() { h.Close(); lp.stop() }()
	for i, pre := range []string{"", "PROXY TCP4 1.2.3.4"} {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		sc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		ap := sc.RemoteAddr().(*net.TCPAddr).AddrPort()
		fd := detachFD(t, sc.(*net.TCPConn))
		done := make(chan struct{})
		lp.Post(func() { h.ServeEngine(t.Context(), lp, fd, ap, adm, func() { close(done) }) })
		if pre != "" {
			c.Write([]byte(pre))
		}
		c.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("connection not ended")
		}
		if n := refused.Load(); n != int64(i+1) {
			t.Errorf("client left after %q: %d refusals counted, want %d (as ServeTCP and the tcp engine count RejectProxyProtocol)", pre, n, i+1)
			refused.Store(int64(i + 1))
		}
	}
}
