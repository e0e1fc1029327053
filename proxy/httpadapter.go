package proxy

import (
	"net/netip"

	"github.com/palisade-lb/palisade/internal/state"
	"github.com/palisade-lb/palisade/proxy/balance"
	"github.com/palisade-lb/palisade/proxy/l7"
)

// HTTPBackends presents backends to the HTTP data path (l7.Backends).
type HTTPBackends map[string]*HTTPBackend

// Backend implements l7.Backends.
func (hb HTTPBackends) Backend(name string) l7.Backend {
	if b, ok := hb[name]; ok {
		return b
	}
	return nil
}

// HTTPBackend is a Backend as the HTTP data path sees it.
type HTTPBackend struct {
	b       *Backend
	servers map[*state.Server]*httpServer
}

// NewHTTPBackend wraps b; each server gets one stable wrapper, so the
// per-request "tried" set can compare them.
func NewHTTPBackend(b *Backend) *HTTPBackend {
	hb := &HTTPBackend{b: b, servers: make(map[*state.Server]*httpServer, len(b.all))}
	for _, s := range b.all {
		hb.servers[s] = &httpServer{s: s}
	}
	return hb
}

func (hb *HTTPBackend) Name() string   { return hb.b.cfg.Name }
func (hb *HTTPBackend) HashURI() bool  { return hb.b.cfg.Balance == balance.URIHash }
func (hb *HTTPBackend) Retries() int   { return hb.b.cfg.Retries }
func (hb *HTTPBackend) Cookie() string { return hb.b.cfg.Cookie }

// SendProxy implements l7.ProxySender: the PROXY version sent to servers (0 = off).
func (hb *HTTPBackend) SendProxy() int { return hb.b.cfg.SendProxy }

// Pick implements l7.Backend: servers already tried are avoided while others remain.
func (hb *HTTPBackend) Pick(hash uint64, tried *l7.Tried) l7.Server {
	var a attempt
	if tried.Len() == 0 {
		if s := hb.b.pick(hash, &a, skipFull); s != nil {
			return hb.servers[s]
		}
		return nil
	}
	return hb.pickAvoiding(hash, tried)
}

// pickAvoiding is Pick for a retry: servers already tried are avoided
// while others remain.
func (hb *HTTPBackend) pickAvoiding(hash uint64, tried *l7.Tried) l7.Server {
	var a attempt
	skip := func(s balance.Server) bool {
		st := s.(*state.Server)
		return st.Full() || tried.Has(hb.servers[st])
	}
	s := hb.b.pick(hash, &a, skip)
	if s == nil {
		s = hb.b.pick(hash, &a, a.skip)
	}
	if s == nil {
		return nil
	}
	return hb.servers[s]
}

// PickByName implements l7.Backend for cookie stickiness.
func (hb *HTTPBackend) PickByName(name string) l7.Server {
	s := hb.b.byName[name]
	if s == nil || s.Weight() <= 0 || !s.Acquire() {
		return nil
	}
	return hb.servers[s]
}

type httpServer struct{ s *state.Server }

func (h *httpServer) Name() string { return h.s.Name() }
func (h *httpServer) Addr() string { return h.s.Addr() }

// AddrPort implements l7.AddrPorter: the address as parsed when it was set.
func (h *httpServer) AddrPort() netip.AddrPort { return h.s.AddrPort() }

// Done ends one request: the connection slot is released, bytes counted and
// the outcome fed to passive health checking.
func (h *httpServer) Done(o l7.Outcome) {
	s := h.s
	s.Release()
	s.AddBytes(uint64(max(o.BytesIn, 0)), uint64(max(o.BytesOut, 0)))
	switch {
	case o.ConnectFailed:
		s.ConnectFailed()
	case o.Timeout, o.BadResponse, o.EmptyResponse, o.Status >= 500:
		s.Failed()
	case o.Aborted:
	default:
		s.Succeeded()
	}
}
