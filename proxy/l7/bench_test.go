package l7

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"testing"
)

// fixedServer answers every request head (no request bodies) with resp; it
// allocates nothing per request so benchmarks count the proxy only.
func fixedServer(tb testing.TB, resp []byte) *rawServer {
	return startRaw(tb, func(c net.Conn) {
		c.SetDeadline(zeroTime)
		buf := make([]byte, 64<<10)
		n := 0
		for {
			k, err := c.Read(buf[n:])
			if err != nil {
				return
			}
			n += k
			for {
				i := bytes.Index(buf[:n], []byte("\r\n\r\n"))
				if i < 0 {
					break
				}
				if _, err := c.Write(resp); err != nil {
					return
				}
				n = copy(buf, buf[i+4:n])
			}
		}
	})
}

// benchProxy measures one client doing requests in turn. The figure that
// counts here is allocs/op; on the engine path (the default) ns/op is that
// of the test's simple loop (loop_test.go), which blocks in epoll_wait
// between requests: `make bench-http` measures speed on the real loops.
func benchProxy(b *testing.B, cfg Config, respBody int, closeEach bool) {
	body := bytes.Repeat([]byte("x"), respBody)
	resp := append([]byte("HTTP/1.1 200 OK\r\nServer: bench\r\nContent-Type: text/plain\r\nContent-Length: "+strconv.Itoa(respBody)+"\r\n\r\n"), body...)
	srv := fixedServer(b, resp)
	be := &fakeBackend{name: "app", servers: []*fakeServer{newFakeServer("s1", srv.addr())}, retries: 1}
	cfg.DefaultBackend = "app"
	p := startProxy(b, cfg, fakeBackends{"app": be})
	req := []byte("GET /index.html HTTP/1.1\r\nHost: bench.local\r\nUser-Agent: bench/1.0\r\nAccept: */*\r\n\r\n")
	if closeEach {
		req = []byte("GET /index.html HTTP/1.1\r\nHost: bench.local\r\nUser-Agent: bench/1.0\r\nConnection: close\r\n\r\n")
	}
	buf := make([]byte, 256<<10)
	var c net.Conn
	dial := func() {
		var err error
		c, err = net.Dial("tcp", p.addr)
		if err != nil {
			b.Fatal(err)
		}
	}
	dial()
	// The response head palisade sends is fixed; learn its length once.
	readResp := func() {
		n := 0
		for {
			k, err := c.Read(buf[n:])
			n += k
			if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 && n >= i+4+respBody {
				return
			}
			if err != nil {
				b.Fatalf("read: %v (%d bytes)", err, n)
			}
		}
	}
	c.Write(req)
	readResp()
	if closeEach {
		c.Close()
		dial()
	}
	b.SetBytes(int64(respBody))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		readResp()
		if closeEach {
			io.Copy(io.Discard, c)
			c.Close()
			dial()
		}
	}
	b.StopTimer()
	c.Close()
}

func BenchmarkKeepAliveSmall(b *testing.B) { benchProxy(b, Config{}, 13, false) }
func BenchmarkKeepAlive100K(b *testing.B)  { benchProxy(b, Config{}, 100<<10, false) }
func BenchmarkCloseEach(b *testing.B)      { benchProxy(b, Config{}, 13, true) }
func BenchmarkKeepAliveSmallForwarded(b *testing.B) {
	benchProxy(b, Config{Forwarded: true, RequestID: true,
		RequestHeaders: HeaderRules{Set: map[string]string{"X-Edge": "palisade"}}}, 13, false)
}
