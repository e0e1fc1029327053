package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// sample is one run of one scenario against one target.
type sample struct {
	rate   float64       // MB/s (bulk) or requests/s
	p99    time.Duration // wrk's p99; bulk: p99 of whole 100 MiB GETs
	cpu    float64       // proxy CPU: ms per GB (bulk) or µs per request; NaN for direct
	csw    float64       // proxy context switches per request (per MB for bulk); NaN for direct
	mcpu   float64       // whole machine's busy CPU (proxy, load, backends, kernel) per request or per GB
	segs   float64       // TCP segments the machine sent per request or per MB
	idle   float64       // the machine's idle share of its CPU time during the run
	count  int64         // requests (or complete GETs)
	errors int64
}

// scenario is one measurement, run against each of its targets per round.
type scenario struct {
	key, title    string
	unit, cpuUnit string
	cswUnit       string
	targets       []*target
	run           func(ctx context.Context, t *target) (sample, error)
}

type results struct {
	scenarios []*scenario
	samples   map[string]map[string][]sample // scenario key → target key → runs
	idle      map[string]idleResult          // target key →
	idleFds   map[string]float64             // target key → fds per proxied connection
	idleCap   map[string]int                 // target key → connections RLIMIT_NOFILE fits
	profile   *profileResult
}

func (b *bench) scenarios() []*scenario {
	o := b.o
	wrkRun := func(closeConn bool) func(context.Context, *target) (sample, error) {
		return func(ctx context.Context, t *target) (sample, error) {
			c0, x0 := b.cpu(t), b.csw(t)
			m := startMachine()
			r, err := runWrk(ctx, o.pin.load, "http://"+t.addr+"/small", o.threads, o.conns, o.duration, closeConn)
			c1, x1 := b.cpu(t), b.csw(t)
			if err != nil {
				return sample{}, err
			}
			s := sample{rate: r.rps, p99: r.p99, count: r.requests, errors: r.errors, cpu: math.NaN(), csw: math.NaN()}
			s.mcpu, s.segs, s.idle = m.end(float64(r.requests))
			s.mcpu *= 1e6 // µs per request
			if t.p != nil && r.requests > 0 {
				s.cpu = float64((c1 - c0).Microseconds()) / float64(r.requests)
				s.csw = float64(x1-x0) / float64(r.requests)
			}
			return s, nil
		}
	}
	return []*scenario{
		{
			key: "bulk", unit: "MB/s", cpuUnit: "ms/GB", cswUnit: "/MB",
			title:   fmt.Sprintf("bulk: %d MiB GETs, %d connections", o.bigMiB, o.bulkConns),
			targets: b.withBase(b.pal, b.hap, b.hapSp, b.direct),
			run: func(ctx context.Context, t *target) (sample, error) {
				c0, x0 := b.cpu(t), b.csw(t)
				m := startMachine()
				r, err := runBulk(ctx, t.addrs, "/big", o.bulkConns, o.duration)
				c1, x1 := b.cpu(t), b.csw(t)
				if err != nil {
					return sample{}, err
				}
				s := sample{rate: r.mbps(), p99: r.p99, count: int64(r.gets), cpu: math.NaN(), csw: math.NaN()}
				s.mcpu, s.segs, s.idle = m.end(float64(r.bytes) / 1e9)
				s.mcpu *= 1e3 // ms per GB
				s.segs /= 1e3 // per MB
				if t.p != nil && r.bytes > 0 {
					s.cpu = float64((c1 - c0).Microseconds()) / 1e3 / (float64(r.bytes) / 1e9)
					s.csw = float64(x1-x0) / (float64(r.bytes) / 1e6)
				}
				return s, nil
			},
		},
		{
			key: "conn", unit: "req/s", cpuUnit: "µs/req", cswUnit: "/req", run: wrkRun(true),
			title:   fmt.Sprintf("new connection per request: wrk -t%d -c%d, Connection: close, 13 B body", o.threads, o.conns),
			targets: b.withBase(b.pal, b.hap, b.direct),
		},
		{
			key: "keepalive", unit: "req/s", cpuUnit: "µs/req", cswUnit: "/req", run: wrkRun(false),
			title:   fmt.Sprintf("keep-alive: wrk -t%d -c%d, 13 B body", o.threads, o.conns),
			targets: b.withBase(b.pal, b.hap, b.direct),
		},
	}
}

// machine measures the whole machine's CPU and TCP segments over a run.
type machine struct {
	busy, idle time.Duration
	segs       int64
}

func startMachine() machine {
	b, i := machineCPU()
	return machine{b, i, tcpOutSegs()}
}

