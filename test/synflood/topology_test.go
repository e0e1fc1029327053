package synflood

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/palisade-lb/palisade/internal/testutil"
	"github.com/vishvananda/netns"
)

// Addresses, all inside 198.18.0.0/15. Hosts share 198.18.0.0/24 on the
// bridge; the attacker spoofs sources from 198.19.0.0/16, which the server
// routes back via the attacker host (whose kernel does not forward), so
// SYN-ACKs to spoofed sources vanish there like they would on the internet.
var (
	serverAddr   = netip.MustParseAddr("198.18.0.1")
	clientAddr   = netip.MustParseAddr("198.18.0.2")
	attackerAddr = netip.MustParseAddr("198.18.0.3")
	spoofRange   = netip.MustParsePrefix("198.19.0.0/16")
	benchRange   = netip.MustParsePrefix("198.18.0.0/15")
)

const serverPort = 8080

// topology is three hosts (server, client, attacker), each a network
// namespace with eth0, joined by a bridge living in a fourth namespace.
type topology struct {
	prefix                   string
	server, client, attacker string // namespace names
	bridgeNS                 string
	serverDev                string // the server's interface: eth0
	serverPeer               string // its veth peer, a bridge port
}

func needRoot(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-second namespace test: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and attaches XDP")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("iproute2 (ip) not installed: run test/install-deps.sh")
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newTopology builds the hosts with a random name prefix; everything is
// deleted on cleanup (deleting a namespace deletes its links).
func newTopology(t *testing.T) *topology {
	t.Helper()
	needRoot(t)
	b := make([]byte, 3)
	rand.Read(b)
	p := "sf" + hex.EncodeToString(b)
	tp := &topology{prefix: p, server: p + "-srv", client: p + "-cli", attacker: p + "-atk", bridgeNS: p + "-br", serverDev: "eth0"}
	for _, ns := range []string{tp.bridgeNS, tp.server, tp.client, tp.attacker} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	br := p + "br"
	run(t, "ip", "-n", tp.bridgeNS, "link", "add", br, "type", "bridge", "stp_state", "0")
	run(t, "ip", "-n", tp.bridgeNS, "link", "set", br, "up")
	hosts := []struct {
		ns   string
		addr netip.Addr
		tag  string
	}{{tp.server, serverAddr, "s"}, {tp.client, clientAddr, "c"}, {tp.attacker, attackerAddr, "a"}}
	for _, h := range hosts {
		port := p + h.tag
		run(t, "ip", "-n", tp.bridgeNS, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
		run(t, "ip", "-n", tp.bridgeNS, "link", "set", port, "master", br, "up")
		run(t, "ip", "-n", h.ns, "addr", "add", h.addr.String()+"/24", "dev", "eth0")
		run(t, "ip", "-n", h.ns, "link", "set", "eth0", "up")
	}
	run(t, "ip", "-n", tp.server, "route", "add", spoofRange.String(), "via", attackerAddr.String())
	tp.serverPeer = p + "s"
	return tp
}

// inNetns runs fn on an OS thread switched into namespace ns and switches
// back; if that fails the thread is left locked and dies with its goroutine.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		h, err := netns.GetFromName(ns)
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("returning from netns %s: %w", ns, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// lockIntoNetns moves the calling goroutine's thread into ns for good; the
// goroutine must not unlock it, so the thread is discarded when it exits.
func lockIntoNetns(ns string) error {
	runtime.LockOSThread()
	h, err := netns.GetFromName(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	return netns.Set(h)
}

// netstat reads TcpExt counters of namespace ns.
func netstat(ns string) (map[string]uint64, error) {
	var out map[string]uint64
	err := inNetns(ns, func() error {
		b, err := os.ReadFile("/proc/thread-self/net/netstat")
		if err != nil {
			return err
		}
		out = testutil.ProcNetCounters(string(b), "TcpExt")
		return nil
	})
	return out, err
}

// softirqSeconds is the host-wide softirq CPU time from /proc/stat.
func softirqSeconds() (float64, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 7 && f[0] == "cpu" {
			v, err := strconv.ParseFloat(f[7], 64)
			if err != nil {
				return 0, err
			}
			return v / 100, nil // USER_HZ is 100 on Linux
		}
	}
	return 0, fmt.Errorf("no cpu line in /proc/stat")
}
