package l7

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// A client that pipelines a second request and half-closes while the first
// is in flight gets both answers and then the proxy's close at once. (The
// engine once took the FIN with the short read of the second request and
// waited for an edge that never came, until timeouts.idle.)
func TestEngineHalfCloseAfterPipelinedRequest(t *testing.T) {
	release := make(chan struct{})
	srv := startRaw(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/hold" {
				<-release
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	p, s := proxyTo(t, Config{Timeouts: Timeouts{Idle: 20 * time.Second}}, srv)
	c, br := dialWithin(t, p.addr, 15*time.Second)
	io.WriteString(c, "GET /hold HTTP/1.1\r\nHost: a\r\n\r\n")
	waitFor(t, "the first request at the server", func() bool { return s.act.Load() == 1 && len(s.outcomes()) == 0 })
	io.WriteString(c, "GET /second HTTP/1.1\r\nHost: a\r\n\r\n")
	c.(*net.TCPConn).CloseWrite()
	// both segments are in the proxy's socket before the server answers
	close(release)
	for i := 0; i < 2; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		io.ReadAll(resp.Body)
	}
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err := br.ReadByte()
	if err != io.EOF {
		t.Fatalf("after both responses to a half-closed client: %v after %v, want EOF at once (timeouts.idle is 20s)", err, time.Since(start).Round(time.Millisecond))
	}
}