// end returns the busy CPU seconds and the TCP segments sent (all of them on
// loopback, so each one also received) per unit of work since start, and
// the idle share of the machine's CPU time.
func (m machine) end(units float64) (perUnit, segs, idle float64) {
	b, i := machineCPU()
	n := tcpOutSegs()
	db, di := (b - m.busy).Seconds(), (i - m.idle).Seconds()
	if units <= 0 || db+di <= 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	segs = math.NaN()
	if m.segs > 0 && n >= m.segs {
		segs = float64(n-m.segs) / units
	}
	return db / units, segs, di / (db + di)
}

// selected is the scenarios -only names (all without it).
func (b *bench) selected() ([]*scenario, error) {
	var scs []*scenario
	for _, sc := range b.scenarios() {
		if b.o.only == "" || slices.Contains(strings.Split(b.o.only, ","), sc.key) {
			scs = append(scs, sc)
		}
	}
	if len(scs) == 0 {
		return nil, fmt.Errorf("-only %q names no scenario (bulk, conn, keepalive)", b.o.only)
	}
	return scs, nil
}

// cpu is the target proxy's CPU time so far (0 for direct).
func (b *bench) cpu(t *target) time.Duration {
	if t.p == nil {
		return 0
	}
	d, err := cpuTime(t.p.pid())
	if err != nil {
		return 0
	}
	return d
}

// csw is the target proxy's context switches so far (0 for direct).
func (b *bench) csw(t *target) int64 {
	if t.p == nil {
		return 0
	}
	return ctxSwitches(t.p.pid())
}

func (b *bench) alive() error {
	procs := []*proc{b.nginx}
	for _, t := range b.proxies() {
		procs = append(procs, t.p)
	}
	for _, p := range procs {
		if p.exited() {
			return fmt.Errorf("%s exited (%v): %w\n%s", p.name, p.err, errProxyDied, p.logTail())
		}
	}
	return nil
}

// measure runs the idle-memory test, then o.runs rounds of every scenario,
// each round against every target in a rotated order.
func (b *bench) measure(ctx context.Context) (*results, error) {
	res := &results{samples: map[string]map[string][]sample{}, idle: map[string]idleResult{},
		idleFds: map[string]float64{}, idleCap: map[string]int{}}
	var err error
	if res.scenarios, err = b.selected(); err != nil {
		return nil, err
	}
	if b.o.idle > 0 {
		if err := b.measureIdle(ctx, res); err != nil {
			return nil, err
		}
	}
	for round := 0; round < b.o.runs; round++ {
		for _, sc := range res.scenarios {
			if res.samples[sc.key] == nil {
				res.samples[sc.key] = map[string][]sample{}
			}
			n := len(sc.targets)
			for i := 0; i < n; i++ {
				t := sc.targets[(i+round)%n]
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				s, err := sc.run(ctx, t)
				if err != nil {
					return nil, fmt.Errorf("round %d %s via %s: %w", round+1, sc.key, t.key, err)
				}
				if err := b.alive(); err != nil {
					return nil, err
				}
				res.samples[sc.key][t.key] = append(res.samples[sc.key][t.key], s)
				b.logf("round %d/%d %-9s %-15s %10.0f %-5s p99 %-9v cpu %7.2f %s  csw %6.2f  errors %d",
					round+1, b.o.runs, sc.key, t.key, s.rate, sc.unit, s.p99.Round(10*time.Microsecond), s.cpu, sc.cpuUnit, s.csw, s.errors)
			}
		}
	}
	return res, nil
}

