package l7

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// engineServe serves one accepted connection of ln on lp with h and returns
// its EngineConn (as package proxy's acceptHTTP does).
func engineServe(t *testing.T, h *Handler, lp *testLoop, ln net.Listener) (*EngineConn, chan struct{}) {
	t.Helper()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	ap := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	fd := detachFD(t, c.(*net.TCPConn))
	ecc := make(chan *EngineConn, 1)
	done := make(chan struct{})
	lp.Post(func() { ecc <- h.ServeEngine(context.Background(), lp, fd, ap, nil, func() { close(done) }) })
	return <-ecc, done
}

// Abort (a forced drain, run on the loop as package proxy's
// httpSession.abort does) closes the connection even when the loop hands it
// to a goroutine between Abort and the close it posts. (That close once saw
// esDone and did nothing: the connection lived on in the goroutine path.)
func TestEngineAbortAcrossHandoff(t *testing.T) {
	if !onEngine {
		t.Skip("engine only")
	}
	srv := startRaw(t, func(c net.Conn) { io.Copy(io.Discard, c) }) // takes the request, never answers
	s := newFakeServer("s", srv.addr())
	m, _ := NewMetrics(nil)
	h, err := New(Config{Frontend: "web", DefaultBackend: "app"}, fakeBackends{"app": {name: "app", servers: []*fakeServer{s}}}, m, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	lp, err := newTestLoop()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ec, done := engineServe(t, h, lp, ln)
	defer func() {
		c.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("connection not ended 5s after the client left")
		}
		h.Close()
		lp.stop()
	}()

	// Hold the loop, queue a request the engine hands off (a streamed
	// body), then, on the loop, abort: the request's readiness is handled
	// right after, before the close Abort posts.
	inGate, gate := make(chan struct{}), make(chan struct{})
	lp.Post(func() { close(inGate); <-gate })
	<-inGate
	io.WriteString(c, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nabc")
	lp.Post(func() { ec.Abort() })
	close(gate)

	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err = bufio.NewReader(c).ReadByte()
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("aborted connection still open 3s later (handed to a goroutine meanwhile)")
	}
	_ = http.StatusOK
}
