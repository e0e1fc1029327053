package l7

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/palisade-lb/palisade/internal/testutil"
	"github.com/palisade-lb/palisade/proxy/l7/http1"
)

func rawRoundTrip(t *testing.T, addr, req string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestRouting(t *testing.T) {
	mk := func(n string) *fakeBackend { return &fakeBackend{name: n} }
	bs := fakeBackends{"api": mk("api"), "wild": mk("wild"), "exact": mk("exact"), "post": mk("post"), "hdr": mk("hdr"), "app": mk("app")}
	cfg := Config{
		Routes: []Route{
			{Host: "api.example.com", PathPrefix: "/v1", Backend: "api"},
			{Host: "*.example.com", Path: "/exact", Backend: "exact"},
			{Host: "*.example.com", Methods: []string{"POST"}, Backend: "post"},
			{Headers: map[string]string{"X-Canary": "1"}, Backend: "hdr"},
			{Host: "*.example.com", Backend: "wild"},
			{Host: "old.example.org", Redirect: &Redirect{Scheme: "https", Code: 301}},
		},
		DefaultBackend: "app",
	}
	m, _ := NewMetrics(nil)
	h, err := New(cfg, bs, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		head string
		want string
	}{
		{"GET /v1/users HTTP/1.1\r\nHost: api.example.com\r\n\r\n", "api"},
		{"GET /v1/users HTTP/1.1\r\nHost: API.Example.com:8080\r\n\r\n", "api"},
		{"GET /v2 HTTP/1.1\r\nHost: api.example.com\r\n\r\n", "wild"},
		{"GET /exact HTTP/1.1\r\nHost: a.b.example.com\r\n\r\n", "exact"},
		{"GET /exact?q=1 HTTP/1.1\r\nHost: a.example.com\r\n\r\n", "exact"},
		{"GET /exactly HTTP/1.1\r\nHost: a.example.com\r\n\r\n", "wild"},
		{"POST /x HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 0\r\n\r\n", "post"},
		{"GET /x HTTP/1.1\r\nHost: example.com\r\n\r\n", "app"},
		{"GET /x HTTP/1.1\r\nHost: other\r\nx-canary: 1\r\n\r\n", "hdr"},
		{"GET /x HTTP/1.1\r\nHost: other\r\nX-Canary: 2\r\n\r\n", "app"},
		{"GET http://api.example.com/v1/x HTTP/1.1\r\nHost: other\r\n\r\n", "api"},
		{"GET /x HTTP/1.1\r\nHost: old.example.org\r\n\r\n", "redirect"},
	} {
		var req http1.Request
		if _, err := http1.ParseRequest([]byte(tc.head), &req, http1.Limits{}); err != nil {
			t.Fatalf("%q: %v", tc.head, err)
		}
		host := req.Host
		if a := req.Authority(); a != nil {
			host = a
		}
		rt := h.router.match(&req, hostOnly(host), req.Path())
		got := "app"
		if rt != nil {
			if rt.redirect != nil {
				got = "redirect"
			} else {
				got = rt.backend.name
			}
		}
		if got != tc.want {
			t.Errorf("%q: routed to %s, want %s", tc.head, got, tc.want)
		}
	}
	for _, bad := range []Config{
		{Routes: []Route{{Backend: "nope"}}},
		{Routes: []Route{{Host: "a.*.com", Backend: "app"}}},
		{Routes: []Route{{Backend: "app", Redirect: &Redirect{}}}},
		{Routes: []Route{{Redirect: &Redirect{Code: 200}}}},
		{Routes: []Route{{PathPrefix: "v1", Backend: "app"}}},
		{DefaultBackend: "missing"},
		{RequestHeaders: HeaderRules{Set: map[string]string{"Content-Length": "1"}}},
		{RequestHeaders: HeaderRules{Add: map[string]string{"X": "a\r\nb"}}},
	} {
		if _, err := New(bad, bs, m, nil); err == nil {
			t.Errorf("config %+v accepted", bad)
		}
	}
}

func TestRedirects(t *testing.T) {
	p := startProxy(t, Config{Routes: []Route{
		{PathPrefix: "/old", Redirect: &Redirect{Path: "/new", Code: 308}},
		{Host: "plain.example.com", Redirect: &Redirect{Scheme: "https", Code: 301}},
		{Host: "move.example.com", Redirect: &Redirect{Host: "www.example.com", Port: 8443, Scheme: "https"}},
	}}, fakeBackends{})
	for _, tc := range []struct{ req, code, loc string }{
		{"GET /old/x?a=1 HTTP/1.1\r\nHost: h:8080\r\n\r\n", "308", "http://h:8080/new?a=1"},
		{"GET /p?q HTTP/1.1\r\nHost: plain.example.com\r\n\r\n", "301", "https://plain.example.com/p?q"},
		{"GET /p HTTP/1.1\r\nHost: move.example.com\r\n\r\n", "302", "https://www.example.com:8443/p"},
	} {
		resp, _ := rawRoundTrip(t, p.addr, tc.req)
		if fmt.Sprint(resp.StatusCode) != tc.code || resp.Header.Get("Location") != tc.loc {
			t.Errorf("%q: %d %q", tc.req, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	// No route, no default backend: 503.
	resp, body := rawRoundTrip(t, p.addr, "GET /none HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 503 || !strings.Contains(body, "503") {
		t.Errorf("no route: %d %q", resp.StatusCode, body)
	}
}

func TestHeaderRewriting(t *testing.T) {
	srv, rec := recordingBackend(t)
	be := &fakeBackend{name: "app", servers: []*fakeServer{newFakeServer("s1", srv.addr())}}
	respSrv := startRaw(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		c.Write([]byte("HTTP/1.1 200 OK\r\nServer: secret/1.0\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-Keep: yes\r\nContent-Length: 2\r\n\r\nok"))
	})
	be2 := &fakeBackend{name: "resp", servers: []*fakeServer{newFakeServer("r1", respSrv.addr())}}
	p := startProxy(t, Config{
		Routes:         []Route{{PathPrefix: "/resp", Backend: "resp"}},
		DefaultBackend: "app",
		Forwarded:      true,
		RequestID:      true,
		RequestHeaders: HeaderRules{
			Set:    map[string]string{"X-Env": "prod"},
			Add:    map[string]string{"X-Added": "1"},
			Remove: []string{"X-Secret"},
		},
		ResponseHeaders: HeaderRules{
			Set:    map[string]string{"X-Frame-Options": "DENY"},
			Remove: []string{"Server"},
		},
	}, fakeBackends{"app": be, "resp": be2})
	resp, _ := rawRoundTrip(t, p.addr, "GET /h HTTP/1.1\r\nHost: www.example.com\r\nX-Env: dev\r\nX-Secret: s\r\n"+
		"Connection: keep-alive, X-Drop\r\nX-Drop: 1\r\nKeep-Alive: 300\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\n"+
		"X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	reqs := rec.requests()
	if len(reqs) != 1 {
		t.Fatalf("backend saw %d requests", len(reqs))
	}
	hd := reqs[0].header
	checks := map[string]string{
		"X-Env":             "prod",
		"X-Added":           "1",
		"X-Secret":          "",
		"X-Drop":            "",
		"Keep-Alive":        "",
		"Te":                "",
		"Proxy-Connection":  "",
		"Connection":        "",
		"X-Forwarded-For":   "203.0.113.7, 127.0.0.1",
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  "www.example.com",
		"Forwarded":         `for=127.0.0.1;host="www.example.com";proto=http`,
	}
	for k, want := range checks {
		if got := strings.Join(hd.Values(k), ","); got != want {
			t.Errorf("request header %s = %q, want %q", k, got, want)
		}
	}
	if id := hd.Get("X-Request-Id"); len(id) != 32 {
		t.Errorf("X-Request-ID %q", id)
	}
	// A client-supplied request ID is kept.
	rawRoundTrip(t, p.addr, "GET /h HTTP/1.1\r\nHost: a\r\nX-Request-ID: abc\r\n\r\n")
	if got := rec.requests()[1].header.Values("X-Request-Id"); len(got) != 1 || got[0] != "abc" {
		t.Errorf("request id %q", got)
	}
	resp, _ = rawRoundTrip(t, p.addr, "GET /resp HTTP/1.1\r\nHost: a\r\n\r\n")
	for k, want := range map[string]string{"Server": "", "X-Hop": "", "Keep-Alive": "", "X-Keep": "yes", "X-Frame-Options": "DENY"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("response header %s = %q, want %q", k, got, want)
		}
	}
}

func TestErrorsFromServers(t *testing.T) {
	garbage := startRaw(t, func(c net.Conn) {
		http.ReadRequest(bufio.NewReader(c))
		c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello"))
	})
	hang := startRaw(t, func(c net.Conn) {
		http.ReadRequest(bufio.NewReader(c))
		io.Copy(io.Discard, c) // never answers
	})
	dead := testutil.RefusingAddr(t).String()
	sBad := newFakeServer("bad", garbage.addr())
	sHang := newFakeServer("hang", hang.addr())
	sDead := newFakeServer("dead", dead)
	bs := fakeBackends{
		"bad":   {name: "bad", servers: []*fakeServer{sBad}},
		"hang":  {name: "hang", servers: []*fakeServer{sHang}},
		"dead":  {name: "dead", servers: []*fakeServer{sDead}, retries: 2},
		"empty": {name: "empty"},
	}
	p := startProxy(t, Config{
		Routes: []Route{
			{PathPrefix: "/bad", Backend: "bad"},
			{PathPrefix: "/hang", Backend: "hang"},
			{PathPrefix: "/dead", Backend: "dead"},
			{PathPrefix: "/empty", Backend: "empty"},
		},
		Timeouts: Timeouts{Server: 300 * time.Millisecond},
	}, bs)
	for _, tc := range []struct {
		path   string
		status int
		check  func(o []Outcome) bool
		srv    *fakeServer
	}{
		{"/bad", 502, func(o []Outcome) bool { return len(o) == 1 && o[0].BadResponse }, sBad},
		{"/hang", 504, func(o []Outcome) bool { return len(o) == 1 && o[0].Timeout }, sHang},
		{"/dead", 503, func(o []Outcome) bool { return len(o) >= 1 && o[0].ConnectFailed }, sDead},
		{"/empty", 503, nil, nil},
	} {
		resp, body := rawRoundTrip(t, p.addr, "GET "+tc.path+" HTTP/1.1\r\nHost: a\r\n\r\n")
		if resp.StatusCode != tc.status || !strings.Contains(body, fmt.Sprint(tc.status)) {
			t.Errorf("%s: %d %q", tc.path, resp.StatusCode, body)
		}
		if tc.srv != nil {
			waitFor(t, "outcome", func() bool { return len(tc.srv.outcomes()) > 0 })
			if o := tc.srv.outcomes(); !tc.check(o) {
				t.Errorf("%s: outcomes %+v", tc.path, o)
			}
		}
	}
}

// Killing one of two servers under load loses no GET: connect failures and
// connections dropped without a response are retried on the other server.
func TestRetriesUnderLoad(t *testing.T) {
	var killed atomic.Bool
	handler := func(name string) func(c net.Conn) {
		return func(c net.Conn) {
			br := bufio.NewReader(c)
			for {
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				if name == "s2" && killed.Load() {
					return // dies mid-connection: closes without answering
				}
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n%s", name)
			}
		}
	}
	a := startRaw(t, handler("s1"))
	b := startRaw(t, handler("s2"))
	s1, s2 := newFakeServer("s1", a.addr()), newFakeServer("s2", b.addr())
	be := &fakeBackend{name: "app", servers: []*fakeServer{s1, s2}, retries: 2}
	p := startProxy(t, Config{DefaultBackend: "app"}, fakeBackends{"app": be})

	const workers, perWorker = 8, 150
	var failed, done atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(20 * time.Second)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer cl.CloseIdleConnections()
			for i := 0; i < perWorker && time.Now().Before(deadline); i++ {
				resp, err := cl.Get("http://" + p.addr + "/x")
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
				}
				if done.Add(1) == workers*perWorker/3 {
					killed.Store(true)
					b.ln.Close() // new connections to s2 are refused
				}
			}
		}()
	}
	wg.Wait()
	if !killed.Load() {
		t.Fatal("server never killed")
	}
	if failed.Load() != 0 {
		t.Fatalf("%d of %d GETs failed", failed.Load(), done.Load())
	}
	var cf int
	for _, o := range s2.outcomes() {
		if o.ConnectFailed || o.EmptyResponse {
			cf++
		}
	}
	t.Logf("%d GETs, s2 failures absorbed by retries: %d", done.Load(), cf)
}