// measureIdle measures each proxy's memory with idle proxied connections.
// A probe of 200 connections first measures each proxy's fds per connection,
// so that the count is reduced (and the report says so) when RLIMIT_NOFILE
// cannot hold o.idle connections in both proxies.
func (b *bench) measureIdle(ctx context.Context, res *results) error {
	type px struct {
		key, addr string
		p         *proc
	}
	pxs := []px{{"palisade", b.palIdle, b.pal.p}, {"haproxy", b.hapIdle, b.hap.p}}
	n := b.o.idle
	const probe = 200
	for _, x := range pxs {
		r, err := runIdle(ctx, x.addr, probe, b.hold, x.p.pid())
		if err != nil {
			return fmt.Errorf("idle probe via %s: %w", x.key, err)
		}
		limit := nofileSoft(x.p.pid())
		// rounded up: fds of pooled splice pipes are already open before the probe
		capacity := int(float64(limit-r.fdsBefore-100) / max(1, math.Ceil(r.fdsPerConn()-0.01)))
		if x.key == "haproxy" {
			capacity = min(capacity, b.hapMaxconn-100)
		}
		res.idleFds[x.key] = r.fdsPerConn()
		res.idleCap[x.key] = capacity
		b.logf("idle: %s uses %.2f fds per proxied connection; RLIMIT_NOFILE %d fits about %d", x.key, r.fdsPerConn(), limit, capacity)
		if capacity < n {
			n = capacity / 100 * 100
		}
	}
	if n < probe {
		return fmt.Errorf("idle test: RLIMIT_NOFILE fits only %d connections", n)
	}
	for _, x := range pxs {
		b.logf("idle: %d connections through %s", n, x.key)
		r, err := runIdle(ctx, x.addr, n, b.hold, x.p.pid())
		if err != nil {
			return fmt.Errorf("idle test via %s: %w", x.key, err)
		}
		b.logf("idle: %s VmRSS %d kB -> %d kB, fds %d -> %d, threads %d, nofile %s; first run: slab grew most in %s",
			x.key, r.rssBefore, r.rss, r.fdsBefore, r.fds, r.threads, r.nofile, strings.Join(r.topSlab(8), ", "))
		res.idle[x.key] = r
		if err := b.alive(); err != nil {
			return err
		}
	}
	// The kernel's side, once more each: the run that comes first also pays
	// for kernel objects the bench's own reads leave behind (the /proc
	// entries of the holder's descriptors) and later runs reuse, so each
	// proxy's kernel memory is taken from a run after one of the same size
	// through the other.
	for _, x := range pxs {
		r, err := runIdle(ctx, x.addr, n, b.hold, x.p.pid())
		if err != nil {
			return fmt.Errorf("idle test via %s, second run: %w", x.key, err)
		}
		b.logf("idle: %s, second run: slab grew most in %s", x.key, strings.Join(r.topSlab(8), ", "))
		first := res.idle[x.key]
		first.slabGrowth, first.slabSource, first.slabByCache = r.slabGrowth, r.slabSource+", each proxy's second run", r.slabByCache
		res.idle[x.key] = first
	}
	return nil
}

func median(v []float64) float64 {
	var w []float64
	for _, x := range v {
		if !math.IsNaN(x) {
			w = append(w, x)
		}
	}
	if len(w) == 0 {
		return math.NaN()
	}
	slices.Sort(w)
	if len(w)%2 == 1 {
		return w[len(w)/2]
	}
	return (w[len(w)/2-1] + w[len(w)/2]) / 2
}

// stat is the median and range of one metric over runs.
type stat struct{ med, lo, hi float64 }

func statOf(ss []sample, f func(sample) float64) stat {
	var v []float64
	for _, s := range ss {
		v = append(v, f(s))
	}
	st := stat{med: median(v), lo: math.Inf(1), hi: math.Inf(-1)}
	for _, x := range v {
		if !math.IsNaN(x) {
			st.lo, st.hi = min(st.lo, x), max(st.hi, x)
		}
	}
	return st
}

// paired compares palisade with another target round by round: each round
// runs both back to back, so their ratio is free of the drift between
// rounds (other load on a shared machine) that widens each target's own
// range. It holds the median of the per-round ratios, the rounds in which
// palisade was ahead (ratio > 1), and the one-sided sign test's p-value of
// that many rounds ahead if neither were faster (ties left out, as the
// test does).
type paired struct {
	med       float64
	ahead, of int
	p         float64
}

// pairRounds pairs the i-th sample of a with the i-th of b; f returns the
// metric compared (higher is better).
func pairRounds(a, b []sample, f func(sample) float64) paired {
	var r []float64
	for i := range min(len(a), len(b)) {
		if x, y := f(a[i]), f(b[i]); y > 0 && !math.IsNaN(x) && !math.IsNaN(y) {
			r = append(r, x/y)
		}
	}
	pr := paired{med: median(r), of: len(r)}
	ties := 0
	for _, x := range r {
		switch {
		case x > 1:
			pr.ahead++
		case x == 1:
			ties++
		}
	}
	pr.p = signTestP(pr.ahead, len(r)-ties)
	return pr
}

// signTestP is P(X >= k) for X ~ Binomial(n, 1/2).
func signTestP(k, n int) float64 {
	if n == 0 {
		return math.NaN()
	}
	var p float64
	for i := k; i <= n; i++ {
		p += math.Exp(lchoose(n, i) - float64(n)*math.Ln2)
	}
	return min(p, 1)
}

func lchoose(n, k int) float64 {
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return a - b - c
}
