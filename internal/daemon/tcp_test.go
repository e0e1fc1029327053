package daemon

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func tcpConfig(listen string, servers map[string]string, extraFrontend, extraBackend string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global: {grace: 2s, log: {level: warn}}\nfrontends:\n  - name: fe\n    listen: [%q]\n    default_backend: be\n%s", listen, extraFrontend)
	if !strings.Contains(extraBackend, "health:") {
		extraBackend = "    health: {type: tcp, interval: 50ms, timeout: 40ms, rise: 1, fall: 1}\n" + extraBackend
	}
	fmt.Fprintf(&b, "backends:\n  - name: be\n%s    servers:\n", extraBackend)
	for _, name := range sortedKeys(servers) {
		fmt.Fprintf(&b, "      - {name: %s, address: %q}\n", name, servers[name])
	}
	return b.String()
}

func TestRoundRobinSpread(t *testing.T) {
	b1, b2, b3 := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")
	listen := freeAddr(t)
	path := tempConfig(t)
	writeConfig(t, path, tcpConfig(listen, map[string]string{"a": b1.addr, "b": b2.addr, "c": b3.addr}, "", ""))
	r := startDaemon(t, path)
	waitFor(t, "all servers up", 5*time.Second, func() bool { v, _ := r.d.Backend("be"); return v.ActiveServers == 3 })
	counts := map[string]int{}
	for i := 0; i < 300; i++ {
		name, err := exchange(listen, "hello")
		if err != nil {
			t.Fatal(err)
		}
		counts[name]++
	}
	for _, n := range []string{"a", "b", "c"} {
		if counts[n] != 100 {
			t.Errorf("server %s got %d of 300 connections, want 100 (%v)", n, counts[n], counts)
		}
	}
	if got := metric(t, r.reg, "palisade_frontend_connections_total", map[string]string{"frontend": "fe"}); got != 300 {
		t.Errorf("frontend_connections_total = %v", got)
	}
	if got := metric(t, r.reg, "palisade_server_connections_total", map[string]string{"backend": "be", "server": "a"}); got != 100 {
		t.Errorf("server_connections_total{a} = %v", got)
	}
	waitFor(t, "bytes counted", 5*time.Second, func() bool {
		return metric(t, r.reg, "palisade_frontend_bytes_total", map[string]string{"frontend": "fe", "direction": "in"}) == 300*5
	})
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}

func TestHalfCloseBothWays(t *testing.T) {
	// server closes first: it sends a reply and FIN while the client keeps sending
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.WriteString(c, "bye\n")
		_ = c.(*net.TCPConn).CloseWrite()
		b, _ := io.ReadAll(c)
		got <- string(b)
	}()
	listen := freeAddr(t)
	path := tempConfig(t)
	writeConfig(t, path, tcpConfig(listen, map[string]string{"s": ln.Addr().String()}, "", "    health: {type: none}\n"))
	startDaemon(t, path)
	c, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil || line != "bye\n" {
		t.Fatalf("read %q %v", line, err)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Fatalf("server's FIN not propagated: %v", err)
	}
	// the client->server direction still works after the server's half-close
	if _, err := io.WriteString(c, "still here"); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	select {
	case s := <-got:
		if s != "still here" {
			t.Fatalf("server read %q", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("client's FIN not propagated")
	}
}

func TestClientHalfClose(t *testing.T) {
	b := startBackend(t, "a")
	listen := freeAddr(t)
	path := tempConfig(t)
	writeConfig(t, path, tcpConfig(listen, map[string]string{"a": b.addr}, "", ""))
	r := startDaemon(t, path)
	waitFor(t, "server up", 5*time.Second, func() bool { v, _ := r.d.Backend("be"); return v.ActiveServers == 1 })
	// exchange half-closes the client side and expects the full echo, then EOF
	if _, err := exchange(listen, strings.Repeat("x", 1<<20)); err != nil {
		t.Fatal(err)
	}
}

// TestIntegrity1GiB sends 1 GiB through the proxy to an echo server and
// checks both directions byte for byte (by SHA-256).
func TestIntegrity1GiB(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GiB transfer: skipped in -short")
	}
	b := startBackend(t, "a")
	listen := freeAddr(t)
	path := tempConfig(t)
	writeConfig(t, path, tcpConfig(listen, map[string]string{"a": b.addr}, "", ""))
	r := startDaemon(t, path)
	waitFor(t, "server up", 5*time.Second, func() bool { v, _ := r.d.Backend("be"); return v.ActiveServers == 1 })
	c, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	const total = 1 << 30
	block := make([]byte, 1<<20)
	rng := rand.NewChaCha8([32]byte{1, 2, 3})
	_, _ = rng.Read(block)
	sent := sha256.New()
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, len(block))
		for i := 0; i < total/len(block); i++ {
			copy(buf, block)
			buf[0], buf[1], buf[2], buf[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24) // vary each block
			sent.Write(buf)
			if _, err := c.Write(buf); err != nil {
				errc <- err
				return
			}
		}
		errc <- c.(*net.TCPConn).CloseWrite()
	}()
	recv := sha256.New()
	n, err := io.Copy(recv, br)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if n != total {
		t.Fatalf("received %d bytes, want %d", n, total)
	}
	if !bytes.Equal(sent.Sum(nil), recv.Sum(nil)) {
		t.Fatal("data corrupted through the proxy")
	}
	srv := r.d.Backends()[0].Servers[0]
	waitFor(t, "byte counters", 5*time.Second, func() bool {
		srv = r.d.Backends()[0].Servers[0]
		return srv.BytesOut == total && srv.BytesIn == total+2
	})
}

