package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/palisade-lb/palisade/internal/testutil"

	"github.com/palisade-lb/palisade/proxy/l7"
)

// countingConn counts what a test client writes and reads.
type countingConn struct {
	net.Conn
	in, out atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.in.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.out.Add(int64(n))
	return n, err
}

// okServer answers every request with "ok"; /upgrade switches to an echo tunnel.
func okServer(t *testing.T) *testServer {
	return startServer(t, func(c *net.TCPConn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/upgrade" {
				fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
				_, _ = io.Copy(c, br)
				_ = c.CloseWrite()
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
}

// The client bytes of http connections served on goroutines reach the
// frontend's counters (palisade_frontend_bytes_total) as those of the event
// loop do: TLS ones (HTTP/1.1 and HTTP/2, bytes of the HTTP exchange) and a
// plain one the loop hands off (an Upgrade tunnel, spliced both ways).
func TestHTTPFrontendBytesOffTheLoop(t *testing.T) {
	t.Parallel()
	srv := okServer(t)
	// exact: what the client wrote is what the proxy read, and the other way
	exact := func(t *testing.T, fe *Frontend, cc *countingConn) {
		t.Helper()
		waitFor(t, "frontend byte counters", 5*time.Second, func() bool {
			st := fe.Stats().Snapshot()
			return st.BytesIn == uint64(cc.out.Load()) && st.BytesOut == uint64(cc.in.Load())
		})
	}

	t.Run("tls http/1.1", func(t *testing.T) {
		fe, ls, addr := startHTTPFrontend(t, FrontendConfig{Name: "fe"}, l7.Config{TLS: testutil.SelfSignedConfig(t, "a")}, newServer("a", srv.addr))
		if ls.byAddr["127.0.0.1:0"].onEngine {
			t.Fatal("a TLS frontend is on the event loops")
		}
		tc, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		cc := &countingConn{Conn: tc}
		br := bufio.NewReader(cc)
		for i := range 3 {
			fmt.Fprintf(cc, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("request %d: %v %v", i, resp, err)
			}
			_, _ = io.ReadAll(resp.Body)
			exact(t, fe, cc) // after each exchange, not only at close
		}
		_ = tc.Close()
		exact(t, fe, cc)
	})

	t.Run("tls h2", func(t *testing.T) {
		fe, _, addr := startHTTPFrontend(t, FrontendConfig{Name: "fe"}, l7.Config{TLS: testutil.SelfSignedConfig(t, "a")}, newServer("a", srv.addr))
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Post("https://"+addr+"/", "text/plain", bytes.NewReader(make([]byte, 3000)))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || string(body) != "ok" {
			t.Fatalf("%s %d %q, want HTTP/2 200 ok", resp.Proto, resp.StatusCode, body)
		}
		// the preface, headers and the 3000-byte body in; settings, headers, data out
		waitFor(t, "frontend byte counters", 5*time.Second, func() bool {
			st := fe.Stats().Snapshot()
			return st.BytesIn > 3000 && st.BytesOut > 2
		})
	})

	t.Run("handed-off tunnel", func(t *testing.T) {
		fe, _, addr := startHTTPProxy(t, FrontendConfig{Name: "fe"}, l7.Config{}, newServer("a", srv.addr))
		c := dial(t, addr)
		cc := &countingConn{Conn: c}
		br := bufio.NewReader(cc)
		fmt.Fprintf(cc, "GET /upgrade HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 101 {
			t.Fatalf("upgrade: %v %v", resp, err)
		}
		const size = 1 << 20 // large enough to be spliced
		sent := make(chan error, 1)
		go func() {
			_, err := cc.Write(bytes.Repeat([]byte("x"), size))
			if err == nil {
				err = c.CloseWrite()
			}
			sent <- err
		}()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		echoed, err := io.Copy(io.Discard, br)
		if err != nil || echoed != size {
			t.Fatalf("echo: %d bytes, %v; want %d", echoed, err, size)
		}
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
		exact(t, fe, cc)
	})
}
