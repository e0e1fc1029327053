package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/palisade-lb/palisade/internal/testutil"
)

// bulkData is a random block, twice over, that streams repeat cyclically;
// its odd period makes every chunk of a stream different.
var bulkData = sync.OnceValue(func() []byte {
	const period = 1<<20 + 4099
	b := make([]byte, 2*period)
	_, _ = rand.NewChaCha8([32]byte{'p', 'a', 'l', 'i', 's', 'a', 'd', 'e'}).Read(b[:period])
	copy(b[period:], b[:period])
	return b
})

// writeStream writes size bytes of stream seed to w and returns their CRC-32.
func writeStream(w io.Writer, seed, size int, progress *atomic.Int64) (uint32, error) {
	data := bulkData()
	period := len(data) / 2
	pos := seed * 7919 % period
	h := crc32.NewIEEE()
	for left := size; left > 0; {
		n := min(left, 128<<10)
		chunk := data[pos : pos+n]
		if _, err := w.Write(chunk); err != nil {
			return 0, fmt.Errorf("writing after %d of %d bytes: %w", size-left, size, err)
		}
		_, _ = h.Write(chunk)
		progress.Add(int64(n))
		left -= n
		pos = (pos + n) % period
	}
	return h.Sum32(), nil
}

// readStream reads r to its end and returns the byte count and CRC-32.
func readStream(r io.Reader, progress *atomic.Int64) (int64, uint32, error) {
	h := crc32.NewIEEE()
	buf := make([]byte, 256<<10)
	var total int64
	for {
		n, err := r.Read(buf)
		_, _ = h.Write(buf[:n])
		total += int64(n)
		progress.Add(int64(n))
		if err == io.EOF {
			return total, h.Sum32(), nil
		}
		if err != nil {
			return total, h.Sum32(), fmt.Errorf("reading after %d bytes: %w", total, err)
		}
	}
}

// TestEngineBulkBothWays moves 32 MiB on each of 8 concurrent connections,
// half downloads and half uploads, so bulk directions contend for the loops
// and their sockets fill up; a direction that waits for a readiness edge
// that never comes stalls the test until its deadline.
func TestEngineBulkBothWays(t *testing.T) {
	t.Parallel()
	const conns, size = 8, 32 << 20
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	deadline, _ := ctx.Deadline()
	var srvProgress [conns]atomic.Int64
	srv := startServer(t, func(c *net.TCPConn) {
		_ = c.SetDeadline(deadline)
		var op [2]byte
		if _, err := io.ReadFull(c, op[:]); err != nil {
			return
		}
		seed := int(op[1])
		switch op[0] {
		case 'D':
			_, _ = writeStream(c, seed, size, &srvProgress[seed])
		case 'U':
			n, sum, err := readStream(c, &srvProgress[seed])
			if err != nil {
				return
			}
			_, _ = fmt.Fprintf(c, "%d %08x\n", n, sum)
		}
	})
	p := startProxy(t, FrontendConfig{}, BackendConfig{}, newServer("a", srv.addr))

	var progress [conns]atomic.Int64
	var replyBytes atomic.Int64
	errs := make(chan error, conns)
	for i := range conns {
		go func() {
			errs <- func() error {
				var d net.Dialer
				nc, err := d.DialContext(ctx, "tcp", p.addr)
				if err != nil {
					return err
				}
				c := nc.(*net.TCPConn)
				defer c.Close()
				_ = c.SetDeadline(deadline)
				stop := context.AfterFunc(ctx, func() { _ = c.Close() })
				defer stop()
				if i%2 == 0 {
					if _, err := c.Write([]byte{'D', byte(i)}); err != nil {
						return err
					}
					n, sum, err := readStream(c, &progress[i])
					if err != nil {
						return err
					}
					want, _ := writeStream(io.Discard, i, size, new(atomic.Int64))
					if n != size || sum != want {
						return fmt.Errorf("downloaded %d bytes with crc %08x, want %d with %08x", n, sum, size, want)
					}
					return nil
				}
				if _, err := c.Write([]byte{'U', byte(i)}); err != nil {
					return err
				}
				sum, err := writeStream(c, i, size, &progress[i])
				if err != nil {
					return err
				}
				if err := c.CloseWrite(); err != nil {
					return err
				}
				reply, err := io.ReadAll(c)
				if err != nil {
					return fmt.Errorf("reading the upload's result: %w", err)
				}
				replyBytes.Add(int64(len(reply)))
				if want := fmt.Sprintf("%d %08x\n", size, sum); string(reply) != want {
					return fmt.Errorf("server received %q, want %q", reply, want)
				}
				return nil
			}()
		}()
	}
	var failed []string
	for range conns {
		if err := <-errs; err != nil {
			failed = append(failed, err.Error())
		}
	}
	if len(failed) > 0 {
		var prog []string
		for i := range conns {
			kind := "download"
			if i%2 == 1 {
				kind = "upload"
			}
			prog = append(prog, fmt.Sprintf("#%d %s: client %d, server %d", i, kind, progress[i].Load(), srvProgress[i].Load()))
		}
		if !time.Now().Before(deadline) {
			t.Errorf("bulk transfers stalled: not done within 60s")
		}
		t.Fatalf("%d of %d transfers failed: %s\nbytes moved: %s", len(failed), conns, strings.Join(failed, "; "),
			strings.Join(prog, ", "))
	}
	waitFor(t, "sessions closed", 10*time.Second, func() bool { return p.stats().Current == 0 })
	st := p.stats()
	half := int64(conns / 2)
	if want := uint64(2*conns + half*size); st.BytesIn != want {
		t.Errorf("bytes in %d, want %d", st.BytesIn, want)
	}
	if want := uint64(half*size + replyBytes.Load()); st.BytesOut != want {
		t.Errorf("bytes out %d, want %d", st.BytesOut, want)
	}
	if st.Total != conns {
		t.Errorf("total %d, want %d", st.Total, conns)
	}
	if pr := p.logs.problems(); len(pr) > 0 {
		t.Errorf("warnings logged: %v", pr)
	}
}

