package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/palisade-lb/palisade/internal/state"
	"github.com/palisade-lb/palisade/proxy/proxyproto"
)

// session is one proxied tcp connection.
type session struct {
	f          *Frontend
	client     *net.TCPConn
	server     *net.TCPConn
	srv        *state.Server
	clientAddr netip.AddrPort
	localAddr  netip.AddrPort
	start      time.Time

	closeOnce sync.Once
	reason    atomic.Pointer[string]
	ended     atomic.Int32 // directions finished
}

// abort closes both sides, recording why (first reason wins).
func (s *session) abort(reason string) {
	s.reason.CompareAndSwap(nil, &reason)
	s.closeOnce.Do(func() {
		_ = s.client.Close()
		if s.server != nil {
			_ = s.server.Close()
		}
	})
}

// serve connects to a server (bounded by the connect timeout and retries)
// and then pipes. The session is tracked for Drain only once both sides
// exist, so a forced close always closes both.
func (s *session) serve(hash uint64) {
	f := s.f
	b := f.backend
	if err := s.connect(hash); err != nil {
		f.stats.Count(RejectNoServer)
		_ = s.client.SetLinger(0)
		_ = s.client.Close()
		if f.cfg.AccessLog {
			f.log.LogAttrs(context.Background(), slog.LevelInfo, "connection",
				slog.String("client", s.clientAddr.String()), slog.String("backend", b.cfg.Name),
				slog.String("termination", "no_server"), slog.Duration("duration", time.Since(s.start)))
		}
		return
	}
	defer s.srv.Release()
	if !f.track(s) {
		s.abort("shutdown") // drained while connecting
		return
	}
	defer f.untrack(s)
	toServer, toClient := s.pipe()
	f.stats.AddBytes(uint64(toServer), uint64(toClient))
	s.srv.AddBytes(uint64(toServer), uint64(toClient))
	if f.cfg.AccessLog {
		reason := "closed"
		if r := s.reason.Load(); r != nil {
			reason = *r
		}
		f.log.LogAttrs(context.Background(), slog.LevelInfo, "connection",
			slog.String("client", s.clientAddr.String()), slog.String("backend", b.cfg.Name),
			slog.String("server", s.srv.Name()), slog.Int64("bytes_in", toServer),
			slog.Int64("bytes_out", toClient), slog.Duration("duration", time.Since(s.start)),
			slog.String("termination", reason))
	}
}

// connect picks servers until one accepts, up to 1+retries attempts, each to a
// different server while untried ones remain. The first attempt allocates
// nothing; only retries track the servers tried.
func (s *session) connect(hash uint64) error {
	b := s.f.backend
	var first attempt
	srv := b.pick(hash, &first, skipFull)
	if srv == nil {
		return errNoServer
	}
	if s.dial(srv) {
		return nil
	}
	if b.cfg.Retries == 0 {
		return errNoServer
	}
	return s.retry(hash, first)
}

func (s *session) retry(hash uint64, tried attempt) error {
	b := s.f.backend
	a := &tried
	skip := a.skip
	for try := 1; try <= b.cfg.Retries; try++ {
		srv := b.pick(hash, a, skip)
		if srv == nil && a.n > 0 {
			// every server was tried: allow the ones that failed again
			a.reset()
			srv = b.pick(hash, a, skip)
		}
		if srv == nil {
			return errNoServer
		}
		if s.dial(srv) {
			return nil
		}
	}
	return errNoServer
}

// dial connects to srv (whose slot is acquired) and sends the PROXY header;
// on failure it records it and releases the slot.
func (s *session) dial(srv *state.Server) bool {
	b := s.f.backend
	c, err := b.dialer.Dial("tcp", srv.Addr())
	if err != nil {
		srv.ConnectFailed()
		srv.Release()
		s.f.log.Debug("connect failed", "server", srv.ID(), "error", err)
		return false
	}
	sc := c.(*net.TCPConn)
	if v := b.cfg.SendProxy; v != 0 {
		var hdr []byte
		if v == 1 {
			hdr = proxyproto.AppendV1(make([]byte, 0, 108), s.clientAddr, s.localAddr)
		} else {
			hdr = proxyproto.AppendV2(make([]byte, 0, 52), s.clientAddr, s.localAddr)
		}
		if _, err := sc.Write(hdr); err != nil {
			_ = sc.Close()
			srv.ConnectFailed()
			srv.Release()
			return false
		}
	}
	srv.Succeeded()
	s.server, s.srv = sc, srv
	return true
}

