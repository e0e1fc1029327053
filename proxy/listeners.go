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
type Listeners struct {
	log    *slog.Logger
	mu     sync.Mutex
	byAddr map[string]*listener
	wg     sync.WaitGroup // accept loops
	conns  sync.WaitGroup // handler goroutines
}

type handlerBox struct{ h TCPHandler }

type listener struct {
	addr string
	ln   *net.TCPListener
	h    atomic.Pointer[handlerBox]
}

// NewListeners returns an empty set.
func NewListeners(log *slog.Logger) *Listeners {
	return &Listeners{log: log, byAddr: map[string]*listener{}}
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
		opened[addr] = &listener{addr: addr, ln: ln}
	}
	for addr, h := range want {
		l, ok := ls.byAddr[addr]
		if !ok {
			l = opened[addr]
			ls.byAddr[addr] = l
		}
		l.h.Store(&handlerBox{h})
	}
	for addr, l := range ls.byAddr {
		if _, ok := want[addr]; !ok {
			_ = l.ln.Close()
			delete(ls.byAddr, addr)
		}
	}
	for _, l := range opened {
		ls.wg.Add(1)
		go ls.accept(l)
	}
	return nil
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

// Wait waits for every accepted connection's handler to return; call it
// after Close, once the frontends have been drained.
func (ls *Listeners) Wait() { ls.conns.Wait() }

// Close stops accepting everywhere and waits for the accept loops to end.
// Connections already accepted are not touched: their frontends drain them.
func (ls *Listeners) Close() {
	ls.mu.Lock()
	for addr, l := range ls.byAddr {
		_ = l.ln.Close()
		delete(ls.byAddr, addr)
	}
	ls.mu.Unlock()
	ls.wg.Wait()
}

func (ls *Listeners) accept(l *listener) {
	defer ls.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		c, err := l.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
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