// echo sends back what it reads until the client ends. It copies through a
// buffer: io.Copy would splice through Go's own pipe pool, whose pipes only
// a garbage collection closes.
func echo(c *net.TCPConn) {
	buf := make([]byte, 4<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// exchange sends a line through addr and checks it comes back.
func exchange(addr, line string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading the echo: %w", err)
	}
	if got != line+"\n" {
		return fmt.Errorf("echo %q, want %q", got, line+"\n")
	}
	return nil
}

func TestEngineRetryRefusedServer(t *testing.T) {
	t.Parallel()
	live := startServer(t, echo)
	deadSrv := newServer("dead", testutil.RefusingAddr(t).String())
	liveSrv := newServer("live", live.addr)
	p := startProxy(t, FrontendConfig{}, BackendConfig{Retries: 1, ConnectTimeout: 5 * time.Second}, deadSrv, liveSrv)
	const n = 200
	start := time.Now()
	for i := range n {
		if time.Since(start) > 20*time.Second {
			t.Fatalf("only %d of %d connections in 20s", i, n)
		}
		if err := exchange(p.addr, fmt.Sprintf("ping %d", i)); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	waitFor(t, "sessions closed", 5*time.Second, func() bool { return p.stats().Current == 0 })
	dead, ok := deadSrv.Counters(), liveSrv.Counters()
	if dead.ConnectFails == 0 {
		t.Errorf("the refusing server has no connect failures (total %d)", dead.Total)
	}
	if dead.ConnectFails != dead.Total {
		t.Errorf("the refusing server: %d attempts, %d failures; every attempt must fail", dead.Total, dead.ConnectFails)
	}
	if ok.Total != n || ok.ConnectFails != 0 || ok.Conns != 0 || dead.Conns != 0 {
		t.Errorf("live server counters %+v, refusing %+v; want %d connections, no failures, none open", ok, dead, n)
	}
	if r := p.stats().Rejected[RejectNoServer.String()]; r != 0 {
		t.Errorf("%d connections found no server", r)
	}
}

// blackHole returns a loopback address whose SYNs the kernel drops: a
// socket listening with backlog 0 whose one queued connection is never
// accepted, so its accept queue stays full.
func blackHole(t *testing.T) string {
	t.Helper()
	fd, ap := testutil.BoundSocket(t)
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	addr := ap.String()
	for range 8 {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			t.Cleanup(func() { _ = c.Close() })
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return addr
		}
		t.Fatalf("filling the accept queue: %v", err)
	}
	t.Skip("the kernel kept completing handshakes on a full accept queue: no loopback black hole")
	return ""
}

func TestEngineConnectTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond
	hole := blackHole(t)
	t.Run("retried", func(t *testing.T) {
		live := startServer(t, echo)
		holeSrv, liveSrv := newServer("hole", hole), newServer("live", live.addr)
		p := startProxy(t, FrontendConfig{}, BackendConfig{Balance: "first", Retries: 1, ConnectTimeout: timeout},
			holeSrv, liveSrv)
		const n = 3
		for i := range n {
			start := time.Now()
			if err := exchange(p.addr, "ping"); err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			if el := time.Since(start); el < timeout {
				t.Errorf("connection %d served after %v, before the connect timeout (%v) to the first server", i, el, timeout)
			}
		}
		waitFor(t, "sessions closed", 5*time.Second, func() bool { return p.stats().Current == 0 })
		if c := holeSrv.Counters(); c.ConnectFails != n || c.Total != n || c.Conns != 0 {
			t.Errorf("black hole counters %+v, want %d attempts, all failed, none open", c, n)
		}
		if c := liveSrv.Counters(); c.Total != n || c.ConnectFails != 0 {
			t.Errorf("live server counters %+v, want %d connections", c, n)
		}
	})
	t.Run("no retry left", func(t *testing.T) {
		holeSrv := newServer("hole", hole)
		p := startProxy(t, FrontendConfig{}, BackendConfig{ConnectTimeout: timeout}, holeSrv)
		start := time.Now()
		c := dial(t, p.addr)
		if _, err := io.WriteString(c, "ping\n"); err != nil {
			t.Fatal(err)
		}
		_, err := c.Read(make([]byte, 16))
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("read after a connect timeout with no retry: %v, want a reset", err)
		}
		if el := time.Since(start); el < timeout {
			t.Errorf("reset after %v, before the connect timeout (%v)", el, timeout)
		}
		waitFor(t, "no_server counted", 5*time.Second, func() bool {
			return p.stats().Rejected[RejectNoServer.String()] == 1 && p.stats().Current == 0
		})
		if c := holeSrv.Counters(); c.ConnectFails != 1 || c.Conns != 0 {
			t.Errorf("black hole counters %+v, want 1 failure, none open", c)
		}
	})
}

