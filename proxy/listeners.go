package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// TCPHandler serves accepted connections of one listener.
type TCPHandler interface{ ServeTCP(*net.TCPConn) }

// Listeners owns the listening sockets, keyed by address. A reload keeps the
// socket of every address that stays, so no connection is ever refused while
// the handler behind it is swapped.
//
// A listener whose handler is a Frontend the event loops can serve (tcp
// mode, plain http) is attached to them (see engine.go); any other (TLS)
// keeps a goroutine that
// accepts with Go's net package. A reload that changes which kind serves an
// address moves the listener between the two without closing it.
type Listeners struct {
	log    *slog.Logger
	mu     sync.Mutex
	byAddr map[string]*listener
	wg     sync.WaitGroup // accept loops
	conns  sync.WaitGroup // handler goroutines
	engine *engine
}

type handlerBox struct{ h TCPHandler }

type listener struct {
	addr     string
	ln       *net.TCPListener
	fd       int
	h        atomic.Pointer[handlerBox]
	onEngine bool          // attached to the event loops
	deferred bool          // TCP_DEFER_ACCEPT is set
	done     chan struct{} // closed when the accept goroutine ends (nil: none)
	pausing  atomic.Bool   // the accept goroutine is asked to end, not the listener
}

// NewListeners returns an empty set.
func NewListeners(log *slog.Logger) *Listeners {
	return &Listeners{log: log, byAddr: map[string]*listener{}, engine: newEngine(log)}
}

// engineServes reports whether the event loops serve connections for h.
func engineServes(h TCPHandler) bool {
	f, ok := h.(*Frontend)
	return ok && f.engineServed()
}

// serve starts accepting on l for its current handler's kind.
func (ls *Listeners) serve(l *listener) {
	if engineServes(l.h.Load().h) {
		err := ls.engine.attach(l)
		if err == nil {
			l.onEngine = true
			return
		}
		// epoll refused the listener (out of memory): Go's accept loop
		// takes it and hands each connection to the event loops
		ls.log.Error("attaching a listener to the event loops; accepting with a goroutine instead",
			"listen", l.addr, "error", err)
	}
	l.done = make(chan struct{})
	ls.wg.Add(1)
	go ls.accept(l)
}

// unserve stops accepting on l without closing it.
func (ls *Listeners) unserve(l *listener) {
	if l.onEngine {
		ls.engine.detach(l)
		l.onEngine = false
		return
	}
	if l.done != nil {
		l.pausing.Store(true)
		_ = l.ln.SetDeadline(time.Now())
		<-l.done
		l.done = nil
		_ = l.ln.SetDeadline(time.Time{})
		l.pausing.Store(false)
	}
}

// Apply makes the set of open listeners equal to want (address → handler):
// it first opens every new address — and if one fails, closes those it just
// opened and returns the error with nothing else changed — then points kept
// addresses at their new handler, then closes addresses no longer wanted.
// Accept loops of new listeners start here and end on Close or removal.
func (ls *Listeners) Apply(want map[string]TCPHandler) error {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	opened := map[string]*listener{}
	for addr := range want {
		if _, ok := ls.byAddr[addr]; ok {
			continue
		}
		ln, err := listenTCP(addr)
		if err != nil {
			for _, l := range opened {
				_ = l.ln.Close()
			}
			return fmt.Errorf("listening on %s: %w", addr, err)
		}
		fd, err := listenerFD(ln)
		if err != nil {
			_ = ln.Close()
			for _, l := range opened {
				_ = l.ln.Close()
			}
			return fmt.Errorf("listening on %s: %w", addr, err)
		}
		opened[addr] = &listener{addr: addr, ln: ln, fd: fd}
	}
	for addr, l := range opened {
		ls.setDefer(l, want[addr])
		l.h.Store(&handlerBox{want[addr]})
		ls.serve(l)
	}
	for addr, h := range want {
		l, ok := ls.byAddr[addr]
		if !ok {
			ls.byAddr[addr] = opened[addr]
			continue
		}
		ls.setDefer(l, h)
		if engineServes(h) == l.onEngine {
			l.h.Store(&handlerBox{h})
			continue
		}
		// the other kind serves this address now: switch without closing
		// (connections wait in the backlog meanwhile)
		ls.unserve(l)
		l.h.Store(&handlerBox{h})
		ls.serve(l)
	}
	for addr, l := range ls.byAddr {
		if _, ok := want[addr]; !ok {
			ls.unserve(l)
			_ = l.ln.Close()
			delete(ls.byAddr, addr)
		}
	}
	return nil
}

