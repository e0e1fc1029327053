package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/palisade-lb/palisade/internal/api"
)

// TestReloadUnderLoad reloads 20 times while clients open connections
// nonstop: weights change, servers come and go, a frontend is added and
// removed. No connection may be refused or reset, and per-server state
// (counters, an API weight override) must survive.
func TestReloadUnderLoad(t *testing.T) {
	ba, bb, bc := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")
	l1, l2 := freeAddr(t), freeAddr(t)
	path := tempConfig(t)
	cfgFor := func(i int) string {
		var s strings.Builder
		fmt.Fprintf(&s, "global: {grace: 1s, log: {level: warn}}\nfrontends:\n  - {name: main, listen: [%q], default_backend: be}\n", l1)
		if i%2 == 1 {
			fmt.Fprintf(&s, "  - {name: extra, listen: [%q], default_backend: be}\n", l2)
		}
		s.WriteString("backends:\n  - name: be\n    health: {type: tcp, interval: 100ms, timeout: 50ms, rise: 1, fall: 2}\n    servers:\n")
		fmt.Fprintf(&s, "      - {name: a, address: %q, weight: %d}\n", ba.addr, 50+i)
		if i%3 != 2 {
			fmt.Fprintf(&s, "      - {name: b, address: %q, weight: %d}\n", bb.addr, 100-i)
		}
		if i%4 >= 2 {
			fmt.Fprintf(&s, "      - {name: c, address: %q}\n", bc.addr)
		}
		return s.String()
	}
	writeConfig(t, path, cfgFor(0))
	r := startDaemon(t, path)
	waitFor(t, "servers up", 5*time.Second, func() bool { v, _ := r.d.Backend("be"); return v.ActiveServers == 2 })
	w := 80
	if _, err := r.d.SetServer("be", "a", api.ServerUpdate{Weight: &w}, "test"); err != nil {
		t.Fatal(err)
	}

	ld := startLoad(4, 50000, func() error { _, err := exchange(l1, "ping"); return err })
	var prevTotal uint64
	for i := 1; i <= 20; i++ {
		ld.waitMore(t, "traffic between reloads", 20)
		writeConfig(t, path, cfgFor(i))
		if err := r.d.Reload(); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		v, _ := r.d.Backend("be")
		a := v.Servers[0]
		if a.Health != "up" {
			t.Fatalf("reload %d: server a health %q right after reload", i, a.Health)
		}
		if a.ConfigWeight != 80 {
			t.Fatalf("reload %d: API weight override lost: %d", i, a.ConfigWeight)
		}
		if a.Total < prevTotal {
			t.Fatalf("reload %d: counters reset (%d < %d)", i, a.Total, prevTotal)
		}
		prevTotal = a.Total
		if i%2 == 1 {
			if _, err := exchange(l2, "x"); err != nil {
				t.Fatalf("reload %d: new frontend not serving: %v", i, err)
			}
		} else if c, err := net.DialTimeout("tcp", l2, time.Second); err == nil {
			c.Close()
			t.Fatalf("reload %d: removed frontend still accepts", i)
		}
	}
	all, failed := ld.finish()
	t.Logf("%d connections during 20 reloads, %d failed", len(all), len(failed))
	if len(failed) > 0 {
		t.Fatalf("%d connections failed during reloads; first: %v", len(failed), failed[0])
	}
	if got := metric(t, r.reg, "palisade_config_last_reload_successful", nil); got != 1 {
		t.Errorf("config_last_reload_successful = %v", got)
	}
}

func TestInvalidReloadKeepsOldConfig(t *testing.T) {
	b := startBackend(t, "a")
	listen := freeAddr(t)
	path := tempConfig(t)
	good := tcpConfig(listen, map[string]string{"a": b.addr}, "", "")
	writeConfig(t, path, good)
	r := startDaemon(t, path)
	waitFor(t, "server up", 5*time.Second, func() bool { v, _ := r.d.Backend("be"); return v.ActiveServers == 1 })
	sha := r.d.Status().ConfigSHA256
	writeConfig(t, path, strings.Replace(good, "default_backend: be", "default_backend: nope\n    max_conns: -5", 1))
	err := r.d.Reload()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	last := r.d.LastReload()
	if last.OK || len(last.Errors) != 2 || !strings.Contains(last.Errors[0], "palisade.yaml:5:22: backend \"nope\" is not defined") ||
		!strings.Contains(last.Errors[1], ":6:16: max_conns: -5 is out of range") {
		t.Fatalf("reload result: %+v", last)
	}
	if got := metric(t, r.reg, "palisade_config_last_reload_successful", nil); got != 0 {
		t.Errorf("config_last_reload_successful = %v", got)
	}
	if r.d.Status().ConfigSHA256 != sha {
		t.Error("running config changed")
	}
	if _, err := exchange(listen, "still serving"); err != nil {
		t.Fatal(err)
	}
	// a reload that cannot bind a new listener changes nothing either
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	writeConfig(t, path, good+fmt.Sprintf("  - name: be2\n    servers: [{name: x, address: %q}]\n", b.addr))
	writeConfig(t, path, strings.Replace(good, fmt.Sprintf("listen: [%q]", listen), fmt.Sprintf("listen: [%q, %q]", listen, busy.Addr().String()), 1))
	if err := r.d.Reload(); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("reload with a busy port: %v", err)
	}
	if _, err := exchange(listen, "still serving"); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, path, good)
	if err := r.d.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := metric(t, r.reg, "palisade_config_last_reload_successful", nil); got != 1 {
		t.Errorf("config_last_reload_successful = %v after a good reload", got)
	}
}