// TestEngineClientResetWhileConnecting resets the client while its connect
// to the first server (a black hole) waits for the timeout: the retry's
// early read sees the reset, and the session must end as client_reset
// rather than pass a clean end on to the next server and stay open.
func TestEngineClientResetWhileConnecting(t *testing.T) {
	t.Parallel()
	hole := blackHole(t)
	release := make(chan struct{})
	live := startServer(t, func(c *net.TCPConn) {
		_, _ = io.Copy(io.Discard, c)
		<-release // a server that keeps its side open after the client's end
	})
	t.Cleanup(func() { close(release) })
	holeSrv, liveSrv := newServer("hole", hole), newServer("live", live.addr)
	p := startProxy(t, FrontendConfig{AccessLog: true},
		BackendConfig{Balance: "first", Retries: 1, ConnectTimeout: 200 * time.Millisecond}, holeSrv, liveSrv)
	c := dial(t, p.addr)
	waitFor(t, "the session connecting", 5*time.Second, func() bool { return p.stats().Current == 1 })
	if err := c.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	_ = c.Close() // a reset
	waitFor(t, "the session closed", 5*time.Second, func() bool { return p.stats().Current == 0 })
	if term := waitConnection(t, p)["termination"]; term != "client_reset" {
		t.Errorf("termination %q, want client_reset", term)
	}
	waitFor(t, "no server connection left", 5*time.Second, func() bool {
		return liveSrv.Conns() == 0 && holeSrv.Conns() == 0
	})
	if r := p.stats().Rejected[RejectNoServer.String()]; r != 0 {
		t.Errorf("%d no_server rejections, want none", r)
	}
}

// waitConnection returns the access log line of the only connection.
func waitConnection(t *testing.T, p *testProxy) map[string]string {
	t.Helper()
	waitFor(t, "the access log line", 5*time.Second, func() bool { return len(p.logs.connections()) > 0 })
	lines := p.logs.connections()
	if len(lines) != 1 {
		t.Fatalf("%d access log lines, want 1: %v", len(lines), lines)
	}
	return lines[0]
}

