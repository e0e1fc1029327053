package bpf

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/palisade-lb/palisade/bpf/packet"
	"github.com/prometheus/client_golang/prometheus"
)

// Addresses from the benchmarking ranges: 198.18.0.0/15 and 2001:2::/48.
var (
	hostV4 = netip.MustParseAddr("198.18.0.1")
	hostV6 = netip.MustParseAddr("2001:2::1")
	ethHdr = packet.Ethernet{Dst: [6]byte{2, 0, 0, 0, 0, 1}, Src: [6]byte{2, 0, 0, 0, 0, 2}}
)

const (
	xdpDrop = 1
	xdpPass = 2
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads BPF programs and runs them with BPF_PROG_TEST_RUN")
	}
}

func loadTest(t *testing.T, cfg Config) *Filter {
	t.Helper()
	needRoot(t)
	f, err := Load(cfg)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return f
}

// run runs the program once on frame and checks that it left the frame
// unmodified; it returns the XDP action.
func run(t *testing.T, f *Filter, frame []byte) uint32 {
	t.Helper()
	out := make([]byte, len(frame)+256)
	opts := ebpf.RunOptions{Data: frame, DataOut: out}
	ret, err := f.objs.Synflood.Run(&opts)
	if err != nil {
		t.Fatalf("prog.Run: %v", err)
	}
	if !bytes.Equal(opts.DataOut, frame) {
		t.Fatalf("program modified the frame:\n in  %x\n out %x", frame, opts.DataOut)
	}
	return ret
}

func tcpFrame(src, dst netip.Addr, sport, dport uint16, flags uint8) []byte {
	seg := packet.TCP{SrcPort: sport, DstPort: dport, Seq: 1000, Flags: flags, Window: 65535}
	if flags&packet.ACK != 0 {
		seg.Ack = 2000
	}
	return ethHdr.Frame(packet.EtherType(src), packet.TCPPacket(src, dst, seg))
}

func syn(src string, dport uint16) []byte {
	a := netip.MustParseAddr(src)
	dst := hostV4
	if a.Is6() {
		dst = hostV6
	}
	return tcpFrame(a, dst, 40000, dport, packet.SYN)
}

func verdictName(v uint32) string {
	switch v {
	case xdpDrop:
		return "DROP"
	case xdpPass:
		return "PASS"
	}
	return fmt.Sprintf("action %d", v)
}

func expect(t *testing.T, f *Filter, frame []byte, want uint32, what string) {
	t.Helper()
	if got := run(t, f, frame); got != want {
		t.Fatalf("%s: got %s, want %s", what, verdictName(got), verdictName(want))
	}
}

func counters(t *testing.T, f *Filter) map[string]uint64 {
	t.Helper()
	m, err := f.Counters()
	if err != nil {
		t.Fatalf("Counters: %v", err)
	}
	return m
}

