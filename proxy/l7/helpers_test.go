package l7

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type fakeServer struct {
	name string
	addr atomic.Value // string
	mu   sync.Mutex
	outs []Outcome
	act  atomic.Int64
}

func newFakeServer(name, addr string) *fakeServer {
	s := &fakeServer{name: name}
	s.addr.Store(addr)
	return s
}

func (s *fakeServer) Name() string { return s.name }
func (s *fakeServer) Addr() string { return s.addr.Load().(string) }
func (s *fakeServer) Done(o Outcome) {
	s.act.Add(-1)
	s.mu.Lock()
	s.outs = append(s.outs, o)
	s.mu.Unlock()
}
func (s *fakeServer) outcomes() []Outcome {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Outcome(nil), s.outs...)
}

type fakeBackend struct {
	name     string
	servers  []*fakeServer
	next     atomic.Uint64
	retries  int
	cookie   string
	hashURI  bool
	lastHash atomic.Uint64
}

func (b *fakeBackend) Name() string { return b.name }
func (b *fakeBackend) Pick(hash uint64, tried *Tried) Server {
	b.lastHash.Store(hash)
	n := len(b.servers)
	if n == 0 {
		return nil
	}
	start := int(b.next.Add(1))
	if b.hashURI {
		start = int(hash % uint64(n))
	}
	for i := 0; i < n; i++ {
		s := b.servers[(start+i)%n]
		if tried.Has(s) {
			continue
		}
		s.act.Add(1)
		return s
	}
	return nil
}
func (b *fakeBackend) PickByName(name string) Server {
	for _, s := range b.servers {
		if s.name == name {
			s.act.Add(1)
			return s
		}
	}
	return nil
}
func (b *fakeBackend) HashURI() bool  { return b.hashURI }
func (b *fakeBackend) Retries() int   { return b.retries }
func (b *fakeBackend) Cookie() string { return b.cookie }

type fakeBackends map[string]*fakeBackend

func (f fakeBackends) Backend(name string) Backend {
	if b, ok := f[name]; ok {
		return b
	}
	return nil
}

// proxy runs a Handler behind a loopback listener.
type proxy struct {
	h      *Handler
	ln     net.Listener
	addr   string
	cancel context.CancelFunc
	wg     sync.WaitGroup
	loop   *testLoop // nil: goroutine path
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("L7_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func startProxy(t testing.TB, cfg Config, bs Backends) *proxy {
	t.Helper()
	m, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Frontend == "" {
		cfg.Frontend = "web"
	}
	h, err := New(cfg, bs, m, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return serveHandler(t, h)
}

// onEngine: serveHandler serves on an event loop (ServeEngine, the default
// path of plain http frontends); L7_GOROUTINE=1 runs the suite on the
// goroutine path (ServeConn) instead. Either way, requests the engine does
// not run itself are handed to the goroutine path.
var onEngine = os.Getenv("L7_GOROUTINE") == ""

func serveHandler(t testing.TB, h *Handler) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &proxy{h: h, ln: ln, addr: ln.Addr().String(), cancel: cancel}
	var lp *testLoop
	if onEngine && h.EngineCapable() {
		if lp, err = newTestLoop(); err != nil {
			t.Fatal(err)
		}
		p.loop = lp
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ap := c.RemoteAddr().(*net.TCPAddr).AddrPort()
			p.wg.Add(1)
			if lp != nil {
				fd := detachFD(t, c.(*net.TCPConn))
				if !lp.Post(func() { h.ServeEngine(ctx, lp, fd, ap, nil, p.wg.Done) }) {
					unix.Close(fd)
					p.wg.Done()
				}
				continue
			}
			go func() {
				defer p.wg.Done()
				h.ServeConn(ctx, c, ap)
			}()
		}
	}()
	t.Cleanup(p.stop)
	return p
}

// detachFD takes c's socket out of Go's poller: a non-blocking duplicate,
// c closed.
func detachFD(t testing.TB, c *net.TCPConn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		t.Error(err)
		return -1
	}
	fd := -1
	rc.Control(func(s uintptr) { fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) })
	c.Close()
	if err != nil {
		t.Error(err)
		return -1
	}
	unix.SetNonblock(fd, true)
	return fd
}

