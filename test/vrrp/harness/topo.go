// Package harness builds the multi-host VRRP test topology in network
// namespaces and runs palisade and keepalived nodes in it. It is shared by
// the tests in test/vrrp and by the failover benchmark.
//
// Topology (prefix P random per run):
//
//	P-b: bridge "P-br" with ports P-p1, P-p2, P-pc (and P-p3 if asked)
//	P-1: eth0 198.18.0.1/24   P-2: eth0 198.18.0.2/24   P-c: eth0 198.18.0.9/24
//
// The VIP is 198.18.0.100/24. Nothing outside 198.18.0.0/24 is used.
package harness

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/palisade-lb/palisade/vip"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Addresses of the topology.
var (
	VIP        = netip.MustParsePrefix("198.18.0.100/24")
	ClientAddr = netip.MustParsePrefix("198.18.0.9/24")
)

// NodeAddr is the primary address of node i (1-based).
func NodeAddr(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}), 24)
}

// ServicePort is the TCP port the nodes' test servers listen on, on the VIP.
const ServicePort = 8080

// Topology is one bridge with n nodes and a client, each in its own namespace.
type Topology struct {
	Prefix string
	Nodes  int
	Dir    string

	mu       sync.Mutex
	cleanups []func()
	closed   bool
}

// NeedRoot returns a reason to skip when the topology cannot be built.
func NeedRoot() string {
	if os.Geteuid() != 0 {
		return "needs root: creates network namespaces"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "needs iproute2 (ip)"
	}
	return ""
}

// New builds the topology with n nodes (2 or 3). On error everything
// created so far is removed.
func New(n int) (*Topology, error) {
	var rb [3]byte
	if _, err := rand.Read(rb[:]); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "vrrp-topo-")
	if err != nil {
		return nil, err
	}
	t := &Topology{Prefix: "v" + hex.EncodeToString(rb[:]), Nodes: n, Dir: dir}
	t.onClose(func() { os.RemoveAll(dir) })
	if err := t.build(); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// NS returns the namespace name of node i (1-based), "c" for the client, "b" for the bridge.
func (t *Topology) NS(who string) string { return t.Prefix + "-" + who }

// NodeNS returns the namespace of node i.
func (t *Topology) NodeNS(i int) string { return t.NS(fmt.Sprint(i)) }

// Port returns the name of node i's bridge port (in the bridge namespace).
func (t *Topology) Port(i int) string { return fmt.Sprintf("%s-p%d", t.Prefix, i) }

func (t *Topology) build() error {
	ip := func(args ...string) error { return Run("ip", args...) }
	b := t.NS("b")
	hosts := []string{"c"}
	for i := 1; i <= t.Nodes; i++ {
		hosts = append(hosts, fmt.Sprint(i))
	}
	for _, h := range append([]string{"b"}, hosts...) {
		ns := t.NS(h)
		if err := ip("netns", "add", ns); err != nil {
			return err
		}
		t.onClose(func() { _ = Run("ip", "netns", "del", ns) })
		if err := ip("-n", ns, "link", "set", "lo", "up"); err != nil {
			return err
		}
	}
	br := t.Prefix + "-br"
	if err := ip("-n", b, "link", "add", br, "type", "bridge", "forward_delay", "0", "stp_state", "0"); err != nil {
		return err
	}
	if err := ip("-n", b, "link", "set", br, "up"); err != nil {
		return err
	}
	for _, h := range hosts {
		port := t.Prefix + "-p" + h
		tmp := t.Prefix + "-e" + h
		// Create the pair inside the bridge namespace so nothing ever
		// appears in the caller's namespace.
		if err := ip("-n", b, "link", "add", port, "type", "veth", "peer", "name", tmp); err != nil {
			return err
		}
		if err := ip("-n", b, "link", "set", tmp, "netns", t.NS(h)); err != nil {
			return err
		}
		ns := t.NS(h)
		addr := ClientAddr
		if h != "c" {
			var i int
			fmt.Sscan(h, &i)
			addr = NodeAddr(i)
		}
		for _, args := range [][]string{
			{"-n", ns, "link", "set", tmp, "name", "eth0"},
			{"-n", ns, "addr", "add", addr.String(), "dev", "eth0"},
			{"-n", ns, "link", "set", "eth0", "up"},
			{"-n", b, "link", "set", port, "master", br},
			{"-n", b, "link", "set", port, "up"},
		} {
			if err := ip(args...); err != nil {
				return err
			}
		}
	}
	return nil
}

func (t *Topology) onClose(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

// OnClose registers f to run (before the namespaces go) on Close.
func (t *Topology) OnClose(f func()) { t.onClose(f) }

// Close stops everything started in the topology and deletes it. Idempotent.
func (t *Topology) Close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	c := t.cleanups
	t.mu.Unlock()
	for i := len(c) - 1; i >= 0; i-- {
		c[i]()
	}
}