func TestEngineInactivityTimeouts(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	tests := []struct {
		name     string
		fc       FrontendConfig
		bc       BackendConfig
		handle   func(*net.TCPConn)
		reply    string
		wantTerm string
	}{
		{"client", FrontendConfig{ClientTimeout: timeout, AccessLog: true}, BackendConfig{},
			echo, "ping\n", "client_timeout"},
		{"server", FrontendConfig{AccessLog: true}, BackendConfig{ServerTimeout: timeout},
			func(c *net.TCPConn) { _, _ = io.Copy(io.Discard, c) }, "", "server_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, tt.handle)
			s := newServer("a", srv.addr)
			p := startProxy(t, tt.fc, tt.bc, s)
			c := dial(t, p.addr)
			start := time.Now()
			_ = c.SetDeadline(start.Add(timeout + 5*time.Second))
			if _, err := io.WriteString(c, "ping\n"); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(c)
			el := time.Since(start)
			if err != nil {
				t.Fatalf("after %v: %v, want the proxy to close the connection", el, err)
			}
			if string(got) != tt.reply {
				t.Errorf("received %q, want %q", got, tt.reply)
			}
			if el < timeout {
				t.Errorf("closed after %v, before the %v timeout", el, timeout)
			}
			line := waitConnection(t, p)
			if line["termination"] != tt.wantTerm {
				t.Errorf("termination %q, want %q", line["termination"], tt.wantTerm)
			}
			n := fmt.Sprint(len(tt.reply))
			if line["bytes_in"] != "5" || line["bytes_out"] != n || line["server"] != "a" {
				t.Errorf("access log %v, want bytes_in 5, bytes_out %s, server a", line, n)
			}
			st := p.stats()
			if st.Current != 0 || st.BytesIn != 5 || st.BytesOut != uint64(len(tt.reply)) {
				t.Errorf("frontend stats %+v, want none open, 5 bytes in, %d out", st, len(tt.reply))
			}
			if sc := s.Counters(); sc.Conns != 0 || sc.BytesOut != 5 || sc.BytesIn != uint64(len(tt.reply)) {
				t.Errorf("server counters %+v, want none open, 5 bytes to it, %d from it", sc, len(tt.reply))
			}
			waitFor(t, "the server's connection closed", 5*time.Second, func() bool {
				srv.mu.Lock()
				defer srv.mu.Unlock()
				return len(srv.conns) == 0
			})
		})
	}
}

func TestEngineHalfClose(t *testing.T) {
	t.Parallel()
	t.Run("client first", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, func(c *net.TCPConn) {
			b, err := io.ReadAll(c)
			if err != nil {
				return
			}
			_, _ = fmt.Fprintf(c, "got %q\n", b)
		})
		p := startProxy(t, FrontendConfig{AccessLog: true}, BackendConfig{}, newServer("a", srv.addr))
		c := dial(t, p.addr)
		if _, err := io.WriteString(c, "hello"); err != nil {
			t.Fatal(err)
		}
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("reading the reply after closing our side: %v", err)
		}
		if want := "got \"hello\"\n"; string(got) != want {
			t.Fatalf("reply %q, want %q", got, want)
		}
		if term := waitConnection(t, p)["termination"]; term != "closed" {
			t.Errorf("termination %q, want closed", term)
		}
		waitFor(t, "session closed", 5*time.Second, func() bool { return p.stats().Current == 0 })
	})
	t.Run("server first", func(t *testing.T) {
		t.Parallel()
		received := make(chan string, 1)
		srv := startServer(t, func(c *net.TCPConn) {
			if _, err := io.WriteString(c, "hello"); err != nil {
				return
			}
			if err := c.CloseWrite(); err != nil {
				return
			}
			b, err := io.ReadAll(c)
			if err != nil {
				received <- "error: " + err.Error()
				return
			}
			received <- string(b)
		})
		p := startProxy(t, FrontendConfig{AccessLog: true}, BackendConfig{}, newServer("a", srv.addr))
		c := dial(t, p.addr)
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("reading until the server's end: %v", err)
		}
		if string(got) != "hello" {
			t.Fatalf("received %q, want hello", got)
		}
		if _, err := io.WriteString(c, "reply after your end"); err != nil {
			t.Fatalf("writing after the server's end: %v", err)
		}
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-received:
			if r != "reply after your end" {
				t.Fatalf("server received %q", r)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the server did not receive the reply within 10s")
		}
		if term := waitConnection(t, p)["termination"]; term != "closed" {
			t.Errorf("termination %q, want closed", term)
		}
		waitFor(t, "session closed", 5*time.Second, func() bool { return p.stats().Current == 0 })
	})
}

