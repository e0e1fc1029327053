// Package l7 is Palisade's HTTP data path (frontends in `mode: http`): a
// purpose-built HTTP/1.1 forwarding loop with strict parsing (package http1),
// routing, header rewriting, retries, pooled keep-alive server connections and
// zero-copy bodies and tunnels, plus HTTP/2 for TLS clients via ALPN.
//
// Plain HTTP connections are served on the integrator's event loops
// (ServeEngine, engine.go), TLS ones on a goroutine each (ServeConn); servers
// are chosen through the Backends interface, implemented by the integrator.
package l7

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/palisade-lb/palisade/proxy/l7/http1"
)

// Handler serves HTTP client connections for one frontend with one config
// generation. It is safe for concurrent use; build a new one on reload and let
// the old connections finish with the old one, then Close it.
type Handler struct {
	cfg       Config
	log       *slog.Logger
	router    *router
	refs      map[string]*backendRef
	none      *stats
	reqRules  compiledRules
	respRules compiledRules
	pool      *pool
	lim       http1.Limits
	tlsConfig *tls.Config
	h2        *h2Handler
	epoch     time.Time

	drainMu sync.Mutex
	drains  map[context.Context]*drainSet
	epools  sync.Map // Loop -> *epool: idle server connections of the engine path

	ridPrefix [16]byte
	ridSeq    atomic.Uint64
}

// New builds a Handler. Every backend named by a route or DefaultBackend is
// resolved through b now; an unknown name is an error. m must not be nil
// (NewMetrics(nil) gives unexported metrics); log nil discards logs.
func New(cfg Config, b Backends, m *Metrics, log *slog.Logger) (*Handler, error) {
	if m == nil {
		return nil, errors.New("l7: nil Metrics")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Timeouts.setDefaults()
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = 65536
	}
	if cfg.MaxHeaderBytes < 1024 {
		return nil, fmt.Errorf("l7: max_header_bytes %d below 1024", cfg.MaxHeaderBytes)
	}
	h := &Handler{
		cfg:    cfg,
		log:    log.With("frontend", cfg.Frontend),
		refs:   map[string]*backendRef{},
		none:   m.stats(cfg.Frontend, noBackend),
		epoch:  time.Now(),
		drains: map[context.Context]*drainSet{},
		lim: http1.Limits{
			MaxHeaderBytes: cfg.MaxHeaderBytes,
			MaxLine:        min(8192, cfg.MaxHeaderBytes),
			MaxHeaders:     100,
		},
	}
	var err error
	if h.router, err = compileRouter(&cfg, b, h.refs, m); err != nil {
		return nil, fmt.Errorf("l7: frontend %s: %w", cfg.Frontend, err)
	}
	if h.reqRules, err = compileRules(cfg.RequestHeaders, "request_headers"); err != nil {
		return nil, fmt.Errorf("l7: frontend %s: %w", cfg.Frontend, err)
	}
	if h.respRules, err = compileRules(cfg.ResponseHeaders, "response_headers"); err != nil {
		return nil, fmt.Errorf("l7: frontend %s: %w", cfg.Frontend, err)
	}
	var seed [8]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("l7: request id seed: %w", err)
	}
	hex.Encode(h.ridPrefix[:], seed[:])
	h.pool = newPool(256, cfg.Timeouts.Idle, cfg.Timeouts.Connect)
	h.pool.epoch = h.epoch
	if cfg.TLS != nil {
		tc := cfg.TLS.Clone()
		if len(tc.NextProtos) == 0 {
			tc.NextProtos = []string{"h2", "http/1.1"}
		}
		if tc.MinVersion < tls.VersionTLS12 {
			tc.MinVersion = tls.VersionTLS12
		}
		h.tlsConfig = tc
		h.h2 = &h2Handler{h: h}
	}
	return h, nil
}

// EngineCapable reports whether ServeEngine may serve this handler's
// connections (plain HTTP: TLS runs on goroutines).
func (h *Handler) EngineCapable() bool { return h.tlsConfig == nil }

// Close closes the idle server connections of this handler. Call it once the
// connections served by it have finished (after a reload or at stop).
func (h *Handler) Close() {
	h.drainMu.Lock()
	for ctx, ds := range h.drains {
		ds.stop()
		delete(h.drains, ctx)
	}
	h.epools.Range(func(lp, p any) bool {
		lp.(Loop).Post(p.(*epool).closeAll) // false: the loop has ended and closed them
		h.epools.Delete(lp)
		return true
	})
	h.drainMu.Unlock()
	h.pool.close()
	if h.h2 != nil {
		h.h2.close()
	}
}

