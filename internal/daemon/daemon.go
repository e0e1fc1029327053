// Package daemon owns the running configuration: it builds the data path
// from a config file, swaps it atomically on reload, and drains it on stop.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/palisade-lb/palisade/healthcheck"
	"github.com/palisade-lb/palisade/internal/config"
	"github.com/palisade-lb/palisade/internal/logging"
	"github.com/palisade-lb/palisade/internal/state"
	"github.com/palisade-lb/palisade/proxy"
	"github.com/palisade-lb/palisade/proxy/l7"
	"github.com/palisade-lb/palisade/vip"
)

// Options configure a Daemon.
type Options struct {
	ConfigPath string
	Log        *slog.Logger
	Registry   *prometheus.Registry
	// Notify receives systemd state strings ("READY=1", "RELOADING=1", ...); may be nil.
	Notify func(state string)
	// Level, when set, follows global.log.level on every reload.
	Level   *slog.LevelVar
	Version string
	Commit  string
	// VRRPNetwork replaces the real network of VRRP instances (tests); nil = Linux.
	VRRPNetwork vip.Network
	// Resolver looks up server host names; nil means net.DefaultResolver.
	Resolver Resolver
	// OnConfig is called after every successful load with the new config
	// (the admin API rebinds from it); an error at the first load stops Run.
	OnConfig func(*config.Config) error
}

// Resolver resolves host names (net.Resolver satisfies it).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Daemon runs one palisade process's data path.
type Daemon struct {
	opts      Options
	log       *slog.Logger
	store     *state.Store
	stats     *proxy.StatsStore
	listeners *proxy.Listeners
	metrics   *metrics
	started   time.Time

	reloadMu sync.Mutex // one reload at a time
	stopping bool       // under reloadMu: a stop began, reloads are refused
	cur      atomic.Pointer[generation]
	last     atomic.Pointer[ReloadResult]

	// hardCtx is cancelled global.grace after a stop begins: connections
	// still open then are closed.
	hardCtx     context.Context
	hardCancel  context.CancelFunc
	bg          sync.WaitGroup // drains of retired frontends
	checks      *checks
	ha          *ha
	httpMetrics *l7.Metrics
	resolvers   *resolvers
}

// ReloadResult is the outcome of the last (re)load.
type ReloadResult struct {
	OK     bool      `json:"ok"`
	At     time.Time `json:"at"`
	Errors []string  `json:"errors,omitempty"`
	SHA256 string    `json:"sha256,omitempty"`
}

// New loads and validates the config file; it opens nothing and starts no goroutine.
func New(opts Options) (*Daemon, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	if opts.Notify == nil {
		opts.Notify = func(string) {}
	}
	d := &Daemon{opts: opts, log: opts.Log, store: state.NewStore(), stats: proxy.NewStatsStore(),
		listeners: proxy.NewListeners(opts.Log), started: time.Now()}
	d.hardCtx, d.hardCancel = context.WithCancel(context.Background())
	d.checks = newChecks(d)
	d.resolvers = newResolvers(d)
	d.metrics = newMetrics(d, opts.Registry)
	d.checks.metrics = healthcheck.NewMetrics(opts.Registry)
	hm, err := l7.NewMetrics(opts.Registry)
	if err != nil {
		return nil, fmt.Errorf("registering http metrics: %w", err)
	}
	d.httpMetrics = hm
	if d.ha, err = newHA(d); err != nil {
		return nil, err
	}
	return d, nil
}

// Run applies the config, serves until ctx is done, then stops gracefully:
// listeners close, open connections drain for up to global.grace, and Run
// returns once every connection and goroutine it started has ended.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.hardCancel()
	if err := d.Reload(); err != nil {
		d.ha.stopVRRP(context.Background())
		d.ha.closeFilter()
		d.listeners.Close()
		d.listeners.Wait()
		d.checks.stopAll()
		d.resolvers.stopAll()
		return err
	}
	trackDone := make(chan struct{})
	go func() { defer close(trackDone); d.ha.trackLoop(ctx) }()
	d.opts.Notify("READY=1")
	<-ctx.Done()
	<-trackDone
	d.opts.Notify("STOPPING=1")
	d.shutdown()
	return nil
}

func (d *Daemon) shutdown() {
	d.reloadMu.Lock() // waits for a reload in progress
	d.stopping = true
	d.reloadMu.Unlock()
	g := d.cur.Load()
	grace := g.cfg.Global.Grace.D()
	d.log.Info("stopping", "grace", grace.String())
	// VIPs first: a priority-0 advert hands them to the backup at once
	vctx, vcancel := context.WithTimeout(context.Background(), grace)
	d.ha.stopVRRP(vctx)
	vcancel()
	d.listeners.Close()
	t := time.AfterFunc(grace, d.hardCancel)
	defer t.Stop()
	for _, fe := range g.frontends {
		d.bg.Add(1)
		go func() { defer d.bg.Done(); fe.Drain(d.hardCtx) }()
	}
	d.bg.Wait()
	d.listeners.Wait()
	proxy.CloseIdlePipes()
	d.checks.stopAll()
	d.resolvers.stopAll()
	d.ha.closeFilter()
	d.log.Info("stopped")
}