// A POST is not retried once it may have reached the server.
func TestNonIdempotentNotRetried(t *testing.T) {
	var hits atomic.Int64
	srv := startRaw(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.ReadAll(req.Body)
		hits.Add(1) // processed, then the connection dies without answer
	})
	be := &fakeBackend{name: "app", servers: []*fakeServer{newFakeServer("a", srv.addr()), newFakeServer("b", srv.addr())}, retries: 3}
	p := startProxy(t, Config{DefaultBackend: "app"}, fakeBackends{"app": be})
	resp, _ := rawRoundTrip(t, p.addr, "POST /pay HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
	if resp.StatusCode != 502 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if hits.Load() != 1 {
		t.Fatalf("POST processed %d times", hits.Load())
	}
	resp, _ = rawRoundTrip(t, p.addr, "GET /idem HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp.StatusCode != 502 || hits.Load() != 1+4 {
		t.Fatalf("GET: status %d, hits %d (want 1 try + 3 retries)", resp.StatusCode, hits.Load()-1)
	}
}

func TestCookieStickinessAndURIHash(t *testing.T) {
	srvA, _ := goBackend(t, "a")
	srvB, _ := goBackend(t, "b")
	sa := newFakeServer("a", srvA.Listener.Addr().String())
	sb := newFakeServer("b", srvB.Listener.Addr().String())
	be := &fakeBackend{name: "app", servers: []*fakeServer{sa, sb}, cookie: "SRV"}
	hb := &fakeBackend{name: "hash", servers: []*fakeServer{sa, sb}, hashURI: true}
	p := startProxy(t, Config{Routes: []Route{{PathPrefix: "/h/", Backend: "hash"}}, DefaultBackend: "app"}, fakeBackends{"app": be, "hash": hb})
	resp, _ := rawRoundTrip(t, p.addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	ck := resp.Header.Get("Set-Cookie")
	srvName := resp.Header.Get("X-Server")
	if ck != "SRV="+srvName+"; Path=/; HttpOnly" {
		t.Fatalf("Set-Cookie %q for server %q", ck, srvName)
	}
	for i := 0; i < 6; i++ {
		resp, _ = rawRoundTrip(t, p.addr, "GET / HTTP/1.1\r\nHost: a\r\nCookie: x=1; SRV="+srvName+"\r\n\r\n")
		if got := resp.Header.Get("X-Server"); got != srvName || resp.Header.Get("Set-Cookie") != "" {
			t.Fatalf("sticky request went to %q (cookie %q)", got, resp.Header.Get("Set-Cookie"))
		}
	}
	var first string
	for i := 0; i < 6; i++ {
		resp, _ = rawRoundTrip(t, p.addr, fmt.Sprintf("GET /h/same?i=%d HTTP/1.1\r\nHost: a\r\n\r\n", i))
		if first == "" {
			first = resp.Header.Get("X-Server")
		} else if resp.Header.Get("X-Server") != first {
			t.Fatal("uri_hash moved the same path")
		}
	}
	if hb.lastHash.Load() != HashPath([]byte("/h/same")) {
		t.Fatal("hash not computed from the path")
	}
}

func TestSlowlorisTimeout(t *testing.T) {
	p := startProxy(t, Config{DefaultBackend: "app", Timeouts: Timeouts{HTTPRequest: 200 * time.Millisecond}},
		fakeBackends{"app": {name: "app"}})
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	c.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\nX-Slow: "))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 408 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("took %v", el)
	}
}

