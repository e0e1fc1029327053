package packet

import (
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"testing"
)

func TestIPv4HeaderChecksumKnownVector(t *testing.T) {
	// Classic example header (checksum field zeroed), expected 0xb861.
	hdr, _ := hex.DecodeString("450000730000400040110000c0a80001c0a800c7")
	if got := ^Checksum(0, hdr); got != 0xb861 {
		t.Fatalf("checksum = %#04x, want 0xb861", got)
	}
}

func TestTCPChecksumsVerify(t *testing.T) {
	for _, pair := range [][2]string{
		{"198.18.0.1", "198.18.0.2"},
		{"2001:2::1", "2001:2::2"},
	} {
		src, dst := netip.MustParseAddr(pair[0]), netip.MustParseAddr(pair[1])
		seg := TCP{SrcPort: 40000, DstPort: 80, Seq: 1, Flags: SYN, Window: 1024,
			Options: []byte{2, 4, 0x05, 0xb4, 1}, Payload: []byte("odd")}
		pkt := TCPPacket(src, dst, seg)
		hl := 40
		if src.Is4() {
			hl = 20
			if Checksum(0, pkt[:20]) != 0xffff {
				t.Errorf("%v: IPv4 header checksum does not verify", src)
			}
			if int(binary.BigEndian.Uint16(pkt[2:])) != len(pkt) {
				t.Errorf("%v: total length wrong", src)
			}
		} else if int(binary.BigEndian.Uint16(pkt[4:]))+40 != len(pkt) {
			t.Errorf("%v: payload length wrong", src)
		}
		l4 := pkt[hl:]
		if l4[12]>>4 != 7 { // 20 + 5 option bytes padded to 8
			t.Errorf("%v: data offset = %d words, want 7", src, l4[12]>>4)
		}
		if Checksum(pseudoSum(src, dst, ProtoTCP, len(l4)), l4) != 0xffff {
			t.Errorf("%v: TCP checksum does not verify", src)
		}
		if Checksum(pseudoSum(src, dst, ProtoTCP, len(l4)), append([]byte{}, l4[:len(l4)-1]...)) == 0xffff {
			t.Errorf("%v: checksum verifies over a truncated segment", src)
		}
		u := UDP(src, dst, 1, 2, []byte("x"))
		if Checksum(pseudoSum(src, dst, ProtoUDP, len(u)), u) != 0xffff {
			t.Errorf("%v: UDP checksum does not verify", src)
		}
	}
}

func TestEthernetVLAN(t *testing.T) {
	e := Ethernet{Dst: [6]byte{1, 2, 3, 4, 5, 6}, Src: [6]byte{7, 8, 9, 10, 11, 12}, VLAN: 42}
	f := e.Frame(EtherTypeIPv4, []byte{0xaa})
	if len(f) != 19 || binary.BigEndian.Uint16(f[12:]) != EtherTypeVLAN ||
		binary.BigEndian.Uint16(f[14:]) != 42 || binary.BigEndian.Uint16(f[16:]) != EtherTypeIPv4 || f[18] != 0xaa {
		t.Fatalf("tagged frame = %x", f)
	}
	e.VLAN = 0
	if f := e.Frame(EtherTypeARP, nil); len(f) != 14 || binary.BigEndian.Uint16(f[12:]) != EtherTypeARP {
		t.Fatalf("untagged frame = %x", f)
	}
}
