// Command failoverbench measures VRRP failover time from a client's point of
// view: in a namespace topology (test/vrrp/harness) it starts a master
// (priority 200) and a backup (priority 100), stops the master, and times
// until the first TCP connection through the VIP is answered by the backup.
// It compares palisade with keepalived at the same advert intervals and
// prints medians and ratios. Needs root, iproute2 and keepalived.
//
//	go run ./test/vrrp/failoverbench -runs 5 -adverts 100ms,1s
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/palisade-lb/palisade/test/vrrp/harness"
	"github.com/palisade-lb/palisade/vip"
)

func main() {
	harness.MaybeRunNode()
	runs := flag.Int("runs", 5, "runs per configuration (median reported)")
	adverts := flag.String("adverts", "100ms,1s", "comma-separated advert intervals")
	impls := flag.String("impls", "palisade,keepalived", "implementations to measure")
	modes := flag.String("modes", "kill,graceful", "kill (SIGKILL the master) and/or graceful (SIGTERM)")
	flag.Parse()
	if why := harness.NeedRoot(); why != "" {
		fmt.Fprintln(os.Stderr, "failoverbench:", why)
		os.Exit(2)
	}
	if *runs < 1 || *runs > 50 {
		fmt.Fprintln(os.Stderr, "failoverbench: -runs must be 1..50")
		os.Exit(2)
	}

	// Make sure an interrupted run removes its namespaces.
	var cur *harness.Topology
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		if cur != nil {
			cur.Close()
		}
		os.Exit(130)
	}()

	type key struct {
		impl, mode string
		advert     time.Duration
	}
	results := map[key][]time.Duration{}
	failures := map[key]int{}
	var order []key
	failed := false
	for _, as := range strings.Split(*adverts, ",") {
		adv, err := time.ParseDuration(strings.TrimSpace(as))
		if err != nil {
			fmt.Fprintln(os.Stderr, "failoverbench:", err)
			os.Exit(2)
		}
		for _, mode := range strings.Split(*modes, ",") {
			for _, impl := range strings.Split(*impls, ",") {
				k := key{impl, mode, adv}
				order = append(order, k)
				for r := range *runs {
					tp, err := harness.New(2)
					if err != nil {
						fmt.Fprintln(os.Stderr, "failoverbench: topology:", err)
						os.Exit(1)
					}
					cur = tp
					// Stratified phases across one advert interval.
					phase := time.Duration((float64(r) + 0.5) / float64(*runs) * float64(adv))
					d, nfail, err := once(tp, impl, mode, adv, phase)
					failures[k] += nfail
					tp.Close()
					cur = nil
					if err != nil {
						fmt.Fprintf(os.Stderr, "%s %s advert %v run %d: %v\n", impl, mode, adv, r+1, err)
						failed = true
						continue
					}
					fmt.Fprintf(os.Stderr, "%-10s %-8s advert %-6v run %d: %v (%d failed client attempts)\n", impl, mode, adv, r+1, d.Round(time.Millisecond), nfail)
					results[k] = append(results[k], d)
				}
			}
		}
	}

	fmt.Printf("\nFailover time, kill/SIGTERM of the master -> first TCP connect answered by the backup through the VIP\n")
	fmt.Printf("%-10s %-8s %-7s %5s %9s %9s %9s %14s\n", "impl", "mode", "advert", "runs", "median", "min", "max", "failed/run")
	med := map[key]time.Duration{}
	for _, k := range order {
		ds := results[k]
		if len(ds) == 0 {
			continue
		}
		slices.Sort(ds)
		med[k] = ds[len(ds)/2]
		if len(ds)%2 == 0 {
			med[k] = (ds[len(ds)/2-1] + ds[len(ds)/2]) / 2
		}
		fmt.Printf("%-10s %-8s %-7v %5d %9v %9v %9v %14.1f\n", k.impl, k.mode, k.advert, len(ds),
			med[k].Round(time.Millisecond), ds[0].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond),
			float64(failures[k])/float64(len(ds)))
	}
	fmt.Println()
	for _, k := range order {
		if k.impl != "palisade" {
			continue
		}
		ka := key{"keepalived", k.mode, k.advert}
		p, okP := med[k]
		q, okQ := med[ka]
		if okP && okQ && q > 0 {
			fmt.Printf("ratio palisade/keepalived %-8s advert %-6v: %.2f\n", k.mode, k.advert, float64(p)/float64(q))
		}
	}
	if failed {
		os.Exit(1)
	}
}

