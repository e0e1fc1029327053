package bpf

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/palisade-lb/palisade/bpf/packet"
)

var (
	fuzzPorts = []uint16{80, 443}
	fuzzDeny  = []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("2001:2::/48")}
)

// referenceVerdict is a Go model of the XDP parser for a filter whose only
// rule is the deny list: it returns xdpDrop exactly for the frames the
// program must drop, a TCP SYN (ACK clear) to a protected port from a
// denied source, and xdpPass for everything else.
func referenceVerdict(b []byte) uint32 {
	if len(b) < 14 {
		return xdpPass
	}
	proto := binary.BigEndian.Uint16(b[12:])
	off := 14
	for range 2 {
		if proto != 0x8100 && proto != 0x88a8 {
			break
		}
		if len(b) < off+4 {
			return xdpPass
		}
		proto = binary.BigEndian.Uint16(b[off+2:])
		off += 4
	}
	var src netip.Addr
	var th int
	switch proto {
	case packet.EtherTypeIPv4:
		if len(b) < off+20 {
			return xdpPass
		}
		ip := b[off:]
		ihl := int(ip[0] & 0x0f)
		if ip[0]>>4 != 4 || ip[9] != packet.ProtoTCP || ihl < 5 || binary.BigEndian.Uint16(ip[6:])&0x1fff != 0 {
			return xdpPass
		}
		src = netip.AddrFrom4([4]byte(ip[12:16]))
		th = off + ihl*4
	case packet.EtherTypeIPv6:
		if len(b) < off+40 {
			return xdpPass
		}
		ip := b[off:]
		if ip[0]>>4 != 6 {
			return xdpPass
		}
		src = netip.AddrFrom16([16]byte(ip[8:24]))
		next, cur := ip[6], off+40
		for range 4 {
			if next == packet.ProtoTCP {
				break
			}
			switch next {
			case 0, 43, 60:
				if len(b) < cur+2 {
					return xdpPass
				}
				next, cur = b[cur], cur+(int(b[cur+1])+1)*8
			case 44:
				if len(b) < cur+8 {
					return xdpPass
				}
				if binary.BigEndian.Uint16(b[cur+2:])&0xfff8 != 0 {
					return xdpPass
				}
				next, cur = b[cur], cur+8
			default:
				return xdpPass
			}
		}
		if next != packet.ProtoTCP {
			return xdpPass
		}
		th = cur
	default:
		return xdpPass
	}
	if len(b) < th+20 {
		return xdpPass
	}
	flags := b[th+13]
	dport := binary.BigEndian.Uint16(b[th+2:])
	if flags&packet.SYN == 0 || flags&packet.ACK != 0 {
		return xdpPass
	}
	protected, denied := false, false
	for _, p := range fuzzPorts {
		protected = protected || p == dport
	}
	for _, p := range fuzzDeny {
		denied = denied || p.Contains(src)
	}
	if protected && denied {
		return xdpDrop
	}
	return xdpPass
}

// FuzzProgram checks the XDP parser against referenceVerdict on arbitrary
// frames, and that it never modifies a frame in rate-limit mode.
func FuzzProgram(f *testing.F) {
	denied4, denied6 := netip.MustParseAddr("198.19.1.1"), netip.MustParseAddr("2001:2::5")
	other4 := netip.MustParseAddr("192.0.2.1")
	seg := func(flags uint8, dport uint16) packet.TCP {
		return packet.TCP{SrcPort: 1234, DstPort: dport, Flags: flags, Options: []byte{2, 4, 5, 180}}
	}
	f.Add(ethHdr.Frame(packet.EtherTypeIPv4, packet.TCPPacket(denied4, hostV4, seg(packet.SYN, 80))))
	f.Add(ethHdr.Frame(packet.EtherTypeIPv4, packet.TCPPacket(other4, hostV4, seg(packet.SYN, 443))))
	f.Add(ethHdr.Frame(packet.EtherTypeIPv4, packet.TCPPacket(denied4, hostV4, seg(packet.SYN|packet.ACK, 80))))
	f.Add(ethHdr.Frame(packet.EtherTypeIPv6, packet.TCPPacket(denied6, hostV6, seg(packet.SYN, 443))))
	f.Add(packet.Ethernet{VLAN: 5}.Frame(packet.EtherTypeIPv4, packet.TCPPacket(denied4, hostV4, seg(packet.SYN, 80))))
	ext := append([]byte{packet.ProtoTCP, 0, 1, 4, 0, 0, 0, 0}, seg(packet.SYN, 80).Marshal(denied6, hostV6)...)
	f.Add(ethHdr.Frame(packet.EtherTypeIPv6, packet.IP(denied6, hostV6, 60, ext)))
	f.Add(ethHdr.Frame(packet.EtherTypeIPv4, packet.IP(denied4, hostV4, packet.ProtoUDP, packet.UDP(denied4, hostV4, 1, 80, nil))))
	f.Add(ethHdr.Frame(packet.EtherTypeARP, packet.ARPRequest(ethHdr.Src, denied4, hostV4)))

	if os.Geteuid() != 0 {
		f.Skip("needs root: runs the XDP program with BPF_PROG_TEST_RUN")
	}
	filter, err := Load(Config{Deny: fuzzDeny, Ports: fuzzPorts})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { filter.Close() })
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 || len(frame) > 1500 {
			return // BPF_PROG_TEST_RUN needs a whole Ethernet header
		}
		opts := ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+256)}
		got, err := filter.objs.Synflood.Run(&opts)
		if err != nil {
			t.Fatalf("prog.Run: %v", err)
		}
		if want := referenceVerdict(frame); got != want {
			t.Fatalf("verdict %s, reference %s for %x", verdictName(got), verdictName(want), frame)
		}
		if !bytes.Equal(opts.DataOut, frame) {
			t.Fatalf("frame modified: %x -> %x", frame, opts.DataOut)
		}
	})
}
