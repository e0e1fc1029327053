// Package admin serves the admin HTTP API, the live stats dashboard and the
// Prometheus metrics on global.admin.listen, and implements `palisade ctl`,
// the command-line client of that API.
//
// Access: GET /healthz and the dashboard's static page and assets (which hold
// no data) are open. Everything else needs "Authorization: Bearer <token>"
// with the token read from admin.token_file: 401 without it, 403 with a wrong
// one. /metrics is open with admin.metrics_public. On a unix socket without a
// token file no token is needed: the socket's 0600 mode guards it. TCP
// without a token file is refused by Apply.
package admin

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/palisade-lb/palisade/internal/api"
	"github.com/palisade-lb/palisade/internal/config"
	"github.com/palisade-lb/palisade/internal/daemon"
)

// Daemon is what the admin API reads and changes. Errors for an unknown
// backend, server or VRRP instance wrap daemon.ErrNotFound; requests that
// cannot be applied as asked wrap daemon.ErrInvalid. Reload returns
// config.Errors (possibly wrapped) when the file is invalid.
type Daemon interface {
	Status() api.Status
	Frontends() []api.Frontend
	Backends() []api.Backend
	Backend(name string) (api.Backend, error)
	SetServer(backend, server string, u api.ServerUpdate, caller string) (api.Server, error)
	Reload() error
	VRRP() []api.VRRP
	ResignVRRP(instance string) error
}

var _ Daemon = (*daemon.Daemon)(nil)

// HTTP server limits. A reload runs inside its request, so the write timeout
// leaves room for a slow one (DNS lookups, binding many listeners).
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 2 * time.Minute
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 32 << 10
	// defaultShutdownTimeout bounds how long a retired listener's in-flight
	// requests may run before their connections are closed.
	defaultShutdownTimeout = 10 * time.Second
)

// Server is the admin HTTP server. Its zero value is not usable; call New.
type Server struct {
	d       Daemon
	reg     *prometheus.Registry
	log     *slog.Logger
	handler http.Handler
	policy  atomic.Pointer[policy]
	// listenTCP binds TCP addresses; tests replace it to make binds fail.
	listenTCP func(network, address string) (net.Listener, error)
	// shutdownTimeout bounds how long a retired listener's requests may run
	// before their connections are closed; tests shorten it.
	shutdownTimeout time.Duration

	mu     sync.Mutex // serialises Apply and Close
	cur    *binding
	closed bool
	wg     sync.WaitGroup // serving and retiring goroutines
	// handlers counts running requests: a handler can outlive its
	// connection when a retired server closes it after shutdownTimeout.
	handlers sync.WaitGroup
}

// policy is the access rule set by the last successful Apply.
type policy struct {
	token         [sha256.Size]byte // SHA-256 of the token, compared in constant time
	hasToken      bool
	metricsPublic bool
}

// readPolicy reads the token from tokenFile (none when empty).
func readPolicy(tokenFile string) (*policy, error) {
	p := &policy{}
	if tokenFile == "" {
		return p, nil
	}
	tok, err := config.ReadToken(tokenFile)
	if err != nil { // an empty file is an error too
		return nil, fmt.Errorf("admin token_file: %w", err)
	}
	p.token, p.hasToken = sha256.Sum256([]byte(tok)), true
	return p, nil
}

// binding is one listener with the http.Server serving it.
type binding struct {
	listen  string
	ln      net.Listener
	srv     *http.Server
	cleanup func() // removes a unix socket file; nil for TCP
}

// New returns a Server serving d's views and reg's metrics (an empty registry
// when reg is nil), logging to log (slog.Default() when nil). It binds
// nothing and starts no goroutine: Apply does.
func New(d Daemon, reg *prometheus.Registry, log *slog.Logger) *Server {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Server{d: d, reg: reg, log: log.With("component", "admin"), listenTCP: net.Listen,
		shutdownTimeout: defaultShutdownTimeout}
	s.policy.Store(&policy{})
	s.handler = s.routes()
	return s
}

