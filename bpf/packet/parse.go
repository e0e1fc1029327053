package packet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Decoded is a frame taken apart by Parse.
type Decoded struct {
	Eth       Ethernet
	EtherType uint16
	Src, Dst  netip.Addr
	TTL       uint8 // hop limit for IPv6
	Proto     uint8
	TCP       TCP    // valid when Proto == ProtoTCP
	MSS       uint16 // from the TCP MSS option; 0 when absent
	// IPChecksumOK and L4ChecksumOK report whether the checksums verify
	// (IPChecksumOK is always true for IPv6, which has none).
	IPChecksumOK, L4ChecksumOK bool
}

// ErrTruncated is returned for frames shorter than their headers claim.
var ErrTruncated = errors.New("truncated frame")

// Parse decodes an Ethernet frame (one optional 802.1Q tag) carrying IPv4
// or IPv6 without extension headers, and TCP. Other upper protocols are
// decoded down to the IP layer.
func Parse(b []byte) (Decoded, error) {
	var d Decoded
	if len(b) < 14 {
		return d, ErrTruncated
	}
	copy(d.Eth.Dst[:], b[0:6])
	copy(d.Eth.Src[:], b[6:12])
	d.EtherType = binary.BigEndian.Uint16(b[12:])
	b = b[14:]
	if d.EtherType == EtherTypeVLAN {
		if len(b) < 4 {
			return d, ErrTruncated
		}
		d.Eth.VLAN = binary.BigEndian.Uint16(b) & 0x0fff
		d.EtherType = binary.BigEndian.Uint16(b[2:])
		b = b[4:]
	}
	var l4 []byte
	switch d.EtherType {
	case EtherTypeIPv4:
		if len(b) < 20 {
			return d, ErrTruncated
		}
		if b[0]>>4 != 4 {
			return d, fmt.Errorf("IPv4 header with version %d", b[0]>>4)
		}
		hl := int(b[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(b[2:]))
		if hl < 20 || total < hl || len(b) < total {
			return d, ErrTruncated
		}
		d.IPChecksumOK = Checksum(0, b[:hl]) == 0xffff
		d.TTL, d.Proto = b[8], b[9]
		d.Src = netip.AddrFrom4([4]byte(b[12:16]))
		d.Dst = netip.AddrFrom4([4]byte(b[16:20]))
		l4 = b[hl:total]
	case EtherTypeIPv6:
		if len(b) < 40 {
			return d, ErrTruncated
		}
		if b[0]>>4 != 6 {
			return d, fmt.Errorf("IPv6 header with version %d", b[0]>>4)
		}
		plen := int(binary.BigEndian.Uint16(b[4:]))
		if len(b) < 40+plen {
			return d, ErrTruncated
		}
		d.IPChecksumOK = true
		d.Proto, d.TTL = b[6], b[7]
		d.Src = netip.AddrFrom16([16]byte(b[8:24]))
		d.Dst = netip.AddrFrom16([16]byte(b[24:40]))
		l4 = b[40 : 40+plen]
	default:
		return d, nil
	}
	if d.Proto != ProtoTCP {
		return d, nil
	}
	if len(l4) < 20 {
		return d, ErrTruncated
	}
	hl := int(l4[12]>>4) * 4
	if hl < 20 || len(l4) < hl {
		return d, ErrTruncated
	}
	d.TCP = TCP{
		SrcPort: binary.BigEndian.Uint16(l4[0:]),
		DstPort: binary.BigEndian.Uint16(l4[2:]),
		Seq:     binary.BigEndian.Uint32(l4[4:]),
		Ack:     binary.BigEndian.Uint32(l4[8:]),
		Flags:   l4[13],
		Window:  binary.BigEndian.Uint16(l4[14:]),
		Options: l4[20:hl],
		Payload: l4[hl:],
	}
	d.L4ChecksumOK = Checksum(pseudoSum(d.Src, d.Dst, ProtoTCP, len(l4)), l4) == 0xffff
	d.MSS = mssOption(d.TCP.Options)
	return d, nil
}

// mssOption walks TCP options for the MSS (kind 2).
func mssOption(o []byte) uint16 {
	for len(o) > 0 {
		switch o[0] {
		case 0: // end of options
			return 0
		case 1: // NOP
			o = o[1:]
			continue
		}
		if len(o) < 2 || int(o[1]) < 2 || int(o[1]) > len(o) {
			return 0
		}
		if o[0] == 2 && o[1] == 4 {
			return binary.BigEndian.Uint16(o[2:])
		}
		o = o[o[1]:]
	}
	return 0
}
