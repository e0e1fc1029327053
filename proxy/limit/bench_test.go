package limit

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

func BenchmarkAllowKnownSource(b *testing.B) {
	l := NewLimiter(Config{Rate: 1e9, Burst: 1 << 20}, nil)
	ip := netip.MustParseAddr("192.0.2.1")
	l.Allow(ip)
	b.ReportAllocs()
	for b.Loop() {
		l.Allow(ip)
	}
}

func BenchmarkAllowKnownSourceParallel(b *testing.B) {
	l := NewLimiter(Config{Rate: 1e9, Burst: 1 << 20}, nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ip := netip.AddrFrom4([4]byte{198, 18, byte(rand.IntN(256)), byte(rand.IntN(256))})
		for pb.Next() {
			l.Allow(ip)
		}
	})
}

// BenchmarkAllowFlood measures a new source on every call with the table
// full, so each call evicts an entry.
func BenchmarkAllowFlood(b *testing.B) {
	var t0 time.Time
	l := NewLimiter(Config{Rate: 100, Burst: 100}, func() time.Time { return t0 })
	var i uint32
	for i = 0; i < 2*DefaultMaxEntries; i++ {
		l.Allow(netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, i))))
	}
	b.ReportAllocs()
	var a [4]byte
	for b.Loop() {
		i++
		binary.BigEndian.PutUint32(a[:], i)
		l.Allow(netip.AddrFrom4(a))
	}
}

func benchACL(b *testing.B, n int) {
	r := rand.New(rand.NewPCG(3, 4))
	var allow, deny []netip.Prefix
	for range n {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], r.Uint32())
		allow = append(allow, netip.PrefixFrom(netip.AddrFrom4(a), 16+r.IntN(17)))
		var a6 [16]byte
		binary.BigEndian.PutUint64(a6[:], 0x2001_0db8_0000_0000|r.Uint64()>>32)
		deny = append(deny, netip.PrefixFrom(netip.AddrFrom16(a6), 48+r.IntN(17)))
	}
	acl := NewACL(allow, deny)
	ips := make([]netip.Addr, 1024)
	for i := range ips {
		if i%2 == 0 {
			var a [4]byte
			binary.BigEndian.PutUint32(a[:], r.Uint32())
			ips[i] = netip.AddrFrom4(a)
		} else {
			var a6 [16]byte
			binary.BigEndian.PutUint64(a6[:], 0x2001_0db8_0000_0000|r.Uint64()>>32)
			ips[i] = netip.AddrFrom16(a6)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		acl.Allowed(ips[i&1023])
		i++
	}
}

func BenchmarkACLAllowed10(b *testing.B)    { benchACL(b, 10) }
func BenchmarkACLAllowed10000(b *testing.B) { benchACL(b, 10000) }

func BenchmarkNewACL10000(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	var allow []netip.Prefix
	for range 10000 {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], r.Uint32())
		allow = append(allow, netip.PrefixFrom(netip.AddrFrom4(a), 16+r.IntN(17)))
	}
	b.ReportAllocs()
	for b.Loop() {
		NewACL(allow, nil)
	}
}
