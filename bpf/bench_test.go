package bpf

import (
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/palisade-lb/palisade/bpf/packet"
)

func isRoot() bool { return os.Geteuid() == 0 }

// BenchmarkProgram measures the program's cost per frame in the kernel
// (BPF_PROG_TEST_RUN with repeat, so no driver or stack cost included).
func BenchmarkProgram(b *testing.B) {
	if !isRoot() {
		b.Skip("needs root: runs the XDP program with BPF_PROG_TEST_RUN")
	}
	src := netip.MustParseAddr("198.19.1.1")
	synTo := func(port uint16) []byte {
		return ethHdr.Frame(packet.EtherTypeIPv4, packet.TCPPacket(src, hostV4, packet.TCP{
			SrcPort: 1234, DstPort: port, Seq: 1, Flags: packet.SYN, Window: 64240,
			Options: []byte{2, 4, 5, 180, 4, 2, 1, 1}}))
	}
	udp := ethHdr.Frame(packet.EtherTypeIPv4, packet.IP(src, hostV4, packet.ProtoUDP, packet.UDP(src, hostV4, 1, 80, make([]byte, 64))))
	cases := []struct {
		name  string
		cfg   Config
		frame []byte
		want  uint32
	}{
		{"udp_pass", Config{Ports: []uint16{80}}, udp, xdpPass},
		{"syn_other_port_pass", Config{Ports: []uint16{80}}, synTo(81), xdpPass},
		{"syn_deny_drop", Config{Deny: []netip.Prefix{netip.MustParsePrefix("198.19.0.0/16")}, Ports: []uint16{80}}, synTo(80), xdpDrop},
		{"syn_per_source_drop", Config{PerSource: Limit{Rate: frozen, Burst: 1}, Ports: []uint16{80}}, synTo(80), xdpDrop},
		{"syn_per_port_drop", Config{PerPort: Limit{Rate: frozen, Burst: 1}, Ports: []uint16{80}}, synTo(80), xdpDrop},
		{"syn_syncookie_tx", Config{Mode: FilterSyncookie, Ports: []uint16{80}}, synTo(80), xdpTX},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			f, err := Load(c.cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			// Warm up: the first SYNs take the burst / stamp.
			for range 2 {
				if _, err := f.objs.Synflood.Run(&ebpf.RunOptions{Data: c.frame}); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			var ret uint32
			var per time.Duration
			if c.want == xdpTX {
				// With repeat the kernel reruns the program on the frame
				// it already turned into a SYN-ACK: run one at a time and
				// average the in-kernel durations instead.
				var total time.Duration
				for range b.N {
					r, d, err := f.objs.Synflood.Benchmark(c.frame, 1, nil)
					if err != nil {
						b.Fatal(err)
					}
					ret, total = r, total+d
				}
				per = total / time.Duration(b.N)
			} else if ret, per, err = f.objs.Synflood.Benchmark(c.frame, b.N, b.ResetTimer); err != nil {
				b.Fatal(err)
			}
			if ret != c.want {
				b.Fatalf("action %d, want %d", ret, c.want)
			}
			b.ReportMetric(float64(per.Nanoseconds()), "ns/frame")
			b.ReportMetric(1e9/float64(per.Nanoseconds()+1), "frames/s/core")
		})
	}
}
