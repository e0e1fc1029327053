package daemon

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"

	"github.com/palisade-lb/palisade/internal/config"
	"github.com/palisade-lb/palisade/internal/state"
	"github.com/palisade-lb/palisade/proxy"
	"github.com/palisade-lb/palisade/proxy/l7"
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
	httpBackends := proxy.HTTPBackends{}
	for name, b := range g.backends {
		httpBackends[name] = proxy.NewHTTPBackend(b)
	}
	for i := range cfg.Frontends {
		fc := &cfg.Frontends[i]
		pc := proxy.FrontendConfig{
			Name: fc.Name, MaxConns: fc.MaxConns,
			Allow: config.Prefixes(fc.Allow), Deny: config.Prefixes(fc.Deny),
			AcceptProxy: fc.ProxyProtocol.Accept, ProxyTimeout: fc.ProxyProtocol.Timeout.D(),
			AccessLog: fc.AccessLog, ClientTimeout: fc.Timeouts.Client.D(), DeferAccept: fc.DeferAccept,
		}
		if rl := fc.RateLimit; rl != nil {
			pc.RateLimit = &limit.Config{Rate: rl.PerSource.PerSecond, Burst: rl.Burst}
		}
		var prevFE *proxy.Frontend
		if prev != nil {
			prevFE = prev.frontends[fc.Name]
		}
		var l7h proxy.ConnHandler
		if fc.Mode == "http" {
			h, err := d.buildHTTP(fc, httpBackends)
			if err != nil {
				return nil, err
			}
			l7h = h
		}
		fe := proxy.NewFrontend(pc, g.backends[fc.DefaultBackend], l7h, d.stats.Get(fc.Name), prevFE, d.log)
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

// buildHTTP makes the HTTP handler of an http-mode frontend; certificates
// are read from disk again on every reload.
func (d *Daemon) buildHTTP(fc *config.Frontend, backends proxy.HTTPBackends) (*l7.Handler, error) {
	hc := l7.Config{
		Frontend: fc.Name, DefaultBackend: fc.DefaultBackend,
		RequestHeaders:  l7Rules(fc.HTTP.RequestHeaders),
		ResponseHeaders: l7Rules(fc.HTTP.ResponseHeaders),
		Forwarded:       fc.HTTP.Forwarded, RequestID: fc.HTTP.RequestID, MaxHeaderBytes: fc.HTTP.MaxHeaderBytes,
		Timeouts: l7.Timeouts{Client: fc.Timeouts.Client.D(), Server: fc.Timeouts.Server.D(), Connect: fc.Timeouts.Connect.D(),
			HTTPRequest: fc.Timeouts.HTTPRequest.D(), Idle: fc.Timeouts.Idle.D()},
		AccessLog: fc.AccessLog,
	}
	for _, r := range fc.Routes {
		lr := l7.Route{Host: r.Host, PathPrefix: r.PathPrefix, Path: r.Path, Methods: r.Methods, Headers: r.Headers, Backend: r.Backend}
		if rd := r.Redirect; rd != nil {
			lr.Redirect = &l7.Redirect{Scheme: rd.Scheme, Host: rd.Host, Port: rd.Port, Path: rd.Path, Code: rd.Code}
		}
		hc.Routes = append(hc.Routes, lr)
	}
	if t := fc.TLS; t != nil {
		tc, err := l7.LoadCertificates(certFiles(t))
		if err != nil {
			return nil, fmt.Errorf("frontend %s: %w", fc.Name, err)
		}
		if t.MinVersion == "1.3" {
			tc.MinVersion = tls.VersionTLS13
		}
		hc.TLS = tc
	}
	return l7.New(hc, backends, d.httpMetrics, d.log)
}

func certFiles(t *config.TLS) []l7.CertFile {
	var out []l7.CertFile
	if t.Cert != "" {
		out = append(out, l7.CertFile{CertFile: t.Cert, KeyFile: t.Key})
	}
	for _, c := range t.Certs {
		out = append(out, l7.CertFile{CertFile: c.Cert, KeyFile: c.Key})
	}
	return out
}

func l7Rules(r config.HeaderRules) l7.HeaderRules {
	return l7.HeaderRules{Set: r.Set, Add: r.Add, Remove: r.Remove}
}
