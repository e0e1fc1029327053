package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-lb/palisade/internal/state"
	"github.com/palisade-lb/palisade/proxy/l7"
)

// An http frontend without TLS runs on the event loops: requests are served
// there, a drain closes idle keep-alive connections at once and, when its
// context ends, aborts the busy ones, giving their server slots back.
func TestHTTPOnEngineDrain(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *net.TCPConn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/hang" {
				_, _ = io.Copy(io.Discard, br)
				return
			}
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	s := newServer("a", srv.addr)
	b, err := NewBackend(BackendConfig{Name: "be", Balance: "roundrobin"}, []*state.Server{s}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := l7.NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := l7.New(l7.Config{Frontend: "fe", DefaultBackend: "be"}, HTTPBackends{"be": NewHTTPBackend(b)}, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	fe := NewFrontend(FrontendConfig{Name: "fe"}, b, h, NewStatsStore().Get("fe"), nil, log)
	if !fe.engineServed() {
		t.Fatal("a plain http frontend is not served by the event loops")
	}
	ls := NewListeners(log)
	p := &testProxy{ls: ls, fe: fe}
	t.Cleanup(p.stop)
	if err := ls.Apply(map[string]TCPHandler{"127.0.0.1:0": fe}); err != nil {
		t.Fatal(err)
	}
	addr := ls.Addrs()["127.0.0.1:0"].String()
	if l := ls.byAddr["127.0.0.1:0"]; l == nil || !l.onEngine {
		t.Fatal("the http listener is not attached to the event loops")
	}

	idle := dial(t, addr)
	ibr := bufio.NewReader(idle)
	fmt.Fprintf(idle, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(ibr, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /: %v %v", resp, err)
	}
	_, _ = io.ReadAll(resp.Body)
	busy := dial(t, addr)
	fmt.Fprintf(busy, "GET /hang HTTP/1.1\r\nHost: a\r\n\r\n")
	waitFor(t, "the request at the server", 5*time.Second, func() bool { return s.Conns() == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	drained := make(chan struct{})
	go func() {
		fe.Drain(ctx)
		close(drained)
	}()
	_ = idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := ibr.ReadByte(); err != io.EOF {
		t.Fatalf("idle keep-alive connection during a drain: %v, want EOF", err)
	}
	select {
	case <-drained:
	case <-time.After(10 * time.Second):
		t.Fatal("Drain did not return within 10s")
	}
	if _, err := io.ReadAll(busy); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("busy connection after a forced drain: %v, want it closed", err)
	}
	if st := fe.Stats().Snapshot(); st.Current != 0 || fe.Active() != 0 || s.Conns() != 0 {
		t.Errorf("after Drain: %d current, %d active, %d server connections; want none", st.Current, fe.Active(), s.Conns())
	}
}
