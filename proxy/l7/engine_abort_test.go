package l7

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"
)

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
	eh := newEngineHarness(t, fakeBackends{"app": {name: "app", servers: []*fakeServer{s}}})
	c, ec, done := eh.serve(t, nil)
	lp := eh.lp
	defer func() {
		c.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("connection not ended 5s after the client left")
		}
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
	_, err := bufio.NewReader(c).ReadByte()
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("aborted connection still open 3s later (handed to a goroutine meanwhile)")
	}
}
