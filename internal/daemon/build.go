package daemon

import (
	"fmt"
	"net"
	"strings"

	"github.com/palisade-lb/palisade/internal/config"
	"github.com/palisade-lb/palisade/internal/state"
	"github.com/palisade-lb/palisade/proxy"
	"github.com/palisade-lb/palisade/proxy/limit"
)

// generation is everything built from one config file.
type generation struct {
	cfg       *config.Config
	backends  map[string]*proxy.Backend
	frontends map[string]*proxy.Frontend
	order     []string            // frontend names in config order
	routed    map[string][]string // http frontend → backends its routes use
	listen    map[string]proxy.TCPHandler
	servers   map[string]serverPlan // by server ID
	commit    []func()              // applied only once the new generation is certain to be swapped in
}

// serverPlan is what the config says about one server.
type serverPlan struct {
	srv     *state.Server
	backend *config.Backend
	cfg     *config.Server
}

// build constructs a generation from cfg without touching the running one:
// state objects are shared by key, but their config values are changed only
// by the commit functions.
func (d *Daemon) build(cfg *config.Config, prev *generation) (*generation, error) {
	g := &generation{cfg: cfg, backends: map[string]*proxy.Backend{}, frontends: map[string]*proxy.Frontend{},
		listen: map[string]proxy.TCPHandler{}, servers: map[string]serverPlan{}, routed: map[string][]string{}}
	for i := range cfg.Backends {
		bc := &cfg.Backends[i]
		var prim, back []*state.Server
		for j := range bc.Servers {
			sc := &bc.Servers[j]
			s := d.store.Get(bc.Name, sc.Name)
			g.servers[s.ID()] = serverPlan{srv: s, backend: bc, cfg: sc}
			checked := bc.Health.Type != "none"
			weight, maxConns, slow := sc.Weight, sc.MaxConns, bc.Slowstart.D()
			g.commit = append(g.commit, func() { s.Configure(weight, maxConns, slow, checked) })
			if sc.Backup {
				back = append(back, s)
			} else {
				prim = append(prim, s)
			}
		}
		sendProxy := map[string]int{"off": 0, "v1": 1, "v2": 2}[bc.SendProxy]
		b, err := proxy.NewBackend(proxy.BackendConfig{
			Name: bc.Name, Balance: bc.Balance, SendProxy: sendProxy, Retries: bc.Retries,
			ConnectTimeout: bc.Timeouts.Connect.D(), ServerTimeout: bc.Timeouts.Server.D(), Cookie: bc.Cookie,
		}, prim, back)
		if err != nil {
			return nil, err
		}
		g.backends[bc.Name] = b
	}
	for i := range cfg.Frontends {
		fc := &cfg.Frontends[i]
		pc := proxy.FrontendConfig{
			Name: fc.Name, MaxConns: fc.MaxConns,
			Allow: config.Prefixes(fc.Allow), Deny: config.Prefixes(fc.Deny),
			AcceptProxy: fc.ProxyProtocol.Accept, ProxyTimeout: fc.ProxyProtocol.Timeout.D(),
			AccessLog: fc.AccessLog, ClientTimeout: fc.Timeouts.Client.D(),
		}
		if rl := fc.RateLimit; rl != nil {
			pc.RateLimit = &limit.Config{Rate: rl.PerSource.PerSecond, Burst: rl.Burst}
		}
		var prevFE *proxy.Frontend
		if prev != nil {
			prevFE = prev.frontends[fc.Name]
		}
		fe := proxy.NewFrontend(pc, g.backends[fc.DefaultBackend], nil, d.stats.Get(fc.Name), prevFE, d.log)
		g.frontends[fc.Name] = fe
		g.order = append(g.order, fc.Name)
		for _, r := range fc.Routes {
			if r.Backend != "" {
				g.routed[fc.Name] = append(g.routed[fc.Name], r.Backend)
			}
		}
		for _, addr := range fc.Listen {
			g.listen[normalizeListen(addr)] = fe
		}
	}
	return g, nil
}

// normalizeListen makes equal addresses equal strings, so a reload that
// rewrites "0.0.0.0:80" as "0.0.0.0:080" still keeps the socket.
func normalizeListen(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	port = strings.TrimLeft(port, "0")
	if host == "::" {
		host = ""
	}
	return net.JoinHostPort(host, port)
}

func (g *generation) String() string {
	return fmt.Sprintf("%d frontends, %d backends", len(g.frontends), len(g.backends))
}
