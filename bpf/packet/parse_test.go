package packet

import (
	"net/netip"
	"testing"
)

func TestParseRoundTrip(t *testing.T) {
	for _, pair := range [][2]string{{"198.18.0.1", "198.18.0.2"}, {"2001:2::1", "2001:2::2"}} {
		src, dst := netip.MustParseAddr(pair[0]), netip.MustParseAddr(pair[1])
		seg := TCP{SrcPort: 1, DstPort: 2, Seq: 3, Ack: 4, Flags: SYN | ACK, Window: 5,
			Options: []byte{1, 2, 4, 0x05, 0xb4}, Payload: []byte("x")}
		e := Ethernet{Dst: [6]byte{1}, Src: [6]byte{2}, VLAN: 7}
		d, err := Parse(e.Frame(EtherType(src), TCPPacket(src, dst, seg)))
		if err != nil {
			t.Fatal(err)
		}
		if d.Src != src || d.Dst != dst || d.Eth != e || d.Proto != ProtoTCP || d.TTL != 64 ||
			!d.IPChecksumOK || !d.L4ChecksumOK || d.MSS != 1460 ||
			d.TCP.SrcPort != 1 || d.TCP.DstPort != 2 || d.TCP.Seq != 3 || d.TCP.Ack != 4 ||
			d.TCP.Flags != SYN|ACK || d.TCP.Window != 5 || string(d.TCP.Payload) != "x" {
			t.Fatalf("%v: decoded %+v", src, d)
		}
		frame := e.Frame(EtherType(src), TCPPacket(src, dst, seg))
		frame[len(frame)-1] ^= 0xff
		if d, _ := Parse(frame); d.L4ChecksumOK {
			t.Fatalf("%v: corrupted payload still verifies", src)
		}
	}
}

// FuzzParse: Parse never panics and never returns slices beyond the input.
func FuzzParse(f *testing.F) {
	src, dst := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	e := Ethernet{}
	f.Add(e.Frame(EtherTypeIPv4, TCPPacket(src, dst, TCP{Flags: SYN, Options: []byte{2, 4, 5, 180}})))
	f.Add(Ethernet{VLAN: 1}.Frame(EtherTypeIPv6, TCPPacket(netip.MustParseAddr("2001:2::1"), netip.MustParseAddr("2001:2::2"), TCP{Flags: ACK})))
	f.Add(e.Frame(EtherTypeARP, ARPRequest([6]byte{}, src, dst)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Parse(b)
		if err != nil {
			return
		}
		if len(d.TCP.Options)+len(d.TCP.Payload) > len(b) {
			t.Fatalf("decoded more bytes than given")
		}
	})
}
