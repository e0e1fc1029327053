package healthcheck

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type seenRequest struct {
	method, uri, host, sni, ua, conn string
}

type httpTarget struct {
	srv    *httptest.Server
	status atomic.Int32
	body   atomic.Value // string
	mu     sync.Mutex
	seen   []seenRequest
	conns  atomic.Int32
}

func newHTTPTarget(t *testing.T, tlsOn bool) *httpTarget {
	t.Helper()
	h := &httpTarget{}
	h.status.Store(200)
	h.body.Store("ok")
	h.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sr := seenRequest{method: r.Method, uri: r.RequestURI, host: r.Host, ua: r.UserAgent(), conn: r.Header.Get("Connection")}
		if r.TLS != nil {
			sr.sni = r.TLS.ServerName
		}
		h.mu.Lock()
		h.seen = append(h.seen, sr)
		h.mu.Unlock()
		if r.URL.Path == "/slow" {
			<-r.Context().Done()
			return
		}
		w.WriteHeader(int(h.status.Load()))
		_, _ = io.WriteString(w, h.body.Load().(string))
	}))
	h.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake errors are expected here
	h.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			h.conns.Add(1)
		}
	}
	if tlsOn {
		h.srv.StartTLS()
	} else {
		h.srv.Start()
	}
	t.Cleanup(h.srv.Close)
	return h
}

func (h *httpTarget) addr() string { return h.srv.Listener.Addr().String() }

func (h *httpTarget) last(t *testing.T) seenRequest {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.seen) == 0 {
		t.Fatal("no request seen")
	}
	return h.seen[len(h.seen)-1]
}

func mustNew(t *testing.T, spec Spec, addr string) Checker {
	t.Helper()
	c, err := New(spec, static(addr))
	if err != nil {
		t.Fatalf("New(%+v): %v", spec, err)
	}
	return c
}

func TestHTTPChecker(t *testing.T) {
	h := newHTTPTarget(t, false)
	ctx := func() context.Context { return checkCtx(t, 2*time.Second) }

	c := mustNew(t, Spec{Type: TypeHTTP, Path: "/healthz?full=1"}, h.addr())
	r := c.Check(ctx())
	if !r.OK || r.Reason != "status 200" || r.Duration <= 0 {
		t.Errorf("200: %+v", r)
	}
	got := h.last(t)
	want := seenRequest{method: "GET", uri: "/healthz?full=1", host: "127.0.0.1", ua: "palisade-check", conn: "close"}
	if got != want {
		t.Errorf("request %+v, want %+v", got, want)
	}

	h.status.Store(503)
	if r := c.Check(ctx()); r.OK || r.Reason != "status 503" {
		t.Errorf("503: %+v", r)
	}
	h.status.Store(302)
	if r := c.Check(ctx()); !r.OK || r.Reason != "status 302" {
		t.Errorf("302 within the default 200-399: %+v", r)
	}

	// Every check opens a fresh connection.
	if n := h.conns.Load(); n != 3 {
		t.Errorf("%d connections for 3 checks", n)
	}

	c = mustNew(t, Spec{Type: TypeHTTP, Method: "HEAD", Host: "app.example:8080", ExpectStatus: "200,204,300-301"}, h.addr())
	h.status.Store(204)
	if r := c.Check(ctx()); !r.OK {
		t.Errorf("204 in list: %+v", r)
	}
	if got := h.last(t); got.method != "HEAD" || got.host != "app.example:8080" {
		t.Errorf("request %+v", got)
	}
	h.status.Store(302)
	if r := c.Check(ctx()); r.OK || r.Reason != "status 302" {
		t.Errorf("302 outside list: %+v", r)
	}
}

func TestHTTPCheckerBody(t *testing.T) {
	h := newHTTPTarget(t, false)
	c := mustNew(t, Spec{Type: TypeHTTP, ExpectBody: "\"status\":\"green\""}, h.addr())
	h.body.Store(`{"cluster":"x","status":"green"}`)
	if r := c.Check(checkCtx(t, 2*time.Second)); !r.OK {
		t.Errorf("body match: %+v", r)
	}
	h.body.Store(`{"status":"red"}`)
	r := c.Check(checkCtx(t, 2*time.Second))
	if r.OK || r.Reason != `status 200, body does not contain "\"status\":\"green\""` {
		t.Errorf("body mismatch: %+v", r)
	}
	// Only the first 64 KiB are searched.
	h.body.Store(strings.Repeat("x", maxBodyScan) + `"status":"green"`)
	if r := c.Check(checkCtx(t, 2*time.Second)); r.OK {
		t.Errorf("match beyond 64 KiB passed: %+v", r)
	}
	// A match across read boundaries is found.
	h.body.Store(strings.Repeat("y", 4095) + `"status":"green"`)
	if r := c.Check(checkCtx(t, 2*time.Second)); !r.OK {
		t.Errorf("match across chunks: %+v", r)
	}
}