// pipe moves bytes both ways until both directions are closed, each with
// copyStream (splice(2) for bulk, see copy.go). A watchdog enforces the
// client and server inactivity timeouts without touching the copy loops.
func (s *session) pipe() (toServer, toClient int64) {
	wd := newWatchdog(s)
	defer wd.stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		n, err := copyStream(s.server, s.client)
		toServer = n
		s.halfClose(s.server, err, "client")
	}()
	n, err := copyStream(s.client, s.server)
	toClient = n
	s.halfClose(s.client, err, "server")
	<-done
	s.abort("closed")
	return toServer, toClient
}

// halfClose propagates the end of one direction: a clean EOF becomes a FIN
// (CloseWrite) on the other side; an error aborts the whole session. The
// direction that ends last skips the shutdown: the close that follows at
// once sends the same FIN (nothing is left unread on that socket, so it
// cannot turn into a reset).
func (s *session) halfClose(dst *net.TCPConn, err error, from string) {
	last := s.ended.Add(1) == 2
	if err == nil {
		if last {
			return
		}
		if dst.CloseWrite() == nil {
			return
		}
		err = errors.New("closewrite")
	}
	switch {
	case errors.Is(err, net.ErrClosed):
		// closed by abort: the reason is already recorded
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		s.abort(from + "_reset")
	default:
		s.abort(from + "_error")
	}
}

// watchdog closes a session whose client or server side has been inactive for
// longer than its timeout. Activity is read from the kernel's TCP_INFO byte
// counters, so the splice loops never need deadlines.
type watchdog struct {
	s          *session
	t          *time.Timer
	mu         sync.Mutex
	stopped    bool
	cLast      uint64
	sLast      uint64
	cSeen      time.Time
	sSeen      time.Time
	cTO, sTO   time.Duration
	resolution time.Duration
}

func newWatchdog(s *session) *watchdog {
	now := time.Now()
	w := &watchdog{s: s, cTO: s.f.cfg.ClientTimeout, sTO: s.f.backend.cfg.ServerTimeout, cSeen: now, sSeen: now}
	if w.cTO <= 0 && w.sTO <= 0 {
		return w
	}
	// The counters start from zero (not read on the connection's hot
	// path): bytes before the first check count as activity at that check,
	// which can only make a timeout later, never early.
	w.resolution = minPositive(w.cTO, w.sTO) / 4
	w.t = time.AfterFunc(w.resolution, w.check)
	return w
}

func minPositive(a, b time.Duration) time.Duration {
	if a <= 0 {
		return b
	}
	if b <= 0 || a < b {
		return a
	}
	return b
}

func (w *watchdog) check() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	now := time.Now()
	if a := activity(w.s.client); a != w.cLast {
		w.cLast, w.cSeen = a, now
	}
	if a := activity(w.s.server); a != w.sLast {
		w.sLast, w.sSeen = a, now
	}
	switch {
	case w.cTO > 0 && now.Sub(w.cSeen) >= w.cTO:
		go w.s.abort("client_timeout")
		return
	case w.sTO > 0 && now.Sub(w.sSeen) >= w.sTO:
		go w.s.abort("server_timeout")
		return
	}
	w.t.Reset(w.resolution)
}

func (w *watchdog) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	if w.t != nil {
		w.t.Stop()
	}
}

// activity sums the bytes a socket has received and had acknowledged.
func activity(c *net.TCPConn) uint64 {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	var v uint64
	_ = rc.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err == nil {
			v = info.Bytes_received + info.Bytes_acked
		}
	})
	return v
}
