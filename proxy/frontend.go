package proxy

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/palisade-lb/palisade/proxy/internal/rawsock"
	"github.com/palisade-lb/palisade/proxy/l7"
	"github.com/palisade-lb/palisade/proxy/limit"
	"github.com/palisade-lb/palisade/proxy/proxyproto"
)

// FrontendConfig is one tcp-mode frontend as the data path needs it.
type FrontendConfig struct {
	Name          string
	MaxConns      int // 0 = no limit
	Allow, Deny   []netip.Prefix
	RateLimit     *limit.Config // nil = off
	AcceptProxy   bool
	ProxyTimeout  time.Duration
	AccessLog     bool
	ClientTimeout time.Duration
	// DeferAccept has the kernel hold a connection until the client's
	// first bytes are in (TCP_DEFER_ACCEPT on the frontend's listeners).
	DeferAccept bool
}

// ConnHandler serves one accepted connection whose client is already known
// (after any PROXY header), giving count the bytes read from and written to
// the client as it goes. The http data path implements it.
type ConnHandler interface {
	ServeConnCounted(ctx context.Context, c net.Conn, client netip.AddrPort, count func(in, out uint64))
}

// EngineHandler is an http handler that can serve connections on the event
// loops (l7.Handler without TLS).
type EngineHandler interface {
	ConnHandler
	EngineCapable() bool
	ServeEngine(ctx context.Context, lp l7.Loop, fd int, client netip.AddrPort, opts *l7.EngineOptions, done func()) *l7.EngineConn
}

// Frontend is one config generation of a frontend: it admits connections
// (ACL, rate limit, max_conns, PROXY protocol) and proxies them to its backend,
// or hands them to an L7 handler. A reload builds a new Frontend; connections
// accepted by the old one finish under the old one.
type Frontend struct {
	cfg     FrontendConfig
	backend *Backend
	l7      ConnHandler
	l7eng   EngineHandler     // l7 when the event loops serve it, else nil
	l7opts  *l7.EngineOptions // byte counting; with proxy_protocol.accept, checks after the header
	acl     *limit.ACL
	limiter *limit.Limiter
	stats   *FrontendStats
	log     *slog.Logger

	ctx    context.Context // cancelled to make L7 connections finish their request and close
	cancel context.CancelFunc

	mu       sync.Mutex
	sessions map[aborter]struct{} // nil once Drain has force-closed them
	active   int                  // connections being served, tracked or not yet
	idle     chan struct{}        // closed when active drops to 0 during Drain
}

// NewFrontend builds a frontend generation. prev, the generation it replaces
// (or nil), lends its rate limiter when the limit is unchanged, so a reload
// does not hand attackers fresh buckets. lh is nil for tcp mode.
func NewFrontend(cfg FrontendConfig, backend *Backend, lh ConnHandler, stats *FrontendStats, prev *Frontend, log *slog.Logger) *Frontend {
	f := &Frontend{cfg: cfg, backend: backend, l7: lh, stats: stats, log: log.With("frontend", cfg.Name),
		sessions: map[aborter]struct{}{}}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	if eh, ok := lh.(EngineHandler); ok && eh.EngineCapable() {
		f.l7eng = eh
		f.l7opts = &l7.EngineOptions{CountBytes: f.stats.AddBytes}
		if cfg.AcceptProxy {
			f.l7opts.ProxyHeader, f.l7opts.ProxyTimeout, f.l7opts.Admit = true, cfg.ProxyTimeout, f.admitHeader
		}
	}
	if len(cfg.Allow) > 0 || len(cfg.Deny) > 0 {
		f.acl = limit.NewACL(cfg.Allow, cfg.Deny)
	}
	if cfg.RateLimit != nil {
		if prev != nil && prev.limiter != nil && prev.cfg.RateLimit != nil && *prev.cfg.RateLimit == *cfg.RateLimit {
			f.limiter = prev.limiter
		} else {
			f.limiter = limit.NewLimiter(*cfg.RateLimit, nil)
		}
	}
	return f
}

// Name is the frontend name.
func (f *Frontend) Name() string { return f.cfg.Name }

// Backend is the default backend (nil for L7 frontends routing elsewhere).
func (f *Frontend) Backend() *Backend { return f.backend }

// Stats returns the frontend's counters.
func (f *Frontend) Stats() *FrontendStats { return f.stats }

