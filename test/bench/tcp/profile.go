package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// profileResult holds syscalls per request (per MB for bulk) of each proxy
// under each load, and where the perf reports were written.
type profileResult struct {
	dir    string
	method string
	cols   []string                      // "scenario/target" in column order
	calls  map[string]map[string]float64 // column → syscall → calls per unit
	perf   []string
	sched  map[string]schedRow // column → scheduler trace (with perf only)
}

// schedRow is one scheduler trace and the load's rate (requests or MB per
// second) in the run it was taken from.
type schedRow struct {
	st   schedStats
	rate float64
}

// profileAll runs, for each scenario, palisade and its HAProxy peer once more
// under the same load as the measurement: once counting syscalls (perf stat
// on the syscall tracepoints, or strace -c without perf) and once recording
// call graphs (perf record -g). These runs are not part of the figures.
func (b *bench) profileAll(ctx context.Context, dir string) (*profileResult, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	pr := &profileResult{dir: dir, calls: map[string]map[string]float64{}, sched: map[string]schedRow{},
		method: "perf stat -e 'syscalls:sys_enter_*'"}
	if b.tools.perf == "" {
		if b.tools.strace == "" {
			return nil, fmt.Errorf("neither perf nor strace installed")
		}
		pr.method = "strace -c -f"
	}
	scs, err := b.selected()
	if err != nil {
		return nil, err
	}
	for _, sc := range scs {
		peers := []*target{b.pal, b.hap}
		if sc.key == "bulk" {
			peers = []*target{b.pal, b.hapSp}
		}
		for _, t := range peers {
			col := sc.key + "/" + t.key
			base := filepath.Join(dir, sc.key+"-"+t.key)
			calls, units, err := b.countSyscalls(ctx, sc, t, base+".syscalls.txt")
			if err != nil {
				return nil, fmt.Errorf("counting syscalls %s: %w", col, err)
			}
			pr.cols = append(pr.cols, col)
			pr.calls[col] = map[string]float64{}
			for name, n := range calls {
				pr.calls[col][name] = float64(n) / units
			}
			b.logf("profile: syscalls %s: %.0f %s", col, units, strings.TrimPrefix(sc.cswUnit, "/"))
			if b.tools.perf != "" {
				if err := b.perfRecord(ctx, sc, t, base+".perf"); err != nil {
					b.logf("profile: perf record %s: %v", col, err)
				} else {
					pr.perf = append(pr.perf, base+".perf.txt")
				}
				if row, err := b.schedTrace(ctx, sc, t, base+".sched"); err != nil {
					b.logf("profile: scheduler trace %s: %v", col, err)
				} else {
					pr.sched[col] = row
				}
			}
			if err := b.alive(); err != nil {
				return nil, err
			}
		}
	}
	return pr, nil
}

// units is what a sample's syscalls are divided by: requests, or MB for bulk.
func units(sc *scenario, s sample, d time.Duration) float64 {
	if sc.key == "bulk" {
		return s.rate * d.Seconds()
	}
	return float64(s.count)
}

