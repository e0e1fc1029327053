package daemon

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/palisade-lb/palisade/internal/state"
)

// resolvers keep server addresses current: literal IPs are set once; host
// names are looked up at once and again every backend.resolve_interval. A
// failed lookup keeps the last good address.
type resolvers struct {
	d  *Daemon
	mu sync.Mutex
	m  map[string]*resolver // by server ID
}

type resolver struct {
	key    string // address + interval
	cancel context.CancelFunc
	done   chan struct{}
}

func newResolvers(d *Daemon) *resolvers { return &resolvers{d: d, m: map[string]*resolver{}} }

func (rs *resolvers) apply(g *generation) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for id, r := range rs.m {
		p, ok := g.servers[id]
		if !ok || resolverKey(p) != r.key {
			r.stop()
			delete(rs.m, id)
		}
	}
	for id, p := range g.servers {
		host, port, _ := net.SplitHostPort(p.cfg.Address)
		if ip, err := netip.ParseAddr(host); err == nil {
			p.srv.SetAddr(net.JoinHostPort(ip.Unmap().String(), port))
			continue
		}
		if _, ok := rs.m[id]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		r := &resolver{key: resolverKey(p), cancel: cancel, done: make(chan struct{})}
		rs.m[id] = r
		go rs.run(ctx, r, p.srv, host, port, p.backend.ResolveInterval.D())
	}
}

func resolverKey(p serverPlan) string {
	return p.cfg.Address + "|" + p.backend.ResolveInterval.String()
}

func (r *resolver) stop() {
	r.cancel()
	<-r.done
}

func (rs *resolvers) run(ctx context.Context, r *resolver, s *state.Server, host, port string, every time.Duration) {
	defer close(r.done)
	log := rs.d.log.With("server", s.ID(), "host", host)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ips, err := rs.d.opts.Resolver.LookupNetIP(lctx, "ip", host)
		cancel()
		switch {
		case err != nil || len(ips) == 0:
			if ctx.Err() != nil {
				return
			}
			log.Warn("resolving server address failed; keeping the last address", "error", err, "address", s.Addr())
		default:
			a := net.JoinHostPort(preferV4(ips).Unmap().String(), port)
			if a != s.Addr() {
				log.Info("server address resolved", "address", a)
				s.SetAddr(a)
			}
		}
		t.Reset(every)
	}
}

func preferV4(ips []netip.Addr) netip.Addr {
	for _, ip := range ips {
		if ip.Unmap().Is4() {
			return ip
		}
	}
	return ips[0]
}

func (rs *resolvers) stopAll() {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for id, r := range rs.m {
		r.stop()
		delete(rs.m, id)
	}
}