// TestRemovedFrontendDrains: a reload that removes a frontend stops its
// accepting at once, lets its open connection go on, and closes it after grace.
func TestRemovedFrontendDrains(t *testing.T) {
	b := startBackend(t, "a")
	l1, l2 := freeAddr(t), freeAddr(t)
	path := tempConfig(t)
	both := fmt.Sprintf(`
global: {grace: 300ms, log: {level: warn}}
frontends:
  - {name: keep, listen: [%q], default_backend: be}
  - {name: gone, listen: [%q], default_backend: be}
backends:
  - {name: be, health: {type: none}, servers: [{name: a, address: %q}]}
`, l1, l2, b.addr)
	writeConfig(t, path, both)
	r := startDaemon(t, path)
	c, err := net.Dial("tcp", l2)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, path, strings.Replace(both, fmt.Sprintf("  - {name: gone, listen: [%q], default_backend: be}\n", l2), "", 1))
	start := time.Now()
	if err := r.d.Reload(); err != nil {
		t.Fatal(err)
	}
	if c2, err := net.DialTimeout("tcp", l2, time.Second); err == nil {
		c2.Close()
		t.Fatal("removed frontend still accepts")
	}
	// the open connection still works during grace
	_, _ = io.WriteString(c, "abc")
	buf := make([]byte, 3)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "abc" {
		t.Fatalf("draining connection: %q %v", buf, err)
	}
	// and is closed once grace is over
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("connection still open after grace")
	}
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Fatalf("closed after %v, before the 300ms grace", el)
	}
}

// TestStopDrainsThenExits: stop closes the listeners at once, lets open
// connections finish, and returns as soon as they have.
func TestStopDrainsThenExits(t *testing.T) {
	b := startBackend(t, "a")
	listen := freeAddr(t)
	path := tempConfig(t)
	writeConfig(t, path, strings.Replace(tcpConfig(listen, map[string]string{"a": b.addr}, "", "    health: {type: none}\n"), "grace: 2s", "grace: 10s", 1))
	r := startDaemon(t, path)
	c, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- r.stop() }()
	waitFor(t, "listener closed", 5*time.Second, func() bool {
		c2, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			c2.Close()
		}
		return err != nil
	})
	_, _ = io.WriteString(c, "abc")
	buf := make([]byte, 3)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "abc" {
		t.Fatalf("open connection during stop: %q %v", buf, err)
	}
	select {
	case <-stopped:
		t.Fatal("stopped while a connection was open")
	default:
	}
	start := time.Now()
	c.Close()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("did not stop after the last connection closed")
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("took %v after the last connection", el)
	}
}

func TestReloadRefusedWhileStopping(t *testing.T) {
	b := startBackend(t, "a")
	listen := freeAddr(t)
	path := tempConfig(t)
	writeConfig(t, path, tcpConfig(listen, map[string]string{"a": b.addr}, "", ""))
	r := startDaemon(t, path)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if err := r.d.Reload(); !errors.Is(err, errStopping) {
		t.Fatalf("reload after stop: %v", err)
	}
	if c, err := net.DialTimeout("tcp", listen, time.Second); err == nil {
		c.Close()
		t.Fatal("a reload after stop reopened the listener")
	}
}

// TestReloadSwitchesModeOnOneAddress: a frontend is reloaded, in http mode,
// in tcp mode and from one to the other on the same address, while a client
// keeps sending GETs (one per connection): the listening socket moves
// between the event loops and Go's accept loop without closing, and no
// request fails.
func TestReloadSwitchesModeOnOneAddress(t *testing.T) {
	for _, keepAlive := range []bool{false, true} {
		t.Run(fmt.Sprintf("keepalive=%v", keepAlive), func(t *testing.T) {
			backend := httpServer(t, "web")
			listen := freeAddr(t)
			path := tempConfig(t)
			cfgFor := func(mode string) string {
				return fmt.Sprintf(`
global: {grace: 1s, log: {level: warn}}
frontends:
  - {name: main, mode: %s, listen: [%q], default_backend: be}
backends:
  - {name: be, health: {type: none}, servers: [{name: s, address: %q}]}
`, mode, listen, backend)
			}
			writeConfig(t, path, cfgFor("tcp"))
			r := startDaemon(t, path)
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: !keepAlive}}
			defer client.CloseIdleConnections()
			ld := startLoad(4, 50000, getOK(client, "http://"+listen+"/"))
			// http→http reloads too: they lost requests once (a fresh connection
			// closed by the drain before its first request was read; dials made
			// with the cancelled drain context answered 503)
			modes := []string{"http", "http", "tcp", "tcp", "http", "http", "tcp", "http"}
			for i, mode := range modes {
				ld.waitMore(t, "traffic between reloads", 30)
				writeConfig(t, path, cfgFor(mode))
				if err := r.d.Reload(); err != nil {
					t.Fatalf("reload %d to %s: %v", i, mode, err)
				}
			}
			ld.waitMore(t, "traffic after the last reload", 30)
			all, failed := ld.finish()
			t.Logf("%d requests during %d reloads, %d failed", len(all), len(modes), len(failed))
			if len(failed) > 0 {
				t.Fatalf("%d requests failed across reloads; first: %v", len(failed), failed[0])
			}
		})
	}
}
