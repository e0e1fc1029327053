// Command tcp benchmarks palisade's tcp mode against HAProxy 2.6 `mode tcp`
// and against the backends directly, all on loopback:
//
//   - bulk throughput: 100 MiB GETs over a few keep-alive connections (MB/s);
//   - new connections: wrk with Connection: close, one request per connection;
//   - keep-alive: wrk on a small response over persistent connections;
//   - memory: VmRSS of each proxy holding 10k idle proxied connections.
//
// For each it reports medians over alternating runs of the rate, wrk's p99
// latency and the proxy's CPU time (utime+stime of all its threads, from
// /proc/PID/stat) per request or per GB, the machine's CPU, idle share and
// TCP segments, and the palisade/HAProxy and palisade/direct ratios, both of
// the medians and round by round (9 rounds by default: a sign test over 5
// can do no better than p 0.03), as Markdown tables for the README.
//
// Usage (make bench-tcp): go run ./test/bench/tcp -palisade bin/palisade
// It needs haproxy, nginx and wrk: bash test/install-deps.sh bench.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
)

type options struct {
	palisade  string
	baseline  string // a second palisade build run in the same rounds (A/B); empty: none
	cc        string // TCP congestion control of a private network namespace; empty: the host's
	runs      int
	duration  time.Duration
	quick     bool
	out       string
	threads   int // wrk threads
	conns     int // wrk connections
	bulkConns int
	bigMiB    int
	idle      int
	nbthread  int
	profile   string
	keep      bool
	only      string // comma-separated scenario keys; empty: all
	pin       pinning
	deferAcc  bool // the bench frontend of both proxies defers accept
}

func defaultOptions() options {
	return options{runs: 9, duration: 5 * time.Second, threads: 2, conns: 50, bulkConns: 4, bigMiB: 100,
		idle: 10000, nbthread: runtime.NumCPU(), deferAcc: true}
}

func main() {
	if os.Getenv(holderEnv) == "1" {
		holderMain()
		return
	}
	o := defaultOptions()
	flag.StringVar(&o.palisade, "palisade", "bin/palisade", "palisade binary to benchmark")
	flag.StringVar(&o.baseline, "baseline", "", "another palisade binary (e.g. a build of main) to run in the same rounds, "+
		"right after palisade: the report adds palisade / baseline round by round, for A/B tests of a change")
	flag.IntVar(&o.runs, "runs", o.runs, "runs of each measurement (medians are reported)")
	flag.DurationVar(&o.duration, "duration", o.duration, "length of each run")
	flag.BoolVar(&o.quick, "quick", false, "smoke test: 1 run of 2s")
	flag.StringVar(&o.out, "out", "", "also write the Markdown table to this file")
	flag.IntVar(&o.threads, "threads", o.threads, "wrk threads")
	flag.IntVar(&o.conns, "conns", o.conns, "wrk connections")
	flag.IntVar(&o.bulkConns, "bulk-conns", o.bulkConns, "parallel connections of the bulk test")
	flag.IntVar(&o.bigMiB, "big-mib", o.bigMiB, "size of the bulk test's file in MiB")
	flag.IntVar(&o.idle, "idle", o.idle, "idle proxied connections for the memory test (0 = skip)")
	flag.IntVar(&o.nbthread, "nbthread", o.nbthread, "HAProxy nbthread (default: CPUs, like palisade's GOMAXPROCS)")
	flag.StringVar(&o.profile, "profile", "", "after the runs, count syscalls (perf stat, or strace), record profiles (perf record) and trace the scheduler (perf record -a) "+
		"of each proxy under load into this dir; "+
		"for Go symbols use an unstripped palisade (go build -o /tmp/palisade ./cmd/palisade; make build strips)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work dir (configs, logs)")
	flag.StringVar(&o.only, "only", "", "run only these scenarios, comma-separated: bulk, conn, keepalive (default: all)")
	flag.StringVar(&o.cc, "cc", "", "run in a new network namespace (root) whose TCP congestion control is this (e.g. cubic, bbr); "+
		"default: the host's, in the host's namespace")
	flag.BoolVar(&o.deferAcc, "defer-accept", o.deferAcc, "the bench frontend of both proxies accepts a connection only once its request is in "+
		"(palisade's defer_accept, HAProxy's defer-accept; TCP_DEFER_ACCEPT): the clients speak first, as HTTP's do")
	pin := flag.String("pin", "", "PROXY_CPUS:LOAD_CPUS, e.g. 0:1: run the proxies on the first CPUs and nginx, wrk and the bulk client on the others "+
		"(taskset), as on a host where clients and servers are other machines; HAProxy's nbthread defaults to the proxy CPUs then")
	flag.Parse()
	var err error
	if o.pin, err = parsePin(*pin, runtime.NumCPU()); err != nil {
		fmt.Fprintf(os.Stderr, "bench-tcp: %v\n", err)
		os.Exit(2)
	}
	nbthreadSet := false
	flag.Visit(func(f *flag.Flag) { nbthreadSet = nbthreadSet || f.Name == "nbthread" })
	if o.pin.on() && !nbthreadSet {
		o.nbthread = len(o.pin.proxy)
	}
	if o.quick {
		o.runs, o.duration = 1, 2*time.Second
	}
	if o.cc != "" {
		if !inPrivateNetns() {
			os.Exit(reexecInNetns())
		}
		if err := setupNetns(o.cc); err != nil {
			fmt.Fprintf(os.Stderr, "bench-tcp: -cc: %v\n", err)
			os.Exit(1)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, o, os.Stdout, os.Stderr))
}

// run is the whole benchmark; it returns the exit code.
func run(ctx context.Context, o options, stdout, stderr io.Writer) int {
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
	tools, err := findTools()
	if err != nil {
		logf("bench-tcp: %v", err)
		return 2
	}
	if o.runs < 1 || o.duration < time.Second {
		logf("bench-tcp: -runs must be >= 1 and -duration >= 1s")
		return 2
	}
	if _, err := os.Stat(o.palisade); err != nil {
		logf("bench-tcp: palisade binary: %v (run make build)", err)
		return 2
	}
	if o.baseline != "" {
		if _, err := os.Stat(o.baseline); err != nil {
			logf("bench-tcp: -baseline: %v", err)
			return 2
		}
	}
	if o.pin.on() {
		// before setup: the holder it starts inherits the mask
		if err := pinSelf(o.pin.load); err != nil {
			logf("bench-tcp: %v", err)
			return 1
		}
	}
	b, err := setup(ctx, o, tools, logf)
	if b != nil {
		defer b.close(o.keep, logf)
	}
	if err != nil {
		logf("bench-tcp: setup: %v", err)
		return 1
	}
	res, err := b.measure(ctx)
	if err != nil {
		logf("bench-tcp: %v", err)
		return 1
	}
	if o.profile != "" {
		prof, err := b.profileAll(ctx, o.profile)
		if err != nil {
			logf("bench-tcp: profile: %v", err)
			return 1
		}
		res.profile = prof
	}
	md := b.report(res)
	fmt.Fprint(stdout, md)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
			logf("bench-tcp: writing %s: %v", o.out, err)
			return 1
		}
	}
	return 0
}
