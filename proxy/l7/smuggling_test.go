package l7

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// seenRequest is what the backend (Go's HTTP/1.1 parser, standing in for a
// real server) read.
type seenRequest struct {
	method, path string
	header       http.Header
	body         string
}

type recorder struct {
	mu   sync.Mutex
	reqs []seenRequest
	raw  bytes.Buffer
}

func (r *recorder) requests() []seenRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]seenRequest(nil), r.reqs...)
}

func (r *recorder) rawBytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.raw.Bytes()...)
}

type teeConn struct {
	net.Conn
	r *recorder
}

func (t teeConn) Read(p []byte) (int, error) {
	n, err := t.Conn.Read(p)
	t.r.mu.Lock()
	t.r.raw.Write(p[:n])
	t.r.mu.Unlock()
	return n, err
}

// recordingBackend parses requests with net/http and answers 200 "ok".
func recordingBackend(t *testing.T) (*rawServer, *recorder) {
	rec := &recorder{}
	srv := startRaw(t, func(c net.Conn) {
		br := bufio.NewReader(teeConn{c, rec})
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body, err := io.ReadAll(req.Body)
			if err != nil {
				return // incomplete: the server never acts on it
			}
			rec.mu.Lock()
			rec.reqs = append(rec.reqs, seenRequest{req.Method, req.URL.RequestURI(), req.Header, string(body)})
			rec.mu.Unlock()
			if _, err := c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")); err != nil {
				return
			}
		}
	})
	return srv, rec
}

const smuggled = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"