func TestHTTPCheckerFailures(t *testing.T) {
	h := newHTTPTarget(t, false)
	c := mustNew(t, Spec{Type: TypeHTTP, Path: "/slow"}, h.addr())
	start := time.Now()
	r := c.Check(checkCtx(t, 200*time.Millisecond))
	if r.OK || r.Reason != "read: timeout" {
		t.Errorf("slow server: %+v", r)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("check took %s with a 200ms timeout", el)
	}

	c = mustNew(t, Spec{Type: TypeHTTP}, deadAddr(t))
	if r := c.Check(checkCtx(t, time.Second)); r.OK || r.Reason != "connect: connection refused" {
		t.Errorf("refused: %+v", r)
	}

	// A server that is not HTTP.
	addr := serveTCP(t, func(c net.Conn) {
		_, _ = c.Read(make([]byte, 512))
		_, _ = io.WriteString(c, "SSH-2.0-OpenSSH_9.6\r\n")
	})
	c = mustNew(t, Spec{Type: TypeHTTP}, addr)
	if r := c.Check(checkCtx(t, time.Second)); r.OK || !strings.HasPrefix(r.Reason, "read: ") {
		t.Errorf("non-HTTP server: %+v", r)
	}
	// A server with endless headers.
	addr = serveTCP(t, func(c net.Conn) {
		_, _ = c.Read(make([]byte, 512))
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n")
		line := []byte("X-Filler: " + strings.Repeat("f", 1000) + "\r\n")
		for i := 0; i < 2000; i++ {
			if _, err := c.Write(line); err != nil {
				return
			}
		}
	})
	c = mustNew(t, Spec{Type: TypeHTTP}, addr)
	if r := c.Check(checkCtx(t, 5*time.Second)); r.OK || r.Reason != "read: response headers larger than 1 MiB" {
		t.Errorf("endless headers: %+v", r)
	}
	// A server that reads the request and closes without answering.
	addr = serveTCP(t, func(c net.Conn) { _, _ = c.Read(make([]byte, 4096)) })
	c = mustNew(t, Spec{Type: TypeHTTP}, addr)
	if r := c.Check(checkCtx(t, time.Second)); r.OK || r.Reason != "read: connection closed by server" {
		t.Errorf("closing server: %+v", r)
	}
}

func writeCA(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "ca.pem")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestHTTPSChecker(t *testing.T) {
	h := newHTTPTarget(t, true)
	ca := writeCA(t, h.srv)
	ctx := func() context.Context { return checkCtx(t, 2*time.Second) }

	// No verification (the default): any certificate is accepted.
	c := mustNew(t, Spec{Type: TypeHTTPS, TLS: TLSSpec{SNI: "www.example.org"}}, h.addr())
	if r := c.Check(ctx()); !r.OK || r.Reason != "status 200" {
		t.Errorf("unverified: %+v", r)
	}
	if got := h.last(t); got.sni != "www.example.org" {
		t.Errorf("SNI %q, want www.example.org", got.sni)
	}

	// Verification with the CA file; httptest's certificate is valid for
	// example.com and 127.0.0.1.
	c = mustNew(t, Spec{Type: TypeHTTPS, TLS: TLSSpec{SNI: "example.com", Verify: true, CA: ca}}, h.addr())
	if r := c.Check(ctx()); !r.OK {
		t.Errorf("verified with SNI example.com: %+v", r)
	}
	// SNI defaults to the Host header's host.
	c = mustNew(t, Spec{Type: TypeHTTPS, Host: "example.com:443", TLS: TLSSpec{Verify: true, CA: ca}}, h.addr())
	if r := c.Check(ctx()); !r.OK {
		t.Errorf("SNI from Host: %+v", r)
	}
	if got := h.last(t); got.sni != "example.com" || got.host != "example.com:443" {
		t.Errorf("request %+v", got)
	}
	// Without SNI or Host: the server's IP is verified, and no SNI is sent.
	c = mustNew(t, Spec{Type: TypeHTTPS, TLS: TLSSpec{Verify: true, CA: ca}}, h.addr())
	if r := c.Check(ctx()); !r.OK {
		t.Errorf("verified by IP: %+v", r)
	}
	if got := h.last(t); got.sni != "" {
		t.Errorf("SNI %q sent for an IP address", got.sni)
	}

	// A name the certificate does not cover fails verification.
	c = mustNew(t, Spec{Type: TypeHTTPS, TLS: TLSSpec{SNI: "wrong.test", Verify: true, CA: ca}}, h.addr())
	r := c.Check(ctx())
	if r.OK || !strings.HasPrefix(r.Reason, "tls: ") || !strings.Contains(r.Reason, "wrong.test") {
		t.Errorf("wrong name: %+v", r)
	}
	// System roots do not know httptest's CA.
	c = mustNew(t, Spec{Type: TypeHTTPS, TLS: TLSSpec{SNI: "example.com", Verify: true}}, h.addr())
	if r := c.Check(ctx()); r.OK || !strings.Contains(r.Reason, "unknown authority") {
		t.Errorf("system roots: %+v", r)
	}
	// An http check against a TLS server sees garbage or a 400.
	c = mustNew(t, Spec{Type: TypeHTTP}, h.addr())
	if r := c.Check(ctx()); r.OK {
		t.Errorf("plain http against TLS passed: %+v", r)
	}
	// An https check against a plain server fails the handshake.
	plain := newHTTPTarget(t, false)
	c = mustNew(t, Spec{Type: TypeHTTPS}, plain.addr())
	if r := c.Check(ctx()); r.OK || !strings.HasPrefix(r.Reason, "tls: ") {
		t.Errorf("https against plain: %+v", r)
	}
}

func TestHTTPSMinVersion(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.TLS = &tls.Config{MaxVersion: tls.VersionTLS11}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	c := mustNew(t, Spec{Type: TypeHTTPS}, srv.Listener.Addr().String())
	if r := c.Check(checkCtx(t, 2*time.Second)); r.OK {
		t.Errorf("TLS 1.1 server passed: %+v", r)
	}
}

func TestHostHeaderIPv6(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback: ", err)
	}
	var host atomic.Value
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { host.Store(r.Host) })}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	c := mustNew(t, Spec{Type: TypeHTTP}, ln.Addr().String())
	if r := c.Check(checkCtx(t, 2*time.Second)); !r.OK {
		t.Fatalf("IPv6 check: %+v", r)
	}
	if got := host.Load(); got != "[::1]" {
		t.Errorf("Host %q, want [::1]", got)
	}
}
