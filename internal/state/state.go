// Package state holds per-server runtime state — health, admin state, weight
// overrides, connection counters — apart from the config, keyed by backend and
// server name, so that a reload keeps it for every server that remains.
//
// Everything on a Server is atomic: the data path reads it on every new
// connection without locks.
package state

import (
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Admin is the operator-set state of a server.
type Admin int32

const (
	// Ready servers take traffic (when healthy).
	Ready Admin = iota
	// Drain servers take no new connections; open ones finish.
	Drain
	// Maint servers take no traffic and are not checked.
	Maint
)

func (a Admin) String() string {
	switch a {
	case Drain:
		return "drain"
	case Maint:
		return "maint"
	}
	return "ready"
}

// ParseAdmin parses "ready", "drain" or "maint".
func ParseAdmin(s string) (Admin, bool) {
	switch s {
	case "ready":
		return Ready, true
	case "drain":
		return Drain, true
	case "maint":
		return Maint, true
	}
	return Ready, false
}

// Health is what checks say about a server.
type Health int32

const (
	// Unknown: not checked yet. Such a server takes no traffic until its first check.
	Unknown Health = iota
	Up
	Down
)

func (h Health) String() string {
	switch h {
	case Up:
		return "up"
	case Down:
		return "down"
	}
	return "unknown"
}

// FailureRecorder receives real-traffic outcomes (passive health checking).
type FailureRecorder interface {
	Fail()
	Success()
}

// Server is the runtime state of one server.
type Server struct {
	backend, name, id string

	cfgWeight      atomic.Int32
	weightOverride atomic.Int32 // -1: none (set through the API)
	agentPercent   atomic.Int32 // -1: none (set by the agent check)
	maxConns       atomic.Int64
	slowstart      atomic.Int64 // nanoseconds; 0 = off
	upSince        atomic.Int64 // unix nanoseconds of the last transition to up
	admin          atomic.Int32
	agentAdmin     atomic.Int32 // -1: none; else an Admin set by the agent check
	agentDown      atomic.Bool  // the agent said down, stopped or fail
	health         atomic.Int32
	checked        atomic.Bool // false: health is not checked (type none) and counts as up
	addr           atomic.Pointer[serverAddr]
	reason         atomic.Pointer[string]
	passive        atomic.Pointer[FailureRecorder]

	conns        atomic.Int64
	changes      atomic.Uint64 // health transitions
	total        atomic.Uint64
	connectFails atomic.Uint64
	bytesIn      atomic.Uint64 // from the server
	bytesOut     atomic.Uint64 // to the server
}

// ID is "backend/server", stable across reloads.
func (s *Server) ID() string      { return s.id }
func (s *Server) Backend() string { return s.backend }
func (s *Server) Name() string    { return s.name }

// Configure applies config values; called on creation and on every reload.
func (s *Server) Configure(weight, maxConns int, slowstart time.Duration, checked bool) {
	s.cfgWeight.Store(int32(weight))
	s.maxConns.Store(int64(maxConns))
	s.slowstart.Store(int64(slowstart))
	wasChecked := s.checked.Swap(checked)
	if !checked {
		s.health.Store(int32(Up))
	} else if !wasChecked && Health(s.health.Load()) == Up && s.upSince.Load() == 0 {
		s.health.Store(int32(Unknown))
	}
}

type serverAddr struct {
	s  string
	ap netip.AddrPort // parsed s; invalid if s is not a literal ip:port
}

// Addr is the current "ip:port" to connect to ("" until resolved).
func (s *Server) Addr() string {
	if p := s.addr.Load(); p != nil {
		return p.s
	}
	return ""
}

// AddrPort is Addr parsed (the zero value until resolved).
func (s *Server) AddrPort() netip.AddrPort {
	if p := s.addr.Load(); p != nil {
		return p.ap
	}
	return netip.AddrPort{}
}

// SetAddr records the resolved address.
func (s *Server) SetAddr(a string) {
	ap, _ := netip.ParseAddrPort(a)
	s.addr.Store(&serverAddr{s: a, ap: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())})
}

// Admin returns the effective admin state: the stricter of the operator's and the agent's.
func (s *Server) Admin() Admin {
	a := Admin(s.admin.Load())
	if ag := s.agentAdmin.Load(); ag >= 0 && Admin(ag) > a {
		return Admin(ag)
	}
	return a
}

// OperatorAdmin is the state set through the API, without the agent's.
func (s *Server) OperatorAdmin() Admin { return Admin(s.admin.Load()) }

// SetAdmin sets the operator state.
func (s *Server) SetAdmin(a Admin) { s.admin.Store(int32(a)) }

// SetAgent applies an agent check reply: admin state (-1 = leave) and weight percent (-1 = leave).
func (s *Server) SetAgent(admin Admin, hasAdmin bool, percent int) {
	if hasAdmin {
		if admin == Ready {
			s.agentAdmin.Store(-1)
		} else {
			s.agentAdmin.Store(int32(admin))
		}
	}
	if percent >= 0 {
		s.agentPercent.Store(int32(percent))
	}
}

// Health returns the check state.
func (s *Server) Health() Health { return Health(s.health.Load()) }

// Checked reports whether active checks decide the server's health.
func (s *Server) Checked() bool { return s.checked.Load() }

// SetHealth records a check verdict and why; it returns whether it changed.
func (s *Server) SetHealth(h Health, reason string, now time.Time) bool {
	s.reason.Store(&reason)
	old := Health(s.health.Swap(int32(h)))
	if old != h {
		s.changes.Add(1)
		if h == Up {
			s.upSince.Store(now.UnixNano())
		}
	}
	return old != h
}

