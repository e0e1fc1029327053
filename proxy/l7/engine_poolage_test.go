package l7

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A non-idempotent request only reuses server connections idle for under a
// second (nonIdempotentMaxIdle); older ones stay in the pool for idempotent
// requests. (The engine's pool once closed them all.) The sleep ages the
// idle connection: the age is what is tested.
func TestEnginePostKeepsOlderIdleConnections(t *testing.T) {
	var ids atomic.Int64
	release := make(chan struct{})
	held := make(chan struct{}, 1)
	srv := startRaw(t, func(c net.Conn) {
		id := ids.Add(1)
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.ReadAll(req.Body)
			if req.URL.Path == "/hold" {
				held <- struct{}{}
				<-release
			}
			b := fmt.Sprint(id)
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
		}
	})
	p, _ := proxyTo(t, Config{Timeouts: Timeouts{Idle: 30 * time.Second}}, srv)
	do := func(c net.Conn, br *bufio.Reader, req string) string {
		t.Helper()
		io.WriteString(c, req)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	c1, br1 := dialWithin(t, p.addr, 15*time.Second)
	if id := do(c1, br1, "GET /a HTTP/1.1\r\nHost: a\r\n\r\n"); id != "1" {
		t.Fatalf("first GET on server connection %s", id)
	}
	// the pooled connection 1 grows older than nonIdempotentMaxIdle (not a
	// synchronisation wait: the age is the condition under test)
	time.Sleep(nonIdempotentMaxIdle + 200*time.Millisecond)
	if id := do(c1, br1, "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"); id != "2" {
		t.Fatalf("POST on server connection %s, want a new one (2)", id)
	}
	// The POST's connection goes back to the pool after its response has
	// been sent: wait until both are idle, or /hold may take connection 1.
	waitFor(t, "two idle server connections", func() bool { return p.idleConns(srv.addr()) == 2 })
	// hold the newest idle connection (2) with one request, then ask again:
	// the GET takes connection 1, still young enough for it
	c2, br2 := dialWithin(t, p.addr, 15*time.Second)
	io.WriteString(c2, "GET /hold HTTP/1.1\r\nHost: a\r\n\r\n")
	select {
	case <-held:
	case <-time.After(5 * time.Second):
		t.Fatal("the held request did not reach the server")
	}
	got := do(c1, br1, "GET /b HTTP/1.1\r\nHost: a\r\n\r\n")
	close(release)
	if resp, err := http.ReadResponse(br2, nil); err == nil {
		io.ReadAll(resp.Body)
	}
	if !strings.EqualFold(got, "1") {
		t.Fatalf("GET after the POST served on server connection %s, want the idle connection 1 (%d connections opened)", got, ids.Load())
	}
}