// once runs one failover and returns its duration as the client saw it and
// how many client connection attempts failed in between (the client retries
// at once, with a 10ms connect timeout).
func once(tp *harness.Topology, impl, mode string, adv, phase time.Duration) (time.Duration, int, error) {
	start := func(i int, name string, prio uint8) (*harness.Node, error) {
		if impl == "keepalived" {
			return tp.Keepalived(i, name, harness.KeepalivedSpec{VRID: 51, Priority: prio, AdvertInterval: adv, Preempt: true})
		}
		return tp.Palisade(i, name, vip.InstanceConfig{
			Name: "bench", VirtualRouterID: 51, Priority: prio, AdvertInterval: adv, Preempt: true,
		})
	}
	master, err := start(1, "master", 200)
	if err != nil {
		return 0, 0, err
	}
	if !harness.WaitFor(10*time.Second, func() bool { return tp.HasVIP(1) }) {
		return 0, 0, fmt.Errorf("master never took the VIP:\n%s", master.Logs())
	}
	backup, err := start(2, "backup", 100)
	if err != nil {
		return 0, 0, err
	}
	dl, err := tp.ClientDialer()
	if err != nil {
		return 0, 0, err
	}
	defer dl.Close()
	// Warm up: the client talks to the master for a while (longer than the
	// neighbour locktime), and the backup hears several adverts.
	warm := time.Now().Add(max(1200*time.Millisecond, 4*adv).Truncate(adv) + phase)
	for time.Now().Before(warm) {
		got, err := dl.Ask(200 * time.Millisecond)
		if err != nil || got != "master" {
			if time.Now().After(warm.Add(5 * time.Second)) {
				return 0, 0, fmt.Errorf("client not served by the master: %q %v", got, err)
			}
		}
		time.Sleep(min(20*time.Millisecond, time.Until(warm)))
	}
	if tp.HasVIP(2) {
		return 0, 0, fmt.Errorf("backup holds the VIP before the failover:\n%s", backup.Logs())
	}

	// Stop the master at a fixed phase after one of its adverts, the same
	// phases for every implementation: the failover time after a crash
	// depends on it (master down = 3*advert + skew after the last advert).
	w, err := dl.WatchAdverts()
	if err != nil {
		return 0, 0, err
	}
	defer w.Close()
	_, last, err := w.Next(harness.NodeAddr(1).Addr(), 3*adv+time.Second)
	if err != nil {
		return 0, 0, fmt.Errorf("no advert from the master seen: %w", err)
	}
	time.Sleep(time.Until(last.Add(phase)))

	t0 := time.Now()
	if mode == "graceful" {
		err := master.Stop(0)
		_ = err // Stop(0) only signals; the clock runs from SIGTERM
	} else {
		master.Crash(tp)
	}
	limit := t0.Add(20*adv + 5*time.Second)
	debug := os.Getenv("FAILOVERBENCH_DEBUG") != ""
	lastOutcome := ""
	failed := 0
	for attempts := 0; time.Now().Before(limit) && attempts < 100000; attempts++ {
		// A short connect timeout: a SYN sent while nobody owns the VIP is
		// lost, and the next attempt must not wait long.
		got, err := dl.Ask(10 * time.Millisecond)
		if err != nil {
			failed++
		}
		if debug {
			o := got
			if err != nil {
				o = err.Error()
			}
			if o != lastOutcome {
				fmt.Fprintf(os.Stderr, "  %8v %s\n", time.Since(t0).Round(100*time.Microsecond), o)
				lastOutcome = o
			}
		}
		if err == nil && got == "backup" {
			d := time.Since(t0)
			if m := backup.StateSince("MASTER"); !m.IsZero() && os.Getenv("FAILOVERBENCH_DEBUG") != "" {
				fmt.Fprintf(os.Stderr, "  backup MASTER after %v, client served after %v (%d attempts)\n", m.Sub(t0), d, attempts)
			}
			return d, failed, nil
		}
		time.Sleep(time.Millisecond)
	}
	return 0, 0, fmt.Errorf("backup never answered through the VIP:\n%s\n%s", master.Logs(), backup.Logs())
}