// goHandler is served by Go's accept loop.
type goHandler struct{}

func (goHandler) ServeTCP(c *net.TCPConn) {
	defer c.Close()
	_, _ = io.WriteString(c, "go\n")
}

// greeting connects and returns everything the other end sends.
func greeting(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

// TestListenersSwitchKind moves a kept address between the engine and Go's
// accept loop while a client connects continuously: no connection may be
// refused or reset, and after each Apply new connections reach the new kind.
func TestListenersSwitchKind(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *net.TCPConn) { _, _ = io.WriteString(c, "be\n") })
	p := startProxy(t, FrontendConfig{}, BackendConfig{}, newServer("a", srv.addr))
	const key = "127.0.0.1:0"

	var made atomic.Int64
	var mu sync.Mutex
	kinds := map[string]int{}
	var failures []string
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		limit := time.Now().Add(20 * time.Second)
		for i := 0; i < 20000 && time.Now().Before(limit); i++ {
			select {
			case <-stop:
				return
			default:
			}
			got, err := greeting(p.addr)
			mu.Lock()
			switch {
			case err != nil:
				failures = append(failures, fmt.Sprintf("connection %d: %v", i, err))
			case got != "be\n" && got != "go\n":
				failures = append(failures, fmt.Sprintf("connection %d: received %q", i, got))
			default:
				kinds[got]++
			}
			mu.Unlock()
			made.Add(1)
		}
	}()
	stopClient := sync.OnceFunc(func() {
		close(stop)
		<-done
	})
	defer stopClient()
	isDone := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
	for round, h := range []TCPHandler{goHandler{}, p.fe, goHandler{}, p.fe, goHandler{}, p.fe} {
		from := made.Load()
		waitFor(t, "connections before the switch", 10*time.Second, func() bool { return made.Load() >= from+20 || isDone() })
		if err := p.ls.Apply(map[string]TCPHandler{key: h}); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		want := "be\n"
		if _, ok := h.(goHandler); ok {
			want = "go\n"
		}
		got, err := greeting(p.addr)
		if err != nil || got != want {
			t.Fatalf("round %d: after Apply a new connection received %q (%v), want %q", round, got, err, want)
		}
		if addr := p.ls.Addrs()[key].String(); addr != p.addr {
			t.Fatalf("round %d: the address moved from %s to %s", round, p.addr, addr)
		}
	}
	from := made.Load()
	waitFor(t, "connections after the last switch", 10*time.Second, func() bool { return made.Load() >= from+20 || isDone() })
	stopClient()
	if len(failures) > 0 {
		t.Fatalf("%d of %d connections failed during the switches, first ones: %v", len(failures), made.Load(),
			failures[:min(5, len(failures))])
	}
	if kinds["go\n"] == 0 || kinds["be\n"] == 0 {
		t.Errorf("connections by kind %v, want both", kinds)
	}
	if pr := p.logs.problems(); len(pr) > 0 {
		t.Errorf("warnings logged: %v", pr)
	}
}

// greeterOnLoops is a proxy whose server says "be" on 127.0.0.1:0, its
// listener, and the engine's first loop.
func greeterOnLoops(t *testing.T) (*testProxy, *listener, *loop) {
	t.Helper()
	srv := startServer(t, func(c *net.TCPConn) { _, _ = io.WriteString(c, "be\n") })
	p := startProxy(t, FrontendConfig{}, BackendConfig{}, newServer("a", srv.addr))
	p.ls.mu.Lock()
	ln := p.ls.byAddr["127.0.0.1:0"]
	p.ls.mu.Unlock()
	p.ls.engine.mu.Lock()
	l := p.ls.engine.loops[0]
	p.ls.engine.mu.Unlock()
	return p, ln, l
}

