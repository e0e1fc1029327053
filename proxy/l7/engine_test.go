package l7

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// Server connections are pooled and reused; one the server closes while idle
// costs the client nothing (dropped from the pool, or retried fresh).
func TestServerConnectionReuse(t *testing.T) {
	var accepts atomic.Int64
	srv := startRaw(t, func(c net.Conn) {
		accepts.Add(1)
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.URL.Path), req.URL.Path)
			if req.URL.Query().Get("close") != "" {
				return // closed after answering, without saying so
			}
		}
	})
	p, _ := proxyTo(t, Config{}, srv)
	c, br := dialWithin(t, p.addr, 10*time.Second)
	get := func(target string) {
		t.Helper()
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", target)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", target, err)
		}
		b, _ := io.ReadAll(resp.Body)
		path := target
		if i := bytes.IndexByte([]byte(target), '?'); i >= 0 {
			path = target[:i]
		}
		if resp.StatusCode != 200 || string(b) != path {
			t.Fatalf("GET %s: %d %q", target, resp.StatusCode, b)
		}
	}
	for i := range 30 {
		get("/r" + strconv.Itoa(i))
	}
	if n := accepts.Load(); n != 1 {
		t.Fatalf("30 sequential requests opened %d server connections, want 1 (pooled)", n)
	}
	for i := range 10 {
		get("/c" + strconv.Itoa(i) + "?close=1")
		get("/after" + strconv.Itoa(i))
	}
	if n := accepts.Load(); n < 10 {
		t.Fatalf("server closed 10 connections but only %d were opened", n)
	}
}

// Large bodies of each framing arrive intact through a client that reads in
// small pieces (the proxy waits for it rather than buffering).
func TestLargeResponses(t *testing.T) {
	body := make([]byte, 8<<20)
	for i := range body {
		body[i] = byte(i*7 + i>>11)
	}
	sum := sha256.Sum256(body)
	srv := startRaw(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			switch req.URL.Path {
			case "/length":
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(body))
				c.Write(body)
			case "/chunked":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
				for off := 0; off < len(body); off += 100000 {
					end := min(off+100000, len(body))
					fmt.Fprintf(c, "%x\r\n", end-off)
					c.Write(body[off:end])
					io.WriteString(c, "\r\n")
				}
				io.WriteString(c, "0\r\n\r\n")
			case "/close":
				io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n")
				c.Write(body)
				return
			}
		}
	})
	p, _ := proxyTo(t, Config{}, srv)
	c, br := dialWithin(t, p.addr, 30*time.Second)
	for _, path := range []string{"/length", "/chunked", "/length", "/close"} {
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", path)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		h := sha256.New()
		buf := make([]byte, 1500)
		n, err := io.CopyBuffer(h, struct{ io.Reader }{resp.Body}, buf)
		if err != nil || n != int64(len(body)) || !bytes.Equal(h.Sum(nil), sum[:]) {
			t.Fatalf("GET %s: %d bytes, err %v, digest match %v", path, n, err, bytes.Equal(h.Sum(nil), sum[:]))
		}
	}
}

// Idle server connections are closed after timeouts.idle.
func TestIdleServerConnectionsExpire(t *testing.T) {
	closed := make(chan struct{}, 1)
	srv := startRaw(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			if _, err := http.ReadRequest(br); err != nil {
				closed <- struct{}{}
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	p, _ := proxyTo(t, Config{Timeouts: Timeouts{Idle: 300 * time.Millisecond}}, srv)
	resp, err := http.Get("http://" + p.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("idle server connection still open 5s after a 300ms idle timeout")
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += n
	return n, err
}

// The engine tells its loop every byte it passes between client and server
// (Loop.Moved, the loop's measure of its rate): the request as the client
// sent it and the response as the client got it, exchange after exchange.
func TestEngineCountsMovedBytes(t *testing.T) {
	if !onEngine {
		t.Skip("L7_GOROUTINE: no event loop")
	}
	srv := startRequests(t, func(c net.Conn, req *http.Request) bool {
		size := 100 + len(req.URL.Path)*1000
		if req.URL.Path == "/large" {
			size = 4*spliceMin + 7 // spliced
		}
		body := bytes.Repeat([]byte("x"), size)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		return true
	})
	p, _ := proxyTo(t, Config{}, srv)
	c, _ := dialWithin(t, p.addr, 10*time.Second)
	cr := &countingReader{r: c}
	br := bufio.NewReader(cr)
	sent := 0
	for _, path := range []string{"/a", "/bb", "/large", "/cccc"} {
		req := "GET " + path + " HTTP/1.1\r\nHost: a\r\nX-Pad: " + path + "\r\n\r\n"
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		sent += len(req)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			t.Fatal(err)
		}
		got := make(chan int64, 1)
		if !p.loop.Post(func() { got <- p.loop.moved }) {
			t.Fatal("loop ended")
		}
		if m := <-got; m != int64(sent+cr.n) {
			t.Fatalf("after %s: loop counted %d bytes moved, want %d sent + %d received", path, m, sent, cr.n)
		}
	}
}