// Apply makes the server follow cfg. The token file is read again on every
// call, so a reload rotates the token. When cfg.Listen changed, the new
// address is bound first and served, then the old listener stops accepting
// and its in-flight requests finish in the background (so a reload asked for
// over the API can rebind the API). Listen is "host:port" or "unix:/path";
// a socket file is created with mode 0600 after removing a stale one. Empty
// Listen turns the admin API off. On an error the old listener and token
// stay in use; the one exception is a new address overlapping the old one
// (see handOver) whose bind fails and whose old address cannot be bound
// again either: then the error says the admin API is off.
func (s *Server) Apply(cfg config.Admin) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("admin server is closed")
	}
	p, err := readPolicy(cfg.TokenFile)
	if err != nil {
		return err
	}
	p.metricsPublic = cfg.MetricsPublic
	isUnix := strings.HasPrefix(cfg.Listen, "unix:")
	if cfg.Listen != "" && !isUnix && !p.hasToken {
		return fmt.Errorf("admin listen %s: token_file is required when the admin API listens on TCP", cfg.Listen)
	}

	if (s.cur == nil && cfg.Listen == "") || (s.cur != nil && s.cur.listen == cfg.Listen) {
		s.policy.Store(p)
		return nil
	}
	old := s.cur
	var next *binding
	if cfg.Listen != "" {
		b, err := s.bind(cfg.Listen)
		if err != nil && old != nil && old.cleanup == nil && errors.Is(err, syscall.EADDRINUSE) {
			b, err = s.handOver(old, cfg.Listen)
		}
		if err != nil {
			return err
		}
		next = b
	}
	s.policy.Store(p)
	s.cur = next
	if next != nil {
		s.serve(next)
		s.log.Info("admin API listening", "listen", cfg.Listen, "addr", next.ln.Addr().String(),
			"token_required", p.hasToken, "metrics_public", p.metricsPublic)
	} else {
		s.log.Info("admin API disabled")
	}
	if old != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.retire(old)
		}()
	}
	return nil
}

// Addr is the bound address, or nil when the admin API is off.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return nil
	}
	return s.cur.ln.Addr()
}

// Close stops accepting, lets in-flight requests finish (closing what is
// still open after a bounded wait), removes the socket file and returns once
// every goroutine the Server started has ended. It must not be called from a
// request handler. Apply fails after Close.
func (s *Server) Close() error {
	s.mu.Lock()
	old := s.cur
	s.cur = nil
	s.closed = true
	s.mu.Unlock()
	if old != nil {
		s.retire(old)
	}
	s.wg.Wait()
	s.handlers.Wait()
	return nil
}

func (s *Server) bind(listen string) (*binding, error) {
	if path, ok := strings.CutPrefix(listen, "unix:"); ok {
		ln, cleanup, err := listenUnix(path)
		if err != nil {
			return nil, fmt.Errorf("admin listen %s: %w", listen, err)
		}
		return &binding{listen: listen, ln: &quietListener{Listener: ln}, cleanup: cleanup}, nil
	}
	ln, err := s.listenTCP("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("admin listen: %w", err)
	}
	return &binding{listen: listen, ln: &quietListener{Listener: ln}}, nil
}

// handOver binds listen when it overlaps old's TCP address (127.0.0.1:9000
// → 0.0.0.0:9000, or another spelling of the same address): old stops
// accepting, its in-flight requests go on, and the port is bound anew. If
// that fails, old goes back to accepting on its address.
func (s *Server) handOver(old *binding, listen string) (*binding, error) {
	addr := old.ln.Addr().String()
	old.ln.(*quietListener).closeQuietly()
	b, err := s.bind(listen)
	if err == nil {
		return b, nil
	}
	ln, rerr := s.listenTCP("tcp", addr)
	if rerr != nil {
		// Nothing listens any more: say so, and leave old to be retired.
		s.cur = nil
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.retire(old)
		}()
		return nil, fmt.Errorf("%w; re-binding %s failed too, the admin API is off: %v", err, addr, rerr)
	}
	old.ln = &quietListener{Listener: ln}
	s.startServing(old)
	return nil, err
}

// quietListener is a listener that can be closed without its Serve loop
// reporting the close as an error.
type quietListener struct {
	net.Listener
	closed atomic.Bool
}

func (l *quietListener) closeQuietly() {
	l.closed.Store(true)
	l.Listener.Close()
}

func (s *Server) serve(b *binding) {
	b.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		ConnContext:       connContext,
	}
	s.startServing(b)
}

func (s *Server) startServing(b *binding) {
	srv, ln := b.srv, b.ln.(*quietListener)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := srv.Serve(ln)
		if err != nil && !errors.Is(err, http.ErrServerClosed) && !ln.closed.Load() {
			s.log.Error("admin API stopped serving", "listen", b.listen, "error", err)
		}
	}()
}

// retire stops b: no new connections, in-flight requests get s.shutdownTimeout.
func (s *Server) retire(b *binding) {
	ctx, cancel := context.WithTimeout(context.Background(), s.shutdownTimeout)
	defer cancel()
	if err := b.srv.Shutdown(ctx); err != nil {
		s.log.Warn("admin API listener closed with requests in flight", "listen", b.listen, "error", err)
		_ = b.srv.Close()
	}
	if b.cleanup != nil {
		b.cleanup()
	}
	s.log.Info("admin API listener closed", "listen", b.listen)
}