func (p *proxy) stop() {
	p.ln.Close()
	p.cancel()
	p.wg.Wait()
	p.h.Close()
	if p.loop != nil {
		p.loop.stop()
	}
}

// idleConns is how many idle server connections to addr the proxy's pool
// holds (the test loop's pool on the event-loop path).
func (p *proxy) idleConns(addr string) int {
	if p.loop == nil {
		p.h.pool.mu.Lock()
		defer p.h.pool.mu.Unlock()
		return len(p.h.pool.idle[addr])
	}
	n := make(chan int, 1)
	if !p.loop.Post(func() { n <- len(p.h.epoolFor(p.loop).idle[addr]) }) {
		return -1
	}
	return <-n
}

// rawServer is a TCP server that serves each connection with handle.
type rawServer struct {
	ln net.Listener
	wg sync.WaitGroup
}

func startRaw(t testing.TB, handle func(c net.Conn)) *rawServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

func (s *rawServer) addr() string { return s.ln.Addr().String() }

// startRequests is a raw server that reads requests one after another on
// each connection and has answer write each reply; answer's false ends the
// connection.
func startRequests(t testing.TB, answer func(c net.Conn, req *http.Request) bool) *rawServer {
	return startRaw(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil || !answer(c, req) {
				return
			}
		}
	})
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var zeroTime time.Time

// engineHarness is a Handler for the "app" backend on a test loop of its
// own, and a listener whose connections a test hands to it one at a time;
// all three end with the test.
type engineHarness struct {
	h  *Handler
	lp *testLoop
	ln net.Listener
}

func newEngineHarness(t *testing.T, bs Backends) *engineHarness {
	t.Helper()
	m, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{Frontend: "web", DefaultBackend: "app"}, bs, m, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	lp, err := newTestLoop()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lp.stop)
	t.Cleanup(h.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &engineHarness{h: h, lp: lp, ln: ln}
}

// serve dials the harness, serves the accepted connection with ServeEngine
// (opts as package proxy passes them) and returns the client side, the
// EngineConn and a channel closed when the connection has ended.
func (eh *engineHarness) serve(t *testing.T, opts *EngineOptions) (net.Conn, *EngineConn, chan struct{}) {
	t.Helper()
	c, err := net.Dial("tcp", eh.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	sc, err := eh.ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	ap := sc.RemoteAddr().(*net.TCPAddr).AddrPort()
	fd := detachFD(t, sc.(*net.TCPConn))
	ecc := make(chan *EngineConn, 1)
	done := make(chan struct{})
	eh.lp.Post(func() { ecc <- eh.h.ServeEngine(context.Background(), eh.lp, fd, ap, opts, func() { close(done) }) })
	return c, <-ecc, done
}

// proxyTo runs a proxy (cfg, default backend "app") in front of the one
// server srv, fake server "s".
func proxyTo(t *testing.T, cfg Config, srv *rawServer) (*proxy, *fakeServer) {
	t.Helper()
	s := newFakeServer("s", srv.addr())
	cfg.DefaultBackend = "app"
	return startProxy(t, cfg, fakeBackends{"app": {name: "app", servers: []*fakeServer{s}}}), s
}

// dialWithin connects to addr with a deadline d for the whole test's
// exchange; the connection closes when the test ends.
func dialWithin(t *testing.T, addr string, d time.Duration) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(d))
	return c, bufio.NewReader(c)
}

// hold stops the proxy's event loop (it runs a function that waits) until
// release is called, also at the end of the test: what arrives on its
// sockets meanwhile is all there when it next reads. ok is false if the
// loop has ended. Safe to call from any goroutine.
func (p *proxy) hold(t testing.TB) (release func(), ok bool) {
	done, started := make(chan struct{}), make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(done) }) }
	t.Cleanup(release)
	if !p.loop.Post(func() { close(started); <-done }) {
		return release, false
	}
	<-started
	return release, true
}