// ServeConn serves one accepted client connection and closes it. It blocks
// until the client leaves, an error or timeout ends the connection, or ctx is
// cancelled: then the request in flight is finished (answered with
// "Connection: close") and the connection closed — the graceful drain for
// reload and stop. Upgraded tunnels (WebSocket) are left running until either
// side closes them. client is the real client address (after PROXY protocol).
func (h *Handler) ServeConn(ctx context.Context, nc net.Conn, client netip.AddrPort) {
	h.ServeConnCounted(ctx, nc, client, nil)
}

// ServeConnCounted is ServeConn that gives count (if not nil) the bytes read
// from and written to the client, after each exchange and at close (HTTP/2:
// as they are read and written); over TLS those of the HTTP exchange, not of
// the TLS records.
func (h *Handler) ServeConnCounted(ctx context.Context, nc net.Conn, client netip.AddrPort, count func(in, out uint64)) {
	defer nc.Close()
	isTLS := false
	if h.tlsConfig != nil {
		if nc = h.handshake(ctx, nc, client, count); nc == nil {
			return
		}
		isTLS = true
	}
	c := connPool.Get().(*conn)
	c.init(ctx, h, nc, client, isTLS)
	c.count = count
	var ds *drainSet
	if ctx.Done() != nil {
		ds = h.drainSetFor(ctx)
		ds.add(c)
	}
	c.serve()
	if ds != nil {
		ds.remove(c) // after this, no onDrain runs on c: safe to pool
	}
	c.release()
	connPool.Put(c)
}

// handshake terminates TLS. It returns nil when the connection is done (failed
// handshake, or served as HTTP/2).
//
//go:noinline
func (h *Handler) handshake(ctx context.Context, nc net.Conn, client netip.AddrPort, count func(in, out uint64)) net.Conn {
	tc := tls.Server(nc, h.tlsConfig)
	hctx, cancel := context.WithTimeout(ctx, h.cfg.Timeouts.HTTPRequest)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		h.log.Debug("tls handshake failed", "client", client.String(), "err", err)
		return nil
	}
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		var c net.Conn = tc
		if count != nil {
			c = h2CountConn{tc, count}
		}
		h.h2.serve(ctx, c, client)
		return nil
	}
	return tc
}

var connPool = sync.Pool{New: func() any {
	return &conn{
		rbuf: make([]byte, 16<<10),
		ubuf: make([]byte, 32<<10),
		obuf: make([]byte, 0, 4<<10),
		wbuf: make([]byte, 0, 4<<10),
	}
}}

// drainSet tracks the connections served under one ServeConn context, so one
// context.AfterFunc per context (not per connection) wakes them for a drain.
// The integrator normally passes one context per listener generation.
type drainSet struct {
	h     *Handler
	ctx   context.Context
	stop  func() bool
	mu    sync.Mutex
	fired bool
	head  *conn
}

func (h *Handler) drainSetFor(ctx context.Context) *drainSet {
	h.drainMu.Lock()
	defer h.drainMu.Unlock()
	ds := h.drains[ctx]
	if ds == nil {
		ds = &drainSet{h: h, ctx: ctx}
		h.drains[ctx] = ds
		ds.stop = context.AfterFunc(ctx, ds.fire)
	}
	return ds
}

func (ds *drainSet) add(c *conn) {
	ds.mu.Lock()
	if ds.fired {
		c.draining.Store(true)
	} else {
		c.dnext, c.dprev = ds.head, nil
		if ds.head != nil {
			ds.head.dprev = c
		}
		ds.head = c
		c.inDrain = true
	}
	ds.mu.Unlock()
}

func (ds *drainSet) remove(c *conn) {
	ds.mu.Lock()
	if c.inDrain {
		if c.dprev != nil {
			c.dprev.dnext = c.dnext
		} else {
			ds.head = c.dnext
		}
		if c.dnext != nil {
			c.dnext.dprev = c.dprev
		}
		c.dprev, c.dnext, c.inDrain = nil, nil, false
	}
	ds.mu.Unlock()
}

func (ds *drainSet) fire() {
	ds.mu.Lock()
	ds.fired = true
	for c := ds.head; c != nil; c = c.dnext {
		c.onDrain()
	}
	ds.mu.Unlock()
	ds.h.drainMu.Lock()
	if ds.h.drains[ds.ctx] == ds {
		delete(ds.h.drains, ds.ctx)
	}
	ds.h.drainMu.Unlock()
}