// Reload reads the config file again and swaps it in; on any error the
// running config stays untouched and the error lists every problem.
func (d *Daemon) Reload() error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	if d.stopping {
		return errStopping
	}
	first := d.cur.Load() == nil
	if !first {
		d.opts.Notify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
		defer d.opts.Notify("READY=1")
	}
	err := d.reload()
	if err == nil {
		if d.opts.Level != nil {
			if l, err := logging.ParseLevel(d.cur.Load().cfg.Global.Log.Level); err == nil {
				d.opts.Level.Set(l)
			}
		}
		d.metrics.reloaded(d.last.Load())
		return nil
	}
	res := &ReloadResult{At: time.Now(), Errors: config.Messages(err)}
	for _, e := range res.Errors {
		d.log.Error("config not loaded", "error", e)
	}
	if !first {
		d.log.Error("reload failed; still running the previous config", "errors", len(res.Errors))
	}
	d.last.Store(res)
	d.metrics.reloaded(res)
	return err
}

func (d *Daemon) reload() error {
	cfg, err := config.Load(d.opts.ConfigPath)
	if err != nil {
		return err
	}
	prev := d.cur.Load()
	g, err := d.build(cfg, prev)
	if err != nil {
		d.retain(prev)
		return err
	}
	// the event loops start with the first tcp listener, one per thread
	setThreads(cfg.Global.Threads)
	if err := d.listeners.Apply(g.listen); err != nil {
		if prev != nil {
			setThreads(prev.cfg.Global.Threads)
		}
		d.retain(prev)
		return err
	}
	// Past this point nothing fails: commit.
	for _, c := range g.commit {
		c()
	}
	d.resolvers.apply(g)
	d.checks.apply(g)
	// the result first: whoever sees the new generation sees its result too
	d.last.Store(&ReloadResult{OK: true, At: time.Now(), SHA256: cfg.SHA256})
	d.cur.Store(g)
	d.retain(g)
	if prev != nil {
		d.drainOld(prev, g)
	}
	if err := d.ha.applySynflood(cfg); err != nil {
		if prev == nil {
			return err
		}
		d.log.Error("applying synflood", "error", err)
	}
	if err := d.ha.applyVRRP(&cfg.VRRP); err != nil {
		if prev == nil {
			return fmt.Errorf("starting vrrp: %w", err)
		}
		d.log.Error("applying vrrp", "error", err)
	}
	if d.opts.OnConfig != nil {
		if err := d.opts.OnConfig(cfg); err != nil {
			if prev == nil {
				return err
			}
			d.log.Error("applying config", "error", err)
		}
	}
	d.log.Info("config loaded", "file", cfg.Path, "sha256", cfg.SHA256[:12], "frontends", len(g.frontends),
		"backends", len(g.backends))
	return nil
}

// retain drops runtime state of servers and frontends not in g (nil: none).
func (d *Daemon) retain(g *generation) {
	keepS, keepF := map[string]bool{}, map[string]bool{}
	if g != nil {
		for id := range g.servers {
			keepS[id] = true
		}
		for n := range g.frontends {
			keepF[n] = true
		}
	}
	d.store.Retain(keepS)
	d.stats.Retain(keepF)
}

// drainOld retires the frontends of prev: removed frontends drain for
// global.grace and are then closed; replaced ones finish their connections
// under the old settings, bounded only by shutdown.
func (d *Daemon) drainOld(prev, next *generation) {
	grace := next.cfg.Global.Grace.D()
	for name, fe := range prev.frontends {
		_, kept := next.frontends[name]
		d.bg.Add(1)
		go func() {
			defer d.bg.Done()
			if kept {
				// no deadline until a stop, then the stop's grace applies
				fe.Drain(d.hardCtx)
				return
			}
			ctx, cancel := context.WithTimeout(d.hardCtx, grace)
			defer cancel()
			fe.Drain(ctx)
		}()
	}
}

var errStopping = errors.New("stopping: reload refused")

// LastReload returns the outcome of the last load or reload.
func (d *Daemon) LastReload() ReloadResult {
	if r := d.last.Load(); r != nil {
		return *r
	}
	return ReloadResult{}
}

// Config returns the running config (nil before Run).
func (d *Daemon) Config() *config.Config {
	if g := d.cur.Load(); g != nil {
		return g.cfg
	}
	return nil
}

// Listeners exposes the bound addresses (for tests and status).
func (d *Daemon) Listeners() *proxy.Listeners { return d.listeners }

// Store exposes server state (for the admin API).
func (d *Daemon) Store() *state.Store { return d.store }

// setThreads applies global.threads to GOMAXPROCS, unless the environment sets it.
func setThreads(n int) {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	if n <= 0 {
		runtime.SetDefaultGOMAXPROCS() // per CPU, within the cgroup's CPU limit
		return
	}
	if runtime.GOMAXPROCS(0) != n {
		runtime.GOMAXPROCS(n)
	}
}
