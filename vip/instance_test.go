package vip

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testVIP = netip.MustParsePrefix("198.18.0.100/24")

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func quietLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type node struct {
	name   string
	inst   *Instance
	cancel context.CancelFunc
	done   chan struct{}
	reg    *prometheus.Registry
}

func icfg(name string, prio uint8) InstanceConfig {
	return InstanceConfig{
		Name: "edge", Interface: "eth0", VirtualRouterID: 51, Priority: prio,
		AdvertInterval: 20 * time.Millisecond, Preempt: true, VIPs: []netip.Prefix{testVIP},
		GARP: GARPConfig{Repeat: 3, Interval: 5 * time.Millisecond, Refresh: time.Hour},
	}
}

func startNode(t *testing.T, b *bus, name string, addr string, c InstanceConfig) *node {
	t.Helper()
	reg := prometheus.NewRegistry()
	inst, err := NewInstance(c, Options{
		Network: &fakeNet{bus: b, name: name, primary: netip.MustParseAddr(addr)},
		Logger:  quietLogger().With("node", name), Metrics: NewMetrics(reg),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{name: name, inst: inst, cancel: cancel, done: make(chan struct{}), reg: reg}
	go func() {
		defer close(n.done)
		if err := inst.Run(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	t.Cleanup(n.stop)
	return n
}

func (n *node) stop() {
	n.cancel()
	<-n.done
}

func (n *node) state() State { return n.inst.Status().State }

func TestInstanceSingleBecomesMaster(t *testing.T) {
	b := newBus()
	n := startNode(t, b, "a", "198.18.0.1", icfg("a", 100))
	waitFor(t, 2*time.Second, "MASTER", func() bool { return n.state() == StateMaster })
	c := b.conn("a")
	waitFor(t, time.Second, "VIP added and GARP burst done", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.vips[testVIP] && c.garps == 3
	})
	waitFor(t, time.Second, "adverts", func() bool { return len(c.advertPriorities()) >= 3 })
	st := n.inst.Status()
	if st.Master != netip.MustParseAddr("198.18.0.1") || st.EffectivePriority != 100 || st.Since.IsZero() {
		t.Fatalf("status %+v", st)
	}
	if v := metricValue(t, n.inst.metrics.state.WithLabelValues("edge", "MASTER")); v != 1 {
		t.Fatalf("state metric %v", v)
	}
	if v := metricValue(t, n.inst.metrics.state.WithLabelValues("edge", "BACKUP")); v != 0 {
		t.Fatalf("backup metric %v", v)
	}
	n.stop()
	if c.hasVIPs() {
		t.Fatal("VIPs kept after stop")
	}
	p := c.advertPriorities()
	if p[len(p)-1] != 0 {
		t.Fatalf("last advert priority %d, want 0", p[len(p)-1])
	}
	if n.state() != StateInit {
		t.Fatalf("state after stop %v", n.state())
	}
}

func TestInstancePairElectionFailoverPreempt(t *testing.T) {
	b := newBus()
	hi := startNode(t, b, "hi", "198.18.0.1", icfg("hi", 200))
	lo := startNode(t, b, "lo", "198.18.0.2", icfg("lo", 100))
	waitFor(t, 2*time.Second, "hi MASTER, lo BACKUP following hi", func() bool {
		return hi.state() == StateMaster && lo.state() == StateBackup &&
			lo.inst.Status().Master == netip.MustParseAddr("198.18.0.1")
	})
	// Graceful stop of the master: priority 0 → the backup takes over after
	// its skew only, and the master keeps the VIP until then: no gap.
	gaps := b.gapCount()
	hi.stop()
	waitFor(t, time.Second, "lo MASTER", func() bool { return lo.state() == StateMaster })
	if g := b.gapCount(); g != gaps {
		t.Fatalf("the VIP was unowned during the graceful handover")
	}
	if !b.conn("lo").hasVIPs() || b.ownerOf(testVIP.Addr()) != "lo" {
		t.Fatal("lo holds no VIP / no GARP")
	}
	// The old master returns and preempts.
	hi2 := startNode(t, b, "hi", "198.18.0.1", icfg("hi", 200))
	waitFor(t, 2*time.Second, "hi preempts", func() bool {
		return hi2.state() == StateMaster && lo.state() == StateBackup
	})
	waitFor(t, time.Second, "VIP moved back", func() bool {
		return b.conn("hi").hasVIPs() && !b.conn("lo").hasVIPs() && b.ownerOf(testVIP.Addr()) == "hi"
	})
	if v := metricValue(t, lo.inst.metrics.transitions.WithLabelValues("edge")); v != 3 {
		t.Fatalf("lo transitions %v, want 3 (BACKUP, MASTER, BACKUP)", v)
	}
	if v := metricValue(t, lo.inst.metrics.receivedC.WithLabelValues("edge")); v < 1 {
		t.Fatalf("lo received %v", v)
	}
}

func TestInstanceNoPreempt(t *testing.T) {
	b := newBus()
	lo := startNode(t, b, "lo", "198.18.0.2", icfg("lo", 100))
	waitFor(t, 2*time.Second, "lo MASTER", func() bool { return lo.state() == StateMaster })
	c := icfg("hi", 200)
	c.Preempt = false
	hi := startNode(t, b, "hi", "198.18.0.1", c)
	waitFor(t, 2*time.Second, "hi BACKUP", func() bool { return hi.state() == StateBackup && hi.inst.Status().Master.IsValid() })
	// Several master-down intervals later nothing changed.
	deadline := time.Now().Add(5 * MasterDownInterval(200, 20*time.Millisecond))
	for time.Now().Before(deadline) {
		if hi.state() != StateBackup || lo.state() != StateMaster {
			t.Fatalf("preempted without preempt: hi %v lo %v", hi.state(), lo.state())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestInstanceFrontendTrackingMovesVIP(t *testing.T) {
	b := newBus()
	ca := icfg("a", 150)
	ca.Track = []Track{{Frontend: "web", Weight: -60}}
	a := startNode(t, b, "a", "198.18.0.1", ca)
	bb := startNode(t, b, "b", "198.18.0.2", icfg("b", 120))
	waitFor(t, 2*time.Second, "a MASTER", func() bool { return a.state() == StateMaster && bb.state() == StateBackup })
	a.inst.SetFrontendHealth("web", false)
	waitFor(t, time.Second, "b takes over", func() bool { return bb.state() == StateMaster && a.state() == StateBackup })
	if p := a.inst.Status().EffectivePriority; p != 90 {
		t.Fatalf("effective priority %d, want 90", p)
	}
	a.inst.SetFrontendHealth("web", true)
	waitFor(t, time.Second, "a preempts back", func() bool { return a.state() == StateMaster && bb.state() == StateBackup })
}

func TestInstanceTrackWeightZeroAndLinkDownFault(t *testing.T) {
	b := newBus()
	c := icfg("a", 150)
	c.Track = []Track{{Frontend: "web", Weight: 0}, {Interface: "uplink", Weight: -10}}
	a := startNode(t, b, "a", "198.18.0.1", c)
	waitFor(t, 2*time.Second, "MASTER", func() bool { return a.state() == StateMaster })
	conn := b.conn("a")
	conn.inject(Event{Kind: EventLink, Link: "uplink", Up: false})
	waitFor(t, time.Second, "priority 140", func() bool { return a.inst.Status().EffectivePriority == 140 })
	a.inst.SetFrontendHealth("web", false)
	waitFor(t, time.Second, "FAULT", func() bool { return a.state() == StateFault })
	if conn.hasVIPs() {
		t.Fatal("VIPs kept in FAULT")
	}
	a.inst.SetFrontendHealth("web", true)
	waitFor(t, 2*time.Second, "MASTER again", func() bool { return a.state() == StateMaster })
	// The instance's own interface going down is a FAULT too.
	conn.inject(Event{Kind: EventLink, Link: "eth0", Up: false})
	waitFor(t, time.Second, "FAULT on own link", func() bool { return a.state() == StateFault })
	conn.inject(Event{Kind: EventLink, Link: "eth0", Up: true})
	waitFor(t, 2*time.Second, "MASTER after link up", func() bool { return a.state() == StateMaster })
}

func TestInstanceReaddsRemovedVIP(t *testing.T) {
	b := newBus()
	a := startNode(t, b, "a", "198.18.0.1", icfg("a", 150))
	waitFor(t, 2*time.Second, "MASTER", func() bool { return a.state() == StateMaster })
	conn := b.conn("a")
	waitFor(t, time.Second, "VIP", conn.hasVIPs)
	conn.RemoveVIPs([]netip.Prefix{testVIP})
	conn.inject(Event{Kind: EventAddrRemoved, Addr: testVIP})
	waitFor(t, time.Second, "VIP put back", conn.hasVIPs)
	// Unrelated address removals are ignored.
	conn.inject(Event{Kind: EventAddrRemoved, Addr: netip.MustParsePrefix("198.18.0.1/24")})
}

func TestInstanceSplitBrainHeals(t *testing.T) {
	b := newBus()
	hi := startNode(t, b, "hi", "198.18.0.1", icfg("hi", 200))
	lo := startNode(t, b, "lo", "198.18.0.2", icfg("lo", 100))
	waitFor(t, 2*time.Second, "elected", func() bool { return hi.state() == StateMaster && lo.state() == StateBackup })
	b.setCut("hi", true)
	waitFor(t, 2*time.Second, "both MASTER", func() bool { return hi.state() == StateMaster && lo.state() == StateMaster })
	b.mu.Lock()
	b.owner[testVIP.Addr()] = "lo" // the segment followed lo's GARP
	b.mu.Unlock()
	b.setCut("hi", false)
	start := time.Now()
	waitFor(t, 2*time.Second, "one MASTER", func() bool { return hi.state() == StateMaster && lo.state() == StateBackup })
	waitFor(t, time.Second, "ARP owner hi", func() bool { return b.ownerOf(testVIP.Addr()) == "hi" })
	t.Logf("healed in %v (master down interval %v)", time.Since(start), MasterDownInterval(100, 20*time.Millisecond))
}

func TestInstanceResign(t *testing.T) {
	b := newBus()
	hi := startNode(t, b, "hi", "198.18.0.1", icfg("hi", 200))
	lo := startNode(t, b, "lo", "198.18.0.2", icfg("lo", 100))
	waitFor(t, 2*time.Second, "elected", func() bool { return hi.state() == StateMaster && lo.state() == StateBackup })
	ctx := context.Background()
	if err := lo.inst.Resign(ctx); !errors.Is(err, ErrNotMaster) {
		t.Fatalf("resign backup: %v", err)
	}
	gaps := b.gapCount()
	if err := hi.inst.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "lo MASTER", func() bool { return lo.state() == StateMaster && hi.state() == StateBackup })
	if b.gapCount() != gaps {
		t.Fatal("the VIP was unowned during the resignation")
	}
	if c := hi.inst.Status().Cause; c != CauseResign {
		t.Fatalf("cause %q", c)
	}
	// hi does not preempt back.
	deadline := time.Now().Add(3 * MasterDownInterval(200, 20*time.Millisecond))
	for time.Now().Before(deadline) {
		if hi.state() != StateBackup {
			t.Fatalf("resigned master preempted back: %v", hi.state())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestInstanceDropsCounted(t *testing.T) {
	b := newBus()
	c := icfg("a", 100)
	c.UnicastPeers = []netip.Addr{netip.MustParseAddr("198.18.0.2")}
	a := startNode(t, b, "a", "198.18.0.1", c)
	waitFor(t, 2*time.Second, "MASTER", func() bool { return a.state() == StateMaster })
	conn := b.conn("a")
	mk := func(src string, vrid uint8, ttl uint8) []byte {
		s := netip.MustParseAddr(src)
		msg, err := Advert{VRID: vrid, Priority: 250, MaxAdvertInterval: 2}.Marshal(s, MulticastGroup)
		if err != nil {
			t.Fatal(err)
		}
		return ipPacket(s, MulticastGroup, ttl, msg)
	}
	bad := mk("198.18.0.2", 51, 255)
	bad[len(bad)-1] ^= 0xff
	for _, p := range [][]byte{mk("198.18.0.2", 51, 64), mk("198.18.0.2", 52, 255), mk("198.18.0.3", 51, 255), bad} {
		conn.inject(Event{Kind: EventPacket, Packet: p})
	}
	dropped := func(r string) float64 {
		return metricValue(t, a.inst.metrics.droppedC.WithLabelValues("edge", r))
	}
	waitFor(t, time.Second, "drops counted", func() bool {
		return dropped("ttl") == 1 && dropped("vrid") == 1 && dropped("not_peer") == 1 && dropped("checksum") == 1
	})
	if a.state() != StateMaster {
		t.Fatal("a dropped advert changed the state")
	}
	// A valid one from the peer with a higher priority is obeyed.
	conn.inject(Event{Kind: EventPacket, Packet: mk("198.18.0.2", 51, 255)})
	waitFor(t, time.Second, "BACKUP", func() bool { return a.state() == StateBackup })
	if n := seriesCount(t, a.reg, "palisade_vrrp_adverts_dropped_total"); n != 4 {
		t.Fatalf("dropped series %d, want 4", n)
	}
}

func TestInstanceNotify(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	script := filepath.Join(dir, "notify.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$1 $2 $3\" >> "+out+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	b := newBus()
	c := icfg("a", 100)
	c.Notify = script
	a := startNode(t, b, "a", "198.18.0.1", c)
	waitFor(t, 2*time.Second, "MASTER", func() bool { return a.state() == StateMaster })
	a.stop()
	data, _ := os.ReadFile(out)
	want := "edge BACKUP 100\nedge MASTER 100\nedge STOP 100\n"
	if string(data) != want {
		t.Fatalf("notify calls:\n%s\nwant:\n%s", data, want)
	}
}

func TestInstanceNotifyTimeout(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "notify.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec sleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	b := newBus()
	c := icfg("a", 100)
	c.Notify = script
	c.NotifyTimeout = 50 * time.Millisecond
	a := startNode(t, b, "a", "198.18.0.1", c)
	// A hanging script neither blocks the election nor the stop.
	waitFor(t, 2*time.Second, "MASTER", func() bool { return a.state() == StateMaster })
	start := time.Now()
	a.stop()
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("stop took %v", el)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := icfg("a", 100)
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(c *InstanceConfig){
		"no name":         func(c *InstanceConfig) { c.Name = "" },
		"no interface":    func(c *InstanceConfig) { c.Interface = "" },
		"vrid 0":          func(c *InstanceConfig) { c.VirtualRouterID = 0 },
		"interval 5ms":    func(c *InstanceConfig) { c.AdvertInterval = 5 * time.Millisecond },
		"interval 41s":    func(c *InstanceConfig) { c.AdvertInterval = 41 * time.Second },
		"interval 15ms":   func(c *InstanceConfig) { c.AdvertInterval = 15 * time.Millisecond },
		"no vips":         func(c *InstanceConfig) { c.VIPs = nil },
		"ipv6 vip":        func(c *InstanceConfig) { c.VIPs = []netip.Prefix{netip.MustParsePrefix("2001:db8::1/64")} },
		"ipv6 peer":       func(c *InstanceConfig) { c.UnicastPeers = []netip.Addr{netip.MustParseAddr("::1")} },
		"empty track":     func(c *InstanceConfig) { c.Track = []Track{{Weight: -10}} },
		"both track":      func(c *InstanceConfig) { c.Track = []Track{{Frontend: "a", Interface: "b"}} },
		"weight range":    func(c *InstanceConfig) { c.Track = []Track{{Frontend: "a", Weight: -300}} },
		"negative delay":  func(c *InstanceConfig) { c.PreemptDelay = -time.Second },
		"negative repeat": func(c *InstanceConfig) { c.GARP.Repeat = -1 },
	}
	for name, f := range cases {
		c := icfg("a", 100)
		f(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	d := InstanceConfig{}.WithDefaults()
	if d.Priority != 100 || d.AdvertInterval != time.Second || d.GARP.Repeat != 5 || d.GARP.Refresh != time.Minute {
		t.Fatalf("defaults %+v", d)
	}
	dup := []InstanceConfig{icfg("a", 1), icfg("a", 2)}
	if err := ValidateAll(dup); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Fatalf("dup: %v", err)
	}
	c2 := icfg("a", 1)
	c2.Name = "other"
	if err := ValidateAll([]InstanceConfig{icfg("a", 1), c2}); err == nil || !strings.Contains(err.Error(), "share") {
		t.Fatalf("shared vrid: %v", err)
	}
}

func metricValue(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	}
	t.Fatal("not a gauge or counter")
	return 0
}

func seriesCount(t *testing.T, g prometheus.Gatherer, name string) int {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}

func TestInstanceIOFailureReopens(t *testing.T) {
	b := newBus()
	a := startNode(t, b, "a", "198.18.0.1", icfg("a", 100))
	waitFor(t, 2*time.Second, "MASTER", func() bool { return a.state() == StateMaster })
	first := b.conn("a")
	first.fail <- errors.New("netlink socket died")
	waitFor(t, time.Second, "FAULT", func() bool { return a.state() == StateFault })
	if first.hasVIPs() {
		t.Fatal("VIPs kept after the I/O failed")
	}
	if p := first.advertPriorities(); p[len(p)-1] != 0 {
		t.Fatalf("no priority-0 advert on I/O failure: %v", p)
	}
	waitFor(t, 3*time.Second, "MASTER on a reopened conn", func() bool {
		return a.state() == StateMaster && b.conn("a") != first
	})
}
