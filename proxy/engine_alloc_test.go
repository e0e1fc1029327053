package proxy

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// rawTimeout bounds every blocking read of the raw sockets below, so a
// proxy that stalls fails the test instead of hanging it.
var rawTimeout = unix.Timeval{Sec: 10}

// rawEchoLine is a backend of raw blocking system calls, which allocate
// nothing: per connection it reads up to a newline, answers "pong\n" and
// closes. It ends when the test does.
func rawEchoLine(t *testing.T) netip.AddrPort {
	t.Helper()
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(lfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	// accepted sockets inherit the receive timeout
	if err := unix.SetsockoptTimeval(lfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &rawTimeout); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(lfd, 128); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(lfd)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 64)
		pong := []byte("pong\n")
		for {
			r, _, e := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(lfd), 0, 0, unix.SOCK_CLOEXEC, 0, 0)
			if e == unix.EINTR || e == unix.ECONNABORTED || e == unix.EAGAIN {
				continue
			}
			if e != 0 {
				return // shut down
			}
			fd := int(r)
			for n := 0; n == 0 || buf[n-1] != '\n'; {
				k, err := unix.Read(fd, buf[n:])
				if err == unix.EINTR { // a timed socket read is not restarted
					continue
				}
				if err != nil || k == 0 {
					break
				}
				n += k
			}
			_, _ = unix.Write(fd, pong)
			_ = unix.Close(fd)
		}
	}()
	t.Cleanup(func() {
		_ = unix.Shutdown(lfd, unix.SHUT_RDWR) // wakes the blocked accept
		wg.Wait()
		_ = unix.Close(lfd)
	})
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port))
}

// A tcp connection through the event loops allocates nothing in the steady
// state: sessions, buffers and registrations are reused, so a stream of new
// connections makes no garbage for the collector. Client and server are raw
// system calls that allocate nothing, so the process's allocations over many
// connections are the proxy's.
func TestEngineConnectionAllocatesNothing(t *testing.T) {
	srv := rawEchoLine(t)
	p := startProxy(t, FrontendConfig{}, BackendConfig{}, newServer("a", srv.String()))
	pa := netip.MustParseAddrPort(p.addr)
	sa := &unix.SockaddrInet4{Addr: pa.Addr().As4(), Port: int(pa.Port())}
	ping, buf := []byte("ping\n"), make([]byte, 64)
	conn := func() {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &rawTimeout); err != nil {
			t.Fatal(err)
		}
		if err := unix.Connect(fd, sa); err != nil {
			t.Fatalf("connect: %v", err)
		}
		if _, err := unix.Write(fd, ping); err != nil {
			t.Fatalf("write: %v", err)
		}
		n := 0
		for {
			k, err := unix.Read(fd, buf[n:])
			if err == unix.EINTR { // a timed socket read is not restarted
				continue
			}
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if k == 0 {
				break
			}
			n += k
		}
		if string(buf[:n]) != "pong\n" {
			t.Fatalf("answer %q, want pong", buf[:n])
		}
	}
	for range 500 { // warm up: pools, tables, goroutines
		conn()
	}
	const n = 3000
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for range n {
		conn()
	}
	runtime.ReadMemStats(&m1)
	// a few stray allocations (a map's rehash, a timer) are not per connection
	if per := float64(m1.Mallocs-m0.Mallocs) / n; per > 0.05 {
		t.Errorf("%.2f allocations per proxied connection (%d over %d), want none", per, m1.Mallocs-m0.Mallocs, n)
	}
}

// A session closed and reused for the next connection is a new session: an
// abort posted to its earlier life (a drain racing its close) must not end
// the connection that now holds it.
func TestEngineStaleAbortSparesReusedSession(t *testing.T) {
	srv := startServer(t, echo)
	p := startProxy(t, FrontendConfig{}, BackendConfig{}, newServer("a", srv.addr))
	p.ls.mu.Lock()
	ln := p.ls.byAddr["127.0.0.1:0"]
	p.ls.mu.Unlock()
	a := dial(t, p.addr)
	if err := echoLine(a, "a"); err != nil {
		t.Fatal(err)
	}
	// find a's session and its loop
	var s *esession
	var l *loop
	p.ls.engine.mu.Lock()
	loops := p.ls.engine.loops
	p.ls.engine.mu.Unlock()
	for _, lp := range loops {
		onLoop(lp, func() {
			for _, tr := range lp.sessions {
				if es, ok := tr.(*esession); ok {
					s, l = es, lp
				}
			}
		})
	}
	if s == nil {
		t.Fatal("no engine session for the connection")
	}
	for _, lp := range loops {
		if lp != l { // the next connection must reach l
			p.ls.engine.detachOne(lp, ln)
		}
	}
	gen := s.gen
	var b *net.TCPConn
	onLoop(l, func() {
		s.abort("drain") // runs after this turn, on the session's next life
		s.close("test")
		l.recycle()
		// the next connection on this loop takes the closed session over
		var err error
		if b, err = net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(p.addr))); err != nil {
			t.Error(err)
			return
		}
		l.accept(ln.fd)
		if s.gen != gen+1 || s.state == stClosed {
			t.Errorf("the next connection on the loop did not reuse the closed session (gen %d, was %d)", s.gen, gen)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	defer b.Close()
	if err := echoLine(b, "b"); err != nil {
		t.Fatalf("the connection that reused the session: %v", err)
	}
	onLoop(l, func() {
		if s.state == stClosed || s.c.fd < 0 {
			t.Error("the reused session was closed by the stale abort")
		}
	})
}

// echoLine sends line through c and reads it back.
func echoLine(c *net.TCPConn, line string) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return err
	}
	got := make([]byte, len(line)+1)
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if string(got) != line+"\n" {
		return fmt.Errorf("echo %q, want %q", got, line+"\n")
	}
	return nil
}
