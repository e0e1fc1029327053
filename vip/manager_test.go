package vip

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func mcfg(name string, vrid uint8, prio uint8) InstanceConfig {
	c := icfg(name, prio)
	c.Name = name
	c.VirtualRouterID = vrid
	c.VIPs = []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 1, vrid}), 24)}
	return c
}

func newTestManager(t *testing.T, b *bus, name, addr string) (*Manager, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := NewManager(ManagerOptions{
		Network:    &fakeNet{bus: b, name: name, primary: netip.MustParseAddr(addr)},
		Logger:     quietLogger().With("node", name),
		Registerer: reg,
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	return m, reg
}

func statusOf(m *Manager, name string) (InstanceStatus, bool) {
	for _, s := range m.Status() {
		if s.Name == name {
			return s, true
		}
	}
	return InstanceStatus{}, false
}

func TestManagerApplyReload(t *testing.T) {
	b := newBus()
	m, reg := newTestManager(t, b, "a", "198.18.0.1")
	ctx := context.Background()
	one, two := mcfg("one", 1, 100), mcfg("two", 2, 100)
	if err := m.Apply(ctx, []InstanceConfig{one, two}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "both MASTER", func() bool {
		s1, _ := statusOf(m, "one")
		s2, _ := statusOf(m, "two")
		return s1.State == StateMaster && s2.State == StateMaster
	})
	s1, _ := statusOf(m, "one")
	m.mu.Lock()
	instOne := m.instances["one"].inst
	m.mu.Unlock()

	// Reload: "one" unchanged (written with explicit defaults: still equal),
	// "two" changed (its VIP), "three" new.
	one2 := one
	one2.NotifyTimeout = DefaultNotifyTimeout
	two2 := two
	two2.Priority = 150
	two2.VIPs = []netip.Prefix{netip.MustParsePrefix("198.18.1.22/24")}
	three := mcfg("three", 3, 100)
	if err := m.Apply(ctx, []InstanceConfig{one2, two2, three}); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	same := m.instances["one"].inst == instOne
	m.mu.Unlock()
	if !same {
		t.Fatal("unchanged instance was restarted")
	}
	if s, _ := statusOf(m, "one"); s.State != StateMaster || !s.Since.Equal(s1.Since) {
		t.Fatalf("unchanged instance flapped: %+v", s)
	}
	waitFor(t, 2*time.Second, "two restarted with 150, three MASTER", func() bool {
		s2, _ := statusOf(m, "two")
		s3, _ := statusOf(m, "three")
		return s2.State == StateMaster && s2.Priority == 150 && s3.State == StateMaster
	})

	// Remove "two": its VIPs are released with a priority-0 advert.
	if err := m.Apply(ctx, []InstanceConfig{one2, three}); err != nil {
		t.Fatal(err)
	}
	if _, ok := statusOf(m, "two"); ok {
		t.Fatal("removed instance still listed")
	}
	var twoConn *fakeConn
	b.mu.Lock()
	for _, c := range b.conns {
		if c.cfg.VRID == 2 {
			twoConn = c
		}
	}
	b.mu.Unlock()
	if twoConn.hasVIPs() {
		t.Fatal("removed instance kept its VIPs")
	}
	if p := twoConn.advertPriorities(); p[len(p)-1] != 0 {
		t.Fatalf("removed instance's last advert priority %d", p[len(p)-1])
	}
	// Its series are gone.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "instance" && l.GetValue() == "two" {
					t.Fatalf("series of removed instance left: %s", mf.GetName())
				}
			}
		}
	}

	// The instances hear each other's adverts on the shared interface: not drops.
	if n := seriesCount(t, reg, "palisade_vrrp_adverts_dropped_total"); n != 0 {
		t.Fatalf("%d dropped series from sibling instances' adverts", n)
	}

	// Invalid input changes nothing.
	bad := mcfg("four", 4, 100)
	bad.VIPs = nil
	if err := m.Apply(ctx, []InstanceConfig{one2, three, bad}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("invalid apply: %v", err)
	}
	if n := len(m.Status()); n != 2 {
		t.Fatalf("%d instances after invalid apply", n)
	}
}

