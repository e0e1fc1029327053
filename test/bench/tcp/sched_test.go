package main

import (
	"strings"
	"testing"
	"time"
)

// Lines as `perf script -F comm,tid,cpu,time,event,trace` prints them.
func schedSwitch(cpu, at, prevComm, prevPid, state, nextComm, nextPid string) string {
	return "x 1 [" + cpu + "] " + at + ": sched:sched_switch: prev_comm=" + prevComm + " prev_pid=" + prevPid +
		" prev_prio=120 prev_state=" + state + " ==> next_comm=" + nextComm + " next_pid=" + nextPid + " next_prio=120"
}

func schedWakeup(cpu, at, comm, pid, target string) string {
	return "x 1 [" + cpu + "] " + at + ": sched:sched_wakeup: comm=" + comm + " pid=" + pid + " prio=120 target_cpu=" + target
}

func schedMigrate(cpu, at, comm, pid, from, to string) string {
	return "x 1 [" + cpu + "] " + at + ": sched:sched_migrate_task: comm=" + comm + " pid=" + pid + " prio=120 orig_cpu=" + from + " dest_cpu=" + to
}

func TestParseSched(t *testing.T) {
	us := time.Microsecond
	tests := []struct {
		name  string
		lines []string
		want  schedStats
	}{
		{
			name: "proxy sleeps on CPU 0 while its other thread waits on CPU 1",
			lines: []string{
				schedWakeup("001", "10.000000", "palisade", "11", "001"), // waits behind wrk on CPU 1
				schedSwitch("000", "10.000010", "palisade", "10", "S", "swapper/0", "0"),
				schedSwitch("000", "10.000110", "swapper/0", "0", "R", "nginx", "20"),
				schedSwitch("001", "10.000200", "wrk", "30", "S", "palisade", "11"),
			},
			want: schedStats{span: 200 * us, cpus: 2, periods: 1, idle: 100 * us, idleWaiting: 100 * us, proxyWaits: 1, proxySleeps: 1},
		},
		{
			name: "nobody waiting elsewhere: idle, but not counted as waiting",
			lines: []string{
				schedSwitch("000", "5.000000", "haproxy", "10", "S", "swapper/0", "0"),
				schedSwitch("000", "5.000050", "swapper/0", "0", "R", "haproxy", "10"),
			},
			want: schedStats{span: 50 * us, cpus: 1, periods: 1, idle: 50 * us},
		},
		{
			name: "a thread that ran is no longer waiting",
			lines: []string{
				schedWakeup("000", "1.000000", "wrk", "30", "001"),
				schedSwitch("001", "1.000010", "nginx", "20", "S", "wrk", "30"),
				schedSwitch("000", "1.000020", "palisade", "10", "D", "swapper/0", "0"),
				schedSwitch("000", "1.000040", "swapper/0", "0", "R", "palisade", "10"),
			},
			want: schedStats{span: 40 * us, cpus: 2, periods: 1, idle: 20 * us, proxySleeps: 1},
		},
		{
			name: "a preempted thread waits",
			lines: []string{
				schedSwitch("001", "1.000010", "nginx", "20", "R+", "wrk", "30"),
				schedSwitch("000", "1.000020", "palisade", "10", "S", "swapper/0", "0"),
				schedSwitch("000", "1.000040", "swapper/0", "0", "R", "palisade", "10"),
			},
			want: schedStats{span: 30 * us, cpus: 2, periods: 1, idle: 20 * us, idleWaiting: 20 * us, proxySleeps: 1},
		},
		{
			name: "a waiting thread migrated onto the CPU that goes idle does not count",
			lines: []string{
				schedWakeup("000", "1.000000", "nginx", "20", "001"),
				schedMigrate("000", "1.000005", "nginx", "20", "1", "0"),
				schedSwitch("000", "1.000010", "wrk", "30", "S", "swapper/0", "0"),
				schedSwitch("000", "1.000030", "swapper/0", "0", "R", "nginx", "20"),
			},
			want: schedStats{span: 30 * us, cpus: 1, periods: 1, idle: 20 * us},
		},
		{
			name: "a thread runnable for longer than schedFresh is taken for a missed event",
			lines: []string{
				schedWakeup("000", "1.000000", "wrk", "30", "001"),
				schedSwitch("000", "1.010000", "palisade", "10", "S", "swapper/0", "0"),
				schedSwitch("000", "1.010100", "swapper/0", "0", "R", "palisade", "10"),
			},
			want: schedStats{span: 10100 * us, cpus: 1, periods: 1, idle: 100 * us, proxySleeps: 1},
		},
		{
			name: "idle since before the trace, and a line of another event",
			lines: []string{
				"x 1 [000] 2.000000: sched:sched_waking: comm=wrk pid=30 prio=120 target_cpu=000",
				schedSwitch("000", "2.000020", "swapper/0", "0", "R", "wrk", "30"),
			},
			want: schedStats{span: 20 * us, cpus: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSched(strings.NewReader(strings.Join(tc.lines, "\n")), "palisade")
			if err != nil {
				t.Fatal(err)
			}
			// float seconds: allow rounding below a microsecond
			near := func(a, b time.Duration) bool { d := a - b; return d > -us && d < us }
			if !near(got.span, tc.want.span) || !near(got.idle, tc.want.idle) || !near(got.idleWaiting, tc.want.idleWaiting) {
				t.Errorf("span/idle/idleWaiting = %v/%v/%v, want %v/%v/%v", got.span, got.idle, got.idleWaiting,
					tc.want.span, tc.want.idle, tc.want.idleWaiting)
			}
			got.span, got.idle, got.idleWaiting = tc.want.span, tc.want.idle, tc.want.idleWaiting
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	if _, err := parseSched(strings.NewReader("nothing here\n"), "palisade"); err == nil {
		t.Error("a trace without events: no error")
	}
}

func TestSchedIdleShare(t *testing.T) {
	s := schedStats{span: time.Second, cpus: 2, idle: 100 * time.Millisecond}
	if got := s.idleShare(); got < 0.0499 || got > 0.0501 {
		t.Errorf("idleShare = %v, want 0.05", got)
	}
	if got := (schedStats{}).idleShare(); got != 0 {
		t.Errorf("empty idleShare = %v, want 0", got)
	}
}

func TestSchedMarkdown(t *testing.T) {
	p := &profileResult{
		cols: []string{"conn/palisade", "conn/haproxy", "bulk/palisade"},
		sched: map[string]schedRow{
			// 1 s at 10,000 req/s: 100 periods and 200 sleeps are 0.010 and 0.020 per request
			"conn/palisade": {st: schedStats{span: time.Second, cpus: 2, periods: 100, idle: 40 * time.Millisecond,
				idleWaiting: 30 * time.Millisecond, proxyWaits: 50, proxySleeps: 200}, rate: 10000},
			"conn/haproxy": {st: schedStats{span: time.Second, cpus: 2}, rate: 0},
		},
	}
	got := p.schedMarkdown()
	for _, want := range []string{
		"| conn/palisade | 2.0 % | 0.010 | 75 % | 50 % | 0.020 |",
		"| conn/haproxy | 0.0 % | – | – | – | – |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing row %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "bulk/palisade") {
		t.Errorf("a column without a trace has a row:\n%s", got)
	}
	if (&profileResult{cols: []string{"conn/palisade"}}).schedMarkdown() != "" {
		t.Error("no traces: want no table")
	}
}
