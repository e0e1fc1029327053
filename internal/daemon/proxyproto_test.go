package daemon

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/palisade-lb/palisade/proxy/proxyproto"
)

// TestProxyProtocolThrough: a client behind another balancer sends a PROXY
// v1 header; palisade accepts it, applies its ACL to the real client, and
// sends that client's address on to the server in a v2 header.
func TestProxyProtocolThrough(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type seen struct {
		h    *proxyproto.Header
		rest string
		err  error
	}
	got := make(chan seen, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				h, err := proxyproto.ReadFrom(c)
				if err != nil {
					got <- seen{err: err}
					return
				}
				_, _ = io.WriteString(c, "ok\n")
				b, _ := io.ReadAll(c)
				got <- seen{h: h, rest: string(b)}
			}()
		}
	}()
	listen := freeAddr(t)
	path := tempConfig(t)
	writeConfig(t, path, fmt.Sprintf(`
global: {log: {level: warn}}
frontends:
  - name: fe
    listen: [%q]
    default_backend: be
    proxy_protocol: {accept: true, timeout: 500ms}
    deny: [192.0.2.66/32]
backends:
  - {name: be, send_proxy: v2, health: {type: none}, servers: [{name: s, address: %q}]}
`, listen, ln.Addr().String()))
	r := startDaemon(t, path)

	send := func(header string) (string, error) {
		c, err := net.Dial("tcp", listen)
		if err != nil {
			return "", err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, header+"payload"); err != nil {
			return "", err
		}
		_ = c.(*net.TCPConn).CloseWrite()
		return bufio.NewReader(c).ReadString('\n')
	}
	if line, err := send("PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\n"); err != nil || line != "ok\n" {
		t.Fatalf("proxied client: %q %v", line, err)
	}
	s := <-got
	if s.err != nil {
		t.Fatal(s.err)
	}
	if s.h.Version != 2 || s.h.Src != netip.MustParseAddrPort("192.0.2.7:40000") || s.h.Dst != netip.MustParseAddrPort("198.51.100.1:443") {
		t.Fatalf("server saw header %+v", s.h)
	}
	if s.rest != "payload" {
		t.Fatalf("server saw payload %q", s.rest)
	}
	// the ACL applies to the address in the header
	if _, err := send("PROXY TCP4 192.0.2.66 198.51.100.1 40000 443\r\n"); err == nil {
		t.Fatal("denied client (by PROXY source) was served")
	}
	// no header: refused
	if _, err := send("GET / HTTP/1.0\r\n\r\n"); err == nil {
		t.Fatal("connection without PROXY header was served")
	}
	if v := metric(t, r.reg, "palisade_frontend_rejected_total", map[string]string{"frontend": "fe", "reason": "acl"}); v != 1 {
		t.Errorf("rejected{acl} = %v", v)
	}
	if v := metric(t, r.reg, "palisade_frontend_rejected_total", map[string]string{"frontend": "fe", "reason": "proxy_protocol"}); v != 1 {
		t.Errorf("rejected{proxy_protocol} = %v", v)
	}
}

// TestInactivityTimeouts: an idle connection is closed after the client
// timeout; a busy one outlives it.
func TestInactivityTimeouts(t *testing.T) {
	b := startBackend(t, "a")
	listen := freeAddr(t)
	path := tempConfig(t)
	writeConfig(t, path, fmt.Sprintf(`
global: {log: {level: warn}}
frontends:
  - {name: fe, listen: [%q], default_backend: be, timeouts: {client: 300ms}, access_log: true}
backends:
  - {name: be, health: {type: none}, servers: [{name: s, address: %q}]}
`, listen, b.addr))
	startDaemon(t, path)

	// before dialing: the proxy's last activity on the idle connection is
	// later than this, so it may not close it earlier than 300 ms from here
	// (taken after the dials, a client descheduled for a few ms saw 296 ms)
	start := time.Now()
	idle, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	busy, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	ri, rb := bufio.NewReader(idle), bufio.NewReader(busy)
	if _, err := ri.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if _, err := rb.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	idleClosed := make(chan time.Duration, 1)
	go func() {
		_ = idle.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _ = ri.ReadByte()
		idleClosed <- time.Since(start)
	}()
	// keep the busy one talking every 50ms for a second
	buf := make([]byte, 1)
	for i := 0; i < 20; i++ {
		if _, err := busy.Write([]byte{'x'}); err != nil {
			t.Fatalf("busy connection write %d: %v", i, err)
		}
		_ = busy.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(rb, buf); err != nil {
			t.Fatalf("busy connection closed after %v: %v", time.Since(start), err)
		}
		time.Sleep(50 * time.Millisecond) // pacing the traffic, not synchronising
	}
	select {
	case d := <-idleClosed:
		if d < 300*time.Millisecond || d > 3*time.Second {
			t.Fatalf("idle connection closed after %v (timeout 300ms)", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("idle connection never closed")
	}
}
