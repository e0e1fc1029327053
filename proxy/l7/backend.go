package l7

import "time"

// Backends resolves backend names used by routes. The integrator implements it
// over the real pools; New resolves every referenced name once.
type Backends interface {
	// Backend returns the named backend, nil if unknown.
	Backend(name string) Backend
}

// Backend is one server pool as seen by the HTTP path.
type Backend interface {
	Name() string
	// Pick chooses a server for one request. hash is the FNV-1a 64 hash of the
	// request path when HashURI() is true, 0 otherwise. tried lists servers
	// that already failed for this request; Pick should avoid them (it may
	// return one anyway when nothing else is available). tried may be nil.
	// The returned Server is already counted as active: the caller calls Done
	// exactly once. nil when no server is available.
	Pick(hash uint64, tried *Tried) Server
	// PickByName returns the named server if it can take traffic (cookie
	// stickiness), counted as active like Pick; nil if not available.
	PickByName(name string) Server
	HashURI() bool
	// Retries is how many more servers to try after a connect failure or an
	// empty response (idempotent requests only for the latter).
	Retries() int
	// Cookie is the stickiness cookie name, "" when off.
	Cookie() string
}

// Server is one upstream server. Implementations must be comparable (pointer
// types) because Tried compares them with ==.
type Server interface {
	Name() string
	// Addr is the current "ip:port" to dial.
	Addr() string
	// Done ends one request picked with Pick/PickByName and reports how it went.
	Done(o Outcome)
}

// Outcome is what one attempt against a server produced. Passive health
// checking should treat ConnectFailed, Timeout, BadResponse and Status >= 500
// as failures.
type Outcome struct {
	ConnectFailed bool // could not connect (refused, unreachable, connect timeout)
	Timeout       bool // the server did not answer within timeouts.server
	EmptyResponse bool // connection closed before any response byte
	BadResponse   bool // unparsable or invalid response framing
	Aborted       bool // the client went away or sent an invalid body mid-request
	// Status is the status code the server answered (0 when it did not).
	Status int
	// BytesIn/BytesOut: request body bytes sent, response bytes received.
	BytesIn, BytesOut int64
	Connect           time.Duration // time to obtain a connection (0 when reused)
	Response          time.Duration // request sent -> response head received
}

// Tried is the set of servers already tried for one request. It lives in the
// per-connection state, so Pick gets it without allocation.
type Tried struct {
	small [8]Server
	n     int
	more  []Server
}

// Has reports whether s was tried.
func (t *Tried) Has(s Server) bool {
	if t == nil {
		return false
	}
	for i := 0; i < t.n; i++ {
		if t.small[i] == s {
			return true
		}
	}
	for _, x := range t.more {
		if x == s {
			return true
		}
	}
	return false
}

// Len is the number of servers tried.
func (t *Tried) Len() int {
	if t == nil {
		return 0
	}
	return t.n + len(t.more)
}

func (t *Tried) add(s Server) {
	if t.Has(s) {
		return
	}
	if t.n < len(t.small) {
		t.small[t.n] = s
		t.n++
		return
	}
	t.more = append(t.more, s)
}

func (t *Tried) reset() {
	for i := 0; i < t.n; i++ {
		t.small[i] = nil
	}
	t.n = 0
	t.more = t.more[:0]
}

// HashPath is the uri_hash function (FNV-1a 64) over the request path.
func HashPath(p []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range p {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}