// ServeTCP serves one connection accepted by Go's accept loop, which
// Listeners uses for TLS http frontends only (the others run on the event
// loops); it returns when the connection is done.
func (f *Frontend) ServeTCP(c *net.TCPConn) {
	st := f.stats
	cur := st.current.Add(1)
	defer st.current.Add(-1)
	st.total.Add(1)
	if f.l7 == nil {
		f.log.Error("tcp-mode connection outside the event loops: closed")
		f.reject(c, RejectNoServer)
		return
	}
	if f.cfg.MaxConns > 0 && cur > int64(f.cfg.MaxConns) {
		f.reject(c, RejectMaxConns)
		return
	}
	client := addrPort(c.RemoteAddr())
	if f.cfg.AcceptProxy {
		_ = c.SetReadDeadline(time.Now().Add(f.cfg.ProxyTimeout))
		h, err := proxyproto.ReadFrom(c)
		if err != nil {
			f.log.Debug("bad PROXY header", "error", err)
			f.reject(c, RejectProxyProtocol)
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		if h.Command == proxyproto.Proxy && h.Src.IsValid() {
			client = h.Src
		}
	}
	if r := f.admit(client); r >= 0 {
		f.reject(c, r)
		return
	}
	lc := &l7Conn{c}
	if !f.join(lc) {
		_ = c.Close()
		return
	}
	defer f.part(lc)
	f.l7.ServeConnCounted(f.ctx, c, client, f.stats.AddBytes)
}

func (f *Frontend) reject(c *net.TCPConn, r Reject) {
	f.stats.Count(r)
	_ = c.SetLinger(0)
	_ = c.Close()
}

// aborter is an open connection Drain can close.
type aborter interface{ abort(reason string) }

type l7Conn struct{ c net.Conn }

// acceptHTTP admits one http connection accepted by loop l and serves it there.
func (f *Frontend) acceptHTTP(l *loop, fd int, client netip.AddrPort) {
	if !f.admitAccepted(fd, client) { // with proxy_protocol.accept, admitHeader checks the rest
		return
	}
	st := f.stats
	hs := &httpSession{l: l}
	if !f.join(hs) {
		st.current.Add(-1)
		rawsock.Close(fd) // shutting down
		return
	}
	hs.ec = f.l7eng.ServeEngine(f.ctx, l, fd, client, f.l7opts, func() {
		st.current.Add(-1)
		f.part(hs)
	})
}

// admitHeader applies the ACL and the rate limit to the client a PROXY
// header names (ok false: the header was bad or late), counting refusals.
func (f *Frontend) admitHeader(client netip.AddrPort, ok bool) bool {
	r := RejectProxyProtocol
	if ok {
		if r = f.admit(client); r < 0 {
			return true
		}
	}
	f.stats.Count(r)
	return false
}

// httpSession is an http connection served on an event loop.
type httpSession struct {
	l  *loop
	ec *l7.EngineConn // set on the loop's goroutine, read there only
}

func (s *httpSession) abort(string) {
	s.l.post(func() { s.ec.Abort() })
}

func (l *l7Conn) abort(string) { _ = l.c.Close() }

// Drain lets open connections finish until ctx is done, then closes the rest.
// L7 connections are told to finish their current request and close.
// It returns when every connection of this generation has ended.
func (f *Frontend) Drain(ctx context.Context) {
	f.cancel()
	if c, ok := f.l7.(interface{ Close() }); ok {
		defer c.Close() // idle upstream connections of this generation
	}
	f.mu.Lock()
	if f.active == 0 {
		f.mu.Unlock()
		return
	}
	done := make(chan struct{})
	f.idle = done
	f.mu.Unlock()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	f.mu.Lock()
	ss := f.sessions
	f.sessions = nil
	f.mu.Unlock()
	for s := range ss {
		s.abort("shutdown")
	}
	<-done
}

// join counts and tracks a connection in one step; false once a forced
// drain has begun.
func (f *Frontend) join(s aborter) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sessions == nil {
		return false
	}
	f.active++
	f.sessions[s] = struct{}{}
	return true
}

// part undoes join.
func (f *Frontend) part(s aborter) {
	f.mu.Lock()
	delete(f.sessions, s)
	f.active--
	if f.active == 0 && f.idle != nil {
		close(f.idle)
		f.idle = nil
	}
	f.mu.Unlock()
}

// Active is the number of connections this generation is serving.
func (f *Frontend) Active() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sessions)
}

// addrPort converts a TCP address, IPv4-mapped IPv6 unmapped.
func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		ap := t.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}