func expectCounters(t *testing.T, f *Filter, want map[string]uint64) {
	t.Helper()
	got := counters(t, f)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("counter %s = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
}

// A rate this low refills one token every 1000 s, so results cannot depend
// on how fast the test runs.
const frozen = 0.001

func TestPerSourceRate(t *testing.T) {
	f := loadTest(t, Config{PerSource: Limit{Rate: frozen, Burst: 3}, Ports: []uint16{80}})
	for i := range 3 {
		expect(t, f, syn("198.18.1.1", 80), xdpPass, fmt.Sprintf("SYN %d within burst", i+1))
	}
	expect(t, f, syn("198.18.1.1", 80), xdpDrop, "SYN over the rate")
	expect(t, f, syn("198.18.1.1", 80), xdpDrop, "SYN over the rate")
	expect(t, f, syn("198.18.1.2", 80), xdpPass, "other source has its own bucket")
	expectCounters(t, f, map[string]uint64{
		VerdictPass: 4, VerdictDropRate: 2, DetailDropRateSource: 2, DetailDropRatePort: 0, VerdictDropDeny: 0,
	})
}

func TestPerSourceRefills(t *testing.T) {
	// 1000/s with burst 1: after a drop, the bucket refills within ~1 ms.
	f := loadTest(t, Config{PerSource: Limit{Rate: 1000, Burst: 1}, Ports: []uint16{80}})
	expect(t, f, syn("198.18.1.1", 80), xdpPass, "first SYN")
	passed := false
	for i := 0; i < 1_000_000 && !passed; i++ {
		passed = run(t, f, syn("198.18.1.1", 80)) == xdpPass
	}
	if !passed {
		t.Fatal("bucket never refilled")
	}
	if c := counters(t, f); c[VerdictPass] != 2 {
		t.Fatalf("pass = %d, want 2", c[VerdictPass])
	}
}

func TestDenyAndAllow(t *testing.T) {
	f := loadTest(t, Config{
		PerSource: Limit{Rate: frozen, Burst: 1},
		PerPort:   Limit{Rate: frozen, Burst: 1},
		Allow:     []netip.Prefix{netip.MustParsePrefix("198.18.3.0/24"), netip.MustParsePrefix("198.18.2.128/25"), netip.MustParsePrefix("2001:2:0:3::/64")},
		Deny:      []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24"), netip.MustParsePrefix("2001:2:0:2::/64")},
		Ports:     []uint16{443},
	})
	expect(t, f, syn("198.18.2.7", 443), xdpDrop, "denied source")
	expect(t, f, syn("198.18.2.200", 443), xdpDrop, "deny wins over a longer allow prefix")
	expect(t, f, syn("2001:2:0:2::99", 443), xdpDrop, "denied IPv6 source")
	for i := range 20 {
		expect(t, f, syn("198.18.3.9", 443), xdpPass, fmt.Sprintf("allowed source, SYN %d", i+1))
		expect(t, f, syn("2001:2:0:3::9", 443), xdpPass, fmt.Sprintf("allowed IPv6 source, SYN %d", i+1))
	}
	expect(t, f, syn("198.18.4.1", 443), xdpPass, "unlisted source, first SYN")
	expect(t, f, syn("198.18.4.1", 443), xdpDrop, "unlisted source over its limit")
	expectCounters(t, f, map[string]uint64{
		VerdictDropDeny: 3, DetailPassAllow: 40, VerdictPass: 41, VerdictDropRate: 1,
	})
}

func TestUntouchedTraffic(t *testing.T) {
	f := loadTest(t, Config{PerSource: Limit{Rate: frozen, Burst: 1}, PerPort: Limit{Rate: frozen, Burst: 1},
		Deny:  []netip.Prefix{netip.MustParsePrefix("198.18.9.0/24"), netip.MustParsePrefix("2001:2:0:9::/64")},
		Ports: []uint16{80}})
	for _, src := range []string{"198.18.9.1", "2001:2:0:9::1"} {
		a := netip.MustParseAddr(src)
		dst := hostV4
		if a.Is6() {
			dst = hostV6
		}
		frames := map[string][]byte{
			"ACK":            tcpFrame(a, dst, 40000, 80, packet.ACK),
			"SYN-ACK":        tcpFrame(a, dst, 40000, 80, packet.SYN|packet.ACK),
			"RST":            tcpFrame(a, dst, 40000, 80, packet.RST),
			"FIN-ACK":        tcpFrame(a, dst, 40000, 80, packet.FIN|packet.ACK),
			"SYN other port": tcpFrame(a, dst, 40000, 81, packet.SYN),
			"UDP":            ethHdr.Frame(packet.EtherType(a), packet.IP(a, dst, packet.ProtoUDP, packet.UDP(a, dst, 40000, 80, []byte("hi")))),
		}
		if a.Is4() {
			frames["ICMP"] = ethHdr.Frame(packet.EtherTypeIPv4, packet.IP(a, dst, packet.ProtoICMP, packet.ICMPEcho(a, dst, 1, 1)))
			frames["ARP"] = ethHdr.Frame(packet.EtherTypeARP, packet.ARPRequest(ethHdr.Src, a, dst))
			frames["truncated TCP"] = tcpFrame(a, dst, 40000, 80, packet.SYN)[:14+20+10]
			frag := tcpFrame(a, dst, 40000, 80, packet.SYN)
			frag[14+6] |= 0x01 // fragment offset 256: no TCP header here
			frames["non-first fragment"] = frag
		} else {
			frames["ICMPv6"] = ethHdr.Frame(packet.EtherTypeIPv6, packet.IP(a, dst, packet.ProtoICMPv6, packet.ICMPEcho(a, dst, 1, 1)))
			frames["truncated TCP"] = tcpFrame(a, dst, 40000, 80, packet.SYN)[:14+40+10]
		}
		for name, fr := range frames {
			for range 3 {
				expect(t, f, fr, xdpPass, src+" "+name)
			}
		}
	}
	expect(t, f, ethHdr.Frame(0x88cc, make([]byte, 46)), xdpPass, "LLDP")
	expect(t, f, make([]byte, 14), xdpPass, "runt")
	expectCounters(t, f, map[string]uint64{VerdictPass: 0, VerdictDropRate: 0, VerdictDropDeny: 0})
}

func TestIPv6KeyedBy64(t *testing.T) {
	f := loadTest(t, Config{PerSource: Limit{Rate: frozen, Burst: 2}, Ports: []uint16{80}})
	expect(t, f, syn("2001:2:0:1::1", 80), xdpPass, "first SYN")
	expect(t, f, syn("2001:2:0:1::2", 80), xdpPass, "same /64, second SYN")
	expect(t, f, syn("2001:2:0:1:ffff::3", 80), xdpDrop, "same /64 over the rate")
	expect(t, f, syn("2001:2:0:2::1", 80), xdpPass, "other /64")
	// ::ffff:198.18.1.1 must not share a bucket with 198.18.1.1's key space
	// in a way that collides with real IPv6 sources.
	expect(t, f, syn("198.18.1.1", 80), xdpPass, "IPv4 source")
	expectCounters(t, f, map[string]uint64{VerdictPass: 4, DetailDropRateSource: 1})
}

func TestIPv6ExtensionHeaders(t *testing.T) {
	f := loadTest(t, Config{Deny: []netip.Prefix{netip.MustParsePrefix("2001:2::/48")}, Ports: []uint16{80}})
	src, dst := netip.MustParseAddr("2001:2::99"), hostV6
	seg := packet.TCP{SrcPort: 1234, DstPort: 80, Flags: packet.SYN}.Marshal(src, dst)
	// Destination Options (8 bytes: next=TCP, len=0, PadN) before TCP.
	dstopts := append([]byte{packet.ProtoTCP, 0, 1, 4, 0, 0, 0, 0}, seg...)
	frame := ethHdr.Frame(packet.EtherTypeIPv6, packet.IP(src, dst, 60, dstopts))
	expect(t, f, frame, xdpDrop, "denied SYN behind a Destination Options header")
	// Non-first fragment: no TCP header to judge.
	frag := append([]byte{packet.ProtoTCP, 0, 0x01, 0x00, 0, 0, 0, 1}, seg...)
	expect(t, f, ethHdr.Frame(packet.EtherTypeIPv6, packet.IP(src, dst, 44, frag)), xdpPass, "non-first fragment")
}

func TestVLANTagged(t *testing.T) {
	f := loadTest(t, Config{PerSource: Limit{Rate: frozen, Burst: 1}, Ports: []uint16{80}})
	tagged := ethHdr
	tagged.VLAN = 100
	src := netip.MustParseAddr("198.18.5.5")
	frame := tagged.Frame(packet.EtherTypeIPv4, packet.TCPPacket(src, hostV4, packet.TCP{SrcPort: 1, DstPort: 80, Flags: packet.SYN}))
	expect(t, f, frame, xdpPass, "tagged SYN within burst")
	expect(t, f, frame, xdpDrop, "tagged SYN over the rate")
}

func TestPerPortBudgetCapsDistinctSources(t *testing.T) {
	f := loadTest(t, Config{
		PerSource: Limit{Rate: frozen, Burst: 1},
		PerPort:   Limit{Rate: frozen, Burst: 5},
		Ports:     []uint16{80, 443},
	})
	passed := 0
	for i := range 200 {
		src := netip.AddrFrom4([4]byte{198, 19, byte(i / 250), byte(i % 250)}).String()
		if run(t, f, syn(src, 80)) == xdpPass {
			passed++
		}
	}
	if passed != 5 {
		t.Fatalf("%d of 200 distinct sources passed, want the per-port burst of 5", passed)
	}
	expect(t, f, syn("198.18.7.7", 443), xdpPass, "other port has its own budget")
	expectCounters(t, f, map[string]uint64{VerdictPass: 6, DetailDropRatePort: 195, DetailDropRateSource: 0})
}

// TestTrustedSourceBypassesPortBudget uses a real loopback connection: an
// ACK of an established connection marks its source trusted, after which
// its SYNs skip the (exhausted) per-port budget.
func TestTrustedSourceBypassesPortBudget(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			host := "127.0.0.1"
			if network == "tcp6" {
				host = "::1"
			}
			ln, err := net.Listen(network, net.JoinHostPort(host, "0"))
			if err != nil {
				t.Skipf("no %s loopback: %v", network, err)
			}
			defer ln.Close()
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := ln.Accept()
				if err == nil {
					accepted <- c
				}
				close(accepted)
			}()
			cli, err := net.Dial(network, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			if srv := <-accepted; srv != nil {
				defer srv.Close()
			}
			la := cli.LocalAddr().(*net.TCPAddr).AddrPort()
			ra := ln.Addr().(*net.TCPAddr).AddrPort()

			f := loadTest(t, Config{PerPort: Limit{Rate: frozen, Burst: 1}, Ports: []uint16{ra.Port()}})
			stranger := "198.18.8.8"
			if network == "tcp6" {
				stranger = "2001:2:0:8::8"
			}
			expect(t, f, syn(stranger, ra.Port()), xdpPass, "first SYN takes the port's only token")
			expect(t, f, syn(stranger, ra.Port()), xdpDrop, "budget exhausted")
			loopSyn := tcpFrame(la.Addr(), ra.Addr(), 50000, ra.Port(), packet.SYN)
			expect(t, f, loopSyn, xdpDrop, "not yet trusted")

			// A spoofed ACK that matches no connection earns nothing.
			expect(t, f, tcpFrame(la.Addr(), ra.Addr(), la.Port()+1, ra.Port(), packet.ACK), xdpPass, "stray ACK")
			expect(t, f, loopSyn, xdpDrop, "stray ACK must not grant trust")

			expect(t, f, tcpFrame(la.Addr(), ra.Addr(), la.Port(), ra.Port(), packet.ACK), xdpPass, "ACK of the established connection")
			expectCounters(t, f, map[string]uint64{DetailTrustMarked: 1})
			expect(t, f, loopSyn, xdpPass, "trusted source skips the exhausted port budget")
			expect(t, f, syn(stranger, ra.Port()), xdpDrop, "strangers still capped")
		})
	}
}