// Cancelling the ServeConn context finishes the request in flight (answered
// with Connection: close), closes idle keep-alive connections, and still
// serves the first request of a connection accepted before it (closing that
// one would lose a request the client already sent).
func TestGracefulDrain(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	defer once.Do(func() { close(release) })
	slow := startRaw(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/slow" {
				<-release
			}
			c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone"))
		}
	})
	s := newFakeServer("s", slow.addr())
	p := startProxy(t, Config{DefaultBackend: "app"}, fakeBackends{"app": {name: "app", servers: []*fakeServer{s}}})
	dial := func() net.Conn {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(5 * time.Second))
		return c
	}
	get := func(c net.Conn, br *bufio.Reader, path string) *http.Response {
		t.Helper()
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", path)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		if b, _ := io.ReadAll(resp.Body); string(b) != "done" {
			t.Fatalf("GET %s: body %q", path, b)
		}
		return resp
	}
	idle, fresh, busy := dial(), dial(), dial()
	ibr := bufio.NewReader(idle)
	get(idle, ibr, "/fast") // idle now: between keep-alive requests
	busy.Write([]byte("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n"))
	waitFor(t, "request at server", func() bool { return s.act.Load() == 1 })
	p.cancel()
	// The idle keep-alive connection is closed promptly.
	if _, err := ibr.ReadByte(); err != io.EOF {
		t.Fatalf("idle conn: %v", err)
	}
	// The fresh connection's first request is served, then it closes.
	if resp := get(fresh, bufio.NewReader(fresh), "/fast"); !resp.Close {
		t.Fatal("fresh conn: response without Connection: close during a drain")
	}
	once.Do(func() { close(release) })
	br := bufio.NewReader(busy)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "done" || !resp.Close {
		t.Fatalf("in-flight request: %q close=%v", b, resp.Close)
	}
}
