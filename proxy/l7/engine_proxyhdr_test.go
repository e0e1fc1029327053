package l7

import (
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
	eh := newEngineHarness(t, fakeBackends{"app": {name: "app"}})
	var refused atomic.Int64
	adm := &EngineOptions{ProxyHeader: true, ProxyTimeout: 10 * time.Second, Admit: func(_ netip.AddrPort, ok bool) bool {
		if !ok {
			refused.Add(1)
		}
		return ok
	}}
	for i, pre := range []string{"", "PROXY TCP4 1.2.3.4"} {
		c, _, done := eh.serve(t, adm)
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
