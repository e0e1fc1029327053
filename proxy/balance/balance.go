// Package balance implements the backend balancing policies: roundrobin,
// leastconn, random2, source, uri_hash and first.
//
// A Policy is built once per backend over a fixed server list (in config
// order) and rebuilt on reload. Runtime changes that do not need a reload —
// health, drain/maint, slowstart, `ctl weight` — reach the policy through
// Server.Weight(), which every Pick reads afresh. Pick is on the
// per-connection hot path: it does not allocate, log or block on I/O.
package balance

import (
	"errors"
	"fmt"
	"math/bits"
)

// Server is what a policy sees of one server; implementations are safe for
// concurrent use.
type Server interface {
	// ID is stable across reloads ("backend/server"); hash policies place
	// servers on the ring by it.
	ID() string
	// Weight is the effective weight now (0..256 typically, after slowstart
	// and admin state); <= 0 means never pick.
	Weight() int
	// Conns is the number of currently open connections.
	Conns() int64
}

// ConfigWeighter may be implemented by a Server to report its configured
// weight (before slowstart or admin changes). Hash policies size a server's
// share of the ring by it at construction; without it they use Weight() at
// construction, and a server whose Weight() is then <= 0 (down, maint) is
// sized like the heaviest server.
type ConfigWeighter interface {
	ConfigWeight() int
}

// Policy picks a server.
//
// Pick returns nil when no server has Weight() > 0 and passes skip. skip may
// be nil; it excludes servers already tried for this connection or full
// (max_conns). skip may be called several times per Pick and must not call
// Pick on the same policy. hash is only used by the hash policies (source:
// HashIP of the client address; uri_hash: HashString of the URI).
type Policy interface {
	Pick(hash uint64, skip func(Server) bool) Server
}

// Policy names accepted by New.
const (
	RoundRobin = "roundrobin"
	LeastConn  = "leastconn"
	Random2    = "random2"
	Source     = "source"
	URIHash    = "uri_hash"
	First      = "first"
)

// ErrUnknownPolicy is wrapped by New for a name it does not know.
var ErrUnknownPolicy = errors.New("unknown balance policy")

// Names returns the policy names New accepts, default (roundrobin) first.
func Names() []string {
	return []string{RoundRobin, LeastConn, Random2, Source, URIHash, First}
}

// New builds the named policy over servers (in config order). The slice is
// copied; the Server values are kept and queried on every Pick. An empty list
// is valid and yields a policy whose Pick always returns nil.
func New(name string, servers []Server) (Policy, error) {
	for i, s := range servers {
		if s == nil {
			return nil, fmt.Errorf("building %s policy: server %d is nil", name, i)
		}
	}
	list := make([]Server, len(servers))
	copy(list, servers)
	switch name {
	case RoundRobin:
		return newRoundRobin(list), nil
	case LeastConn:
		return newLeastConn(list), nil
	case Random2:
		return newRandom2(list), nil
	case Source, URIHash:
		return newRing(list), nil
	case First:
		return &first{servers: list}, nil
	default:
		return nil, fmt.Errorf("%w %q (want one of roundrobin, leastconn, random2, source, uri_hash, first)", ErrUnknownPolicy, name)
	}
}

// eligible reports whether s may be picked and returns its weight.
func eligible(s Server, skip func(Server) bool) (int, bool) {
	w := s.Weight()
	if w <= 0 {
		return w, false
	}
	if skip != nil && skip(s) {
		return w, false
	}
	return w, true
}

// cmpLoad compares the loads ca/wa and cb/wb (weights > 0) without division
// or overflow: -1 if a is less loaded, +1 if b is, 0 if equal.
// Negative connection counts count as zero.
func cmpLoad(ca int64, wa int, cb int64, wb int) int {
	if ca < 0 {
		ca = 0
	}
	if cb < 0 {
		cb = 0
	}
	ah, al := bits.Mul64(uint64(ca), uint64(wb))
	bh, bl := bits.Mul64(uint64(cb), uint64(wa))
	switch {
	case ah < bh || (ah == bh && al < bl):
		return -1
	case ah == bh && al == bl:
		return 0
	default:
		return 1
	}
}

// first picks the first server in config order that is up and passes skip
// (HAProxy "balance first": fill servers one after another, with max_conns
// expressed through skip).
type first struct {
	servers []Server
}

func (p *first) Pick(_ uint64, skip func(Server) bool) Server {
	for _, s := range p.servers {
		if _, ok := eligible(s, skip); ok {
			return s
		}
	}
	return nil
}
