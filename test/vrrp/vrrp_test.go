package vrrp_test

import (
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/palisade-lb/palisade/test/vrrp/harness"
	"github.com/palisade-lb/palisade/vip"
)

func TestMain(m *testing.M) {
	harness.MaybeRunNode()
	os.Exit(m.Run())
}

const advert = 100 * time.Millisecond

// topo builds a topology for the test, removed on exit; node logs are
// printed when the test fails.
func topo(t *testing.T, nodes int) (*harness.Topology, *[]*harness.Node) {
	t.Helper()
	if why := harness.NeedRoot(); why != "" {
		t.Skip(why)
	}
	tp, err := harness.New(nodes)
	if err != nil {
		t.Fatal(err)
	}
	var started []*harness.Node
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range started {
				t.Logf("node %s (%s) states %v logs:\n%s", n.Name, n.Kind, n.States(), n.Logs())
			}
		}
		tp.Close()
	})
	return tp, &started
}

func pal(prio uint8, preempt bool) vip.InstanceConfig {
	return vip.InstanceConfig{
		Name: "edge", VirtualRouterID: 51, Priority: prio, AdvertInterval: advert, Preempt: preempt,
		GARP: vip.GARPConfig{Repeat: 5, Interval: 100 * time.Millisecond, Refresh: time.Minute},
	}
}

func startPal(t *testing.T, tp *harness.Topology, started *[]*harness.Node, i int, name string, c vip.InstanceConfig) *harness.Node {
	t.Helper()
	n, err := tp.Palisade(i, name, c)
	if err != nil {
		t.Fatal(err)
	}
	*started = append(*started, n)
	return n
}

func startKA(t *testing.T, tp *harness.Topology, started *[]*harness.Node, i int, name string, prio uint8) *harness.Node {
	t.Helper()
	n, err := tp.Keepalived(i, name, harness.KeepalivedSpec{VRID: 51, Priority: prio, AdvertInterval: advert, Preempt: true})
	if err != nil {
		t.Fatal(err)
	}
	*started = append(*started, n)
	return n
}

// waitServedBy waits until the client reaches name through the VIP.
func waitServedBy(t *testing.T, tp *harness.Topology, name string, d time.Duration) time.Duration {
	t.Helper()
	dl, err := tp.ClientDialer()
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Close()
	start := time.Now()
	last := ""
	ok := harness.WaitFor(d, func() bool {
		got, err := dl.Ask(100 * time.Millisecond)
		if err != nil {
			last = err.Error()
			time.Sleep(5 * time.Millisecond)
			return false
		}
		last = got
		return got == name
	})
	if !ok {
		t.Fatalf("client not served by %s through the VIP within %v (last: %s)", name, d, last)
	}
	return time.Since(start)
}

func waitVIP(t *testing.T, tp *harness.Topology, holder int, d time.Duration) {
	t.Helper()
	ok := harness.WaitFor(d, func() bool {
		for i := 1; i <= tp.Nodes; i++ {
			if tp.HasVIP(i) != (i == holder) {
				return false
			}
		}
		return true
	})
	if !ok {
		for i := 1; i <= tp.Nodes; i++ {
			t.Logf("node %d has VIP: %v", i, tp.HasVIP(i))
		}
		t.Fatalf("VIP not held by node %d alone within %v", holder, d)
	}
}

func waitState(t *testing.T, n *harness.Node, state string, d time.Duration) {
	t.Helper()
	if !n.WaitState(state, d) {
		t.Fatalf("%s: state %q, want %s within %v", n.Name, n.State(), state, d)
	}
}

func TestPalisadeKill9Failover(t *testing.T) {
	tp, started := topo(t, 2)
	a := startPal(t, tp, started, 1, "a", pal(200, true))
	waitState(t, a, "MASTER", 3*time.Second)
	b := startPal(t, tp, started, 2, "b", pal(100, true))
	waitState(t, b, "BACKUP", 3*time.Second)
	waitVIP(t, tp, 1, 2*time.Second)
	waitServedBy(t, tp, "a", 2*time.Second)

	a.Crash(tp)
	took := waitServedBy(t, tp, "b", 5*time.Second)
	t.Logf("client served by b %v after kill -9 of a", took)
	waitState(t, b, "MASTER", time.Second)
}

