package proxy

import (
	"fmt"
	"net"
	"time"

	"github.com/palisade-lb/palisade/internal/state"
	"github.com/palisade-lb/palisade/proxy/balance"
)

// BackendConfig is one backend as the data path needs it.
type BackendConfig struct {
	Name           string
	Balance        string // balance policy name
	SendProxy      int    // 0 off, 1 v1, 2 v2
	Retries        int
	ConnectTimeout time.Duration
	ServerTimeout  time.Duration
	Cookie         string
}

// Backend is a server pool for one config generation. Its servers are the
// long-lived state.Server objects, so counters and health carry over reloads.
type Backend struct {
	cfg     BackendConfig
	all     []*state.Server
	primary balance.Policy
	backup  balance.Policy
	byName  map[string]*state.Server
	dialer  *net.Dialer
}

// NewBackend builds a pool; primaries and backups are balanced separately and
// backups are used only when no primary can take the connection.
func NewBackend(cfg BackendConfig, primaries, backups []*state.Server) (*Backend, error) {
	b := &Backend{cfg: cfg, byName: map[string]*state.Server{},
		// no keepalive probes: see listenTCP
		dialer: &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: -1}}
	var err error
	if b.primary, err = balance.New(cfg.Balance, asBalance(primaries)); err != nil {
		return nil, fmt.Errorf("backend %s: %w", cfg.Name, err)
	}
	if b.backup, err = balance.New(cfg.Balance, asBalance(backups)); err != nil {
		return nil, fmt.Errorf("backend %s: %w", cfg.Name, err)
	}
	b.all = append(append(b.all, primaries...), backups...)
	for _, s := range b.all {
		b.byName[s.Name()] = s
	}
	return b, nil
}

func asBalance(ss []*state.Server) []balance.Server {
	out := make([]balance.Server, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// Name is the backend name.
func (b *Backend) Name() string { return b.cfg.Name }

// Config returns the backend's settings.
func (b *Backend) Config() BackendConfig { return b.cfg }

// Servers returns every server, primaries first.
func (b *Backend) Servers() []*state.Server { return b.all }

// Server returns the named server or nil.
func (b *Backend) Server(name string) *state.Server { return b.byName[name] }

// Available reports whether any server can take a connection now.
func (b *Backend) Available() bool {
	for _, s := range b.all {
		if s.Weight() > 0 && !s.Full() {
			return true
		}
	}
	return false
}

// ActiveServers counts servers that are available.
func (b *Backend) ActiveServers() int {
	n := 0
	for _, s := range b.all {
		if s.Available() {
			n++
		}
	}
	return n
}

// attempt tracks the servers tried for one connection so retries go elsewhere.
type attempt struct {
	tried [8]balance.Server
	n     int
	more  []balance.Server
}

func (a *attempt) add(s balance.Server) {
	if a.n < len(a.tried) {
		a.tried[a.n] = s
		a.n++
		return
	}
	a.more = append(a.more, s)
}

func (a *attempt) skip(s balance.Server) bool {
	for i := 0; i < a.n; i++ {
		if a.tried[i] == s {
			return true
		}
	}
	for _, t := range a.more {
		if t == s {
			return true
		}
	}
	return s.(*state.Server).Full()
}

// skipFull excludes only servers at max_conns (a static func: no allocation).
func skipFull(s balance.Server) bool { return s.(*state.Server).Full() }

func (a *attempt) reset() { a.n = 0; a.more = a.more[:0] }

// pick chooses a server not tried yet and acquires a connection slot on it.
// It returns nil when nothing is left.
func (b *Backend) pick(hash uint64, a *attempt, skip func(balance.Server) bool) *state.Server {
	for range len(b.all) + 1 {
		p := b.primary.Pick(hash, skip)
		if p == nil {
			p = b.backup.Pick(hash, skip)
		}
		if p == nil {
			return nil
		}
		s := p.(*state.Server)
		if s.Acquire() {
			a.add(p)
			return s
		}
		a.add(p) // full now: lost a race for the last slot
	}
	return nil
}
