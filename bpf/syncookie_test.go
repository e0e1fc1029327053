package bpf

import (
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/palisade-lb/palisade/bpf/packet"
)

const xdpTX = 3

// runOut runs the program on frame and returns the action and the frame
// as the program left it.
func runOut(t *testing.T, f *Filter, frame []byte) (uint32, []byte) {
	t.Helper()
	opts := ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+256)}
	ret, err := f.objs.Synflood.Run(&opts)
	if err != nil {
		t.Fatalf("prog.Run: %v", err)
	}
	return ret, opts.DataOut
}

// synackFor sends syn through the filter, expects a SYN-ACK back (XDP_TX)
// and checks it against the SYN; it returns the cookie (the SYN-ACK's seq).
func synackFor(t *testing.T, f *Filter, eth packet.Ethernet, src, dst netip.Addr, sport, dport uint16, seq uint32) uint32 {
	t.Helper()
	syn := eth.Frame(packet.EtherType(src), packet.TCPPacket(src, dst, packet.TCP{
		SrcPort: sport, DstPort: dport, Seq: seq, Flags: packet.SYN, Window: 64240,
		// MSS 1400, SACK permitted, timestamps, NOP, window scale 7.
		Options: []byte{2, 4, 0x05, 0x78, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7},
	}))
	act, out := runOut(t, f, syn)
	if act != xdpTX {
		t.Fatalf("SYN %v -> %v: action %d, want XDP_TX", src, dst, act)
	}
	d, err := packet.Parse(out)
	if err != nil {
		t.Fatalf("parsing SYN-ACK %x: %v", out, err)
	}
	wantLen := 14 + 20 + 24
	if src.Is6() {
		wantLen = 14 + 40 + 24
	}
	if eth.VLAN != 0 {
		wantLen += 4
	}
	mss := uint16(1460)
	if src.Is6() {
		mss = 1440
	}
	switch {
	case len(out) != wantLen:
		t.Errorf("SYN-ACK is %d bytes, want %d", len(out), wantLen)
	case d.Eth.Src != eth.Dst || d.Eth.Dst != eth.Src || d.Eth.VLAN != eth.VLAN:
		t.Errorf("Ethernet not turned around: %+v", d.Eth)
	case d.Src != dst || d.Dst != src:
		t.Errorf("addresses not swapped: %v -> %v", d.Src, d.Dst)
	case !d.IPChecksumOK || !d.L4ChecksumOK:
		t.Errorf("bad checksums: ip %v tcp %v (%x)", d.IPChecksumOK, d.L4ChecksumOK, out)
	case d.TCP.SrcPort != dport || d.TCP.DstPort != sport:
		t.Errorf("ports not swapped: %d -> %d", d.TCP.SrcPort, d.TCP.DstPort)
	case d.TCP.Flags != packet.SYN|packet.ACK:
		t.Errorf("flags %#x, want SYN|ACK", d.TCP.Flags)
	case d.TCP.Ack != seq+1:
		t.Errorf("ack %d, want %d", d.TCP.Ack, seq+1)
	case d.MSS != mss:
		t.Errorf("MSS option %d, want %d (MTU 1500)", d.MSS, mss)
	case d.TTL != 64:
		t.Errorf("TTL %d", d.TTL)
	}
	return d.TCP.Seq
}

func TestSyncookieAnswersSYN(t *testing.T) {
	f := loadTest(t, Config{Mode: FilterSyncookie, PerSource: Limit{Rate: frozen, Burst: 100}, Ports: []uint16{80}})
	for _, tc := range []struct {
		src, dst string
		vlan     uint16
	}{{"198.18.1.1", "198.18.0.1", 0}, {"198.18.1.1", "198.18.0.1", 42}, {"2001:2::10", "2001:2::1", 0}} {
		t.Run(fmt.Sprintf("%s_vlan%d", tc.src, tc.vlan), func(t *testing.T) {
			src, dst := netip.MustParseAddr(tc.src), netip.MustParseAddr(tc.dst)
			eth := ethHdr
			eth.VLAN = tc.vlan
			plain := eth.Frame(packet.EtherType(src), packet.TCPPacket(src, dst, packet.TCP{SrcPort: 1000, DstPort: 80, Flags: packet.SYN}))
			// The first SYN for a local address and port goes to the
			// stack, so the kernel's listener is in cookie mode too.
			// The VLAN case reuses the address stamped by the first case.
			c0 := counters(t, f)
			act, _ := runOut(t, f, plain)
			if tc.vlan == 0 {
				if act != xdpPass {
					t.Fatalf("first SYN to %v:80: action %d, want PASS (stamp)", dst, act)
				}
				if c := counters(t, f); c[VerdictPass] != c0[VerdictPass]+1 {
					t.Fatalf("stamp SYN not counted as pass: %v", c)
				}
			} else if act != xdpTX {
				t.Fatalf("SYN to an already stamped address: action %d, want TX", act)
			}
			c1 := synackFor(t, f, eth, src, dst, 1000, 80, 12345)
			c2 := synackFor(t, f, eth, src, dst, 1001, 80, 12345)
			if c1 == c2 {
				t.Errorf("same cookie %#x for different source ports", c1)
			}
			// A SYN without options (54 bytes): the frame must grow.
			act, out := runOut(t, f, plain)
			if d, err := packet.Parse(out); act != xdpTX || err != nil || !d.L4ChecksumOK || d.MSS == 0 {
				t.Fatalf("option-less SYN: action %d, %+v, %v", act, d, err)
			}
		})
	}
	if c := counters(t, f); c[VerdictSyncookieSent] != 10 || c[VerdictPass] != 2 {
		t.Fatalf("syncookie_sent = %d (want 10), pass = %d (want 2)", c[VerdictSyncookieSent], c[VerdictPass])
	}
}