func TestUpdateWithoutReload(t *testing.T) {
	cfg := Config{PerSource: Limit{Rate: frozen, Burst: 1}, PerPort: Limit{Rate: frozen, Burst: 2},
		Deny: []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")}, Ports: []uint16{80, 8080}}
	f := loadTest(t, cfg)
	expect(t, f, syn("198.18.1.1", 8080), xdpPass, "port 8080, first source")
	expect(t, f, syn("198.18.2.1", 80), xdpDrop, "denied")

	cfg.Deny = []netip.Prefix{netip.MustParsePrefix("198.18.3.0/24")}
	cfg.Ports = []uint16{8080, 9090}
	if err := f.Update(cfg); err != nil {
		t.Fatalf("Update: %v", err)
	}
	expect(t, f, syn("198.18.2.1", 8080), xdpPass, "no longer denied (takes 8080's last token)")
	expect(t, f, syn("198.18.3.1", 9090), xdpDrop, "newly denied")
	expect(t, f, syn("198.18.4.1", 8080), xdpDrop, "8080 budget state kept across Update")
	for range 5 {
		expect(t, f, syn("198.18.1.1", 80), xdpPass, "port 80 no longer protected")
	}
	expect(t, f, syn("198.18.4.2", 9090), xdpPass, "new port protected with a fresh budget")
	expect(t, f, syn("198.18.4.3", 9090), xdpPass, "new port, second token")
	expect(t, f, syn("198.18.4.4", 9090), xdpDrop, "new port budget is burst 2")

	bad := cfg
	bad.Ports = []uint16{0}
	if err := f.Update(bad); err == nil {
		t.Fatal("Update accepted port 0")
	}
	expect(t, f, syn("198.18.3.2", 9090), xdpDrop, "config unchanged after a rejected Update")
	if got := counters(t, f); got[VerdictPass] != 4 || got[VerdictDropDeny] != 3 {
		t.Fatalf("counters after update: %v", got)
	}
}

func TestCollector(t *testing.T) {
	f := loadTest(t, Config{PerSource: Limit{Rate: frozen, Burst: 1}, Deny: []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")}, Ports: []uint16{80}})
	reg := prometheus.NewPedanticRegistry()
	c, err := NewCollector(reg)
	if err != nil {
		t.Fatal(err)
	}
	gather := func() map[string]float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, mf := range mfs {
			if mf.GetName() != "palisade_synflood_packets_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
		return out
	}
	if got := gather(); len(got) != 0 {
		t.Fatalf("no filter set, but exported %v", got)
	}
	c.SetFilter(f)
	run(t, f, syn("198.18.1.1", 80))
	run(t, f, syn("198.18.1.1", 80))
	run(t, f, syn("198.18.1.1", 80))
	run(t, f, syn("198.18.2.1", 80))
	got := gather()
	want := map[string]float64{"pass": 1, "drop_rate": 2, "drop_deny": 1, "syncookie_sent": 0, "drop_syncookie": 0}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("exported %v, want %v", got, want)
	}
	f.Close()
	if got := gather(); len(got) != 0 {
		t.Fatalf("closed filter, but exported %v", got)
	}
}

func TestConfigValidation(t *testing.T) {
	bad := map[string]Config{
		"negative rate": {PerSource: Limit{Rate: -1}},
		"NaN rate":      {PerPort: Limit{Rate: nan()}},
		"huge rate":     {PerPort: Limit{Rate: 2e9}},
		"port 0":        {Ports: []uint16{80, 0}},
		"bad prefix":    {Allow: []netip.Prefix{{}}},
		"too many":      {Ports: manyPorts(MaxPorts + 1)},
	}
	for name, cfg := range bad {
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "invalid synflood config") {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	err := Config{PerSource: Limit{Rate: -1}, Ports: []uint16{0}, Mode: "turbo"}.Validate()
	for _, want := range []string{"per_source rate", "port 0", `mode "turbo"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("combined errors %v: missing %q", err, want)
		}
	}
	c, err := Config{
		PerSource: Limit{Rate: 100, Burst: 200},
		PerPort:   Limit{Rate: 0.5},
		Deny:      []netip.Prefix{netip.MustParsePrefix("::ffff:198.18.0.0/111"), netip.MustParsePrefix("2001:2::1/48")},
		Ports:     []uint16{443, 80, 443},
		TrustTTL:  -1,
	}.compile()
	if err != nil {
		t.Fatal(err)
	}
	if c.kcfg.SrcIntervalNs != 10_000_000 || c.kcfg.SrcToleranceNs != 199*10_000_000 {
		t.Errorf("per-source: interval %d tolerance %d", c.kcfg.SrcIntervalNs, c.kcfg.SrcToleranceNs)
	}
	if c.kcfg.PortIntervalNs != 2e9 || c.kcfg.PortToleranceNs != 0 {
		t.Errorf("per-port (burst defaults to 1): interval %d tolerance %d", c.kcfg.PortIntervalNs, c.kcfg.PortToleranceNs)
	}
	if c.kcfg.TrustTtlNs != 0 {
		t.Errorf("negative TrustTTL should disable trust, got %d", c.kcfg.TrustTtlNs)
	}
	if len(c.denyV4) != 1 || c.denyV4[0].Prefixlen != 15 || c.denyV4[0].Addr != [4]byte{198, 18, 0, 0} {
		t.Errorf("mapped prefix not turned into IPv4: %+v", c.denyV4)
	}
	if len(c.denyV6) != 1 || c.denyV6[0].Prefixlen != 48 || c.denyV6[0].Addr[15] != 0 {
		t.Errorf("IPv6 prefix not masked: %+v", c.denyV6)
	}
	if fmt.Sprint(c.ports) != "[80 443]" {
		t.Errorf("ports = %v", c.ports)
	}
	if c, _ := (Config{}).compile(); c.kcfg.TrustTtlNs != uint64(DefaultTrustTTL) {
		t.Errorf("zero TrustTTL: %d", c.kcfg.TrustTtlNs)
	}
}

func nan() float64 { var z float64; return z / z }

func manyPorts(n int) []uint16 {
	p := make([]uint16, n)
	for i := range p {
		p[i] = uint16(i + 1)
	}
	return p
}
