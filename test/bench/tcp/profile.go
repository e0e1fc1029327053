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

// profileResult holds syscalls per request of each proxy under each load,
// from strace -c, and where the perf reports were written.
type profileResult struct {
	dir   string
	cols  []string                      // "scenario/target" in column order
	calls map[string]map[string]float64 // column → syscall → calls per request
	reqs  map[string]int64
	perf  []string
}

// profileAll runs, for the new-connection and keep-alive loads, each proxy
// once under strace -c (syscalls per request) and once under perf record -g
// (if perf is installed). These runs are not part of the measured figures.
func (b *bench) profileAll(ctx context.Context, dir string) (*profileResult, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	pr := &profileResult{dir: dir, calls: map[string]map[string]float64{}, reqs: map[string]int64{}}
	d := 3 * time.Second
	for _, sc := range []struct {
		key       string
		closeConn bool
	}{{"conn", true}, {"keepalive", false}} {
		for _, t := range []*target{b.pal, b.hap} {
			col := sc.key + "/" + t.key
			if b.tools.strace != "" {
				file := filepath.Join(dir, "strace-"+sc.key+"-"+t.key+".txt")
				calls, reqs, err := b.straceRun(ctx, t, file, sc.closeConn, d)
				if err != nil {
					return nil, fmt.Errorf("strace %s: %w", col, err)
				}
				pr.cols = append(pr.cols, col)
				pr.reqs[col] = reqs
				pr.calls[col] = map[string]float64{}
				for name, n := range calls {
					pr.calls[col][name] = float64(n) / float64(reqs)
				}
				b.logf("profile: strace %s: %d requests", col, reqs)
			}
			if b.tools.perf != "" {
				file := filepath.Join(dir, "perf-"+sc.key+"-"+t.key)
				if err := b.perfRun(ctx, t, file, sc.closeConn, d); err != nil {
					b.logf("profile: perf %s: %v", col, err)
					continue
				}
				pr.perf = append(pr.perf, file+".txt")
				b.logf("profile: perf %s: %s.txt", col, file)
			}
			if err := b.alive(); err != nil {
				return nil, err
			}
		}
	}
	return pr, nil
}

// straceRun counts the syscalls of t's process (all threads) during a wrk
// run of d with 10 connections.
func (b *bench) straceRun(ctx context.Context, t *target, file string, closeConn bool, d time.Duration) (map[string]int64, int64, error) {
	sctx, cancel := context.WithTimeout(ctx, d+60*time.Second)
	defer cancel()
	pid := t.p.pid()
	cmd := exec.CommandContext(sctx, b.tools.strace, "-c", "-f", "-o", file, "-p", strconv.Itoa(pid))
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
	if err := waitTraced(sctx, pid, 10*time.Second); err != nil {
		return nil, 0, err
	}
	r, err := runWrk(sctx, "http://"+t.addr+"/small", 1, 10, d, closeConn)
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
		return nil, 0, fmt.Errorf("strace did not stop: %s", out.String())
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, 0, err
	}
	calls := parseStraceSummary(string(data))
	if len(calls) == 0 || r.requests == 0 {
		return nil, 0, fmt.Errorf("no strace summary (%s) or no requests", out.String())
	}
	return calls, r.requests, nil
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

// perfRun records call graphs of t's process during a wrk run and writes
// file.data and a flat report file.txt.
func (b *bench) perfRun(ctx context.Context, t *target, file string, closeConn bool, d time.Duration) error {
	pctx, cancel := context.WithTimeout(ctx, d+60*time.Second)
	defer cancel()
	secs := int(d / time.Second)
	rec := exec.CommandContext(pctx, b.tools.perf, "record", "-F", "999", "-g", "-p", strconv.Itoa(t.p.pid()),
		"-o", file+".data", "--", "sleep", strconv.Itoa(secs))
	var out bytes.Buffer
	rec.Stdout, rec.Stderr = &out, &out
	if err := rec.Start(); err != nil {
		return err
	}
	_, werr := runWrk(pctx, "http://"+t.addr+"/small", 1, 10, d, closeConn)
	if err := rec.Wait(); err != nil {
		return fmt.Errorf("perf record: %v: %s", err, out.String())
	}
	if werr != nil {
		return werr
	}
	rep := exec.CommandContext(pctx, b.tools.perf, "report", "-i", file+".data", "--stdio", "--no-children",
		"--sort", "dso,symbol", "--percent-limit", "0.7", "-g", "none")
	txt, err := rep.Output()
	if err != nil {
		return fmt.Errorf("perf report: %w", err)
	}
	return os.WriteFile(file+".txt", txt, 0o644)
}

func (p *profileResult) markdown() string {
	if len(p.cols) == 0 {
		return ""
	}
	var w strings.Builder
	fmt.Fprintf(&w, "\nSyscalls per request (strace -c -f on the proxy, wrk -t1 -c10, not part of the figures above):\n\n")
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
	return w.String()
}