// Run runs a command and returns its combined output in the error.
func Run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Output runs a command and returns its output.
func Output(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Isolate cuts (or restores) node i from the other nodes while keeping it
// connected to the client and its carrier up: bridge port isolation, so both
// nodes keep seeing a healthy link (a split brain, not a link failure).
func (t *Topology) Isolate(on bool, nodes ...int) error {
	v := "off"
	if on {
		v = "on"
	}
	for _, i := range nodes {
		if err := Run("bridge", "-n", t.NS("b"), "link", "set", "dev", t.Port(i), "isolated", v); err != nil {
			return err
		}
	}
	return nil
}

// HasVIP reports whether node i holds the VIP.
func (t *Topology) HasVIP(i int) bool { return t.Holds(i, VIP) }

// Holds reports whether node i has address p on eth0.
func (t *Topology) Holds(i int, p netip.Prefix) bool {
	out, err := Output("ip", "-n", t.NodeNS(i), "-4", "-o", "addr", "show", "dev", "eth0")
	return err == nil && strings.Contains(out, " "+p.String()+" ")
}

// MAC returns node i's eth0 hardware address.
func (t *Topology) MAC(i int) (string, error) {
	out, err := Output("ip", "-n", t.NodeNS(i), "-o", "link", "show", "dev", "eth0")
	if err != nil {
		return "", err
	}
	f := strings.Fields(out)
	for j := range f {
		if f[j] == "link/ether" && j+1 < len(f) {
			return f[j+1], nil
		}
	}
	return "", fmt.Errorf("no MAC in %q", out)
}

// ClientNeighbour returns the client's ARP entry for the VIP ("" if none).
func (t *Topology) ClientNeighbour() string {
	out, err := Output("ip", "-n", t.NS("c"), "neigh", "show", VIP.Addr().String(), "dev", "eth0")
	if err != nil {
		return ""
	}
	f := strings.Fields(out)
	for j := range f {
		if f[j] == "lladdr" && j+1 < len(f) {
			return f[j+1]
		}
	}
	return ""
}

// Dialer connects from the client namespace.
type Dialer struct {
	ns netns.NsHandle
}

// ClientDialer opens the client namespace for dialing. Close it after use.
func (t *Topology) ClientDialer() (*Dialer, error) {
	ns, err := netns.GetFromName(t.NS("c"))
	if err != nil {
		return nil, err
	}
	return &Dialer{ns: ns}, nil
}

// Close releases the namespace handle.
func (d *Dialer) Close() error { return d.ns.Close() }

// Ask connects to the VIP's service from the client namespace and returns
// the name the node answers with.
func (d *Dialer) Ask(timeout time.Duration) (string, error) {
	return d.AskAddr(VIP.Addr(), timeout)
}

// AskAddr is Ask for another virtual address.
func (d *Dialer) AskAddr(addr netip.Addr, timeout time.Duration) (string, error) {
	c, err := d.dial(addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout + 200*time.Millisecond))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if n > 0 {
		return strings.TrimSpace(string(buf[:n])), nil
	}
	if err == nil {
		err = errors.New("empty answer")
	}
	return "", err
}

// dial creates the socket inside the client namespace.
func (d *Dialer) dial(addr netip.Addr, timeout time.Duration) (net.Conn, error) {
	return openIn(d.ns, func() (net.Conn, error) {
		return net.DialTimeout("tcp4", netip.AddrPortFrom(addr, ServicePort).String(), timeout)
	})
}

// openIn runs open with the calling thread moved into ns, for the socket()
// call only. If the thread cannot be moved back it stays locked (it dies
// with its goroutine) and what open returned is closed.
func openIn[T io.Closer](ns netns.NsHandle, open func() (T, error)) (T, error) {
	var zero T
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return zero, err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		return zero, err
	}
	v, err := open()
	if serr := netns.Set(orig); serr != nil {
		runtime.LockOSThread() // never reuse this thread
		if err == nil {
			v.Close()
		}
		return zero, fmt.Errorf("restoring namespace: %w", serr)
	}
	return v, err
}

// WaitFor polls cond every 2ms until it holds or d passes.
func WaitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// AdvertWatcher receives the VRRP adverts the client host sees.
type AdvertWatcher struct {
	f *os.File
}

// WatchAdverts opens a raw protocol-112 socket in the client namespace,
// joined to 224.0.0.18 on its eth0.
func (d *Dialer) WatchAdverts() (*AdvertWatcher, error) {
	return openIn(d.ns, openWatcher)
}

func openWatcher() (*AdvertWatcher, error) {
	ifi, err := net.InterfaceByName("eth0")
	if err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, vip.IPProtocol)
	if err != nil {
		return nil, err
	}
	m := &unix.IPMreqn{Multiaddr: vip.MulticastGroup.As4(), Ifindex: int32(ifi.Index)}
	if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, m); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &AdvertWatcher{f: os.NewFile(uintptr(fd), "advert-watcher")}, nil
}

// Next returns the next valid advert from src (any source if invalid) with
// priority > 0, and when it arrived, waiting at most d.
func (w *AdvertWatcher) Next(src netip.Addr, d time.Duration) (vip.Packet, time.Time, error) {
	deadline := time.Now().Add(d)
	if err := w.f.SetReadDeadline(deadline); err != nil {
		return vip.Packet{}, time.Time{}, err
	}
	buf := make([]byte, 2048)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			return vip.Packet{}, time.Time{}, err
		}
		at := time.Now()
		p, r := vip.DecodeIPv4(buf[:n])
		if r == vip.ReasonNone && p.Advert.Priority > 0 && (!src.IsValid() || p.Src == src) {
			return p, at, nil
		}
	}
}

// Close closes the socket.
func (w *AdvertWatcher) Close() error { return w.f.Close() }
