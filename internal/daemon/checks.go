package daemon

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/palisade-lb/palisade/healthcheck"
	"github.com/palisade-lb/palisade/internal/state"
)

// checks runs one health-check scheduler (plus agent runner and passive
// counter) per server. A reload keeps a server's runner when its check
// settings and address are unchanged, and restarts it from the server's
// current health otherwise; servers in maint are not checked.
type checks struct {
	d       *Daemon
	metrics *healthcheck.Metrics
	mu      sync.Mutex
	m       map[string]*checkRunner // by server ID
}

type checkRunner struct {
	key    string
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newChecks(d *Daemon) *checks {
	return &checks{d: d, m: map[string]*checkRunner{}}
}

func (c *checks) apply(g *generation) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, r := range c.m {
		p, ok := g.servers[id]
		if !ok || checkKey(p) != r.key || p.srv.Admin() == state.Maint {
			r.stop()
			delete(c.m, id)
		}
	}
	for id, p := range g.servers {
		if _, ok := c.m[id]; ok || p.srv.Admin() == state.Maint {
			continue
		}
		if r := c.start(p); r != nil {
			c.m[id] = r
		}
	}
}

// restart stops and (unless the server is in maint) starts the server's
// checks again from an unknown state, with an immediate first check: used
// when a server leaves maint.
func (c *checks) restart(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.m[id]; ok {
		r.stop()
		delete(c.m, id)
	}
	g := c.d.cur.Load()
	if g == nil {
		return
	}
	p, ok := g.servers[id]
	if !ok || p.srv.Admin() == state.Maint {
		return
	}
	if p.backend.Health.Type != "none" {
		p.srv.SetHealth(state.Unknown, "leaving maint", time.Now())
	}
	if r := c.start(p); r != nil {
		c.m[id] = r
	}
}

// checkKey changes when a server's check settings or address do. The agent
// spec is a pointer, which %+v would print as an address new on every load.
func checkKey(p serverPlan) string {
	spec := p.backend.Health.Spec()
	agent := "none"
	if spec.Agent != nil {
		agent = fmt.Sprintf("%+v", *spec.Agent)
	}
	spec.Agent = nil
	return fmt.Sprintf("%s|%+v|%s", p.cfg.Address, spec, agent)
}

func (c *checks) start(p serverPlan) *checkRunner {
	spec := p.backend.Health.Spec()
	srv := p.srv
	log := c.d.log.With("backend", srv.Backend(), "server", srv.Name())
	ctx, cancel := context.WithCancel(context.Background())
	r := &checkRunner{key: checkKey(p), cancel: cancel}
	addr := srv.Addr
	if spec.Port != 0 {
		addr = addrWithPort(srv, spec.Port)
	}
	if spec.Type != healthcheck.TypeNone {
		chk, err := healthcheck.New(spec, addr)
		if err != nil {
			// validated at config load; a failure here is a bug worth shouting about
			log.Error("health check not started", "error", err)
			cancel()
			return nil
		}
		start := healthcheck.StateUnknown
		switch srv.Health() {
		case state.Up:
			start = healthcheck.StateUp
		case state.Down:
			start = healthcheck.StateDown
		}
		sched := healthcheck.NewScheduler(chk, spec.Timing(), healthcheck.Options{Start: start, Immediate: start == healthcheck.StateUnknown},
			func(ev healthcheck.Event) { c.report(srv, spec, ev) })
		if spec.Passive.MaxFails > 0 {
			// the reason already reads "passive: ..."
			srv.SetPassive(healthcheck.NewPassive(spec.Passive, nil, sched.ForceDown))
		} else {
			srv.SetPassive(nil)
		}
		r.wg.Add(1)
		go func() { defer r.wg.Done(); sched.Run(ctx) }()
	}
	if spec.Agent != nil {
		ac, err := healthcheck.NewAgentChecker(*spec.Agent, addrWithPort(srv, spec.Agent.Port))
		if err == nil {
			ar := healthcheck.NewAgentRunner(ac, spec.Agent.Interval, spec.Timeout, healthcheck.Options{},
				func(ev healthcheck.AgentEvent) { c.agent(srv, ev) })
			r.wg.Add(1)
			go func() { defer r.wg.Done(); ar.Run(ctx) }()
		} else {
			log.Error("agent check not started", "error", err)
		}
	}
	return r
}

// addrWithPort returns the server's current address with its port replaced
// ("" until the address is resolved).
func addrWithPort(srv *state.Server, port int) func() string {
	p := strconv.Itoa(port)
	return func() string {
		h, _, err := net.SplitHostPort(srv.Addr())
		if err != nil {
			return ""
		}
		return net.JoinHostPort(h, p)
	}
}

func (c *checks) report(srv *state.Server, spec healthcheck.Spec, ev healthcheck.Event) {
	if c.metrics != nil {
		c.metrics.Observe(srv.Backend(), srv.Name(), ev.Result)
	}
	h := state.Down
	if ev.Up {
		h = state.Up
	}
	if ev.Changed || srv.Health() != h {
		reason := ev.Reason
		if reason == "" {
			reason = ev.Result.Reason
		}
		if srv.SetHealth(h, reason, time.Now()) {
			level := c.d.log.Warn
			if ev.Up {
				level = c.d.log.Info
			}
			level("server "+h.String(), "backend", srv.Backend(), "server", srv.Name(), "check", string(spec.Type),
				"reason", reason, "duration", ev.Result.Duration.String())
		}
	}
}

func (c *checks) agent(srv *state.Server, ev healthcheck.AgentEvent) {
	if ev.Err != nil {
		return // HAProxy semantics: an unreachable agent changes nothing
	}
	r := ev.Reply
	switch r.State {
	case healthcheck.AgentUp:
		srv.SetAgentDown(false)
	case healthcheck.AgentDown, healthcheck.AgentStopped, healthcheck.AgentFail:
		if !srv.AgentDown() {
			c.d.log.Warn("server down by agent", "backend", srv.Backend(), "server", srv.Name(), "reply", r.String())
		}
		srv.SetAgentDown(true)
	}
	switch r.Admin {
	case healthcheck.AgentReady:
		srv.SetAgent(state.Ready, true, r.WeightPercent)
	case healthcheck.AgentDrain:
		srv.SetAgent(state.Drain, true, r.WeightPercent)
	case healthcheck.AgentMaint:
		srv.SetAgent(state.Maint, true, r.WeightPercent)
	default:
		srv.SetAgent(state.Ready, false, r.WeightPercent)
	}
}

func (r *checkRunner) stop() {
	r.cancel()
	r.wg.Wait()
}

func (c *checks) stopAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, r := range c.m {
		r.stop()
		delete(c.m, id)
	}
}
