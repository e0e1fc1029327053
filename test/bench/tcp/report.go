package main

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"time"
)

// report renders the results as Markdown for the README's performance section.
func (b *bench) report(res *results) string {
	o := b.o
	var w strings.Builder
	cmdline, target := fmt.Sprintf("go run ./test/bench/tcp -palisade %s -runs %d -duration %v", o.palisade, o.runs, o.duration), "bench-tcp"
	if o.baseline != "" {
		cmdline += " -baseline " + o.baseline
	}
	if o.cc != "" {
		cmdline += " -cc " + o.cc
	}
	if !o.deferAcc {
		cmdline += " -defer-accept=false"
	}
	extra := extraFlags(o)
	cmdline += extra
	placement := "the proxies and load generators sharing the CPUs"
	title := "TCP mode (`mode tcp`)"
	if o.pin.on() {
		proxy, load := cpuListString(o.pin.proxy), cpuListString(o.pin.load)
		cmdline += fmt.Sprintf(" -pin %s:%s", proxy, load)
		target = "bench-tcp-pinned"
		placement = fmt.Sprintf("the proxy under test alone on CPU %s, nginx, wrk and the bulk client on CPU %s (taskset); "+
			"direct runs leave CPU %s idle", proxy, load, proxy)
		title += ", the proxy on its own CPU"
	}
	fmt.Fprintf(&w, "#### %s\n\n", title)
	if o.cc == "cubic" {
		target = "bench-tcp-cubic"
	}
	made := fmt.Sprintf(" (`make %s`)", target)
	if o.baseline != "" || o.cc != "" && o.cc != "cubic" || !makeFlags(o.pin.on(), extra) {
		made = "" // no make target passes these
	}
	fmt.Fprintf(&w, "Measured %s with `%s`%s.\n", time.Now().UTC().Format("2006-01-02"), cmdline, made)
	const noDefer = " (predates `defer_accept`: runs without it)"
	pal := b.info["palisade"]
	if b.noDefer["palisade"] {
		pal += noDefer
	}
	if b.base != nil {
		pal += fmt.Sprintf("; baseline (`-baseline %s`): %s", o.baseline, b.info["baseline"])
		if b.noDefer["baseline"] {
			pal += noDefer
		}
	}
	deferNote := "The bench frontend of both proxies accepts a connection once its request is in (`defer_accept: true`; HAProxy `bind ... defer-accept`). "
	if !o.deferAcc {
		deferNote = "Neither proxy defers accept (`-defer-accept=false`). "
	}
	fmt.Fprintf(&w, "%d CPUs (%s), Linux %s; %s; HAProxy %s (`nbthread %d`); nginx %s (`worker_processes 1`, "+
		"two ports = the two servers); wrk %s; TCP congestion control %s. Everything on loopback, one machine, %s. %s"+
		"Medians of %d alternating runs of %v (range in brackets). Proxy CPU is utime+stime of all "+
		"its threads (`/proc/PID/stat`) during the run, divided by requests served (or GB moved); machine CPU is the "+
		"same for the whole machine (proxy, wrk, nginx, kernel; `/proc/stat`), and machine idle its idle share; TCP segments are those the "+
		"machine sent (`OutSegs` of `/proc/net/snmp`; on loopback each is also received).\n\n",
		runtime.NumCPU(), b.info["cpu"], b.info["kernel"], pal, b.info["haproxy"], o.nbthread,
		b.info["nginx"], b.info["wrk"], b.info["cc"], placement, deferNote, o.runs, o.duration)

	fmt.Fprintf(&w, "| test | target | throughput | p99 latency | proxy CPU | proxy context switches | machine CPU | machine idle | TCP segments | errors |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, sc := range res.scenarios {
		for i, t := range sc.targets {
			ss := res.samples[sc.key][t.key]
			rate := statOf(ss, func(s sample) float64 { return s.rate })
			p99 := statOf(ss, func(s sample) float64 { return float64(s.p99) })
			cpu := statOf(ss, func(s sample) float64 { return s.cpu })
			csw := statOf(ss, func(s sample) float64 { return s.csw })
			mcpu := statOf(ss, func(s sample) float64 { return s.mcpu })
			idle := statOf(ss, func(s sample) float64 { return s.idle })
			segs := statOf(ss, func(s sample) float64 { return s.segs })
			var errs int64
			for _, s := range ss {
				errs += s.errors
			}
			title := ""
			if i == 0 {
				title = sc.title
			}
			fmt.Fprintf(&w, "| %s | %s | %s %s (%s–%s) | %s | %s | %s | %s | %s | %s | %d |\n", title, t.label,
				fmtNum(rate.med), sc.unit, fmtNum(rate.lo), fmtNum(rate.hi),
				fmtDur(time.Duration(p99.med)), fmtCPU(cpu.med, sc.cpuUnit), fmtCPU(csw.med, sc.cswUnit),
				fmtCPU(mcpu.med, sc.cpuUnit), fmtPct(idle.med), fmtCPU(segs.med, sc.cswUnit), errs)
		}
	}
	if slices.ContainsFunc(res.scenarios, func(sc *scenario) bool { return sc.key == "bulk" }) {
		fmt.Fprintf(&w, "\nbulk p99 is of whole %d MiB GETs.\n", o.bigMiB)
	}

	fmt.Fprintf(&w, "\n| ratio | throughput | proxy CPU per request/GB | target | throughput, round by round | proxy CPU, round by round |\n|---|---:|---:|---|---|---|\n")
	med := func(sc, t string, f func(sample) float64) float64 {
		return statOf(res.samples[sc][t], f).med
	}
	rateOf := func(s sample) float64 { return s.rate }
	cpuOf := func(s sample) float64 { return s.cpu }
	for _, sc := range res.scenarios {
		name := map[string]string{"bulk": "bulk", "conn": "new connections", "keepalive": "keep-alive"}[sc.key]
		for _, t := range sc.targets {
			if t.key == "palisade" {
				continue
			}
			pr, tr := med(sc.key, "palisade", rateOf), med(sc.key, t.key, rateOf)
			cpuR, cpuP := "–", "–"
			goal := "≥ 1.0, CPU ≤ 1.0"
			ps, ts := res.samples[sc.key]["palisade"], res.samples[sc.key][t.key]
			rateP := fmtPaired(pairRounds(ps, ts, rateOf), "ahead", false)
			if t.p != nil {
				cpuR = fmtRatio(med(sc.key, "palisade", cpuOf) / med(sc.key, t.key, cpuOf))
				cpuP = fmtPaired(pairRounds(ps, ts, func(s sample) float64 { return 1 / s.cpu }), "lower", true)
				if t == b.base {
					goal = "– (A/B)"
				}
			} else {
				goal = "≥ 0.9 (bulk)"
				if sc.key != "bulk" {
					goal = "–"
				}
			}
			fmt.Fprintf(&w, "| %s: palisade / %s | %s | %s | %s | %s | %s |\n", name, t.label, fmtRatio(pr/tr), cpuR, goal, rateP, cpuP)
		}
	}
	if len(res.scenarios) > 0 {
		w.WriteString("\nRound by round: each round runs every target back to back, so the ratio within a round is free of " +
			"the drift between rounds (other work on a shared machine) that widens each target's own range. Given: the median " +
			"of the per-round ratios, the rounds palisade was ahead (CPU: lower), and the sign test's one-sided p-value of " +
			"that many if neither proxy were ahead.\n")
	}

	if p, h := res.idle["palisade"], res.idle["haproxy"]; p.n > 0 && h.n > 0 {
		perConn := func(r idleResult) float64 { return float64(r.rss-r.rssBefore) * 1024 / float64(r.n) }
		fmt.Fprintf(&w, "\n| %d idle proxied connections | palisade | HAProxy | palisade / HAProxy |\n|---|---:|---:|---:|\n", p.n)
		fmt.Fprintf(&w, "| VmRSS | %s | %s | %s |\n", fmtKB(p.rss), fmtKB(h.rss), fmtRatio(float64(p.rss)/float64(h.rss)))
		fmt.Fprintf(&w, "| VmRSS before | %s | %s | |\n", fmtKB(p.rssBefore), fmtKB(h.rssBefore))
		fmt.Fprintf(&w, "| RSS growth per connection | %.1f KiB | %.1f KiB | %s |\n", perConn(p)/1024, perConn(h)/1024,
			fmtRatio(perConn(p)/perConn(h)))
		fmt.Fprintf(&w, "| kernel slab growth, whole machine (%s; includes the client and server ends) | %s | %s | %s |\n",
			p.slabSource, fmtKB(p.slabGrowth), fmtKB(h.slabGrowth), fmtRatio(float64(p.slabGrowth)/float64(h.slabGrowth)))
		fmt.Fprintf(&w, "| open fds | %d | %d | %s |\n", p.fds, h.fds, fmtRatio(float64(p.fds)/float64(h.fds)))
		fmt.Fprintf(&w, "| fds per proxied connection | %.2f | %.2f | %s |\n", p.fdsPerConn(), h.fdsPerConn(), fmtRatio(p.fdsPerConn()/h.fdsPerConn()))
		fmt.Fprintf(&w, "| threads | %d | %d | |\n", p.threads, h.threads)
		fmt.Fprintf(&w, "| connections RLIMIT_NOFILE %s fits | %d | %d | %s |\n", p.nofile, res.idleCap["palisade"], res.idleCap["haproxy"],
			fmtRatio(float64(res.idleCap["palisade"])/float64(res.idleCap["haproxy"])))
		fmt.Fprintf(&w, "\nRSS excludes kernel memory (socket buffers, pipes). Both proxies ran with RLIMIT_NOFILE %d "+
			"(as `ulimit -n %d`), checked in `/proc/PID/limits`.", b.nofile, b.nofile)
		if p.n < b.o.idle {
			fmt.Fprintf(&w, " %d connections were asked for, but this machine's hard limit (%d, no CAP_SYS_RESOURCE) "+
				"does not fit them in both proxies, so both were measured with %d.", b.o.idle, b.nofile, p.n)
		}
		w.WriteString("\n")
	}
	if res.profile != nil {
		w.WriteString(res.profile.markdown())
	}
	return w.String()
}

