package limit

import (
	"cmp"
	"encoding/binary"
	"math"
	"net/netip"
	"slices"
)

// ACL is an immutable CIDR allow/deny list.
//
// An address is allowed when no deny prefix contains it and either the allow
// list is empty or an allow prefix contains it: deny wins. IPv4-mapped IPv6
// addresses are matched as the IPv4 addresses they are, and an IPv6 prefix
// covers the IPv4 addresses whose mapped form it contains (::ffff:0:0/96 is
// all of IPv4, ::/0 is everything). Zones are ignored. Invalid prefixes in
// the lists are skipped, but a non-empty allow list never means "allow all".
//
// Prefixes are compiled into sorted, merged address ranges per family, so a
// lookup is two binary searches whatever the number of prefixes. A nil *ACL
// allows everything. Allowed is safe for concurrent use.
type ACL struct {
	allowAll      bool
	allow4, deny4 []range4
	allow6, deny6 []range6
}

type range4 struct{ lo, hi uint32 }

type u128 struct{ hi, lo uint64 }

type range6 struct{ lo, hi u128 }

func (a u128) cmp(b u128) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

func (a u128) next() (u128, bool) {
	if a.lo != math.MaxUint64 {
		return u128{a.hi, a.lo + 1}, true
	}
	if a.hi != math.MaxUint64 {
		return u128{a.hi + 1, 0}, true
	}
	return a, false
}

// NewACL compiles the allow and deny lists. The slices are not retained.
func NewACL(allow, deny []netip.Prefix) *ACL {
	a := &ACL{allowAll: len(allow) == 0}
	a.allow4, a.allow6 = compile(allow)
	a.deny4, a.deny6 = compile(deny)
	return a
}

// Allowed reports whether connections from ip are admitted.
func (a *ACL) Allowed(ip netip.Addr) bool {
	if a == nil {
		return true
	}
	ip = ip.Unmap()
	switch {
	case ip.Is4():
		b := ip.As4()
		x := binary.BigEndian.Uint32(b[:])
		return !in4(a.deny4, x) && (a.allowAll || in4(a.allow4, x))
	case ip.Is6():
		x := u128of(ip)
		return !in6(a.deny6, x) && (a.allowAll || in6(a.allow6, x))
	}
	return a.allowAll
}

func u128of(ip netip.Addr) u128 {
	b := ip.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// v4Mapped is ::ffff:0.0.0.0/96.
var v4Mapped = netip.PrefixFrom(netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff}), 96)

func compile(ps []netip.Prefix) ([]range4, []range6) {
	var r4 []range4
	var r6 []range6
	for _, p := range ps {
		if !p.IsValid() {
			continue
		}
		p = p.Masked()
		addr, n := p.Addr(), p.Bits()
		if addr.Is4() {
			r4 = append(r4, range4of(addr, n))
			continue
		}
		lo := u128of(addr)
		hi := lo
		if n < 64 {
			hi.hi |= math.MaxUint64 >> n
			hi.lo = math.MaxUint64
		} else {
			hi.lo |= math.MaxUint64 >> (n - 64) // n == 128: shift by 64 yields 0
		}
		r6 = append(r6, range6{lo, hi})
		// The part of an IPv6 prefix inside ::ffff:0:0/96 also covers the
		// IPv4 addresses that are matched in their unmapped form.
		switch {
		case n >= 96 && addr.Is4In6():
			r4 = append(r4, range4of(addr.Unmap(), n-96))
		case n < 96 && p.Overlaps(v4Mapped):
			r4 = append(r4, range4{0, math.MaxUint32})
		}
	}
	return merge4(r4), merge6(r6)
}

func range4of(addr netip.Addr, n int) range4 {
	b := addr.As4()
	lo := binary.BigEndian.Uint32(b[:])
	return range4{lo, lo | uint32(uint64(math.MaxUint32)>>n)}
}

func merge4(rs []range4) []range4 {
	slices.SortFunc(rs, func(a, b range4) int { return cmp.Compare(a.lo, b.lo) })
	out := rs[:0]
	for _, r := range rs {
		if k := len(out) - 1; k >= 0 && (r.lo <= out[k].hi || out[k].hi != math.MaxUint32 && r.lo == out[k].hi+1) {
			out[k].hi = max(out[k].hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

func merge6(rs []range6) []range6 {
	slices.SortFunc(rs, func(a, b range6) int { return a.lo.cmp(b.lo) })
	out := rs[:0]
	for _, r := range rs {
		if k := len(out) - 1; k >= 0 {
			next, ok := out[k].hi.next()
			if !ok || r.lo.cmp(next) <= 0 {
				if r.hi.cmp(out[k].hi) > 0 {
					out[k].hi = r.hi
				}
				continue
			}
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

// in4 reports whether x lies in one of the sorted, disjoint ranges rs.
func in4(rs []range4, x uint32) bool {
	lo, hi := 0, len(rs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if rs[m].hi < x {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo < len(rs) && rs[lo].lo <= x
}

func in6(rs []range6, x u128) bool {
	lo, hi := 0, len(rs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if rs[m].hi.cmp(x) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo < len(rs) && rs[lo].lo.cmp(x) <= 0
}
