package daemon

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestDeferAcceptPerFrontend: an http frontend defers accept by default, a
// tcp one only with defer_accept: true. A deferring frontend has not
// accepted a silent client when a talking one, connected after it, is
// served; the others accept both.
func TestDeferAcceptPerFrontend(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
	t.Cleanup(hs.Close)
	echo := startBackend(t, "a")
	web, on, off := freeAddr(t), freeAddr(t), freeAddr(t)
	path := tempConfig(t)
	writeConfig(t, path, fmt.Sprintf(`global: {grace: 1s, log: {level: warn}}
frontends:
  - {name: web, mode: http, listen: [%q], default_backend: h}
  - {name: "on", listen: [%q], default_backend: be, defer_accept: true}
  - {name: "off", listen: [%q], default_backend: be}
backends:
  - name: h
    health: {type: none}
    servers: [{name: h1, address: %q}]
  - name: be
    health: {type: none}
    servers: [{name: a, address: %q}]
`, web, on, off, hs.Listener.Addr().String(), echo.addr))
	r := startDaemon(t, path)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	talkHTTP := func(addr string) error {
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(b) != "ok" {
			return fmt.Errorf("status %d, body %q", resp.StatusCode, b)
		}
		return nil
	}
	talkTCP := func(addr string) error {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "x"); err != nil {
			return err
		}
		_ = c.(*net.TCPConn).CloseWrite()
		if b, err := io.ReadAll(c); err != nil || string(b) != "a\nx" {
			return fmt.Errorf("got %q, %v", b, err)
		}
		return nil
	}
	for _, tc := range []struct {
		fe, addr string
		talk     func(string) error
		deferred bool
	}{
		{"web", web, talkHTTP, true},
		{"on", on, talkTCP, true},
		{"off", off, talkTCP, false},
	} {
		accepted := func() float64 {
			return metric(t, r.reg, "palisade_frontend_connections_total", map[string]string{"frontend": tc.fe})
		}
		silent, err := net.DialTimeout("tcp", tc.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = silent.Close() }) // also when a check below fails
		dialed := time.Now()
		if err := tc.talk(tc.addr); err != nil {
			t.Fatalf("%s: %v", tc.fe, err)
		}
		if !tc.deferred {
			waitFor(t, tc.fe+": the silent client accepted", 5*time.Second, func() bool { return accepted() == 2 })
		} else if got := accepted(); got != 1 {
			// the kernel hands a silent client over after about a second
			if time.Since(dialed) < 500*time.Millisecond {
				t.Errorf("%s: %v connections accepted after a silent and a talking client, want 1", tc.fe, got)
			}
		}
		_ = silent.Close()
	}
}