// backOnLoops checks that the engine serves p's address again, and that
// nothing went wrong enough to be logged on the way.
func backOnLoops(t *testing.T, p *testProxy) {
	t.Helper()
	if got, err := greeting(p.addr); err != nil || got != "be\n" {
		t.Fatalf("back on the engine: received %q (%v), want be", got, err)
	}
	if pr := p.logs.problems(); len(pr) > 0 {
		t.Errorf("warnings logged: %v", pr)
	}
}

// onLoop runs fn on l's goroutine and waits for it.
func onLoop(l *loop, fn func()) {
	done := make(chan struct{})
	l.post(func() { fn(); close(done) })
	<-done
}

// TestListenerPauseEndsDuringDetach lets a loop's accept pause (EMFILE) end
// while Apply moves the listener to Go's accept loop: the loop must not put
// the listener back into its epoll set behind the detach, or the address
// cannot return to the engine (EEXIST) and is left with no one accepting.
func TestListenerPauseEndsDuringDetach(t *testing.T) {
	t.Parallel()
	p, ln, l := greeterOnLoops(t) // l: the first loop, the one detach waits for
	const key = "127.0.0.1:0"
	onLoop(l, func() { l.pause(ln) })

	// hold the loop until detach has posted to it, then end the pause: the
	// sweep at the end of this turn runs before the detach command
	entered, release := make(chan struct{}), make(chan struct{})
	l.post(func() {
		close(entered)
		<-release
		for i := range l.paused {
			l.paused[i].until = l.now
		}
		l.next = l.now
	})
	<-entered
	applied := make(chan error, 1)
	go func() { applied <- p.ls.Apply(map[string]TCPHandler{key: goHandler{}}) }()
	waitFor(t, "detach posting to the held loop", 5*time.Second, func() bool {
		l.cmdMu.Lock()
		defer l.cmdMu.Unlock()
		return len(l.cmds) > 0
	})
	close(release)
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
	if got, err := greeting(p.addr); err != nil || got != "go\n" {
		t.Fatalf("on Go's accept loop: received %q (%v), want go", got, err)
	}
	if err := p.ls.Apply(map[string]TCPHandler{key: p.fe}); err != nil {
		t.Fatal(err)
	}
	backOnLoops(t, p)
}

// TestListenerPauseForgottenOnDetach moves a paused listener to Go's accept
// loop and back before its pause ends: the end of the pause must not try to
// add it again (EEXIST, logged as an error).
func TestListenerPauseForgottenOnDetach(t *testing.T) {
	t.Parallel()
	p, ln, l := greeterOnLoops(t)
	const key = "127.0.0.1:0"
	onLoop(l, func() {
		l.pause(ln)
		l.paused[len(l.paused)-1].until = l.now + int64(time.Hour) // ends when the test says
	})
	for _, h := range []TCPHandler{goHandler{}, p.fe} {
		if err := p.ls.Apply(map[string]TCPHandler{key: h}); err != nil {
			t.Fatal(err)
		}
	}
	onLoop(l, func() {
		for i := range l.paused {
			l.paused[i].until = l.now
		}
		l.next = l.now
	})
	waitFor(t, "no pause left", 5*time.Second, func() bool {
		var n int
		onLoop(l, func() { n = len(l.paused) })
		return n == 0
	})
	backOnLoops(t, p)
}

