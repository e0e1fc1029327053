package l7

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// A response head that one short read took leaves the server socket marked
// unreadable: the next request on the pooled connection waits for the
// response's edge instead of reading (EAGAIN) right after it is sent.
func TestEngineShortReadEndsReading(t *testing.T) {
	var conns atomic.Int64
	srv := startRaw(t, func(c net.Conn) {
		id := conns.Add(1)
		br := bufio.NewReader(c)
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n%d", id)
		}
	})
	p, _ := proxyTo(t, Config{Timeouts: Timeouts{Idle: 30 * time.Second}}, srv)
	if p.loop == nil {
		t.Skip("event-loop path only (L7_GOROUTINE is set)")
	}
	c, br := dialWithin(t, p.addr, 15*time.Second)
	for i := range 3 {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "1" {
			t.Fatalf("request %d served on server connection %s, want the pooled connection 1", i, b)
		}
		waitFor(t, "the server connection back in the pool", func() bool { return p.idleConns(srv.addr()) == 1 })
		readable := make(chan bool, 1)
		p.loop.Post(func() { readable <- p.h.epoolFor(p.loop).idle[srv.addr()][0].readable })
		if <-readable {
			t.Fatalf("request %d: the pooled server connection is still marked readable after a short read", i)
		}
	}
}
