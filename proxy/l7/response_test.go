package l7

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// scripted answers each request with the response chosen by its path.
func scripted(t *testing.T, responses map[string]string) *fakeServer {
	srv := startRaw(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			r, ok := responses[req.URL.Path]
			if !ok {
				r = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
			}
			if _, err := c.Write([]byte(r)); err != nil {
				return
			}
			if strings.Contains(r, "Connection: close") || !strings.Contains(r, "Content-Length") && !strings.Contains(r, "chunked") && req.Method != "HEAD" && !strings.HasPrefix(r, "HTTP/1.1 204") && !strings.HasPrefix(r, "HTTP/1.1 304") {
				return
			}
		}
	})
	return newFakeServer("scripted", srv.addr())
}

func TestResponseFraming(t *testing.T) {
	s := scripted(t, map[string]string{
		"/head":     "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
		"/204":      "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
		"/304":      "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
		"/chunked":  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n3;e=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: v\r\n\r\n",
		"/close":    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil-close",
		"/badchunk": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"/100":      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"/te-cl":    "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
	})
	p := startProxy(t, Config{DefaultBackend: "app"}, fakeBackends{"app": {name: "app", servers: []*fakeServer{s}}})
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	do := func(method, path string) (*http.Response, string) {
		t.Helper()
		c.Write([]byte(method + " " + path + " HTTP/1.1\r\nHost: a\r\n\r\n"))
		req, _ := http.NewRequest(method, "http://a"+path, nil)
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, _ := do("HEAD", "/head"); resp.StatusCode != 200 || resp.ContentLength != 1234 {
		t.Fatalf("HEAD: %d %d", resp.StatusCode, resp.ContentLength)
	}
	if resp, _ := do("GET", "/204"); resp.StatusCode != 204 {
		t.Fatalf("204: %d", resp.StatusCode)
	}
	if resp, _ := do("GET", "/304"); resp.StatusCode != 304 || resp.Header.Get("Etag") != `"x"` {
		t.Fatalf("304: %d", resp.StatusCode)
	}
	if resp, body := do("GET", "/chunked"); body != "abcde" || resp.Trailer.Get("X-T") != "v" {
		t.Fatalf("chunked: %q trailer %v", body, resp.Trailer)
	}
	if resp, body := do("GET", "/100"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("1xx skipped: %d %q", resp.StatusCode, body)
	}
	if resp, body := do("GET", "/te-cl"); body != "hi" || resp.ContentLength != -1 {
		t.Fatalf("TE overrides CL: %q %d", body, resp.ContentLength)
	}
	if resp, body := do("GET", "/close"); body != "until-close" || !resp.Close {
		t.Fatalf("close-delimited: %q close=%v", body, resp.Close)
	}
	// The connection is closed after a close-delimited response.
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after close-delimited: %v", err)
	}
	resp, _ := rawRoundTrip(t, p.addr, "GET /badchunk HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp.StatusCode != 502 {
		t.Fatalf("bad chunked response: %d", resp.StatusCode)
	}
}

func TestExpectContinue(t *testing.T) {
	_, s1 := goBackend(t, "s1")
	p := startProxy(t, Config{DefaultBackend: "app"}, fakeBackends{"app": {name: "app", servers: []*fakeServer{s1}}})
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Type: t/x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 100 {
		t.Fatalf("interim: %v %v", resp, err)
	}
	c.Write([]byte("hello"))
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "POST 5 t/x" {
		t.Fatalf("body %q", b)
	}
}

// A server that answers (413) without reading the whole upload, keeping its
// connection open, gets its answer through once the upload stalls.
func TestEarlyResponseDuringUpload(t *testing.T) {
	release := make(chan struct{})
	srv := startRaw(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		c.Write([]byte("HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!"))
		<-release // hold the connection open without reading
	})
	t.Cleanup(func() { close(release) })
	s := newFakeServer("s", srv.addr())
	p := startProxy(t, Config{DefaultBackend: "app", Timeouts: Timeouts{Server: 300 * time.Millisecond, Client: 5 * time.Second}},
		fakeBackends{"app": {name: "app", servers: []*fakeServer{s}}})
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	const size = 64 << 20 // far more than the socket buffers hold
	go func() {
		c.Write([]byte("PUT /upload HTTP/1.1\r\nHost: a\r\nContent-Length: " + fmt.Sprint(size) + "\r\n\r\n"))
		io.Copy(c, io.LimitReader(zeros{}, size))
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 413 || string(b) != "big!" || !resp.Close {
		t.Fatalf("%d %q close=%v", resp.StatusCode, b, resp.Close)
	}
	waitFor(t, "outcome", func() bool { return len(s.outcomes()) == 1 })
	if o := s.outcomes()[0]; o.Status != 413 {
		t.Fatalf("outcome %+v", o)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// timeouts.server is server inactivity: an upload that lasts longer than it
// (the client pacing its body, the server reading along) still gets the
// response, whether the body is sized or chunked.
func TestSlowUploadLongerThanServerTimeout(t *testing.T) {
	_, s1 := goBackend(t, "s1")
	p := startProxy(t, Config{DefaultBackend: "app", Timeouts: Timeouts{Server: 200 * time.Millisecond}},
		fakeBackends{"app": {name: "app", servers: []*fakeServer{s1}}})
	for _, chunked := range []bool{false, true} {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		head, piece := "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\n", "x"
		if chunked {
			head, piece = "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", "1\r\nx\r\n"
		}
		c.Write([]byte(head))
		for i := 0; i < 6; i++ {
			time.Sleep(100 * time.Millisecond) // a slow client: 600ms of body, 3x the server timeout
			c.Write([]byte(piece))
		}
		if chunked {
			c.Write([]byte("0\r\n\r\n"))
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "POST 6 " {
			t.Fatalf("chunked=%v: %d %q", chunked, resp.StatusCode, b)
		}
	}
}