func TestFrontendDrainForcesClose(t *testing.T) {
	t.Parallel()
	for _, wait := range []time.Duration{0, 150 * time.Millisecond} {
		t.Run(fmt.Sprint("after ", wait), func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, func(c *net.TCPConn) { _, _ = io.Copy(io.Discard, c) })
			s := newServer("a", srv.addr)
			p := startProxy(t, FrontendConfig{AccessLog: true}, BackendConfig{}, s)
			const n = 5
			clients := make([]*net.TCPConn, n)
			for i := range clients {
				clients[i] = dial(t, p.addr)
				if _, err := io.WriteString(clients[i], "x"); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "sessions open", 5*time.Second, func() bool {
				return srv.accepted.Load() == n && p.stats().Current == n && p.fe.Active() == n
			})
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			start := time.Now()
			drained := make(chan struct{})
			go func() {
				p.fe.Drain(ctx)
				close(drained)
			}()
			select {
			case <-drained:
			case <-time.After(10 * time.Second):
				t.Fatal("Drain did not return within 10s")
			}
			if el := time.Since(start); el < wait {
				t.Errorf("Drain returned after %v with idle sessions, before its %v context ended", el, wait)
			}
			if st := p.stats(); st.Current != 0 || p.fe.Active() != 0 || s.Conns() != 0 {
				t.Errorf("after Drain: %d current, %d active, %d server connections; want none", st.Current, p.fe.Active(), s.Conns())
			}
			for i, c := range clients {
				if _, err := io.ReadAll(c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("client %d: %v, want the connection closed", i, err)
				}
			}
			waitFor(t, "access log lines", 5*time.Second, func() bool { return len(p.logs.connections()) == n })
			for _, l := range p.logs.connections() {
				if l["termination"] != "shutdown" {
					t.Errorf("termination %q, want shutdown", l["termination"])
				}
			}
			late := dial(t, p.addr)
			if _, err := io.ReadAll(late); err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("a connection after Drain: %v, want it closed", err)
			}
			if got := srv.accepted.Load(); got != n {
				t.Errorf("a connection after Drain reached the server (%d accepted)", got)
			}
			waitFor(t, "stats settled", 5*time.Second, func() bool { return p.stats().Current == 0 })
		})
	}
}

// TestEngineReleasesEverything runs traffic of every kind (exchanges, a
// bulk transfer through pipes, a session left open), then stops: no
// goroutine and no descriptor may outlive Listeners.Close and Wait. It is
// not parallel: it counts the process's descriptors.
func TestEngineReleasesEverything(t *testing.T) {
	warm, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_ = warm.Close()
	CloseIdlePipes()
	before := openFDs(t)
	ignore := goleak.IgnoreCurrent()

	srv := startServer(t, func(c *net.TCPConn) {
		var op [1]byte
		if _, err := io.ReadFull(c, op[:]); err != nil {
			return
		}
		switch op[0] {
		case 'E':
			if _, err := c.Write(op[:]); err == nil {
				echo(c)
			}
		case 'D':
			_, _ = writeStream(c, 1, 4<<20, new(atomic.Int64))
		case 'H':
			_, _ = io.Copy(io.Discard, c)
		}
	})
	p := startProxy(t, FrontendConfig{AccessLog: true}, BackendConfig{}, newServer("a", srv.addr))
	for i := range 20 {
		if err := exchange(p.addr, fmt.Sprintf("E%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	c := dial(t, p.addr)
	if _, err := io.WriteString(c, "D"); err != nil {
		t.Fatal(err)
	}
	if n, _, err := readStream(c, new(atomic.Int64)); err != nil || n != 4<<20 {
		t.Fatalf("download: %d bytes, %v", n, err)
	}
	_ = c.Close()
	opened := strings.Join(newFDs(before, openFDs(t)), " ")
	for _, kind := range []string{"anon_inode:[eventpoll]", "anon_inode:[eventfd]", "pipe:"} {
		if !strings.Contains(opened, kind) {
			t.Fatalf("no %s among the descriptors opened by the traffic (%s): the check below would prove nothing", kind, opened)
		}
	}
	held := dial(t, p.addr)
	if _, err := io.WriteString(held, "H"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the held session open", 5*time.Second, func() bool {
		return srv.accepted.Load() == 22 && p.stats().Current == 1
	})

	p.ls.Close()
	p.ls.Wait()
	if st := p.stats(); st.Current != 0 || p.fe.Active() != 0 {
		t.Errorf("after Wait: %d current, %d active; want none", st.Current, p.fe.Active())
	}
	if _, err := io.ReadAll(held); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the held session: %v, want it closed by Wait", err)
	}
	_ = held.Close()
	srv.close()
	CloseIdlePipes()

	var leaked []string
	for deadline := time.Now().Add(5 * time.Second); ; {
		runtime.GC() // Go's own splice pipes, if any, close when collected
		if leaked = newFDs(before, openFDs(t)); len(leaked) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("descriptors still open 5s after the stop: %v", leaked)
		}
		time.Sleep(5 * time.Millisecond)
	}
	goleak.VerifyNone(t, ignore)
}

