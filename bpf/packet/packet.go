// Package packet builds the frames the SYN-flood filter is tested with:
// Ethernet (optionally 802.1Q tagged), IPv4 or IPv6, TCP, UDP, ICMP and ARP,
// with correct lengths and checksums. It is pure: no sockets, no I/O.
package packet

import (
	"encoding/binary"
	"net/netip"
)

// TCP flags.
const (
	FIN = 0x01
	SYN = 0x02
	RST = 0x04
	PSH = 0x08
	ACK = 0x10
)

// EtherTypes.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
	EtherTypeVLAN = 0x8100
	EtherTypeIPv6 = 0x86dd
)

// IP protocol numbers.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

// Ethernet describes the link layer of a frame.
type Ethernet struct {
	Dst, Src [6]byte
	VLAN     uint16 // 802.1Q VLAN ID; 0 means untagged
}

// Frame prepends the Ethernet header (and VLAN tag) to payload.
func (e Ethernet) Frame(etherType uint16, payload []byte) []byte {
	b := make([]byte, 0, 18+len(payload))
	b = append(b, e.Dst[:]...)
	b = append(b, e.Src[:]...)
	if e.VLAN != 0 {
		b = binary.BigEndian.AppendUint16(b, EtherTypeVLAN)
		b = binary.BigEndian.AppendUint16(b, e.VLAN&0x0fff)
	}
	b = binary.BigEndian.AppendUint16(b, etherType)
	return append(b, payload...)
}

// EtherType returns the EtherType for an IP packet from addr's family.
func EtherType(addr netip.Addr) uint16 {
	if addr.Is4() {
		return EtherTypeIPv4
	}
	return EtherTypeIPv6
}

// TCP describes a TCP segment.
type TCP struct {
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            uint8
	Window           uint16
	Options          []byte // padded with zeros to a multiple of 4
	Payload          []byte
}

// Marshal returns the TCP header and payload with the checksum computed
// over the pseudo-header of src -> dst (both IPv4 or both IPv6).
func (t TCP) Marshal(src, dst netip.Addr) []byte {
	opts := t.Options
	for len(opts)%4 != 0 {
		opts = append(opts[:len(opts):len(opts)], 0)
	}
	hl := 20 + len(opts)
	b := make([]byte, hl, hl+len(t.Payload))
	binary.BigEndian.PutUint16(b[0:], t.SrcPort)
	binary.BigEndian.PutUint16(b[2:], t.DstPort)
	binary.BigEndian.PutUint32(b[4:], t.Seq)
	binary.BigEndian.PutUint32(b[8:], t.Ack)
	b[12] = byte(hl/4) << 4
	b[13] = t.Flags
	binary.BigEndian.PutUint16(b[14:], t.Window)
	copy(b[20:], opts)
	b = append(b, t.Payload...)
	binary.BigEndian.PutUint16(b[16:], ^Checksum(pseudoSum(src, dst, ProtoTCP, len(b)), b))
	return b
}

// UDP returns a UDP datagram with its checksum.
func UDP(src, dst netip.Addr, srcPort, dstPort uint16, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], srcPort)
	binary.BigEndian.PutUint16(b[2:], dstPort)
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	b = append(b, payload...)
	sum := ^Checksum(pseudoSum(src, dst, ProtoUDP, len(b)), b)
	if sum == 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(b[6:], sum)
	return b
}

// ICMPEcho returns an ICMP (IPv4) or ICMPv6 echo request.
func ICMPEcho(src, dst netip.Addr, id, seq uint16) []byte {
	b := make([]byte, 8)
	b[0] = 8
	var initial uint32
	if src.Is6() {
		b[0] = 128
		initial = pseudoSum(src, dst, ProtoICMPv6, len(b))
	}
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	binary.BigEndian.PutUint16(b[2:], ^Checksum(initial, b))
	return b
}

// IP wraps an upper-layer payload in an IPv4 or IPv6 header (from src's
// family) with TTL/hop limit 64 and, for IPv4, the header checksum.
func IP(src, dst netip.Addr, proto uint8, payload []byte) []byte {
	if src.Is4() {
		b := make([]byte, 20, 20+len(payload))
		b[0] = 0x45
		binary.BigEndian.PutUint16(b[2:], uint16(20+len(payload)))
		b[6] = 0x40 // DF
		b[8] = 64
		b[9] = proto
		s, d := src.As4(), dst.As4()
		copy(b[12:], s[:])
		copy(b[16:], d[:])
		binary.BigEndian.PutUint16(b[10:], ^Checksum(0, b))
		return append(b, payload...)
	}
	b := make([]byte, 40, 40+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
	b[6] = proto
	b[7] = 64
	s, d := src.As16(), dst.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	return append(b, payload...)
}

// TCPPacket is IP(src, dst, ProtoTCP, t.Marshal(src, dst)).
func TCPPacket(src, dst netip.Addr, t TCP) []byte {
	return IP(src, dst, ProtoTCP, t.Marshal(src, dst))
}

// ARPRequest returns an Ethernet/IPv4 ARP who-has payload.
func ARPRequest(senderMAC [6]byte, sender, target netip.Addr) []byte {
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[0:], 1) // Ethernet
	binary.BigEndian.PutUint16(b[2:], EtherTypeIPv4)
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], 1) // request
	copy(b[8:], senderMAC[:])
	s, t := sender.As4(), target.As4()
	copy(b[14:], s[:])
	copy(b[24:], t[:])
	return b
}

// Checksum folds the one's-complement sum of b onto initial (a partial sum,
// e.g. a pseudo-header) and returns it uncomplemented.
func Checksum(initial uint32, b []byte) uint16 {
	sum := initial
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

func pseudoSum(src, dst netip.Addr, proto uint8, length int) uint32 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
	}
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		add(s[:])
		add(d[:])
	} else {
		s, d := src.As16(), dst.As16()
		add(s[:])
		add(d[:])
	}
	sum += uint32(proto) + uint32(length)
	return sum
}
