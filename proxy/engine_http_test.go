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
	"net/netip"
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
	fe, ls, addr := startHTTPProxy(t, FrontendConfig{Name: "fe"}, l7.Config{}, s)
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
	// the client's bytes both ways reach the frontend's counters
	// (palisade_frontend_bytes_total) after each exchange
	waitFor(t, "frontend byte counters", 5*time.Second, func() bool {
		st := fe.Stats().Snapshot()
		return st.BytesIn == uint64(len("GET / HTTP/1.1\r\nHost: a\r\n\r\n")) && st.BytesOut > uint64(len("HTTP/1.1 200 OK\r\n"))
	})
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

// startHTTPProxy serves an http frontend (l7 cfg, default backend "be" of
// servers) on a loopback port, as the daemon does.
func startHTTPProxy(t *testing.T, fc FrontendConfig, cfg l7.Config, servers ...*state.Server) (*Frontend, *Listeners, string) {
	t.Helper()
	fe, ls, addr := startHTTPFrontend(t, fc, cfg, servers...)
	if !fe.engineServed() {
		t.Fatal("a plain http frontend is not served by the event loops")
	}
	return fe, ls, addr
}

// startHTTPFrontend serves an http frontend (plain or TLS) over servers on
// a fresh loopback port.
func startHTTPFrontend(t *testing.T, fc FrontendConfig, cfg l7.Config, servers ...*state.Server) (*Frontend, *Listeners, string) {
	t.Helper()
	b, err := NewBackend(BackendConfig{Name: "be", Balance: "roundrobin"}, servers, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := l7.NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Frontend, cfg.DefaultBackend = fc.Name, "be"
	h, err := l7.New(cfg, HTTPBackends{"be": NewHTTPBackend(b)}, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	fe := NewFrontend(fc, b, h, NewStatsStore().Get(fc.Name), nil, log)
	ls := NewListeners(log)
	p := &testProxy{ls: ls, fe: fe}
	t.Cleanup(p.stop)
	if err := ls.Apply(map[string]TCPHandler{"127.0.0.1:0": fe}); err != nil {
		t.Fatal(err)
	}
	return fe, ls, ls.Addrs()["127.0.0.1:0"].String()
}

// An http frontend with proxy_protocol.accept, on the event loops: the
// client named by the header is the one forwarded and checked against the
// ACL; a missing, bad or late header is refused and counted.
func TestHTTPOnEngineAcceptProxy(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *net.TCPConn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			xff := req.Header.Get("X-Forwarded-For")
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(xff), xff)
		}
	})
	s := newServer("a", srv.addr)
	fe, _, addr := startHTTPProxy(t, FrontendConfig{Name: "fe", AcceptProxy: true, ProxyTimeout: 300 * time.Millisecond,
		Deny: []netip.Prefix{netip.MustParsePrefix("192.0.2.66/32")}}, l7.Config{Forwarded: true}, s)

	c := dial(t, addr)
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "PROXY TCP4 192.0.2.7 198.51.100.1 40000 80\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
	for i := range 2 { // the header counts for the whole connection
		if i > 0 {
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d after a PROXY header: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "192.0.2.7" {
			t.Fatalf("request %d: %d, server saw X-Forwarded-For %q; want 192.0.2.7", i, resp.StatusCode, b)
		}
	}

	refused := func(what, send string) {
		t.Helper()
		c := dial(t, addr)
		if send != "" {
			io.WriteString(c, send)
		}
		if b, err := io.ReadAll(c); len(b) > 0 || err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%s: read %q, %v; want the connection closed", what, b, err)
		}
	}
	refused("client denied by its PROXY source", "PROXY TCP4 192.0.2.66 198.51.100.1 40000 80\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
	refused("no PROXY header", "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	refused("no header within proxy_protocol.timeout", "")
	st := fe.Stats().Snapshot()
	if st.Rejected["acl"] != 1 || st.Rejected["proxy_protocol"] != 2 {
		t.Errorf("rejections %v; want 1 acl, 2 proxy_protocol", st.Rejected)
	}
}