// TestEngineBytesCountedDuringTransfer: a long transfer shows up in the
// frontend's and the server's byte counters while it runs, not only at close.
func TestEngineBytesCountedDuringTransfer(t *testing.T) {
	t.Parallel()
	const size = 8 << 20
	release := make(chan struct{})
	srv := startServer(t, func(c *net.TCPConn) {
		if _, err := c.Write(make([]byte, size)); err != nil {
			return
		}
		<-release // hold the connection open
	})
	var once sync.Once
	done := func() { once.Do(func() { close(release) }) }
	defer done()
	server := newServer("s1", srv.addr)
	p := startProxy(t, FrontendConfig{}, BackendConfig{}, server)
	c := dial(t, p.addr)
	if _, err := io.ReadFull(c, make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	// all but the last partial MiB is counted while the session is open
	waitFor(t, "bytes counted during the transfer", 10*time.Second, func() bool {
		return p.stats().BytesOut >= size-bytesFlush && server.Counters().BytesIn >= size-bytesFlush
	})
	if cur := p.stats().Current; cur != 1 {
		t.Fatalf("current connections %d, want 1 (still open)", cur)
	}
	_ = c.Close()
	done()
	waitFor(t, "the session to close", 10*time.Second, func() bool { return p.stats().Current == 0 })
	if got := p.stats().BytesOut; got != size {
		t.Fatalf("bytes out %d after close, want exactly %d", got, size)
	}
	if got := loopsMoved(t, p.ls); got != size {
		t.Fatalf("the loops counted %d bytes moved (their nap's measure), want %d", got, size)
	}
}

// loopsMoved sums the bytes the engine's loops counted as moved.
func loopsMoved(t *testing.T, ls *Listeners) int64 {
	var sum int64
	for _, l := range ls.engine.loops {
		got := make(chan int64, 1)
		if !l.post(func() { got <- l.moved }) {
			t.Fatal("loop ended")
		}
		select {
		case m := <-got:
			sum += m
		case <-time.After(10 * time.Second):
			t.Fatal("loop did not answer within 10s")
		}
	}
	return sum
}

// TestEngineClientResetFreesConnectingSlot: a client that resets while the
// connect is still in progress ends the session at once, giving the
// server's slot back, instead of holding it for the connect timeout.
func TestEngineClientResetFreesConnectingSlot(t *testing.T) {
	t.Parallel()
	holeSrv := newServer("hole", blackHole(t))
	p := startProxy(t, FrontendConfig{AccessLog: true},
		BackendConfig{ConnectTimeout: time.Minute}, holeSrv)
	c := dial(t, p.addr)
	waitFor(t, "the session connecting", 5*time.Second, func() bool { return holeSrv.Conns() == 1 })
	if err := c.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	_ = c.Close() // a reset
	// well within the minute of the connect timeout
	waitFor(t, "the slot given back", 10*time.Second, func() bool { return holeSrv.Conns() == 0 && p.stats().Current == 0 })
	if term := waitConnection(t, p)["termination"]; term != "client_reset" {
		t.Errorf("termination %q, want client_reset", term)
	}
}

// TestGoAcceptHandsTCPToEngine: a tcp frontend's listener that is served by
// Go's accept loop (the fallback when epoll refuses it) hands every
// connection to the event loops.
func TestGoAcceptHandsTCPToEngine(t *testing.T) {
	t.Parallel()
	srv := startServer(t, echo)
	s := newServer("a", srv.addr)
	p := startProxy(t, FrontendConfig{}, BackendConfig{}, s)
	ln, err := listenTCP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fd, err := listenerFD(ln)
	if err != nil {
		t.Fatal(err)
	}
	l := &listener{addr: "fallback", ln: ln, fd: fd, done: make(chan struct{})}
	l.h.Store(&handlerBox{p.fe})
	p.ls.wg.Add(1)
	go p.ls.accept(l)
	t.Cleanup(func() { _ = ln.Close(); <-l.done })
	for i := range 20 {
		if err := exchange(ln.Addr().String(), fmt.Sprintf("adopted %d", i)); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	waitFor(t, "sessions closed", 5*time.Second, func() bool { return p.stats().Current == 0 })
	if st := p.stats(); st.Total != 20 || st.BytesIn != st.BytesOut || st.BytesIn == 0 {
		t.Fatalf("frontend stats %+v, want 20 connections, echoed bytes", st)
	}
	if c := s.Counters(); c.Total != 20 {
		t.Fatalf("server saw %d connections, want 20", c.Total)
	}
}