// countSyscalls counts the syscalls of t's process (all threads) during one
// run of sc's load.
func (b *bench) countSyscalls(ctx context.Context, sc *scenario, t *target, file string) (map[string]int64, float64, error) {
	cctx, cancel := context.WithTimeout(ctx, b.o.duration+60*time.Second)
	defer cancel()
	pid := t.p.pid()
	var cmd *exec.Cmd
	if b.tools.perf != "" {
		cmd = exec.CommandContext(cctx, b.tools.perf, "stat", "-x", ",", "-o", file, "-e", "syscalls:sys_enter_*", "-p", strconv.Itoa(pid))
	} else {
		cmd = exec.CommandContext(cctx, b.tools.strace, "-c", "-f", "-o", file, "-p", strconv.Itoa(pid))
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	waited := false
	defer func() {
		if !waited {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	if b.tools.perf == "" {
		if err := waitTraced(cctx, pid, 10*time.Second); err != nil {
			return nil, 0, err
		}
	}
	s, err := sc.run(cctx, t)
	if err != nil {
		return nil, 0, err
	}
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		waited = true
	case <-time.After(20 * time.Second):
		return nil, 0, fmt.Errorf("%s did not stop: %s", cmd.Path, out.String())
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, 0, err
	}
	var calls map[string]int64
	if b.tools.perf != "" {
		calls = parsePerfStat(string(data))
	} else {
		calls = parseStraceSummary(string(data))
	}
	u := units(sc, s, b.o.duration)
	if len(calls) == 0 || u <= 0 {
		return nil, 0, fmt.Errorf("no syscall counts (%s) or no load", out.String())
	}
	return calls, u, nil
}

// parsePerfStat reads perf stat -x, output of syscalls:sys_enter_* events.
func parsePerfStat(s string) map[string]int64 {
	out := map[string]int64{}
	for _, l := range strings.Split(s, "\n") {
		f := strings.Split(l, ",")
		if len(f) < 3 {
			continue
		}
		name, ok := strings.CutPrefix(f[2], "syscalls:sys_enter_")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n == 0 {
			continue
		}
		out[name] += n
	}
	return out
}

// waitTraced waits until every thread of pid has a tracer.
func waitTraced(ctx context.Context, pid int, deadline time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	for {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return err
		}
		all := len(ents) > 0
		for _, e := range ents {
			st, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, e.Name()))
			if err != nil || bytes.Contains(st, []byte("TracerPid:\t0\n")) {
				all = false
				break
			}
		}
		if all {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("strace did not attach to %d within %v", pid, deadline)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// parseStraceSummary reads strace -c's table: syscall → calls.
func parseStraceSummary(s string) map[string]int64 {
	out := map[string]int64{}
	for _, l := range strings.Split(s, "\n") {
		f := strings.Fields(l)
		if len(f) < 5 || f[0] == "%" || strings.HasPrefix(f[0], "-") {
			continue
		}
		name := f[len(f)-1]
		if name == "total" {
			continue
		}
		n, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil {
			continue
		}
		out[name] += n
	}
	return out
}

// recordDuring runs `perf record args...` during one run of sc's load
// through t. With interrupt, perf is stopped when the load ends (it records
// a process until told to stop); without, it ends by itself (args give it a
// command). It returns the load's sample.
func (b *bench) recordDuring(ctx context.Context, sc *scenario, t *target, interrupt bool, args ...string) (sample, error) {
	rec := exec.CommandContext(ctx, b.tools.perf, append([]string{"record"}, args...)...)
	var out bytes.Buffer
	rec.Stdout, rec.Stderr = &out, &out
	if err := rec.Start(); err != nil {
		return sample{}, err
	}
	s, werr := sc.run(ctx, t)
	if interrupt {
		_ = rec.Process.Signal(os.Interrupt)
	}
	if err := rec.Wait(); err != nil && !(interrupt && strings.Contains(err.Error(), "interrupt")) {
		return sample{}, fmt.Errorf("perf record: %v: %s", err, out.String())
	}
	return s, werr
}

// perfRecord records call graphs of t's process during one run of sc's
// load and writes file.data and a flat report file.txt.
func (b *bench) perfRecord(ctx context.Context, sc *scenario, t *target, file string) error {
	pctx, cancel := context.WithTimeout(ctx, b.o.duration+60*time.Second)
	defer cancel()
	if _, err := b.recordDuring(pctx, sc, t, true, "-F", "999", "-g", "-p", strconv.Itoa(t.p.pid()), "-o", file+".data"); err != nil {
		return err
	}
	rep := exec.CommandContext(pctx, b.tools.perf, "report", "-i", file+".data", "--stdio", "--no-children",
		"--sort", "dso,symbol", "--percent-limit", "0.7", "-g", "none")
	txt, err := rep.Output()
	if err != nil {
		return fmt.Errorf("perf report: %w", err)
	}
	return os.WriteFile(file+".txt", txt, 0o644)
}

// schedTrace records every CPU's scheduler events for one second in the
// middle of one more run of sc's load through t (perf record -a of
// sched_switch, sched_wakeup and sched_migrate_task into file.data) and
// summarizes them with parseSched.
func (b *bench) schedTrace(ctx context.Context, sc *scenario, t *target, file string) (schedRow, error) {
	pctx, cancel := context.WithTimeout(ctx, b.o.duration+60*time.Second)
	defer cancel()
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", t.p.pid()))
	if err != nil {
		return schedRow{}, err
	}
	delay := max(b.o.duration/2-500*time.Millisecond, 0)
	s, err := b.recordDuring(pctx, sc, t, false, "-q", "-a",
		"-e", "sched:sched_switch,sched:sched_wakeup,sched:sched_migrate_task",
		"-D", strconv.FormatInt(delay.Milliseconds(), 10), "-o", file+".data",
		"--", "sleep", strconv.FormatFloat((delay+time.Second).Seconds(), 'f', 3, 64))
	if err != nil {
		return schedRow{}, err
	}
	script := exec.CommandContext(pctx, b.tools.perf, "script", "-i", file+".data", "-F", "comm,tid,cpu,time,event,trace")
	txt, err := script.Output()
	if err != nil {
		return schedRow{}, fmt.Errorf("perf script: %w", err)
	}
	st, err := parseSched(bytes.NewReader(txt), strings.TrimSpace(string(comm)))
	if err != nil {
		return schedRow{}, err
	}
	return schedRow{st: st, rate: s.rate}, nil
}

func (p *profileResult) markdown() string {
	if len(p.cols) == 0 {
		return ""
	}
	var w strings.Builder
	fmt.Fprintf(&w, "\nSyscalls of the proxy per request (bulk: per MB), counted with `%s` on all its threads "+
		"in one more run of each load (not part of the figures above; `-profile DIR`). Tracing every call slows the proxy, "+
		"so calls whose number depends on timing (`epoll_pwait`, `epoll_wait`, `sched_yield`) come out lower than "+
		"untraced; the scheduler trace below counts sleeps in a run of its own:\n\n", p.method)
	w.WriteString("| syscall |")
	for _, c := range p.cols {
		fmt.Fprintf(&w, " %s |", c)
	}
	w.WriteString("\n|---|")
	for range p.cols {
		w.WriteString("---:|")
	}
	w.WriteString("\n")
	sum := map[string]float64{}
	totals := map[string]float64{}
	for _, c := range p.cols {
		for name, v := range p.calls[c] {
			sum[name] += v
			totals[c] += v
		}
	}
	for _, name := range sortedKeys(sum) {
		if sum[name] < 0.05 {
			continue
		}
		fmt.Fprintf(&w, "| %s |", name)
		for _, c := range p.cols {
			fmt.Fprintf(&w, " %.2f |", p.calls[c][name])
		}
		w.WriteString("\n")
	}
	w.WriteString("| **total** |")
	for _, c := range p.cols {
		fmt.Fprintf(&w, " **%.2f** |", totals[c])
	}
	w.WriteString("\n")
	if len(p.perf) > 0 {
		fmt.Fprintf(&w, "\nperf profiles: %s\n", strings.Join(p.perf, ", "))
	}
	w.WriteString(p.schedMarkdown())
	return w.String()
}

// schedMarkdown is the scheduler traces' table: how much the CPUs sat idle,
// whether work was waiting on another CPU as an idle period began, and how
// often the proxy's threads went to sleep (per request; bulk: per MB).
func (p *profileResult) schedMarkdown() string {
	var cols []string
	for _, c := range p.cols {
		if _, ok := p.sched[c]; ok {
			cols = append(cols, c)
		}
	}
	if len(cols) == 0 {
		return ""
	}
	var w strings.Builder
	w.WriteString("\nScheduler trace of every CPU, 1 s in the middle of one more run of each load (`perf record -a -e " +
		"sched:sched_switch,sched:sched_wakeup,sched:sched_migrate_task`). An idle period counts as begun with work waiting " +
		"when a thread that became runnable in the last 5 ms was waiting on another CPU; per request (bulk: per MB):\n\n")
	w.WriteString("| | idle share | idle periods | idle time begun with work waiting elsewhere | idle periods begun with a proxy thread waiting elsewhere | proxy thread sleeps |\n")
	w.WriteString("|---|---:|---:|---:|---:|---:|\n")
	for _, c := range cols {
		r := p.sched[c]
		per := func(n int) string {
			if r.rate <= 0 || r.st.span <= 0 {
				return "–"
			}
			return fmt.Sprintf("%.3f", float64(n)/r.st.span.Seconds()/r.rate)
		}
		waited, proxyWaited := "–", "–"
		if r.st.idle > 0 {
			waited = fmt.Sprintf("%.0f %%", 100*r.st.idleWaiting.Seconds()/r.st.idle.Seconds())
		}
		if r.st.periods > 0 {
			proxyWaited = fmt.Sprintf("%.0f %%", 100*float64(r.st.proxyWaits)/float64(r.st.periods))
		}
		fmt.Fprintf(&w, "| %s | %.1f %% | %s | %s | %s | %s |\n", c, 100*r.st.idleShare(), per(r.st.periods),
			waited, proxyWaited, per(r.st.proxySleeps))
	}
	return w.String()
}