func TestPalisadeGracefulStopAndPreempt(t *testing.T) {
	tp, started := topo(t, 2)
	a := startPal(t, tp, started, 1, "a", pal(200, true))
	waitState(t, a, "MASTER", 3*time.Second)
	b := startPal(t, tp, started, 2, "b", pal(100, true))
	waitState(t, b, "BACKUP", 3*time.Second)
	waitServedBy(t, tp, "a", 2*time.Second)

	start := time.Now()
	if err := a.Stop(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitState(t, b, "MASTER", 2*time.Second)
	t.Logf("b MASTER %v after SIGTERM to a (advert %v, skew %v)", time.Since(start), advert, vip.SkewTime(100, advert))
	waitVIP(t, tp, 2, time.Second) // a released the VIP on stop
	waitServedBy(t, tp, "b", 2*time.Second)

	// The old master returns and preempts.
	a2 := startPal(t, tp, started, 1, "a", pal(200, true))
	waitState(t, a2, "MASTER", 3*time.Second)
	waitState(t, b, "BACKUP", time.Second)
	waitVIP(t, tp, 1, 2*time.Second)
	waitServedBy(t, tp, "a", 2*time.Second)
}

func TestPalisadeNoPreempt(t *testing.T) {
	tp, started := topo(t, 2)
	b := startPal(t, tp, started, 2, "b", pal(100, true))
	waitState(t, b, "MASTER", 3*time.Second)
	a := startPal(t, tp, started, 1, "a", pal(200, false))
	waitState(t, a, "BACKUP", 3*time.Second)
	// Hold for several master-down intervals: nothing may change.
	deadline := time.Now().Add(4 * vip.MasterDownInterval(200, advert))
	for time.Now().Before(deadline) {
		if a.State() != "BACKUP" || b.State() != "MASTER" {
			t.Fatalf("preempted with preempt false: a %s b %s", a.State(), b.State())
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitVIP(t, tp, 2, time.Second)
	waitServedBy(t, tp, "b", 2*time.Second)
}

func TestPalisadeFrontendTracking(t *testing.T) {
	tp, started := topo(t, 2)
	ca := pal(200, true)
	ca.Track = []vip.Track{{Frontend: "web", Weight: -150}}
	a := startPal(t, tp, started, 1, "a", ca)
	waitState(t, a, "MASTER", 3*time.Second)
	b := startPal(t, tp, started, 2, "b", pal(100, true))
	waitState(t, b, "BACKUP", 3*time.Second)
	waitServedBy(t, tp, "a", 2*time.Second)

	// All of a's backends died: its frontend is down, the VIP moves.
	if err := a.SetFrontend(false); err != nil {
		t.Fatal(err)
	}
	waitState(t, b, "MASTER", 2*time.Second)
	waitState(t, a, "BACKUP", time.Second)
	waitVIP(t, tp, 2, time.Second)
	waitServedBy(t, tp, "b", 2*time.Second)

	if err := a.SetFrontend(true); err != nil {
		t.Fatal(err)
	}
	waitState(t, a, "MASTER", 2*time.Second)
	waitVIP(t, tp, 1, time.Second)
	waitServedBy(t, tp, "a", 2*time.Second)
}

func TestSplitBrainHeals(t *testing.T) {
	tp, started := topo(t, 2)
	c := pal(200, true)
	c.GARP.Interval = 300 * time.Millisecond // a burst longer than the neighbour locktime (1s)
	a := startPal(t, tp, started, 1, "a", c)
	waitState(t, a, "MASTER", 3*time.Second)
	c.Priority = 100
	b := startPal(t, tp, started, 2, "b", c)
	waitState(t, b, "BACKUP", 3*time.Second)
	waitServedBy(t, tp, "a", 2*time.Second)
	macA, err := tp.MAC(1)
	if err != nil {
		t.Fatal(err)
	}
	macB, err := tp.MAC(2)
	if err != nil {
		t.Fatal(err)
	}

	// Cut the nodes from each other (carrier stays up, client reaches both).
	if err := tp.Isolate(true, 1, 2); err != nil {
		t.Fatal(err)
	}
	waitState(t, b, "MASTER", 2*time.Second)
	if a.State() != "MASTER" || !tp.HasVIP(1) || !tp.HasVIP(2) {
		t.Fatalf("split brain expected: a %s vip %v, b %s vip %v", a.State(), tp.HasVIP(1), b.State(), tp.HasVIP(2))
	}
	// b's GARP took the client's ARP entry.
	if !harness.WaitFor(3*time.Second, func() bool { return tp.ClientNeighbour() == macB }) {
		t.Fatalf("client ARP entry %q, expected b's %s during the split", tp.ClientNeighbour(), macB)
	}

	if err := tp.Isolate(false, 1, 2); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	mdi := vip.MasterDownInterval(100, advert)
	ok := harness.WaitFor(mdi+time.Second, func() bool { return b.State() == "BACKUP" && a.State() == "MASTER" })
	if !ok {
		t.Fatalf("not healed: a %s b %s", a.State(), b.State())
	}
	t.Logf("one MASTER again %v after the link came back (master down interval %v)", time.Since(healed), mdi)
	waitVIP(t, tp, 1, time.Second)
	if !harness.WaitFor(3*time.Second, func() bool { return tp.ClientNeighbour() == macA }) {
		t.Fatalf("client ARP entry %q, want winner a's %s", tp.ClientNeighbour(), macA)
	}
	waitServedBy(t, tp, "a", 2*time.Second)
}

func TestKeepalivedInterop(t *testing.T) {
	if why := harness.NeedRoot(); why != "" {
		t.Skip(why)
	}
	if _, err := os.Stat("/usr/sbin/keepalived"); err != nil {
		t.Skip("needs keepalived (test/install-deps.sh installs it)")
	}
	t.Run("palisade master, keepalived backup", func(t *testing.T) {
		tp, started := topo(t, 2)
		// The backup starts first: the master must preempt it.
		k := startKA(t, tp, started, 2, "k", 100)
		waitVIP(t, tp, 2, 3*time.Second)
		p := startPal(t, tp, started, 1, "p", pal(200, true))
		waitState(t, p, "MASTER", 3*time.Second)
		waitVIP(t, tp, 1, 2*time.Second)
		waitServedBy(t, tp, "p", 2*time.Second)

		p.Crash(tp)
		took := waitServedBy(t, tp, "k", 5*time.Second)
		t.Logf("keepalived serves %v after kill -9 of palisade", took)

		p2 := startPal(t, tp, started, 1, "p", pal(200, true))
		waitState(t, p2, "MASTER", 3*time.Second)
		waitVIP(t, tp, 1, 2*time.Second)
		waitServedBy(t, tp, "p", 2*time.Second)

		// Graceful: palisade's priority-0 advert makes keepalived take over at once.
		start := time.Now()
		if err := p2.Stop(3 * time.Second); err != nil {
			t.Fatal(err)
		}
		waitVIP(t, tp, 2, 2*time.Second)
		t.Logf("keepalived holds the VIP %v after SIGTERM to palisade", time.Since(start))
		_ = k
	})
	t.Run("keepalived master, palisade backup", func(t *testing.T) {
		tp, started := topo(t, 2)
		// The master starts first.
		k := startKA(t, tp, started, 1, "k", 200)
		waitVIP(t, tp, 1, 3*time.Second)
		p := startPal(t, tp, started, 2, "p", pal(100, true))
		waitState(t, p, "BACKUP", 3*time.Second)
		waitServedBy(t, tp, "k", 2*time.Second)
		// Hold: palisade accepts keepalived's adverts and stays BACKUP.
		if harness.WaitFor(3*vip.MasterDownInterval(100, advert), func() bool { return p.State() != "BACKUP" }) {
			t.Fatalf("palisade left BACKUP under a keepalived master: %v", p.States())
		}

		k.Crash(tp)
		waitState(t, p, "MASTER", 3*time.Second)
		took := waitServedBy(t, tp, "p", 5*time.Second)
		t.Logf("palisade serves %v after kill -9 of keepalived", took)

		// keepalived returns with the higher priority and preempts palisade.
		k2 := startKA(t, tp, started, 1, "k2", 200)
		waitState(t, p, "BACKUP", 5*time.Second)
		waitVIP(t, tp, 1, 2*time.Second)
		waitServedBy(t, tp, "k2", 2*time.Second)

		// keepalived stops gracefully: its priority-0 advert hands over at once.
		if err := k2.Stop(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		waitState(t, p, "MASTER", 2*time.Second)
		waitServedBy(t, tp, "p", 2*time.Second)
	})
}

func TestPalisadeVIPRemovedIsRestored(t *testing.T) {
	tp, started := topo(t, 2)
	a := startPal(t, tp, started, 1, "a", pal(200, true))
	waitState(t, a, "MASTER", 3*time.Second)
	waitVIP(t, tp, 1, 2*time.Second)
	// An operator (or a network manager) removes the VIP: it is put back.
	if err := harness.Run("ip", "-n", tp.NodeNS(1), "addr", "del", harness.VIP.String(), "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	waitVIP(t, tp, 1, 2*time.Second)
	waitServedBy(t, tp, "a", 2*time.Second)
	if a.State() != "MASTER" {
		t.Fatalf("state %s", a.State())
	}
}

func TestPalisadeLinkTracking(t *testing.T) {
	tp, started := topo(t, 2)
	// The tracked "uplink": a veth pair inside a's namespace (removed with it).
	trk, peer := tp.Prefix+"-t", tp.Prefix+"-u"
	for _, args := range [][]string{
		{"-n", tp.NodeNS(1), "link", "add", trk, "type", "veth", "peer", "name", peer},
		{"-n", tp.NodeNS(1), "link", "set", peer, "up"},
		{"-n", tp.NodeNS(1), "link", "set", trk, "up"},
	} {
		if err := harness.Run("ip", args...); err != nil {
			t.Fatal(err)
		}
	}
	ca := pal(200, true)
	ca.Track = []vip.Track{{Interface: trk, Weight: -150}}
	a := startPal(t, tp, started, 1, "a", ca)
	waitState(t, a, "MASTER", 3*time.Second)
	b := startPal(t, tp, started, 2, "b", pal(100, true))
	waitState(t, b, "BACKUP", 3*time.Second)

	// The tracked uplink goes down: a's priority drops to 50, b preempts.
	if err := harness.Run("ip", "-n", tp.NodeNS(1), "link", "set", trk, "down"); err != nil {
		t.Fatal(err)
	}
	waitState(t, b, "MASTER", 2*time.Second)
	waitState(t, a, "BACKUP", time.Second)
	waitVIP(t, tp, 2, time.Second)
	if err := harness.Run("ip", "-n", tp.NodeNS(1), "link", "set", trk, "up"); err != nil {
		t.Fatal(err)
	}
	waitState(t, a, "MASTER", 2*time.Second)
	waitVIP(t, tp, 1, time.Second)

	// a's own link loses carrier (its switch port goes down): FAULT, b serves.
	if err := harness.Run("ip", "-n", tp.NS("b"), "link", "set", tp.Port(1), "down"); err != nil {
		t.Fatal(err)
	}
	waitState(t, a, "FAULT", 2*time.Second)
	waitState(t, b, "MASTER", 2*time.Second)
	waitVIP(t, tp, 2, time.Second)
	waitServedBy(t, tp, "b", 2*time.Second)
	if err := harness.Run("ip", "-n", tp.NS("b"), "link", "set", tp.Port(1), "up"); err != nil {
		t.Fatal(err)
	}
	waitState(t, a, "MASTER", 3*time.Second)
	waitState(t, b, "BACKUP", time.Second)
	waitServedBy(t, tp, "a", 2*time.Second)
}

func TestPalisadeUnicastPeers(t *testing.T) {
	tp, started := topo(t, 2)
	ca := pal(200, true)
	ca.UnicastPeers = []netip.Addr{harness.NodeAddr(2).Addr()}
	cb := pal(100, true)
	cb.UnicastPeers = []netip.Addr{harness.NodeAddr(1).Addr()}
	a := startPal(t, tp, started, 1, "a", ca)
	waitState(t, a, "MASTER", 3*time.Second)
	b := startPal(t, tp, started, 2, "b", cb)
	waitState(t, b, "BACKUP", 3*time.Second)
	// b stays BACKUP: a's unicast adverts reach it.
	if harness.WaitFor(3*vip.MasterDownInterval(100, advert), func() bool { return b.State() != "BACKUP" }) {
		t.Fatalf("b left BACKUP: %v", b.States())
	}
	waitServedBy(t, tp, "a", 2*time.Second)
	a.Crash(tp)
	waitServedBy(t, tp, "b", 5*time.Second)
}

// Two instances per node, each node master of one VIP group (active-active).
func TestPalisadeActiveActive(t *testing.T) {
	tp, started := topo(t, 2)
	vipRed := harness.VIP
	vipBlue := netip.MustParsePrefix("198.18.0.101/24")
	mk := func(name string, vrid uint8, prio uint8, v netip.Prefix) vip.InstanceConfig {
		c := pal(prio, true)
		c.Name, c.VirtualRouterID, c.VIPs = name, vrid, []netip.Prefix{v}
		return c
	}
	a, err := tp.PalisadeMulti(1, "a", []vip.InstanceConfig{mk("red", 51, 200, vipRed), mk("blue", 52, 100, vipBlue)})
	if err != nil {
		t.Fatal(err)
	}
	*started = append(*started, a)
	b, err := tp.PalisadeMulti(2, "b", []vip.InstanceConfig{mk("red", 51, 100, vipRed), mk("blue", 52, 200, vipBlue)})
	if err != nil {
		t.Fatal(err)
	}
	*started = append(*started, b)
	ok := harness.WaitFor(5*time.Second, func() bool {
		return a.StateOf("red") == "MASTER" && a.StateOf("blue") == "BACKUP" &&
			b.StateOf("red") == "BACKUP" && b.StateOf("blue") == "MASTER"
	})
	if !ok {
		t.Fatalf("a red %s blue %s, b red %s blue %s", a.StateOf("red"), a.StateOf("blue"), b.StateOf("red"), b.StateOf("blue"))
	}
	if !harness.WaitFor(2*time.Second, func() bool {
		return tp.Holds(1, vipRed) && !tp.Holds(1, vipBlue) && tp.Holds(2, vipBlue) && !tp.Holds(2, vipRed)
	}) {
		t.Fatal("VIP groups not split between the nodes")
	}
	dl, err := tp.ClientDialer()
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Close()
	served := func(addr netip.Addr, name string) bool {
		return harness.WaitFor(3*time.Second, func() bool {
			got, err := dl.AskAddr(addr, 100*time.Millisecond)
			return err == nil && got == name
		})
	}
	if !served(vipRed.Addr(), "a") || !served(vipBlue.Addr(), "b") {
		t.Fatal("client not served by the group masters")
	}
	a.Crash(tp)
	if !served(vipRed.Addr(), "b") || !served(vipBlue.Addr(), "b") {
		t.Fatal("b did not take over both groups")
	}
}

func TestPalisadePreemptDelay(t *testing.T) {
	tp, started := topo(t, 2)
	b := startPal(t, tp, started, 2, "b", pal(100, true))
	waitState(t, b, "MASTER", 3*time.Second)
	ca := pal(200, true)
	ca.PreemptDelay = 500 * time.Millisecond
	a := startPal(t, tp, started, 1, "a", ca)
	waitState(t, a, "BACKUP", 3*time.Second)
	waitState(t, a, "MASTER", 3*time.Second)
	waited := a.StateSince("MASTER").Sub(a.StateSince("BACKUP"))
	if waited < ca.PreemptDelay {
		t.Fatalf("preempted after %v, preempt_delay is %v", waited, ca.PreemptDelay)
	}
	t.Logf("preempted %v after joining (preempt_delay %v)", waited, ca.PreemptDelay)
	waitState(t, b, "BACKUP", time.Second)
	waitVIP(t, tp, 1, time.Second)
}
