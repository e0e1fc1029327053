package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// pinning splits the CPUs between the proxies and everything else (nginx,
// wrk, the bulk client, the idle holder), as on an edge host where clients
// and servers are other machines and the proxy has its CPUs to itself. The
// zero value leaves every process on every CPU.
type pinning struct {
	proxy, load []int
}

func (p pinning) on() bool { return len(p.proxy) > 0 }

// parsePin reads -pin PROXY:LOAD, each side a CPU list such as "0" or "2-3,5".
// The two sides must not share a CPU and must exist on this machine.
func parsePin(s string, ncpu int) (pinning, error) {
	if s == "" {
		return pinning{}, nil
	}
	ps, ls, ok := strings.Cut(s, ":")
	if !ok {
		return pinning{}, fmt.Errorf("-pin %q: want PROXY_CPUS:LOAD_CPUS, e.g. 0:1", s)
	}
	var p pinning
	var err error
	if p.proxy, err = parseCPUList(ps, ncpu); err != nil {
		return pinning{}, fmt.Errorf("-pin %q: proxy CPUs: %w", s, err)
	}
	if p.load, err = parseCPUList(ls, ncpu); err != nil {
		return pinning{}, fmt.Errorf("-pin %q: load CPUs: %w", s, err)
	}
	for _, c := range p.proxy {
		for _, d := range p.load {
			if c == d {
				return pinning{}, fmt.Errorf("-pin %q: CPU %d is on both sides", s, c)
			}
		}
	}
	return p, nil
}

func parseCPUList(s string, ncpu int) ([]int, error) {
	var cpus []int
	seen := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CPU number", lo)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return nil, fmt.Errorf("%q is not a CPU number", hi)
			}
		}
		if a < 0 || b < a || b >= ncpu {
			return nil, fmt.Errorf("%q: CPUs are 0-%d here", part, ncpu-1)
		}
		for c := a; c <= b; c++ {
			if !seen[c] {
				seen[c] = true
				cpus = append(cpus, c)
			}
		}
	}
	return cpus, nil
}

func cpuListString(cpus []int) string {
	s := make([]string, len(cpus))
	for i, c := range cpus {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}

// command returns bin and args wrapped in taskset for cpus (unwrapped when
// cpus is empty). taskset execs bin, so the PID stays the process's own.
func command(cpus []int, bin string, args []string) (string, []string) {
	if len(cpus) == 0 {
		return bin, args
	}
	return "taskset", append([]string{"-c", cpuListString(cpus), bin}, args...)
}

// pinSelf moves every thread of this process onto cpus and sizes GOMAXPROCS
// to them; threads started later inherit the mask. The holder and the bulk
// client run in this process or its children, so they follow.
func pinSelf(cpus []int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	runtime.GOMAXPROCS(len(cpus))
	// a thread started by one not yet moved keeps the old mask: go again
	// until a pass finds no thread it had not moved
	done := map[int]bool{}
	for pass := 0; pass < 10; pass++ {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("listing threads: %w", err)
		}
		moved := 0
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil || done[tid] {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
				return fmt.Errorf("pinning thread %d: %w", tid, err)
			}
			done[tid] = true
			moved++
		}
		if moved == 0 {
			return nil
		}
	}
	return fmt.Errorf("pinning threads: new threads kept appearing")
}
