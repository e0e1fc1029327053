package healthcheck

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func checkCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestTCPChecker(t *testing.T) {
	var accepted atomic.Int32
	up := serveTCP(t, func(c net.Conn) { accepted.Add(1) })
	down := deadAddr(t)

	r := NewTCPChecker(static(up)).Check(checkCtx(t, time.Second))
	if !r.OK || r.Reason != "connected" || r.Duration <= 0 {
		t.Errorf("live server: %+v", r)
	}
	waitFor(t, "the connection to be accepted", func() bool { return accepted.Load() == 1 })

	r = NewTCPChecker(static(down)).Check(checkCtx(t, time.Second))
	if r.OK || r.Reason != "connect: connection refused" {
		t.Errorf("dead server: %+v", r)
	}

	r = NewTCPChecker(static("127.0.0.1")).Check(checkCtx(t, time.Second))
	if r.OK || !strings.HasPrefix(r.Reason, "connect: ") {
		t.Errorf("address without port: %+v", r)
	}
}

// TestTCPCheckerReadsAddressPerCheck follows an address that changes, as
// after a DNS re-resolution.
func TestTCPCheckerReadsAddressPerCheck(t *testing.T) {
	up := serveTCP(t, func(net.Conn) {})
	var cur atomic.Value
	cur.Store(deadAddr(t))
	c := NewTCPChecker(func() string { return cur.Load().(string) })
	if r := c.Check(checkCtx(t, time.Second)); r.OK {
		t.Fatalf("dead address passed: %+v", r)
	}
	cur.Store(up)
	if r := c.Check(checkCtx(t, time.Second)); !r.OK {
		t.Fatalf("live address failed: %+v", r)
	}
}

func TestNewPortOverride(t *testing.T) {
	up := serveTCP(t, func(net.Conn) {})
	_, port, _ := net.SplitHostPort(up)
	var p int
	for _, c := range port {
		p = p*10 + int(c-'0')
	}
	c, err := New(Spec{Type: TypeTCP, Port: p}, static(deadAddr(t)))
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Check(checkCtx(t, time.Second)); !r.OK {
		t.Errorf("check on port override failed: %+v", r)
	}
}

func TestCheckCanceled(t *testing.T) {
	// A server that never answers: the send_expect check blocks in read
	// until its context is canceled.
	addr := serveTCP(t, func(c net.Conn) { _, _ = c.Read(make([]byte, 1)) })
	c, err := NewSendExpectChecker([]Step{{Expect: "never"}}, static(addr))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Result)
	go func() { done <- c.Check(ctx) }()
	cancel()
	r := <-done
	if r.OK || !strings.Contains(r.Reason, "check canceled") {
		t.Errorf("canceled check: %+v", r)
	}
}

func TestDialWithoutKeepAlive(t *testing.T) {
	up := serveTCP(t, func(c net.Conn) {})
	conn, stop, err := dial(checkCtx(t, time.Second), up)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	defer stop()
	rc, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var on int
	var gerr error
	if err := rc.Control(func(fd uintptr) { on, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	if on != 0 {
		t.Errorf("SO_KEEPALIVE = %d on a check's connection, want 0", on)
	}
}