func TestManagerResignTrackingStop(t *testing.T) {
	b := newBus()
	ma, _ := newTestManager(t, b, "a", "198.18.0.1")
	mb, _ := newTestManager(t, b, "b", "198.18.0.2")
	ctx := context.Background()
	ca := mcfg("edge", 7, 200)
	ca.Track = []Track{{Frontend: "web", Weight: -150}}
	// Reported before the instance exists: applied at start.
	ma.SetFrontendHealth("web", true)
	if err := ma.Apply(ctx, []InstanceConfig{ca}); err != nil {
		t.Fatal(err)
	}
	if err := mb.Apply(ctx, []InstanceConfig{mcfg("edge", 7, 100)}); err != nil {
		t.Fatal(err)
	}
	state := func(m *Manager) State { s, _ := statusOf(m, "edge"); return s.State }
	waitFor(t, 2*time.Second, "a MASTER b BACKUP", func() bool { return state(ma) == StateMaster && state(mb) == StateBackup })
	if s, _ := statusOf(mb, "edge"); s.Master != netip.MustParseAddr("198.18.0.1") {
		// The master is learned from the first advert; wait for it.
		waitFor(t, time.Second, "b learns master", func() bool { s, _ := statusOf(mb, "edge"); return s.Master.IsValid() })
	}

	if err := ma.Resign(ctx, "nope"); !errors.Is(err, ErrUnknownInstance) {
		t.Fatalf("unknown: %v", err)
	}
	if err := ma.Resign(ctx, "edge"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "b MASTER", func() bool { return state(mb) == StateMaster && state(ma) == StateBackup })

	// b's frontend breaks: a (200) preempts... only once it is no longer
	// resigned, so first let a become master by stopping b.
	mb.SetFrontendHealth("web", false) // b does not track it: nothing happens
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := mb.Stop(sctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "a MASTER after b stops", func() bool { return state(ma) == StateMaster })
	if err := mb.Apply(ctx, nil); err == nil {
		t.Fatal("apply after stop accepted")
	}
	ma.SetFrontendHealth("web", false)
	waitFor(t, time.Second, "a priority 50", func() bool { s, _ := statusOf(ma, "edge"); return s.EffectivePriority == 50 })
}

func TestManagerSoftReloadKeepsState(t *testing.T) {
	b := newBus()
	m, _ := newTestManager(t, b, "a", "198.18.0.1")
	ctx := context.Background()
	c := mcfg("edge", 9, 100)
	if err := m.Apply(ctx, []InstanceConfig{c}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "MASTER", func() bool { s, _ := statusOf(m, "edge"); return s.State == StateMaster })
	before, _ := statusOf(m, "edge")
	m.mu.Lock()
	inst := m.instances["edge"].inst
	m.mu.Unlock()
	conn := b.conn("a")

	c2 := c
	c2.Priority = 180
	c2.Preempt = false
	c2.Track = []Track{{Frontend: "web", Weight: -20}}
	if err := m.Apply(ctx, []InstanceConfig{c2}); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	same := m.instances["edge"].inst == inst
	m.mu.Unlock()
	after, _ := statusOf(m, "edge")
	if !same || after.State != StateMaster || !after.Since.Equal(before.Since) || !conn.hasVIPs() {
		t.Fatalf("soft change restarted or flapped the instance: same %v %+v", same, after)
	}
	if after.Priority != 180 || after.EffectivePriority != 180 {
		t.Fatalf("priority %d effective %d", after.Priority, after.EffectivePriority)
	}
	waitFor(t, time.Second, "advert with the new priority", func() bool {
		p := conn.advertPriorities()
		return p[len(p)-1] == 180
	})
	// The new tracking entry applies.
	m.SetFrontendHealth("web", false)
	waitFor(t, time.Second, "effective 160", func() bool { s, _ := statusOf(m, "edge"); return s.EffectivePriority == 160 })

	// A hard change (advert interval) restarts the instance.
	c3 := c2
	c3.AdvertInterval = 30 * time.Millisecond
	if err := m.Apply(ctx, []InstanceConfig{c3}); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	same = m.instances["edge"].inst == inst
	m.mu.Unlock()
	if same {
		t.Fatal("hard change did not restart the instance")
	}
}

func TestSoftChange(t *testing.T) {
	base := mcfg("x", 1, 100)
	base.Track = []Track{{Interface: "up0", Weight: -10}}
	soft := []func(c *InstanceConfig){
		func(c *InstanceConfig) { c.Priority = 254 },
		func(c *InstanceConfig) { c.Preempt = !c.Preempt },
		func(c *InstanceConfig) { c.PreemptDelay = time.Second },
		func(c *InstanceConfig) { c.Track = append(c.Track, Track{Frontend: "web", Weight: -5}) },
		func(c *InstanceConfig) { c.Track[0].Weight = -50 },
		func(c *InstanceConfig) { c.GARP.Repeat = 9 },
		func(c *InstanceConfig) { c.Notify = "/bin/true" },
	}
	hard := []func(c *InstanceConfig){
		func(c *InstanceConfig) { c.Priority = 255 },
		func(c *InstanceConfig) { c.Interface = "eth1" },
		func(c *InstanceConfig) { c.VirtualRouterID = 2 },
		func(c *InstanceConfig) { c.AdvertInterval = time.Second },
		func(c *InstanceConfig) { c.VIPs = append(c.VIPs, netip.MustParsePrefix("198.18.2.1/24")) },
		func(c *InstanceConfig) { c.UnicastPeers = []netip.Addr{netip.MustParseAddr("198.18.0.2")} },
		func(c *InstanceConfig) { c.Track = []Track{{Interface: "up1", Weight: -10}} },
	}
	for i, f := range soft {
		c := base
		c.Track = append([]Track(nil), base.Track...)
		f(&c)
		if !softChange(base, c) {
			t.Errorf("soft change %d seen as hard", i)
		}
	}
	for i, f := range hard {
		c := base
		c.Track = append([]Track(nil), base.Track...)
		f(&c)
		if softChange(base, c) {
			t.Errorf("hard change %d seen as soft", i)
		}
	}
}
