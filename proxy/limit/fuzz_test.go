package limit

import (
	"net/netip"
	"testing"
)

// fuzzAddr decodes one address from p: the low two bits of the tag byte
// choose IPv4, IPv4-mapped IPv6, IPv6, or IPv6 with only its first and last
// two bytes set (so prefixes cluster). Missing bytes are zero.
func fuzzAddr(tag byte, p []byte) (netip.Addr, []byte) {
	take := func(n int) []byte {
		var b [16]byte
		m := copy(b[:n], p)
		p = p[m:]
		return b[:n]
	}
	switch tag & 3 {
	case 0:
		return netip.AddrFrom4([4]byte(take(4))), p
	case 1:
		return netip.AddrFrom16(netip.AddrFrom4([4]byte(take(4))).As16()), p
	case 2:
		return netip.AddrFrom16([16]byte(take(16))), p
	}
	b := take(4)
	return netip.AddrFrom16([16]byte{0: b[0], 1: b[1], 14: b[2], 15: b[3]}), p
}

// FuzzACL compares the compiled ACL with a linear scan over the prefixes,
// probing fuzzer-chosen addresses and the edges of every prefix.
func FuzzACL(f *testing.F) {
	f.Add([]byte{0, 8, 10, 0, 0, 0}, []byte{0, 10, 1, 2, 3})
	f.Add([]byte{4, 24, 192, 0, 2, 0, 0, 0, 0, 0, 0, 0}, []byte{1, 192, 0, 2, 9})
	f.Add([]byte{2, 32, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 6, 64, 0x20, 0x01, 0, 1}, []byte{3, 0x20, 0x01, 0, 1})
	f.Add([]byte{1, 104, 10, 0, 0, 0, 7, 0, 0, 0, 0, 0}, []byte{0, 10, 9, 9, 9, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1})
	f.Add([]byte{3, 0, 0, 0, 0, 0, 0, 31, 10, 0, 0, 0, 0, 32, 10, 0, 0, 3}, []byte{0, 10, 0, 0, 2})
	f.Add([]byte{0, 255, 1, 2, 3, 4}, []byte{2})
	f.Fuzz(func(t *testing.T, rules, probes []byte) {
		var allow, deny []netip.Prefix
		for len(rules) >= 2 && len(allow)+len(deny) < 64 {
			tag, bits := rules[0], int(rules[1])
			var a netip.Addr
			a, rules = fuzzAddr(tag, rules[2:])
			p := netip.PrefixFrom(a, bits%(a.BitLen()+1))
			if bits == 255 {
				p = netip.Prefix{}
			}
			if tag&4 != 0 {
				deny = append(deny, p)
			} else {
				allow = append(allow, p)
			}
		}
		acl := NewACL(allow, deny)
		check := func(ip netip.Addr) {
			if got, want := acl.Allowed(ip), naiveAllowed(allow, deny, ip); got != want {
				t.Fatalf("allow %v deny %v: Allowed(%v) = %v, reference %v", allow, deny, ip, got, want)
			}
		}
		for len(probes) >= 1 {
			var ip netip.Addr
			ip, probes = fuzzAddr(probes[0], probes[1:])
			check(ip)
		}
		for _, p := range append(allow, deny...) {
			for _, ip := range edges(p) {
				check(ip)
				if ip.Is4() {
					check(netip.AddrFrom16(ip.As16()))
				}
			}
		}
		check(netip.Addr{})
	})
}
