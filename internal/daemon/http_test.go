package daemon

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/palisade-lb/palisade/internal/testutil"
)

func httpServer(t *testing.T, name string) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s xff=%s", name, r.Host, r.URL.Path, r.Header.Get("X-Forwarded-For"))
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// TestHTTPFrontend runs an http-mode frontend through the daemon: routing
// by host and path, forwarded headers, 503 without servers, TLS with h2,
// and the http metrics.
func TestHTTPFrontend(t *testing.T) {
	app, api := httpServer(t, "app"), httpServer(t, "api")
	plain, secure := freeAddr(t), freeAddr(t)
	dir := t.TempDir()
	cert, key := testutil.WriteSelfSigned(t, dir, "www", "www.example.test")
	path := tempConfig(t)
	writeConfig(t, path, fmt.Sprintf(`
global: {log: {level: warn}}
frontends:
  - name: web
    mode: http
    listen: [%q]
    routes:
      - {host: api.example.test, path_prefix: /v1, backend: api}
      - {path: /old, redirect: {scheme: https, code: 308}}
      - {path_prefix: /dead, backend: dead}
    default_backend: app
  - name: tls
    mode: http
    listen: [%q]
    tls: {cert: %q, key: %q}
    default_backend: app
backends:
  - {name: app, health: {type: http, path: /, interval: 100ms, timeout: 80ms}, servers: [{name: a1, address: %q}]}
  - {name: api, servers: [{name: p1, address: %q}]}
  - {name: dead, health: {type: tcp, interval: 100ms, timeout: 80ms, rise: 1, fall: 1}, servers: [{name: d1, address: "127.0.0.1:1"}]}
`, plain, secure, cert, key, app, api))
	r := startDaemon(t, path)
	// a server takes no traffic until its first check: wait for both routed-to backends
	waitFor(t, "servers up", 5*time.Second, func() bool {
		a, _ := r.d.Backend("app")
		p, _ := r.d.Backend("api")
		return a.ActiveServers == 1 && p.ActiveServers == 1
	})

	get := func(c *http.Client, url, host string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		if host != "" {
			req.Host = host
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if code, body := get(noRedirect, "http://"+plain+"/v1/users", "api.example.test"); code != 200 || !strings.HasPrefix(body, "api api.example.test /v1/users xff=127.0.0.1") {
		t.Errorf("api route: %d %q", code, body)
	}
	if code, body := get(noRedirect, "http://"+plain+"/v2/users", "api.example.test"); code != 200 || !strings.HasPrefix(body, "app ") {
		t.Errorf("default backend: %d %q", code, body)
	}
	if code, _ := get(noRedirect, "http://"+plain+"/old", "www.example.test"); code != 308 {
		t.Errorf("redirect: %d", code)
	}
	if code, _ := get(noRedirect, "http://"+plain+"/dead/x", ""); code != 503 {
		t.Errorf("no server: %d, want 503", code)
	}
	tlsClient := &http.Client{Transport: &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, ServerName: "www.example.test"}}}
	defer tlsClient.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "https://"+secure+"/tls", nil)
	resp, err := tlsClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || !strings.HasPrefix(string(b), "app ") {
		t.Errorf("TLS: proto %s body %q", resp.Proto, b)
	}
	// counted once the response is written, which the client may see first
	waitFor(t, "http_requests_total{web,api,2xx} = 1", 5*time.Second, func() bool {
		return metric(t, r.reg, "palisade_http_requests_total", map[string]string{"frontend": "web", "backend": "api", "code": "2xx"}) == 1
	})
	if _, err := net.Dial("tcp", plain); err != nil {
		t.Fatal(err)
	}
}

// TestHTTPSendProxy: an http frontend in front of a backend with send_proxy
// opens a fresh server connection per request that starts with the client's
// PROXY header.
func TestHTTPSendProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	headers := make(chan string, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				line, _ := br.ReadString('\n')
				headers <- line
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				req.Body.Close()
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}()
		}
	}()
	listen := freeAddr(t)
	path := tempConfig(t)
	writeConfig(t, path, fmt.Sprintf(`
global: {log: {level: warn}}
frontends: [{name: web, mode: http, listen: [%q], default_backend: app}]
backends: [{name: app, send_proxy: v1, health: {type: none}, servers: [{name: s, address: %q}]}]
`, listen, ln.Addr().String()))
	startDaemon(t, path)
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	for i := 0; i < 3; i++ { // one client connection, three requests
		resp, err := client.Get("http://" + listen + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "ok" {
			t.Fatalf("body %q", b)
		}
		select {
		case h := <-headers:
			if !strings.HasPrefix(h, "PROXY TCP4 127.0.0.1 127.0.0.1 ") {
				t.Fatalf("request %d: server got %q first", i, h)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("request %d: no new server connection", i)
		}
	}
}
