// Package synflood holds the multi-host tests and the benchmark of the XDP
// SYN-flood filter (package bpf): a client, an attacker and a server host in
// network namespaces joined by a bridge, all addressed inside 198.18.0.0/15.
package synflood

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/palisade-lb/palisade/bpf"
	"github.com/palisade-lb/palisade/bpf/packet"
)

var benchSynflood = flag.Bool("bench-synflood", false, "run TestBenchSynflood (make bench-synflood)")

// filterConfig protects the echo server's port. The per-port budget is far
// below the flood rate; per source the client may open 1000/s.
func filterConfig() *bpf.Config {
	return &bpf.Config{
		PerSource: bpf.Limit{Rate: 1000, Burst: 2000},
		PerPort:   bpf.Limit{Rate: 2000, Burst: 2000},
		Ports:     []uint16{serverPort},
	}
}

// TestSynfloodNamespaces: with the filter on the server's interface, a
// random-source SYN flood is dropped in XDP and the client keeps at least
// 99% of its connections.
func TestSynfloodNamespaces(t *testing.T) {
	for _, mode := range []string{bpf.XDPNative, bpf.XDPGeneric} {
		t.Run(mode, func(t *testing.T) { testRateLimit(t, mode) })
	}
}

func testRateLimit(t *testing.T, xdpMode string) {
	res := runScenario(t, scenario{
		name:        "ratelimit " + xdpMode,
		filter:      filterConfig(),
		xdpMode:     xdpMode,
		duration:    4 * time.Second,
		flood:       floodSpec{Src: spoofRange, Count: 1_000_000, Duration: 4 * time.Second, Rate: 100_000},
		workers:     4,
		interval:    20 * time.Millisecond,
		dialTimeout: 3 * time.Second,
	})
	t.Log(res)
	t.Logf("filter counters during the attack: %v", res.counterDetail)
	if res.attempts < 100 {
		t.Fatalf("only %d client attempts: the run did not overlap the flood", res.attempts)
	}
	if res.successRate() < 0.99 {
		t.Errorf("client success rate %.2f%% < 99%%", 100*res.successRate())
	}
	if res.dropped == 0 || res.dropped < uint64(res.sent)/2 {
		t.Errorf("filter dropped %d of %d attack SYNs; want most", res.dropped, res.sent)
	}
	if res.counterDetail[bpf.DetailDropRatePort] == 0 {
		t.Errorf("per-port budget never dropped a random-source SYN: %v", res.counterDetail)
	}
}

// TestSynfloodSingleSource: a flood from one spoofed source is stopped by
// the per-source limit alone, the per-port budget stays untouched.
func TestSynfloodSingleSource(t *testing.T) {
	cfg := filterConfig()
	cfg.PerPort = bpf.Limit{Rate: 50_000, Burst: 50_000}
	res := runScenario(t, scenario{
		name:        "single-source",
		filter:      cfg,
		xdpMode:     bpf.XDPAuto,
		duration:    2 * time.Second,
		flood:       floodSpec{Src: netip.MustParsePrefix("198.19.7.7/32"), Count: 100_000, Duration: 2 * time.Second, Rate: 50_000},
		workers:     2,
		interval:    20 * time.Millisecond,
		dialTimeout: 3 * time.Second,
	})
	t.Log(res)
	if res.successRate() < 0.99 {
		t.Errorf("client success rate %.2f%% < 99%%", 100*res.successRate())
	}
	if src := res.counterDetail[bpf.DetailDropRateSource]; src == 0 || src < uint64(res.sent)/2 {
		t.Errorf("per-source limit dropped %d of %d: %v", src, res.sent, res.counterDetail)
	}
	if res.counterDetail[bpf.DetailDropRatePort] != 0 {
		t.Errorf("per-port budget dropped SYNs of a single-source flood: %v", res.counterDetail)
	}
}

// TestSynfloodSyncookie: in syncookie mode the server's XDP program answers
// every SYN itself; the client's handshakes complete through cookies that
// the server's kernel accepts, and the flood never reaches the TCP stack.
func TestSynfloodSyncookie(t *testing.T) {
	for _, mode := range []string{bpf.XDPNative, bpf.XDPGeneric} {
		t.Run(mode, func(t *testing.T) { testSyncookie(t, mode) })
	}
}

func testSyncookie(t *testing.T, xdpMode string) {
	cfg := filterConfig()
	cfg.Mode = bpf.FilterSyncookie
	res := runScenario(t, scenario{
		name:        "syncookie " + xdpMode,
		filter:      cfg,
		xdpMode:     xdpMode,
		duration:    3 * time.Second,
		flood:       floodSpec{Src: spoofRange, Count: 300_000, Duration: 3 * time.Second, Rate: 100_000},
		workers:     4,
		interval:    20 * time.Millisecond,
		dialTimeout: 3 * time.Second,
	})
	t.Log(res)
	t.Logf("filter counters during the attack: %v", res.counterDetail)
	if res.successRate() < 0.99 {
		t.Errorf("client success rate %.2f%% < 99%%", 100*res.successRate())
	}
	if res.xdpCookies < uint64(res.sent)/2 {
		t.Errorf("XDP answered %d of %d attack SYNs", res.xdpCookies, res.sent)
	}
	if res.cookiesRecv == 0 {
		t.Errorf("the server's kernel accepted no cookie ACK: client connections did not use XDP cookies")
	}
	if res.synsPassed > uint64(res.sent)/100 {
		t.Errorf("%d SYNs reached the stack during a %d SYN flood", res.synsPassed, res.sent)
	}
}

