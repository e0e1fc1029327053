package proxy

import (
	"sync"
	"sync/atomic"
)

// Reject reasons, the `reason` label of palisade_frontend_rejected_total.
type Reject int

const (
	RejectACL Reject = iota
	RejectRateLimit
	RejectMaxConns
	RejectProxyProtocol
	RejectNoServer
	numRejects
)

var rejectNames = [numRejects]string{"acl", "rate_limit", "max_conns", "proxy_protocol", "no_server"}

func (r Reject) String() string { return rejectNames[r] }

// FrontendStats are a frontend's counters. They are kept by name across reloads.
type FrontendStats struct {
	name     string
	current  atomic.Int64
	total    atomic.Uint64
	bytesIn  atomic.Uint64 // from clients
	bytesOut atomic.Uint64 // to clients
	rejected [numRejects]atomic.Uint64
}

// StatsSnapshot is a copy of FrontendStats.
type StatsSnapshot struct {
	Name     string
	Current  int64
	Total    uint64
	BytesIn  uint64
	BytesOut uint64
	Rejected map[string]uint64
}

// Snapshot copies the counters.
func (s *FrontendStats) Snapshot() StatsSnapshot {
	out := StatsSnapshot{Name: s.name, Current: s.current.Load(), Total: s.total.Load(),
		BytesIn: s.bytesIn.Load(), BytesOut: s.bytesOut.Load(), Rejected: map[string]uint64{}}
	for i := range s.rejected {
		out.Rejected[rejectNames[i]] = s.rejected[i].Load()
	}
	return out
}

// Count records a rejection.
func (s *FrontendStats) Count(r Reject) { s.rejected[r].Add(1) }

// AddBytes records bytes from and to the client.
func (s *FrontendStats) AddBytes(in, out uint64) {
	s.bytesIn.Add(in)
	s.bytesOut.Add(out)
}

// StatsStore keeps FrontendStats by frontend name.
type StatsStore struct {
	mu sync.Mutex
	m  map[string]*FrontendStats
}

// NewStatsStore returns an empty store.
func NewStatsStore() *StatsStore { return &StatsStore{m: map[string]*FrontendStats{}} }

// Get returns the stats of name, creating them if new.
func (st *StatsStore) Get(name string) *FrontendStats {
	st.mu.Lock()
	defer st.mu.Unlock()
	s, ok := st.m[name]
	if !ok {
		s = &FrontendStats{name: name}
		st.m[name] = s
	}
	return s
}

// Retain drops stats of frontends not in keep.
func (st *StatsStore) Retain(keep map[string]bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for n := range st.m {
		if !keep[n] {
			delete(st.m, n)
		}
	}
}

// All returns every frontend's stats.
func (st *StatsStore) All() []*FrontendStats {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]*FrontendStats, 0, len(st.m))
	for _, s := range st.m {
		out = append(out, s)
	}
	return out
}
