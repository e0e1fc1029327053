package main

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// schedFresh is how recently a thread must have become runnable to count as
// waiting: a longer wait in the tracker is more likely a missed event.
const schedFresh = 5 * time.Millisecond

// schedStats summarizes a machine-wide scheduler trace (perf script of
// sched:sched_switch, sched:sched_wakeup and sched:sched_migrate_task):
// where the CPUs' idle time begins, and how often the proxy's threads sleep.
type schedStats struct {
	span        time.Duration // first to last event
	cpus        int           // highest CPU number seen + 1
	periods     int           // idle periods that began and ended in the trace
	idle        time.Duration // their length, summed over CPUs
	idleWaiting time.Duration // of idle: periods that began while a thread waited, runnable, on another CPU
	proxyWaits  int           // idle periods that began while one of the proxy's threads waited on another CPU
	proxySleeps int           // times a proxy thread left its CPU without being runnable
}

// idleShare is the idle time's share of all CPUs' time in the trace.
func (s schedStats) idleShare() float64 {
	if s.span <= 0 || s.cpus == 0 {
		return 0
	}
	return s.idle.Seconds() / (s.span.Seconds() * float64(s.cpus))
}

var (
	schedLineRE = regexp.MustCompile(`\[(\d+)\]\s+(\d+\.\d+):\s+sched:(\w+):\s+(.*)$`)
	schedPrevRE = regexp.MustCompile(`prev_comm=(.*) prev_pid=(\d+) prev_prio=\S+ prev_state=(\S+) ==> next_comm=(.*) next_pid=(\d+)`)
	schedWakeRE = regexp.MustCompile(`comm=(.*) pid=(\d+) prio=\S+ target_cpu=(\d+)`)
	schedMigrRE = regexp.MustCompile(`pid=(\d+) prio=\S+ orig_cpu=(\d+) dest_cpu=(\d+)`)
)

// parseSched reads `perf script` output of a machine-wide trace. proxy is
// the proxy's command name (its threads share it). A thread counts as
// waiting on a CPU from its wake-up onto it (or its preemption there) until
// it runs, following migrations; lines it does not know are skipped.
func parseSched(r io.Reader, proxy string) (schedStats, error) {
	var st schedStats
	waiting := map[int]map[int]time.Duration{} // cpu → tid → runnable since
	comm := map[int]string{}
	type start struct {
		at          time.Duration
		waiting     bool
		proxyWaited bool
	}
	idleFrom := map[int]start{}
	forget := func(tid int) {
		for _, w := range waiting {
			delete(w, tid)
		}
	}
	put := func(cpu, tid int, at time.Duration) {
		if waiting[cpu] == nil {
			waiting[cpu] = map[int]time.Duration{}
		}
		waiting[cpu][tid] = at
	}
	num := func(s string) int { n, _ := strconv.Atoi(s); return n } // the regexps match digits only
	var first, last time.Duration
	seen := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := schedLineRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		cpu := num(m[1])
		secs, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			continue
		}
		at := time.Duration(secs * float64(time.Second))
		if !seen {
			first, seen = at, true
		}
		last = at
		if cpu+1 > st.cpus {
			st.cpus = cpu + 1
		}
		switch m[3] {
		case "sched_wakeup":
			w := schedWakeRE.FindStringSubmatch(m[4])
			if w == nil {
				continue
			}
			tid := num(w[2])
			comm[tid] = w[1]
			forget(tid)
			put(num(w[3]), tid, at)
		case "sched_migrate_task":
			w := schedMigrRE.FindStringSubmatch(m[4])
			if w == nil {
				continue
			}
			tid, from := num(w[1]), num(w[2])
			if t, ok := waiting[from][tid]; ok {
				delete(waiting[from], tid)
				put(num(w[3]), tid, t)
			}
		case "sched_switch":
			w := schedPrevRE.FindStringSubmatch(m[4])
			if w == nil {
				continue
			}
			prev, next, state := num(w[2]), num(w[5]), w[3]
			comm[prev], comm[next] = w[1], w[4]
			forget(next)
			if prev != 0 {
				if strings.HasPrefix(state, "R") {
					put(cpu, prev, at)
				} else if w[1] == proxy {
					st.proxySleeps++
				}
			}
			switch {
			case next == 0:
				s := start{at: at}
				for c, ws := range waiting {
					if c == cpu {
						continue
					}
					for tid, t := range ws {
						if at-t < schedFresh {
							s.waiting = true
							if comm[tid] == proxy {
								s.proxyWaited = true
							}
						}
					}
				}
				idleFrom[cpu] = s
			case prev == 0:
				s, ok := idleFrom[cpu]
				if !ok {
					continue // idle since before the trace
				}
				delete(idleFrom, cpu)
				d := at - s.at
				st.periods++
				st.idle += d
				if s.waiting {
					st.idleWaiting += d
				}
				if s.proxyWaited {
					st.proxyWaits++
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return st, fmt.Errorf("reading the trace: %w", err)
	}
	if !seen {
		return st, fmt.Errorf("no scheduler events in the trace")
	}
	st.span = last - first
	return st, nil
}
