package main

import (
	"bytes"
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/palisade-lb/palisade/internal/config"
)

func TestMain(m *testing.M) {
	if os.Getenv(holderEnv) == "1" {
		holderMain()
		return
	}
	if os.Getenv(pinChildEnv) == "1" {
		os.Exit(pinChild())
	}
	if cc := os.Getenv(netnsChildEnv); cc != "" {
		os.Exit(netnsChild(cc))
	}
	os.Exit(m.Run())
}

// TestBenchQuick runs the whole benchmark in -quick mode (a smoke test of the
// harness, not a measurement). It only runs with PALISADE_BENCH=1.
func TestBenchQuick(t *testing.T) {
	if os.Getenv("PALISADE_BENCH") != "1" {
		t.Skip("tcp benchmark: set PALISADE_BENCH=1 to run it in -quick mode (or run make bench-tcp)")
	}
	if _, err := findTools(); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "palisade")
	build := exec.Command("go", "build", "-o", bin, "github.com/palisade-lb/palisade/cmd/palisade")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building palisade: %v\n%s", err, out)
	}
	o := defaultOptions()
	o.palisade = bin
	o.baseline = bin // the A/B path, against itself
	o.quick, o.runs, o.duration = true, 1, 2*time.Second
	o.idle = 1000
	o.out = filepath.Join(dir, "bench.md")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if code := run(ctx, o, &stdout, &stderr); code != 0 {
		t.Fatalf("bench exited %d:\n%s", code, stderr.String())
	}
	md, err := os.ReadFile(o.out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"palisade / HAProxy (splice-auto)", "new connections", "keep-alive", "idle proxied connections",
		"bulk: palisade / palisade baseline", "keep-alive: palisade / palisade baseline | "} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	t.Logf("\n%s", md)
}

func TestParseWrk(t *testing.T) {
	out := `Running 2s test @ http://127.0.0.1:1/small
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20ms  500.00us  10.00ms   90.00%
    Req/Sec    20.00k     1.00k   22.00k    70.00%
  Latency Distribution
     50%    1.10ms
     75%    1.30ms
     90%    1.60ms
     99%    3.25ms
  80000 requests in 2.00s, 10.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
Requests/sec:  40000.12
Transfer/sec:      5.00MB
`
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.requests != 80000 || r.rps != 40000.12 || r.p99 != 3250*time.Microsecond || r.errors != 4 {
		t.Errorf("parsed %+v", r)
	}
}

func TestParseStraceSummary(t *testing.T) {
	out := `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 40.00    0.400000          10     40000     20000 splice
 10.00    0.100000           5     20000           setsockopt
------ ----------- ----------- --------- --------- ----------------
100.00    0.500000           8     60000     20000 total
`
	m := parseStraceSummary(out)
	if m["splice"] != 40000 || m["setsockopt"] != 20000 || len(m) != 2 {
		t.Errorf("parsed %v", m)
	}
}

func TestParsePerfStat(t *testing.T) {
	out := `# started on Thu Nov 26 00:51:34 2026

12345,,syscalls:sys_enter_splice,1000,100.00,,
<not counted>,,syscalls:sys_enter_iopl,0,100.00,,
0,,syscalls:sys_enter_read,1000,100.00,,
7,,syscalls:sys_enter_shutdown,1000,100.00,,
`
	m := parsePerfStat(out)
	if m["splice"] != 12345 || m["shutdown"] != 7 || len(m) != 2 {
		t.Errorf("parsed %v", m)
	}
}

