package limit

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func pfx(ss ...string) []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range ss {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}

// naiveAllowed is the reference semantics: a linear scan over the prefixes.
func naiveAllowed(allow, deny []netip.Prefix, ip netip.Addr) bool {
	match := func(ps []netip.Prefix) bool {
		a := ip.Unmap().WithZone("")
		for _, p := range ps {
			if !p.IsValid() {
				continue
			}
			if p.Contains(a) || a.Is4() && p.Contains(netip.AddrFrom16(a.As16())) {
				return true
			}
		}
		return false
	}
	return !match(deny) && (len(allow) == 0 || match(allow))
}

func TestACL(t *testing.T) {
	tests := []struct {
		name        string
		allow, deny []netip.Prefix
		yes, no     []string
	}{
		{"empty lists allow all", nil, nil,
			[]string{"0.0.0.0", "192.0.2.1", "::", "2001:db8::1", "::ffff:1.2.3.4"}, nil},
		{"deny only", nil, pfx("192.0.2.0/24", "2001:db8::/32"),
			[]string{"192.0.3.1", "2001:db9::1"}, []string{"192.0.2.0", "192.0.2.255", "::ffff:192.0.2.7", "2001:db8:ffff::1"}},
		{"allow only", pfx("10.0.0.0/8"), nil,
			[]string{"10.0.0.0", "10.255.255.255", "::ffff:10.1.2.3"}, []string{"11.0.0.0", "9.255.255.255", "::1", "::a00:1"}},
		{"deny wins over allow", pfx("10.0.0.0/8"), pfx("10.1.0.0/16"),
			[]string{"10.0.255.255", "10.2.0.0"}, []string{"10.1.0.0", "10.1.255.255", "::ffff:10.1.2.3"}},
		{"deny wins on identical prefix", pfx("192.0.2.0/24"), pfx("192.0.2.0/24"),
			nil, []string{"192.0.2.1"}},
		{"overlapping allows", pfx("10.0.0.0/16", "10.0.0.0/8", "10.0.128.0/17", "11.0.0.0/8"), nil,
			[]string{"10.200.0.1", "11.0.0.1", "10.0.200.1"}, []string{"12.0.0.0", "9.0.0.1"}},
		{"adjacent ranges", pfx("10.0.0.0/9", "10.128.0.0/9"), pfx("10.127.255.255/32"),
			[]string{"10.127.255.254", "10.128.0.0"}, []string{"10.127.255.255", "11.0.0.0"}},
		{"v4 /0", pfx("0.0.0.0/0"), nil,
			[]string{"0.0.0.0", "255.255.255.255", "::ffff:1.1.1.1"}, []string{"::1", "2001:db8::1"}},
		{"v6 /0 covers mapped v4", pfx("::/0"), nil,
			[]string{"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "1.2.3.4"}, nil},
		{"deny v4 /0 keeps v6", nil, pfx("0.0.0.0/0"),
			[]string{"2001:db8::1"}, []string{"1.2.3.4", "::ffff:1.2.3.4"}},
		{"host routes", pfx("192.0.2.1/32", "2001:db8::1/128", "255.255.255.255/32", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"), nil,
			[]string{"192.0.2.1", "2001:db8::1", "255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::ffff:192.0.2.1"},
			[]string{"192.0.2.0", "192.0.2.2", "2001:db8::", "2001:db8::2", "255.255.255.254"}},
		{"mapped prefix matches v4", pfx("::ffff:192.0.2.0/120"), nil,
			[]string{"192.0.2.1", "::ffff:192.0.2.255"}, []string{"192.0.3.1", "::c000:201"}},
		{"mapped /96 is all v4", nil, pfx("::ffff:0:0/96"),
			[]string{"::1", "2001:db8::1"}, []string{"0.0.0.0", "8.8.8.8"}},
		{"v6 prefix containing the mapped range", pfx("::/64"), nil,
			[]string{"::1", "1.2.3.4"}, []string{"2001:db8::1"}},
		{"v6 prefix not containing the mapped range", pfx("::/97"), nil,
			[]string{"::1"}, []string{"1.2.3.4"}},
		{"zones ignored", pfx("fe80::/10"), nil,
			[]string{"fe80::1%eth0", "fe80::2"}, []string{"fe00::1"}},
		{"unmasked prefixes", pfx("192.0.2.77/24", "2001:db8::77/64"), nil,
			[]string{"192.0.2.1", "2001:db8::1"}, []string{"192.0.3.1"}},
		{"invalid allow entries allow nothing", []netip.Prefix{{}}, nil,
			nil, []string{"1.2.3.4", "::1"}},
	}
	for _, tt := range tests {
		acl := NewACL(tt.allow, tt.deny)
		check := func(s string, want bool) {
			ip := netip.MustParseAddr(s)
			if got := acl.Allowed(ip); got != want {
				t.Errorf("%s: Allowed(%s) = %v, want %v", tt.name, s, got, want)
			}
			if ref := naiveAllowed(tt.allow, tt.deny, ip); ref != want {
				t.Errorf("%s: reference says %v for %s; test table is wrong", tt.name, ref, s)
			}
		}
		for _, s := range tt.yes {
			check(s, true)
		}
		for _, s := range tt.no {
			check(s, false)
		}
	}
}

func TestACLNilAndInvalidAddr(t *testing.T) {
	var acl *ACL
	if !acl.Allowed(netip.MustParseAddr("192.0.2.1")) || !acl.Allowed(netip.Addr{}) {
		t.Error("nil ACL must allow everything")
	}
	if !NewACL(nil, pfx("0.0.0.0/0", "::/0")).Allowed(netip.Addr{}) {
		t.Error("invalid address denied although no prefix contains it and the allow list is empty")
	}
	if NewACL(pfx("0.0.0.0/0"), nil).Allowed(netip.Addr{}) {
		t.Error("invalid address allowed by a non-empty allow list")
	}
}

func TestACLMerging(t *testing.T) {
	acl := NewACL(pfx("10.0.0.0/24", "10.0.1.0/24", "10.0.0.128/25", "10.0.3.0/24", "0.0.0.0/32", "255.255.255.255/32", "255.255.255.0/24"),
		pfx("2001:db8::/33", "2001:db8:8000::/33", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", "::/128", "::1/128"))
	want4 := []range4{{0, 0}, {0x0a000000, 0x0a0001ff}, {0x0a000300, 0x0a0003ff}, {0xffffff00, 0xffffffff}}
	if len(acl.allow4) != len(want4) {
		t.Fatalf("allow4 = %x, want %x", acl.allow4, want4)
	}
	for i := range want4 {
		if acl.allow4[i] != want4[i] {
			t.Fatalf("allow4 = %x, want %x", acl.allow4, want4)
		}
	}
	if len(acl.deny6) != 3 {
		t.Fatalf("deny6 = %x, want 3 merged ranges", acl.deny6)
	}
}

// TestACLRandomAgainstReference compares thousands of random prefixes with
// the linear reference, probing range edges.
func TestACLRandomAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 20 {
		var allow, deny []netip.Prefix
		for range 200 + round*50 {
			p := randPrefix(r)
			if r.IntN(3) == 0 {
				deny = append(deny, p)
			} else {
				allow = append(allow, p)
			}
		}
		acl := NewACL(allow, deny)
		var probes []netip.Addr
		for _, p := range append(allow, deny...) {
			probes = append(probes, edges(p)...)
		}
		for range 2000 {
			probes = append(probes, randAddr(r))
		}
		for _, ip := range probes {
			if got, want := acl.Allowed(ip), naiveAllowed(allow, deny, ip); got != want {
				t.Fatalf("round %d: Allowed(%v) = %v, reference %v", round, ip, got, want)
			}
		}
	}
}

// randPrefix draws prefixes clustered in a few regions so they overlap.
func randPrefix(r *rand.Rand) netip.Prefix {
	ip := randAddr(r)
	bits := r.IntN(ip.BitLen() + 1)
	switch {
	case ip.Is4():
		bits = 8 + r.IntN(25)
	case ip.Is4In6():
		bits = 80 + r.IntN(49)
	case r.IntN(8) != 0:
		bits = 16 + r.IntN(113)
	}
	if r.IntN(4) == 0 { // many small prefixes near the bottom of the tree
		bits = ip.BitLen() - r.IntN(4)
	}
	return netip.PrefixFrom(ip, bits)
}

// randAddr draws from small regions (half of the time a single /24 or /120)
// so that random prefixes nest, overlap and abut.
func randAddr(r *rand.Rand) netip.Addr {
	narrow := r.IntN(2) == 0
	v4 := [4]byte{10, 0, 0, byte(r.IntN(256))}
	if !narrow {
		v4 = [4]byte{10, byte(r.IntN(4)), byte(r.IntN(256)), byte(r.IntN(256))}
	}
	switch r.IntN(3) {
	case 0:
		return netip.AddrFrom4(v4)
	case 1:
		return netip.AddrFrom16(netip.AddrFrom4(v4).As16())
	}
	var b [16]byte
	binary.BigEndian.PutUint32(b[:], 0x20010db8)
	if narrow {
		b[15] = byte(r.IntN(256))
		return netip.AddrFrom16(b)
	}
	b[4] = byte(r.IntN(4))
	binary.BigEndian.PutUint64(b[8:], r.Uint64()>>r.IntN(64))
	return netip.AddrFrom16(b)
}

// edges returns the first and last address of p and their neighbours.
func edges(p netip.Prefix) []netip.Addr {
	if !p.IsValid() {
		return nil
	}
	p = p.Masked()
	first := p.Addr()
	b := first.AsSlice()
	for i := range b {
		hostBits := max(0, min(8, (i+1)*8-p.Bits()))
		b[i] |= byte(1<<hostBits - 1)
	}
	last, _ := netip.AddrFromSlice(b)
	out := []netip.Addr{first, last}
	if prev := first.Prev(); prev.IsValid() {
		out = append(out, prev)
	}
	if next := last.Next(); next.IsValid() {
		out = append(out, next)
	}
	return out
}