// setDefer sets or clears TCP_DEFER_ACCEPT on l as h's config asks. The
// kernel then holds a new connection until the client's first bytes are in,
// so the loop that accepts it reads them at once instead of waking again for
// them. It changes only when a connection is accepted, so a failure is
// logged and l serves without it.
func (ls *Listeners) setDefer(l *listener, h TCPHandler) {
	f, _ := h.(*Frontend)
	on := f != nil && f.cfg.DeferAccept
	if on == l.deferred {
		return
	}
	secs := 0
	if on {
		secs = 1 // the kernel's unit; it waits about that long for a silent client
	}
	if err := unix.SetsockoptInt(l.fd, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, secs); err != nil {
		ls.log.Warn("setting TCP_DEFER_ACCEPT on a listener", "listen", l.addr, "on", on, "error", err)
		return
	}
	l.deferred = on
}

func listenerFD(ln *net.TCPListener) (int, error) {
	rc, err := ln.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return -1, err
	}
	return fd, nil
}

// Addrs returns the bound address of each configured address (useful with port 0).
func (ls *Listeners) Addrs() map[string]net.Addr {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	out := map[string]net.Addr{}
	for a, l := range ls.byAddr {
		out[a] = l.ln.Addr()
	}
	return out
}

// Wait waits for every accepted connection's handler to return, then stops
// the event loops (closing any connection still open there); call it after
// Close, once the frontends have been drained.
func (ls *Listeners) Wait() {
	ls.conns.Wait()
	ls.engine.stop()
}

// Close stops accepting everywhere and waits for the accept loops to end.
// Connections already accepted are not touched: their frontends drain them.
func (ls *Listeners) Close() {
	ls.mu.Lock()
	for addr, l := range ls.byAddr {
		if l.onEngine {
			ls.engine.detach(l)
			l.onEngine = false
		}
		_ = l.ln.Close()
		delete(ls.byAddr, addr)
	}
	ls.mu.Unlock()
	ls.wg.Wait()
}

func (ls *Listeners) accept(l *listener) {
	defer ls.wg.Done()
	defer close(l.done)
	backoff := 5 * time.Millisecond
	for {
		c, err := l.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || l.pausing.Load() {
				return
			}
			// EMFILE, ENFILE, ENOBUFS: wait for resources instead of spinning
			ls.log.Warn("accept failed", "listen", l.addr, "error", err)
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		h := l.h.Load().h
		if f, ok := h.(*Frontend); ok && f.engineServed() {
			if err := ls.engine.adopt(c, f); err != nil {
				ls.log.Error("handing a connection to the event loops", "listen", l.addr, "error", err)
				_ = c.SetLinger(0)
				_ = c.Close()
			}
			continue
		}
		ls.conns.Add(1)
		go func() { defer ls.conns.Done(); h.ServeTCP(c) }()
	}
}

// listenTCP listens with IP_FREEBIND, so a frontend may listen on a VIP this
// node does not hold yet and serve the instant VRRP moves it here.
func listenTCP(addr string) (*net.TCPListener, error) {
	// No TCP keepalive probes (HAProxy's default too): they cost four
	// setsockopt calls per accepted connection, and timeouts bound idle ones.
	lc := net.ListenConfig{KeepAlive: -1, Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if network == "tcp6" {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
			} else {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
			}
			if serr == nil {
				// inherited by accepted sockets: one system call less per connection
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}