func TestMaxConnsACLAndRateLimitRejections(t *testing.T) {
	b := startBackend(t, "a")
	listenMax, listenACL, listenRate := freeAddr(t), freeAddr(t), freeAddr(t)
	path := tempConfig(t)
	writeConfig(t, path, fmt.Sprintf(`
global: {log: {level: warn}}
frontends:
  - {name: max, listen: [%q], default_backend: be, max_conns: 2}
  - {name: acl, listen: [%q], default_backend: be, allow: [10.0.0.0/8]}
  - {name: rate, listen: [%q], default_backend: be, rate_limit: {per_source: 1/m, burst: 3}}
backends:
  - name: be
    health: {type: none}
    servers: [{name: a, address: %q}]
`, listenMax, listenACL, listenRate, b.addr))
	r := startDaemon(t, path)
	// two held connections fill max_conns; the third is closed at once
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", listenMax)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	if _, err := exchange(listenMax, "x"); err == nil {
		t.Fatal("third connection served despite max_conns 2")
	}
	if got := metric(t, r.reg, "palisade_frontend_rejected_total", map[string]string{"frontend": "max", "reason": "max_conns"}); got != 1 {
		t.Errorf("rejected{max_conns} = %v", got)
	}
	_ = held[0].Close()
	waitFor(t, "slot freed", 5*time.Second, func() bool { _, err := exchange(listenMax, "x"); return err == nil })

	if _, err := exchange(listenACL, "x"); err == nil {
		t.Fatal("127.0.0.1 served despite allow: [10.0.0.0/8]")
	}
	if got := metric(t, r.reg, "palisade_frontend_rejected_total", map[string]string{"frontend": "acl", "reason": "acl"}); got != 1 {
		t.Errorf("rejected{acl} = %v", got)
	}

	for i := 0; i < 3; i++ {
		if _, err := exchange(listenRate, "x"); err != nil {
			t.Fatalf("connection %d within burst: %v", i, err)
		}
	}
	if _, err := exchange(listenRate, "x"); err == nil {
		t.Fatal("4th connection served despite burst 3 at 1/m")
	}
	if got := metric(t, r.reg, "palisade_frontend_rejected_total", map[string]string{"frontend": "rate", "reason": "rate_limit"}); got != 1 {
		t.Errorf("rejected{rate_limit} = %v", got)
	}
}

func TestBackupOnlyWhenPrimariesDown(t *testing.T) {
	p, bk := startBackend(t, "primary"), startBackend(t, "backup")
	listen := freeAddr(t)
	path := tempConfig(t)
	writeConfig(t, path, fmt.Sprintf(`
global: {log: {level: warn}}
frontends: [{name: fe, listen: [%q], default_backend: be}]
backends:
  - name: be
    health: {type: tcp, interval: 50ms, timeout: 40ms, rise: 1, fall: 1}
    servers: [{name: p, address: %q}, {name: b, address: %q, backup: true}]
`, listen, p.addr, bk.addr))
	r := startDaemon(t, path)
	waitFor(t, "servers up", 5*time.Second, func() bool { v, _ := r.d.Backend("be"); return v.ActiveServers == 2 })
	for i := 0; i < 20; i++ {
		if name, err := exchange(listen, "x"); err != nil || name != "primary" {
			t.Fatalf("got %q %v, want primary", name, err)
		}
	}
	p.stop()
	for i := 0; i < 20; i++ {
		if name, err := exchange(listen, "x"); err != nil || name != "backup" {
			t.Fatalf("with primary down got %q %v, want backup", name, err)
		}
	}
}

