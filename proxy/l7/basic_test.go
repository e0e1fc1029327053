package l7

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func goBackend(t *testing.T, name string) (*httptest.Server, *fakeServer) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Header().Set("Content-Length", "1048576")
			w.Write(bytes.Repeat([]byte("x"), 1<<20))
			return
		case "/chunked":
			w.Write([]byte("part1-"))
			w.(http.Flusher).Flush()
			w.Write([]byte("part2"))
			return
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %d %s", r.Method, len(b), r.Header.Get("Content-Type"))
			return
		case "/headers":
			for k, v := range r.Header {
				fmt.Fprintf(w, "%s=%s\n", k, strings.Join(v, "|"))
			}
			return
		}
		w.Header().Set("X-Server", name)
		fmt.Fprintf(w, "hello from %s %s", name, r.URL.RequestURI())
	}))
	t.Cleanup(ts.Close)
	return ts, newFakeServer(name, ts.Listener.Addr().String())
}

func TestGoClientKeepAlive(t *testing.T) {
	_, s1 := goBackend(t, "s1")
	be := &fakeBackend{name: "app", servers: []*fakeServer{s1}, retries: 2}
	p := startProxy(t, Config{DefaultBackend: "app"}, fakeBackends{"app": be})
	cl := &http.Client{Timeout: 5 * time.Second}
	for i := 0; i < 20; i++ {
		resp, err := cl.Get("http://" + p.addr + "/x?i=" + fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("hello from s1 /x?i=%d", i); string(b) != want {
			t.Fatalf("got %q want %q", b, want)
		}
	}
	// big + chunked + POST
	resp, err := cl.Get("http://" + p.addr + "/big")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(b) != 1<<20 {
		t.Fatalf("big: %d bytes", len(b))
	}
	resp, err = cl.Get("http://" + p.addr + "/chunked")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "part1-part2" || len(resp.TransferEncoding) == 0 {
		t.Fatalf("chunked: %q %v", b, resp.TransferEncoding)
	}
	body := bytes.Repeat([]byte("y"), 300000)
	resp, err = cl.Post("http://"+p.addr+"/echo", "text/plain", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "POST 300000 text/plain" {
		t.Fatalf("post: %q", b)
	}
	// chunked upload (unknown length)
	resp, err = cl.Post("http://"+p.addr+"/echo", "a/b", io.MultiReader(strings.NewReader("abc"), strings.NewReader("defg")))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "POST 7 a/b" {
		t.Fatalf("chunked post: %q", b)
	}
	waitFor(t, "outcomes", func() bool { return len(s1.outcomes()) == 24 })
	for _, o := range s1.outcomes() {
		if o.Status != 200 {
			t.Fatalf("outcome %+v", o)
		}
	}
}

func TestPipelining(t *testing.T) {
	_, s1 := goBackend(t, "s1")
	be := &fakeBackend{name: "app", servers: []*fakeServer{s1}}
	p := startProxy(t, Config{DefaultBackend: "app"}, fakeBackends{"app": be})
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var req string
	for i := 0; i < 5; i++ {
		req += fmt.Sprintf("GET /p%d HTTP/1.1\r\nHost: a\r\n\r\n", i)
	}
	req += "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
	req += "GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
	c.Write([]byte(req))
	br := bufio.NewReader(c)
	for i := 0; i < 7; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		want := fmt.Sprintf("hello from s1 /p%d", i)
		if i == 5 {
			want = "POST 3 "
		} else if i == 6 {
			want = "hello from s1 /last"
		}
		if string(b) != want {
			t.Fatalf("response %d: %q want %q", i, b, want)
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection not closed after Connection: close: %v", err)
	}
}

func TestHTTP10Client(t *testing.T) {
	_, s1 := goBackend(t, "s1")
	be := &fakeBackend{name: "app", servers: []*fakeServer{s1}}
	p := startProxy(t, Config{DefaultBackend: "app"}, fakeBackends{"app": be})
	for _, tc := range []struct {
		req       string
		keepAlive bool
		body      string
	}{
		{"GET /a HTTP/1.0\r\n\r\n", false, "hello from s1 /a"},
		{"GET /chunked HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", false, "part1-part2"},
		{"GET /b HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", true, "hello from s1 /b"},
	} {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte(tc.req))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != tc.body {
			t.Fatalf("%q: body %q", tc.req, b)
		}
		if tc.keepAlive != (resp.Header.Get("Connection") == "keep-alive") {
			t.Fatalf("%q: Connection %q", tc.req, resp.Header.Get("Connection"))
		}
		c.Close()
	}
}