func TestSmugglingAndMalformed(t *testing.T) {
	type tc struct {
		name   string
		in     string
		status int
		body   string // for accepted requests: the body the backend must read
	}
	big := strings.Repeat("a", 5000)
	many := strings.Repeat("X-A: b\r\n", 101)
	cases := []tc{
		{"CL.TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400, ""},
		{"TE.CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + smuggled, 400, ""},
		{"TE xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + smuggled, 400, ""},
		{"TE space before colon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + smuggled, 400, ""},
		{"TE chunked then identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + smuggled, 400, ""},
		{"TE gzip, chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + smuggled, 501, ""},
		{"TE twice chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400, ""},
		{"TE split gzip + chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 501, ""},
		{"TE empty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n" + smuggled, 400, ""},
		{"TE with parameter", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;x=1\r\n\r\n0\r\n\r\n" + smuggled, 400, ""},
		{"TE NUL in name", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\x00: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400, ""},
		{"TE vertical tab", "POST / HTTP/1.1\r\nHost: a\r\n\x0bTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400, ""},
		{"TE obs-fold", "POST / HTTP/1.1\r\nHost: a\r\nX: y\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400, ""},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400, ""},
		{"TE uppercase accepted", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 200, "hello"},
		{"TE tab OWS accepted", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked \r\n\r\n5\r\nhello\r\n0\r\n\r\n", 200, "hello"},
		{"CL repeated same", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello" + smuggled, 400, ""},
		{"CL repeated different", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\nhello" + smuggled, 400, ""},
		{"CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello" + smuggled, 400, ""},
		{"CL plus sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello" + smuggled, 400, ""},
		{"CL negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n" + smuggled, 400, ""},
		{"CL hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello" + smuggled, 400, ""},
		{"CL inner space", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\nhello" + smuggled, 400, ""},
		{"CL overflow", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n" + smuggled, 400, ""},
		{"CL space before colon", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello" + smuggled, 400, ""},
		{"CL nominated by Connection", "POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello", 200, "hello"},
		{"chunk size hex prefix", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n" + smuggled, 400, ""},
		{"chunk size plus", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n" + smuggled, 400, ""},
		{"chunk size trailing space", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n" + smuggled, 400, ""},
		{"chunk size overflow", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n" + smuggled, 400, ""},
		{"chunk size bare LF", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n" + smuggled, 400, ""},
		{"chunk ext bare LF", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n" + smuggled, 400, ""},
		{"chunk ext NUL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\x00\r\nhello\r\n0\r\n\r\n" + smuggled, 400, ""},
		{"chunk ext accepted", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;name=\"v\"\r\nhello\r\n0\r\n\r\n", 200, "hello"},
		{"chunk data overrun", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n" + smuggled, 400, ""},
		{"chunk data bare LF", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n" + smuggled, 400, ""},
		{"chunk trailer invalid", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nBad Trailer\r\n\r\n" + smuggled, 400, ""},
		{"chunk last without CRLF", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nGET /smuggled HTTP/1.1\r\n\r\n", 400, ""},
		{"bare LF request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", 400, ""},
		{"bare LF header", "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400, ""},
		{"bare LF end of head", "GET / HTTP/1.1\r\nHost: a\r\n\n" + smuggled, 400, ""},
		{"bare CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rContent-Length: 40\r\n\r\n" + smuggled, 400, ""},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400, ""},
		{"control byte in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400, ""},
		{"DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", 400, ""},
		{"invalid method", "G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, ""},
		{"space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400, ""},
		{"double space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, ""},
		{"HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, ""},
		{"bad version", "GET / HTTP/1.x\r\nHost: a\r\n\r\n", 400, ""},
		{"missing Host", "GET / HTTP/1.1\r\n\r\n", 400, ""},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, ""},
		{"invalid Host", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, ""},
		{"target not origin-form", "GET foo HTTP/1.1\r\nHost: a\r\n\r\n", 400, ""},
		{"request line too long", "GET /" + strings.Repeat("a", 9000) + " HTTP/1.1\r\nHost: a\r\n\r\n", 414, ""},
		{"huge header", "GET / HTTP/1.1\r\nHost: a\r\nX: " + big + "\r\n\r\n", 431, ""},
		{"too many headers", "GET / HTTP/1.1\r\nHost: a\r\n" + many + "\r\n", 431, ""},
		{"CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405, ""},
	}
	if len(cases) < 30 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv, rec := recordingBackend(t)
			be := &fakeBackend{name: "app", servers: []*fakeServer{newFakeServer("s1", srv.addr())}}
			p := startProxy(t, Config{DefaultBackend: "app", MaxHeaderBytes: 4096}, fakeBackends{"app": be})
			conn, err := net.Dial("tcp", p.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Write([]byte(c.in)); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("reading response: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.status)
			}
			if c.status != 200 {
				if !resp.Close {
					t.Errorf("connection not closed after %d", c.status)
				}
				// Nothing of a rejected request reaches the server.
				conn.Close()
				p.stop()
				if got := rec.rawBytes(); len(got) != 0 {
					t.Fatalf("backend received %q", got)
				}
				return
			}
			reqs := rec.requests()
			if len(reqs) != 1 || reqs[0].body != c.body {
				t.Fatalf("backend saw %+v", reqs)
			}
			if bytes.Contains(rec.rawBytes(), []byte("smuggled")) {
				t.Fatal("smuggled request reached the backend")
			}
		})
	}
}

// A body that goes bad after the head was already forwarded must not leave a
// second request on the server connection.
func TestChunkErrorMidStream(t *testing.T) {
	srv, rec := recordingBackend(t)
	be := &fakeBackend{name: "app", servers: []*fakeServer{newFakeServer("s1", srv.addr())}}
	p := startProxy(t, Config{DefaultBackend: "app"}, fakeBackends{"app": be})
	conn, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	conn.Write([]byte("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"))
	waitFor(t, "body prefix at backend", func() bool { return bytes.Contains(rec.rawBytes(), []byte("hello")) })
	conn.Write([]byte("3\r\nabcdef\r\n0\r\n\r\n" + smuggled))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 400 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	conn.Close()
	p.stop()
	if got := rec.rawBytes(); bytes.Contains(got, []byte("smuggled")) || bytes.Contains(got, []byte("abcdef")) {
		t.Fatalf("backend received %q", got)
	}
	if n := len(rec.requests()); n != 0 {
		t.Fatalf("backend completed %d requests", n)
	}
}
