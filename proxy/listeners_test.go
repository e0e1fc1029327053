package proxy

import (
	"context"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDeferAcceptFollowsConfig: with DeferAccept the kernel holds a
// connection whose client has sent nothing, and hands it over once bytes
// come; a reload that turns it off clears it on the same socket.
func TestDeferAcceptFollowsConfig(t *testing.T) {
	srv := startServer(t, echo)
	p := startProxy(t, FrontendConfig{DeferAccept: true}, BackendConfig{}, newServer("s1", srv.addr))
	const key = "127.0.0.1:0"
	deferSecs := func() int {
		t.Helper()
		p.ls.mu.Lock()
		fd := p.ls.byAddr[key].fd
		p.ls.mu.Unlock()
		v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := deferSecs(); v <= 0 {
		t.Fatalf("TCP_DEFER_ACCEPT is %d with DeferAccept, want > 0", v)
	}

	// The silent client's handshake is done before the talking one's, so
	// without the option the loop would accept it first.
	silent := dial(t, p.addr)
	dialed := time.Now()
	if err := echoLine(dial(t, p.addr), "talking"); err != nil {
		t.Fatal(err)
	}
	// the kernel hands a silent client over after about a second
	if got := p.stats().Total; got != 1 && time.Since(dialed) < 500*time.Millisecond {
		t.Fatalf("%d connections accepted after one client sent bytes and one did not, want 1", got)
	}
	if err := echoLine(silent, "late"); err != nil {
		t.Fatalf("the held connection, once it sent bytes: %v", err)
	}
	if got := p.stats().Total; got != 2 {
		t.Fatalf("%d connections accepted, want 2", got)
	}

	fc := p.fe.cfg
	fc.DeferAccept = false
	fe := NewFrontend(fc, p.fe.backend, nil, p.fe.stats, p.fe, p.fe.log)
	if err := p.ls.Apply(map[string]TCPHandler{key: fe}); err != nil {
		t.Fatal(err)
	}
	old := p.fe
	p.fe = fe // stop drains the new generation
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		old.Drain(ctx)
	})
	if v := deferSecs(); v != 0 {
		t.Fatalf("TCP_DEFER_ACCEPT is %d after a reload without DeferAccept, want 0", v)
	}
	dial(t, p.addr)
	waitFor(t, "a silent client accepted without DeferAccept", 5*time.Second, func() bool { return p.stats().Total == 3 })
}