func TestSyncookieStillLimitsAndDenies(t *testing.T) {
	f := loadTest(t, Config{Mode: FilterSyncookie, PerSource: Limit{Rate: frozen, Burst: 2},
		Deny: []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")}, Ports: []uint16{80}})
	expect(t, f, syn("198.18.2.2", 80), xdpDrop, "denied source")
	expect(t, f, syn("198.18.3.3", 80), xdpPass, "stamp SYN")
	if act, _ := runOut(t, f, syn("198.18.3.3", 80)); act != xdpTX {
		t.Fatalf("second SYN: action %d, want TX", act)
	}
	expect(t, f, syn("198.18.3.3", 80), xdpDrop, "over the per-source limit")
	expect(t, f, syn("198.18.3.3", 81), xdpPass, "other port untouched")
}

// TestSyncookieValidatesACK needs a listener for the ACK's destination: an
// ACK that matches only a listener is a cookie candidate.
func TestSyncookieValidatesACK(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) { testSyncookieValidatesACK(t, network) })
	}
}

func testSyncookieValidatesACK(t *testing.T, network string) {
	needRoot(t)
	lo := netip.MustParseAddr("127.0.0.1")
	if network == "tcp6" {
		lo = netip.IPv6Loopback()
	}
	ln, err := net.Listen(network, netip.AddrPortFrom(lo, 0).String())
	if err != nil {
		t.Skipf("no %s loopback: %v", network, err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	f := loadTest(t, Config{Mode: FilterSyncookie, Ports: []uint16{port}})
	ack := func(sport uint16, seq, ackNo uint32, dport uint16) []byte {
		return ethHdr.Frame(packet.EtherType(lo), packet.TCPPacket(lo, lo, packet.TCP{
			SrcPort: sport, DstPort: dport, Seq: seq, Ack: ackNo, Flags: packet.ACK, Window: 502}))
	}
	expect(t, f, tcpFrame(lo, lo, 40000, port, packet.SYN), xdpPass, "stamp SYN")
	cookie := synackFor(t, f, ethHdr, lo, lo, 40001, port, 7000)

	expect(t, f, ack(40001, 7001, cookie+1, port), xdpPass, "ACK with the right cookie")
	expectCounters(t, f, map[string]uint64{DetailSyncookieOK: 1, VerdictDropSyncookie: 0})
	// The low bits of a cookie encode an MSS index, so a neighbouring
	// value can be valid too; flip high bits instead.
	expect(t, f, ack(40001, 7001, (cookie^0x5a000000)+1, port), xdpDrop, "ACK with a wrong cookie")
	expect(t, f, ack(40002, 7001, cookie+1, port), xdpDrop, "cookie replayed from another port")
	expect(t, f, ack(40001, 7001, cookie+1, port+1), xdpPass, "ACK to an unprotected port")
	expectCounters(t, f, map[string]uint64{DetailSyncookieOK: 1, VerdictDropSyncookie: 2})

	// ACKs of established connections pass (and earn trust).
	c, err := net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cp := uint16(c.LocalAddr().(*net.TCPAddr).Port)
	expect(t, f, ack(cp, 1, 1, port), xdpPass, "ACK of an established connection")
	expectCounters(t, f, map[string]uint64{VerdictDropSyncookie: 2, DetailTrustMarked: 1})
}

func sysctlIn(t *testing.T, ns string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "cat", "/proc/sys/net/ipv4/tcp_syncookies").CombinedOutput()
	if err != nil {
		t.Fatalf("reading tcp_syncookies in %s: %v: %s", ns, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestSyncookieSysctlLifecycle(t *testing.T) {
	ns := testNetns(t)
	before := sysctlIn(t, ns)
	if before == "2" {
		t.Skip("tcp_syncookies already 2 in a fresh namespace")
	}
	cfg := Config{Mode: FilterSyncookie, Ports: []uint16{80}}
	f := loadTest(t, cfg)
	var err error
	inNetns(t, ns, func() { err = f.Attach("v0", XDPAuto) })
	if err != nil {
		t.Fatal(err)
	}
	if got := sysctlIn(t, ns); got != "2" {
		t.Fatalf("attached in syncookie mode: tcp_syncookies = %s, want 2", got)
	}
	cfg.Mode = FilterRateLimit
	if err := f.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if got := sysctlIn(t, ns); got != before {
		t.Fatalf("after switching to ratelimit: tcp_syncookies = %s, want %s", got, before)
	}
	cfg.Mode = FilterSyncookie
	if err := f.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if got := sysctlIn(t, ns); got != "2" {
		t.Fatalf("back to syncookie: tcp_syncookies = %s", got)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := sysctlIn(t, ns); got != before {
		t.Fatalf("after Close: tcp_syncookies = %s, want %s", got, before)
	}
}