// TestSynfloodSyncookieACKFlood: spoofed ACKs that would have the kernel
// check a cookie (and answer RSTs) are dropped in XDP.
func TestSynfloodSyncookieACKFlood(t *testing.T) {
	cfg := filterConfig()
	cfg.Mode = bpf.FilterSyncookie
	res := runScenario(t, scenario{
		name:        "syncookie ACK flood",
		filter:      cfg,
		xdpMode:     bpf.XDPAuto,
		duration:    2 * time.Second,
		flood:       floodSpec{Src: spoofRange, Count: 200_000, Duration: 2 * time.Second, Rate: 100_000, Flags: packet.ACK},
		workers:     2,
		interval:    20 * time.Millisecond,
		dialTimeout: 3 * time.Second,
	})
	t.Log(res)
	t.Logf("filter counters during the attack: %v", res.counterDetail)
	if res.successRate() < 0.99 {
		t.Errorf("client success rate %.2f%% < 99%%", 100*res.successRate())
	}
	// Not all: a veth ring may overflow on a busy host before XDP runs.
	if d := res.counterDetail[bpf.VerdictDropSyncookie]; d < uint64(res.sent)/2 {
		t.Errorf("dropped %d of %d spoofed ACKs", d, res.sent)
	}
}

// TestBenchSynflood prints the figures of `make bench-synflood`: the same
// flood against the server without and with the filter, side by side.
func TestBenchSynflood(t *testing.T) {
	if !*benchSynflood {
		t.Skip("benchmark: run with -bench-synflood (make bench-synflood)")
	}
	dur := 10 * time.Second
	if v := os.Getenv("SYNFLOOD_BENCH_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		dur = d
	}
	rate := 0 // as fast as the generator goes
	base := scenario{
		duration:    dur,
		flood:       floodSpec{Src: spoofRange, Count: maxFloodCount, Duration: dur, Rate: rate},
		workers:     4,
		interval:    20 * time.Millisecond,
		dialTimeout: 3 * time.Second,
	}
	off := base
	off.name = "no filter"
	on := base
	on.name = "XDP filter"
	on.filter = filterConfig()
	on.xdpMode = bpf.XDPAuto
	cookie := on
	cookie.name = "XDP syncookie"
	cookie.filter = filterConfig()
	cookie.filter.Mode = bpf.FilterSyncookie

	var results []result
	for _, sc := range []scenario{off, on, cookie} {
		t.Run(strings.ReplaceAll(sc.name, " ", "_"), func(t *testing.T) {
			r := runScenario(t, sc)
			t.Log(r)
			results = append(results, r)
		})
	}
	if len(results) != 3 {
		t.Fatal("a run failed")
	}
	row := func(label string, f func(r result) string) {
		fmt.Printf("%-34s %20s %20s %20s\n", label, f(results[0]), f(results[1]), f(results[2]))
	}
	fmt.Printf("\nSYN flood for %v from random sources in %v (generator at full speed), client 4 workers x 50 conn/s, dial timeout 3s\n", dur, spoofRange)
	row("", func(r result) string { return r.name })
	row("xdp mode", func(r result) string { return orDash(r.xdpMode) })
	row("client success rate", func(r result) string { return fmt.Sprintf("%.2f%% (%d/%d)", 100*r.successRate(), r.ok, r.attempts) })
	row("connect latency p50", func(r result) string { return r.p50.Round(time.Microsecond).String() })
	row("connect latency p99", func(r result) string { return r.p99.Round(time.Microsecond).String() })
	row("attack SYNs sent /s", func(r result) string { return fmt.Sprintf("%.0f", r.sentPPS) })
	row("attack SYNs dropped in XDP /s", func(r result) string { return fmt.Sprintf("%.0f", r.droppedPPS) })
	row("SYNs passed by XDP", func(r result) string {
		if r.xdpMode == "" {
			return "all"
		}
		return fmt.Sprint(r.synsPassed)
	})
	row("SYN-ACKs sent from XDP /s", func(r result) string { return fmt.Sprintf("%.0f", float64(r.xdpCookies)/r.elapsed.Seconds()) })
	row("server kernel syncookies sent", func(r result) string { return fmt.Sprint(r.cookiesSent) })
	row("server kernel cookie ACKs accepted", func(r result) string { return fmt.Sprint(r.cookiesRecv) })
	row("server listen drops", func(r result) string { return fmt.Sprint(r.listenDrops) })
	row("softirq CPU s (host, /proc/stat)", func(r result) string { return fmt.Sprintf("%.2f", r.softirq) })
	row("softirq CPU s per 1M attack SYNs", func(r result) string {
		if r.sent == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", r.softirq/float64(r.sent)*1e6)
	})
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
