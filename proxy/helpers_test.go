package proxy

import (
	"context"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/palisade-lb/palisade/internal/state"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// testServer is a loopback backend that serves each connection with its
// handler in a goroutine; close ends them all.
type testServer struct {
	addr     string
	ln       net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	closed   bool
	once     sync.Once
}

func startServer(t *testing.T, handle func(c *net.TCPConn)) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.serve(handle)
	t.Cleanup(s.close)
	return s
}

func (s *testServer) serve(handle func(c *net.TCPConn)) {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.accepted.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				_ = c.Close()
			}()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			handle(c.(*net.TCPConn))
		}()
	}
}

func (s *testServer) close() {
	s.once.Do(func() {
		_ = s.ln.Close()
		s.mu.Lock()
		s.closed = true
		for c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
}

// newServer returns the runtime state of a server at addr, up and weighted 1.
func newServer(name, addr string) *state.Server {
	s := state.NewStore().Get("be", name)
	s.Configure(1, 0, 0, false)
	s.SetAddr(addr)
	return s
}

// testProxy is one tcp frontend served by the engine on a loopback port.
type testProxy struct {
	ls   *Listeners
	fe   *Frontend
	addr string
	logs *logStore
	once sync.Once
}

func startProxy(t *testing.T, fc FrontendConfig, bc BackendConfig, servers ...*state.Server) *testProxy {
	t.Helper()
	if fc.Name == "" {
		fc.Name = "fe"
	}
	if bc.Name == "" {
		bc.Name = "be"
	}
	if bc.Balance == "" {
		bc.Balance = "roundrobin"
	}
	b, err := NewBackend(bc, servers, nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logStore{}
	log := slog.New(&logHandler{st: logs})
	fe := NewFrontend(fc, b, nil, NewStatsStore().Get(fc.Name), nil, log)
	ls := NewListeners(log)
	p := &testProxy{ls: ls, fe: fe, logs: logs}
	t.Cleanup(p.stop)
	if err := ls.Apply(map[string]TCPHandler{"127.0.0.1:0": fe}); err != nil {
		t.Fatal(err)
	}
	p.addr = ls.Addrs()["127.0.0.1:0"].String()
	return p
}

// stop shuts the proxy down as the daemon does: stop accepting, force-close
// what is left, stop the loops.
func (p *testProxy) stop() {
	p.once.Do(func() {
		p.ls.Close()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		p.fe.Drain(ctx)
		p.ls.Wait()
	})
}

func (p *testProxy) stats() StatsSnapshot { return p.fe.Stats().Snapshot() }

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c.(*net.TCPConn)
}

// logStore keeps every record logged at info level or above, attributes
// flattened to strings.
type logStore struct {
	mu   sync.Mutex
	recs []map[string]string
}

type logHandler struct {
	st    *logStore
	attrs []slog.Attr
}

func (h *logHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *logHandler) Handle(_ context.Context, r slog.Record) error {
	m := map[string]string{"msg": r.Message, "level": r.Level.String()}
	for _, a := range h.attrs {
		m[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.String()
		return true
	})
	h.st.mu.Lock()
	h.st.recs = append(h.st.recs, m)
	h.st.mu.Unlock()
	return nil
}

func (h *logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &logHandler{st: h.st, attrs: append(append([]slog.Attr{}, h.attrs...), as...)}
}

func (h *logHandler) WithGroup(string) slog.Handler { return h }

// connections returns the access log lines.
func (s *logStore) connections() []map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]string
	for _, m := range s.recs {
		if m["msg"] == "connection" {
			out = append(out, m)
		}
	}
	return out
}

// problems returns the warnings and errors logged.
func (s *logStore) problems() []map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]string
	for _, m := range s.recs {
		if m["level"] == "WARN" || m["level"] == "ERROR" {
			out = append(out, m)
		}
	}
	return out
}

// openFDs maps each open descriptor of the process to what it refers to.
func openFDs(t *testing.T) map[int]string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	out := map[int]string{}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the directory being read, closed by now
		}
		out[n] = target
	}
	return out
}

// newFDs lists descriptors open in after that were not open in before.
func newFDs(before, after map[int]string) []string {
	var out []string
	for n, target := range after {
		if before[n] != target {
			out = append(out, strconv.Itoa(n)+" -> "+target)
		}
	}
	sort.Strings(out)
	return out
}

// loops is the proxy's event loops.
func (p *testProxy) loops() []*loop {
	e := p.ls.engine
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.loops
}

// sessions is a copy, taken on each loop's goroutine, of the tcp sessions
// the proxy's loops serve now.
func (p *testProxy) sessions(t testing.TB) []esession {
	t.Helper()
	var out []esession
	for _, l := range p.loops() {
		done := make(chan []esession, 1)
		if !l.post(func() {
			var ss []esession
			for _, tr := range l.sessions {
				if s, ok := tr.(*esession); ok && s.state != stClosed {
					ss = append(ss, *s)
				}
			}
			done <- ss
		}) {
			t.Fatal("a loop has ended")
		}
		select {
		case ss := <-done:
			out = append(out, ss...)
		case <-time.After(5 * time.Second):
			t.Fatal("a loop did not run the posted function in 5s")
		}
	}
	return out
}

// hold stops every event loop of the proxy (each runs a function that waits)
// until release is called, also at the end of the test: what arrives on its
// sockets meanwhile is all there when a loop next reads. ok is false if a
// loop has ended. Safe to call from any goroutine.
func (p *testProxy) hold(t testing.TB) (release func(), ok bool) {
	loops := p.loops()
	done := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(done) }) }
	t.Cleanup(release)
	started := make(chan struct{}, len(loops))
	for _, l := range loops {
		if !l.post(func() { started <- struct{}{}; <-done }) {
			return release, false
		}
	}
	for range loops {
		<-started
	}
	return release, true
}
