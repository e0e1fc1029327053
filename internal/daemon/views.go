package daemon

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/palisade-lb/palisade/internal/api"
	"github.com/palisade-lb/palisade/internal/state"
)

// ErrNotFound is returned for an unknown backend, server or instance.
var ErrNotFound = errors.New("not found")

// ErrInvalid is returned for a request that cannot be applied as asked.
var ErrInvalid = errors.New("invalid request")

// Status describes the process.
func (d *Daemon) Status() api.Status {
	st := api.Status{Version: d.opts.Version, Commit: d.opts.Commit, GoVersion: runtime.Version(),
		StartedAt: d.started, UptimeSeconds: time.Since(d.started).Seconds(), ConfigFile: d.opts.ConfigPath,
		VRRP: []api.VRRP{}}
	r := d.LastReload()
	st.LastReload = api.Reload{OK: r.OK, At: r.At, SHA256: r.SHA256, Errors: r.Errors}
	if g := d.cur.Load(); g != nil {
		st.ConfigSHA256 = g.cfg.SHA256
	}
	st.VRRP = d.ha.vrrpStatus()
	st.Synflood = d.ha.synfloodStatus()
	return st
}

// Frontends describes every frontend in config order.
func (d *Daemon) Frontends() []api.Frontend {
	g := d.cur.Load()
	if g == nil {
		return []api.Frontend{}
	}
	out := make([]api.Frontend, 0, len(g.order))
	for i := range g.cfg.Frontends {
		fc := &g.cfg.Frontends[i]
		v := g.frontends[fc.Name].Stats().Snapshot()
		out = append(out, api.Frontend{Name: fc.Name, Mode: fc.Mode, Listen: fc.Listen, DefaultBackend: fc.DefaultBackend,
			Healthy: d.FrontendHealthy(fc.Name), Current: v.Current, Total: v.Total, BytesIn: v.BytesIn,
			BytesOut: v.BytesOut, Rejected: v.Rejected, MaxConns: fc.MaxConns})
	}
	return out
}

// FrontendHealthy reports whether a frontend can serve: it exists and its
// default backend (or, for http routing without one, any routed backend)
// has a server available. VRRP tracking uses it.
func (d *Daemon) FrontendHealthy(name string) bool {
	g := d.cur.Load()
	if g == nil {
		return false
	}
	fe, ok := g.frontends[name]
	if !ok {
		return false
	}
	if b := fe.Backend(); b != nil {
		return b.Available()
	}
	for _, bn := range g.routed[name] {
		if b := g.backends[bn]; b != nil && b.Available() {
			return true
		}
	}
	return false
}

// Backends describes every backend in config order.
func (d *Daemon) Backends() []api.Backend {
	g := d.cur.Load()
	if g == nil {
		return []api.Backend{}
	}
	out := make([]api.Backend, 0, len(g.backends))
	for i := range g.cfg.Backends {
		out = append(out, d.backendView(g, g.cfg.Backends[i].Name))
	}
	return out
}

// Backend describes one backend.
func (d *Daemon) Backend(name string) (api.Backend, error) {
	g := d.cur.Load()
	if g == nil || g.backends[name] == nil {
		return api.Backend{}, fmt.Errorf("backend %q: %w", name, ErrNotFound)
	}
	return d.backendView(g, name), nil
}

func (d *Daemon) backendView(g *generation, name string) api.Backend {
	b := g.backends[name]
	v := api.Backend{Name: name, Balance: b.Config().Balance, ActiveServers: b.ActiveServers(), Servers: []api.Server{}}
	v.Up = v.ActiveServers > 0
	for _, s := range b.Servers() {
		v.Servers = append(v.Servers, serverView(g.servers[s.ID()]))
	}
	return v
}

func serverView(p serverPlan) api.Server {
	s := p.srv
	c := s.Counters()
	return api.Server{Name: s.Name(), Address: p.cfg.Address, Resolved: s.Addr(), Backup: p.cfg.Backup,
		State: s.Admin().String(), OperatorState: s.OperatorAdmin().String(), Health: s.Health().String(),
		Available: s.Available(), Weight: s.Weight(), ConfigWeight: s.ConfigWeight(), MaxConns: p.cfg.MaxConns,
		Current: c.Conns, Total: c.Total, ConnectFails: c.ConnectFails, BytesIn: c.BytesIn, BytesOut: c.BytesOut,
		LastCheck: s.Reason(), AgentDown: s.AgentDown()}
}

// SetServer changes a server's operator state and/or weight at run time.
// The change survives reloads for as long as the server stays in the config.
// caller names who asked, for the log.
func (d *Daemon) SetServer(backend, server string, u api.ServerUpdate, caller string) (api.Server, error) {
	g := d.cur.Load()
	if g == nil {
		return api.Server{}, ErrNotFound
	}
	b := g.backends[backend]
	if b == nil {
		return api.Server{}, fmt.Errorf("backend %q: %w", backend, ErrNotFound)
	}
	s := b.Server(server)
	if s == nil {
		return api.Server{}, fmt.Errorf("server %q in backend %q: %w", server, backend, ErrNotFound)
	}
	if u.State == nil && u.Weight == nil {
		return api.Server{}, fmt.Errorf("%w: give state and/or weight", ErrInvalid)
	}
	var admin state.Admin
	if u.State != nil {
		var ok bool
		if admin, ok = state.ParseAdmin(*u.State); !ok {
			return api.Server{}, fmt.Errorf("%w: state %q is not ready, drain or maint", ErrInvalid, *u.State)
		}
	}
	if u.Weight != nil && (*u.Weight < 0 || *u.Weight > 256) {
		return api.Server{}, fmt.Errorf("%w: weight %d is out of range 0..256", ErrInvalid, *u.Weight)
	}
	log := d.log.With("backend", backend, "server", server, "by", caller)
	if u.Weight != nil {
		old := s.ConfigWeight()
		s.SetWeight(*u.Weight)
		log.Info("server weight changed", "from", old, "to", *u.Weight)
	}
	if u.State != nil {
		old := s.OperatorAdmin()
		s.SetAdmin(admin)
		if old != admin {
			log.Info("server state changed", "from", old.String(), "to", admin.String())
			if old == state.Maint || admin == state.Maint {
				d.checks.restart(s.ID())
			}
		}
	}
	return serverView(g.servers[s.ID()]), nil
}

// VRRP describes the VRRP instances.
func (d *Daemon) VRRP() []api.VRRP {
	return d.ha.vrrpStatus()
}

// ResignVRRP makes a MASTER instance hand mastership over.
func (d *Daemon) ResignVRRP(instance string) error {
	return d.ha.resign(context.Background(), instance)
}