// TestKillBackendUnderLoad kill -9s one of three backend processes while
// clients open a stream of new connections. Connections that started before
// the kill or after the dead process was reaped must all succeed: a refused
// connect is retried on another server. Only connections already in flight
// on the victim while it died may fail (nobody can save those).
func TestKillBackendUnderLoad(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var procs []*exec.Cmd
	servers := map[string]string{}
	for _, name := range []string{"p1", "p2", "p3"} {
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), "PALISADE_TEST_BACKEND="+name)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		servers[name] = strings.TrimSpace(line)
		procs = append(procs, cmd)
	}
	listen := freeAddr(t)
	path := tempConfig(t)
	writeConfig(t, path, tcpConfig(listen, servers, "", "    retries: 2\n"))
	r := startDaemon(t, path)
	waitFor(t, "servers up", 5*time.Second, func() bool { v, _ := r.d.Backend("be"); return v.ActiveServers == 3 })

	ld := startLoad(4, 3000, func() error { _, err := exchange(listen, "ping"); return err })
	ld.waitMore(t, "load running", 200)
	victim := procs[1]
	killSent := time.Now()
	_ = victim.Process.Signal(syscall.SIGKILL)
	_, _ = victim.Process.Wait()
	killDone := time.Now()
	ld.waitMore(t, "load after kill", 500)
	results, _ := ld.finish()

	var before, after, overlap, failedAvoidable, failedOverlap int
	for _, res := range results {
		switch {
		case res.end.Before(killSent):
			before++
		case res.start.After(killDone):
			after++
		default:
			overlap++
			if res.err != nil {
				failedOverlap++
			}
			continue
		}
		if res.err != nil {
			failedAvoidable++
			t.Errorf("connection failed: %v", res.err)
		}
	}
	t.Logf("connections: %d before the kill, %d after, %d in flight during it (%d of those failed)", before, after, overlap, failedOverlap)
	if failedAvoidable > 0 {
		t.Fatalf("%d avoidable connection failures", failedAvoidable)
	}
	if after < 500 {
		t.Fatalf("only %d connections after the kill", after)
	}
	if got := metric(t, r.reg, "palisade_server_connect_failures_total", map[string]string{"backend": "be", "server": "p2"}); got < 0 {
		t.Error("no connect_failures series for the victim")
	}
	waitFor(t, "victim marked down", 5*time.Second, func() bool {
		v, _ := r.d.Backend("be")
		return v.Servers[1].Health == "down"
	})
	// unknown -> up -> down
	if got := metric(t, r.reg, "palisade_server_health_changes_total", map[string]string{"backend": "be", "server": "p2"}); got != 2 {
		t.Errorf("server_health_changes_total{p2} = %v, want 2", got)
	}
}

// TestSeveralListenersIPv4AndIPv6: one frontend, an IPv4 and an IPv6 address.
func TestSeveralListenersIPv4AndIPv6(t *testing.T) {
	ln6, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	v6 := ln6.Addr().String()
	ln6.Close()
	b := startBackend(t, "a")
	v4 := freeAddr(t)
	path := tempConfig(t)
	writeConfig(t, path, strings.Replace(tcpConfig(v4, map[string]string{"a": b.addr}, "", ""),
		fmt.Sprintf("listen: [%q]", v4), fmt.Sprintf("listen: [%q, %q]", v4, v6), 1))
	r := startDaemon(t, path)
	waitFor(t, "server up", 5*time.Second, func() bool { v, _ := r.d.Backend("be"); return v.ActiveServers == 1 })
	for _, addr := range []string{v4, v6} {
		if name, err := exchange(addr, "x"); err != nil || name != "a" {
			t.Fatalf("via %s: %q %v", addr, name, err)
		}
	}
}

// TestNoServerClosesAtOnce: with every server down, a tcp frontend closes
// new connections at once (and counts them).
func TestNoServerClosesAtOnce(t *testing.T) {
	dead := freeAddr(t) // nothing listens here
	listen := freeAddr(t)
	path := tempConfig(t)
	writeConfig(t, path, tcpConfig(listen, map[string]string{"x": dead}, "", ""))
	r := startDaemon(t, path)
	waitFor(t, "server down", 5*time.Second, func() bool { v, _ := r.d.Backend("be"); return v.Servers[0].Health == "down" })
	start := time.Now()
	if err := closedAtOnce(listen); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("closed after %v", el)
	}
	waitFor(t, "counted", 5*time.Second, func() bool {
		return metric(t, r.reg, "palisade_frontend_rejected_total", map[string]string{"frontend": "fe", "reason": "no_server"}) == 1
	})
}

// closedAtOnce connects to addr and expects the connection to be closed or
// reset without any data; a reset may even arrive before connect returns.
func closedAtOnce(addr string) error {
	c, err := net.Dial("tcp", addr)
	if errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	if err == nil {
		return errors.New("read data from a frontend with no server")
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return errors.New("connection not closed")
	}
	return nil
}
