package balance

import (
	"fmt"
	"net/netip"
	"testing"
)

func BenchmarkPick(b *testing.B) {
	for _, n := range []int{10, 100} {
		for _, name := range Names() {
			b.Run(fmt.Sprintf("%s/servers=%d", name, n), func(b *testing.B) {
				ws := make([]int, n)
				for i := range ws {
					ws[i] = 1 + i%4
				}
				fs := newFakes(ws...)
				for i, f := range fs {
					f.c.Store(int64(i % 7))
				}
				p := mustNew(b, name, fs)
				b.ReportAllocs()
				var h uint64
				for b.Loop() {
					h += 0x9e3779b97f4a7c15
					if p.Pick(h, nil) == nil {
						b.Fatal("nil pick")
					}
				}
			})
		}
	}
}

// BenchmarkPickParallel measures contention between cores picking from one
// policy, with a skip function as on a retry.
func BenchmarkPickParallel(b *testing.B) {
	for _, name := range Names() {
		b.Run(name, func(b *testing.B) {
			fs := newFakes(1, 2, 3, 4, 1, 2, 3, 4, 1, 2)
			p, err := New(name, servers(fs))
			if err != nil {
				b.Fatal(err)
			}
			tried := Server(fs[0])
			skip := func(s Server) bool { return s == tried }
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var h uint64
				for pb.Next() {
					h += 0x9e3779b97f4a7c15
					if p.Pick(h, skip) == nil {
						b.Fatal("nil pick")
					}
				}
			})
		})
	}
}

func BenchmarkHash(b *testing.B) {
	v4 := netip.MustParseAddr("198.18.3.4")
	v6 := netip.MustParseAddr("2001:db8::42")
	uri := "/api/v1/users/12345/orders?page=2&sort=desc"
	b.Run("IPv4", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			HashIP(v4)
		}
	})
	b.Run("IPv6", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			HashIP(v6)
		}
	})
	b.Run("URI", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			HashString(uri)
		}
	})
}