func fmtNum(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "–"
	case v >= 100:
		return groupThousands(fmt.Sprintf("%.0f", v))
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func groupThousands(s string) string {
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

func fmtCPU(v float64, unit string) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmtNum(v) + " " + unit
}

// fmtPaired formats a round-by-round comparison; inverted: the metric
// paired was the reciprocal of the one shown (CPU, lower is better).
func fmtPaired(p paired, word string, inverted bool) string {
	if p.of == 0 {
		return "–"
	}
	m := p.med
	if inverted {
		m = 1 / m
	}
	return fmt.Sprintf("%s, %s in %d of %d (p %.2g)", fmtRatio(m), word, p.ahead, p.of, p.p)
}

func fmtRatio(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	return fmt.Sprintf("%.2f", v)
}

func fmtKB(kb int64) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }

func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "–"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
}

// sortedKeys returns m's keys ordered by descending value.
func sortedKeys(m map[string]float64) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, func(a, b string) int {
		switch {
		case m[a] > m[b]:
			return -1
		case m[a] < m[b]:
			return 1
		}
		return strings.Compare(a, b)
	})
	return ks
}

func fmtPct(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.0f %%", v*100)
}

// extraFlags are the flags, beyond those report names itself, whose values
// differ from the defaults, as they would be given.
func extraFlags(o options) string {
	d := defaultOptions()
	var f string
	if o.only != "" {
		f += " -only " + o.only
	}
	for _, x := range []struct {
		name    string
		v, dflt int
	}{{"conns", o.conns, d.conns}, {"threads", o.threads, d.threads}, {"bulk-conns", o.bulkConns, d.bulkConns},
		{"big-mib", o.bigMiB, d.bigMiB}, {"idle", o.idle, d.idle}} {
		if x.v != x.dflt {
			f += fmt.Sprintf(" -%s %d", x.name, x.v)
		}
	}
	return f
}

// makeFlags reports whether a make target runs the bench with these extra flags.
func makeFlags(pinned bool, extra string) bool {
	if !pinned {
		return extra == ""
	}
	return extra == " -idle 0" || extra == " -only keepalive -conns 4 -threads 1 -idle 0"
}