func TestPairRounds(t *testing.T) {
	rate := func(s sample) float64 { return s.rate }
	mk := func(v ...float64) []sample {
		var ss []sample
		for _, x := range v {
			ss = append(ss, sample{rate: x})
		}
		return ss
	}
	for _, tc := range []struct {
		name      string
		a, b      []sample
		med       float64
		ahead, of int
		p         float64
	}{
		{"all ahead", mk(11, 12, 13, 14, 15), mk(10, 10, 10, 10, 10), 1.3, 5, 5, 1.0 / 32},
		{"none ahead", mk(9, 9, 9), mk(10, 10, 10), 0.9, 0, 3, 1},
		// 3 of 5 ahead: P(X >= 3) = (10+5+1)/32
		{"some ahead", mk(11, 9, 11, 9, 11), mk(10, 10, 10, 10, 10), 1.1, 3, 5, 0.5},
		// drift between rounds: the targets' own ranges overlap, yet
		// palisade is ahead in every round
		{"drift", mk(101, 121, 141), mk(100, 120, 140), 121.0 / 120, 3, 3, 1.0 / 8},
		{"a tie is left out of the test", mk(10, 11), mk(10, 10), 1.05, 1, 2, 0.5},
		{"unequal lengths use the common rounds", mk(11, 11, 11), mk(10), 1.1, 1, 1, 0.5},
		{"a zero rate is left out", mk(11, 11), mk(0, 10), 1.1, 1, 1, 0.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := pairRounds(tc.a, tc.b, rate)
			if math.Abs(got.med-tc.med) > 1e-9 || got.ahead != tc.ahead || got.of != tc.of || math.Abs(got.p-tc.p) > 1e-9 {
				t.Errorf("pairRounds = %+v, want med %v ahead %d of %d p %v", got, tc.med, tc.ahead, tc.of, tc.p)
			}
		})
	}
}

func TestSignTestP(t *testing.T) {
	for _, tc := range []struct {
		k, n int
		want float64
	}{
		{0, 10, 1}, {10, 10, 1.0 / 1024}, {8, 10, 56.0 / 1024}, {5, 9, 0.5}, {12, 15, 576.0 / 32768},
	} {
		if got := signTestP(tc.k, tc.n); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("signTestP(%d, %d) = %v, want %v", tc.k, tc.n, got, tc.want)
		}
	}
	if !math.IsNaN(signTestP(0, 0)) {
		t.Error("signTestP(0, 0) is not NaN")
	}
}

// TestConfigsDeferAccept: the bench frontend of both proxies defers accept
// when asked, and the idle test's frontend never does (its clients stay
// silent, so they would never be accepted).
func TestConfigsDeferAccept(t *testing.T) {
	backends, hold := []string{"127.0.0.1:1", "127.0.0.1:2"}, []string{"127.0.0.1:3", "127.0.0.1:4"}
	for _, on := range []bool{true, false} {
		c, err := config.Parse("bench.yaml", []byte(palisadeConf(10, 11, backends, hold, on)))
		if err != nil {
			t.Fatal(err)
		}
		for _, fe := range c.Frontends {
			if want := on && fe.Name == "bench"; fe.DeferAccept != want {
				t.Errorf("defer %v: palisade frontend %s defer_accept %v, want %v", on, fe.Name, fe.DeferAccept, want)
			}
		}
		hap := haproxyConf(2, 100, "option splice-auto", 10, 11, backends, hold, on)
		if got := strings.Count(hap, "defer-accept"); got != map[bool]int{true: 1, false: 0}[on] ||
			on && !strings.Contains(hap, "bind 127.0.0.1:10 defer-accept\n") {
			t.Errorf("defer %v: HAProxy config:\n%s", on, hap)
		}
	}
}

// The report's command line names every option that changes the figures,
// and credits a make target only for the flags that target passes.
func TestReportFlags(t *testing.T) {
	ka4 := func(o *options) { o.only, o.conns, o.threads, o.idle = "keepalive", 4, 1, 0 }
	cases := []struct {
		name   string
		set    func(*options)
		pinned bool
		extra  string
		made   bool
	}{
		{"defaults: make bench-tcp", func(*options) {}, false, "", true},
		{"pinned, no idle test: make bench-tcp-pinned", func(o *options) { o.idle = 0 }, true, " -idle 0", true},
		{"pinned keep-alive behind 4: make bench-tcp-pinned", ka4, true, " -only keepalive -conns 4 -threads 1 -idle 0", true},
		{"the same shared: no make target", ka4, false, " -only keepalive -conns 4 -threads 1 -idle 0", false},
		{"bulk options", func(o *options) { o.bulkConns, o.bigMiB = 8, 10 }, false, " -bulk-conns 8 -big-mib 10", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := defaultOptions()
			c.set(&o)
			if got := extraFlags(o); got != c.extra {
				t.Fatalf("extra flags %q, want %q", got, c.extra)
			}
			if got := makeFlags(c.pinned, c.extra); got != c.made {
				t.Fatalf("make target %v, want %v", got, c.made)
			}
		})
	}
}