// Reason is the last health reason recorded.
func (s *Server) Reason() string {
	if p := s.reason.Load(); p != nil {
		return *p
	}
	return ""
}

// ConfigWeight is the configured weight, or the API override when one is set.
func (s *Server) ConfigWeight() int {
	if w := s.weightOverride.Load(); w >= 0 {
		return int(w)
	}
	return int(s.cfgWeight.Load())
}

// SetWeight overrides the configured weight until the next SetWeight(-1) or process restart.
func (s *Server) SetWeight(w int) { s.weightOverride.Store(int32(w)) }

// Available reports whether the server may take new connections now.
func (s *Server) Available() bool {
	return s.Admin() == Ready && s.Health() == Up && !s.agentDown.Load() && s.addr.Load() != nil
}

// SetAgentDown records the agent's operational verdict (down, stopped, fail vs up).
func (s *Server) SetAgentDown(down bool) { s.agentDown.Store(down) }

// AgentDown reports whether the agent holds the server down.
func (s *Server) AgentDown() bool { return s.agentDown.Load() }

// Weight is the effective weight for balancing: 0 when not available, else the
// configured weight scaled by the agent's percentage and the slowstart ramp.
func (s *Server) Weight() int {
	if !s.Available() {
		return 0
	}
	w := int64(s.ConfigWeight())
	if p := s.agentPercent.Load(); p >= 0 {
		w = w * int64(p) / 100
	}
	if ss := s.slowstart.Load(); ss > 0 && w > 0 {
		if up := s.upSince.Load(); up > 0 {
			if el := time.Now().UnixNano() - up; el < ss {
				w = max(1, w*el/ss)
			}
		}
	}
	return int(w)
}

// Conns is the number of open connections.
func (s *Server) Conns() int64 { return s.conns.Load() }

// Acquire counts a new connection; it fails when max_conns is reached.
func (s *Server) Acquire() bool {
	n := s.conns.Add(1)
	if m := s.maxConns.Load(); m > 0 && n > m {
		s.conns.Add(-1)
		return false
	}
	s.total.Add(1)
	return true
}

// Full reports whether max_conns is reached.
func (s *Server) Full() bool {
	m := s.maxConns.Load()
	return m > 0 && s.conns.Load() >= m
}

// Release ends a connection counted by Acquire.
func (s *Server) Release() { s.conns.Add(-1) }

// ConnectFailed records a failed connection attempt (and feeds passive checks).
func (s *Server) ConnectFailed() {
	s.connectFails.Add(1)
	if p := s.passive.Load(); p != nil {
		(*p).Fail()
	}
}

// Failed records a failed exchange (an HTTP 5xx, a timeout) for passive checks.
func (s *Server) Failed() {
	if p := s.passive.Load(); p != nil {
		(*p).Fail()
	}
}

// Succeeded records a successful exchange for passive checks.
func (s *Server) Succeeded() {
	if p := s.passive.Load(); p != nil {
		(*p).Success()
	}
}

// SetPassive installs the passive-check recorder (nil removes it).
func (s *Server) SetPassive(r FailureRecorder) {
	if r == nil {
		s.passive.Store(nil)
		return
	}
	s.passive.Store(&r)
}

// AddBytes counts bytes to and from the server.
func (s *Server) AddBytes(toServer, fromServer uint64) {
	s.bytesOut.Add(toServer)
	s.bytesIn.Add(fromServer)
}

// Counters is a snapshot of a server's counters.
type Counters struct {
	Conns         int64
	HealthChanges uint64
	Total         uint64
	ConnectFails  uint64
	BytesIn       uint64
	BytesOut      uint64
}

// Counters returns a snapshot.
func (s *Server) Counters() Counters {
	return Counters{Conns: s.conns.Load(), HealthChanges: s.changes.Load(), Total: s.total.Load(),
		ConnectFails: s.connectFails.Load(), BytesIn: s.bytesIn.Load(), BytesOut: s.bytesOut.Load()}
}

// Store holds the state of every server, keyed by backend + server name.
type Store struct {
	mu      sync.Mutex
	servers map[string]*Server
}

// NewStore returns an empty store.
func NewStore() *Store { return &Store{servers: map[string]*Server{}} }

// Get returns the state of backend/name, creating it (admin ready, health unknown) if new.
func (st *Store) Get(backend, name string) *Server {
	id := backend + "/" + name
	st.mu.Lock()
	defer st.mu.Unlock()
	if s, ok := st.servers[id]; ok {
		return s
	}
	s := &Server{backend: backend, name: name, id: id}
	s.weightOverride.Store(-1)
	s.agentPercent.Store(-1)
	s.agentAdmin.Store(-1)
	st.servers[id] = s
	return s
}

// Lookup returns the state of backend/name or nil.
func (st *Store) Lookup(backend, name string) *Server {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.servers[backend+"/"+name]
}

// Retain drops every server whose ID is not in keep (after a reload removed it).
func (st *Store) Retain(keep map[string]bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for id := range st.servers {
		if !keep[id] {
			delete(st.servers, id)
		}
	}
}

// All returns every server sorted by ID.
func (st *Store) All() []*Server {
	st.mu.Lock()
	out := make([]*Server, 0, len(st.servers))
	for _, s := range st.servers {
		out = append(out, s)
	}
	st.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}
