package limit

import (
	"encoding/binary"
	"math"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a manually advanced clock, safe for concurrent reads.
type fakeClock struct{ ns atomic.Int64 }

var clockBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func (c *fakeClock) now() time.Time          { return clockBase.Add(time.Duration(c.ns.Load())) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func newTestLimiter(t testing.TB, cfg Config) (*Limiter, *fakeClock) {
	t.Helper()
	c := &fakeClock{}
	l := NewLimiter(cfg, c.now)
	if l == nil {
		t.Fatalf("NewLimiter(%+v) = nil", cfg)
	}
	return l, c
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// take calls Allow n times and returns how many were allowed.
func take(l *Limiter, ip netip.Addr, n int) int {
	ok := 0
	for range n {
		if l.Allow(ip) {
			ok++
		}
	}
	return ok
}

func TestBurstAndRefill(t *testing.T) {
	l, c := newTestLimiter(t, Config{Rate: 10, Burst: 5})
	ip := addr("192.0.2.1")
	if got := take(l, ip, 20); got != 5 {
		t.Fatalf("initial burst: %d allowed, want 5", got)
	}
	c.advance(99 * time.Millisecond)
	if l.Allow(ip) {
		t.Fatal("allowed before a token refilled")
	}
	c.advance(time.Millisecond)
	if got := take(l, ip, 5); got != 1 {
		t.Fatalf("after 100ms: %d allowed, want 1", got)
	}
	c.advance(350 * time.Millisecond)
	if got := take(l, ip, 5); got != 3 {
		t.Fatalf("after 350ms: %d allowed, want 3", got)
	}
	c.advance(time.Hour)
	if got := take(l, ip, 20); got != 5 {
		t.Fatalf("after idling: %d allowed, want the burst of 5", got)
	}
}

func TestFractionalRate(t *testing.T) {
	l, c := newTestLimiter(t, Config{Rate: 0.5, Burst: 1})
	ip := addr("2001:db8::1")
	if !l.Allow(ip) {
		t.Fatal("first connection refused")
	}
	c.advance(time.Second)
	if l.Allow(ip) {
		t.Fatal("allowed after 1s at 0.5/s")
	}
	c.advance(time.Second - time.Nanosecond)
	if l.Allow(ip) {
		t.Fatal("allowed 1ns before the token")
	}
	c.advance(time.Nanosecond)
	if !l.Allow(ip) {
		t.Fatal("refused after 2s at 0.5/s")
	}

	l, c = newTestLimiter(t, Config{Rate: 0.5, Burst: 3})
	if got := take(l, ip, 10); got != 3 {
		t.Fatalf("burst: %d, want 3", got)
	}
	c.advance(5 * time.Second)
	if got := take(l, ip, 10); got != 2 {
		t.Fatalf("after 5s at 0.5/s: %d, want 2", got)
	}
	c.advance(7 * time.Second)
	if got := take(l, ip, 10); got != 3 {
		t.Fatalf("after 7s: %d, want 3 (1s carried over plus refill capped at burst)", got)
	}
}

func TestSourcesIndependent(t *testing.T) {
	l, _ := newTestLimiter(t, Config{Rate: 1, Burst: 2})
	a, b := addr("192.0.2.1"), addr("192.0.2.2")
	if got := take(l, a, 5); got != 2 {
		t.Fatalf("a: %d", got)
	}
	if got := take(l, b, 5); got != 2 {
		t.Fatalf("b after a drained: %d, want 2", got)
	}
	if l.Len() != 2 {
		t.Errorf("Len = %d, want 2", l.Len())
	}
}

func TestSourceGrouping(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", true},
		{"2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"192.0.2.1", "::ffff:192.0.2.1", true},
		{"192.0.2.1", "192.0.2.2", false},
		{"192.0.2.1", "::c000:201", false},     // IPv4-compatible is plain IPv6
		{"::1", "::ffff:0.0.0.0", false},       // ::/64 group vs 0.0.0.0
		{"fe80::1%eth0", "fe80::2%eth1", true}, // zones do not matter
		{"0.0.0.0", "::", false},
	}
	for _, tt := range tests {
		l, _ := newTestLimiter(t, Config{Rate: 1, Burst: 1})
		l.Allow(addr(tt.a))
		if got := !l.Allow(addr(tt.b)); got != tt.same {
			t.Errorf("%s and %s share a bucket: %v, want %v", tt.a, tt.b, got, tt.same)
		}
	}
	l, _ := newTestLimiter(t, Config{Rate: 1, Burst: 1})
	if !l.Allow(netip.Addr{}) || l.Allow(netip.Addr{}) {
		t.Error("invalid addresses should share one bucket")
	}
}

func TestNilAndDisabled(t *testing.T) {
	var l *Limiter
	if !l.Allow(addr("192.0.2.1")) || l.Len() != 0 {
		t.Error("nil limiter must allow")
	}
	for _, r := range []float64{0, -1, math.NaN()} {
		if NewLimiter(Config{Rate: r, Burst: 1}, nil) != nil {
			t.Errorf("rate %v: want nil (disabled)", r)
		}
	}
	inf := NewLimiter(Config{Rate: math.Inf(1), Burst: 1}, nil)
	if got := take(inf, addr("192.0.2.1"), 1000); got != 1000 || inf.Len() != 0 {
		t.Errorf("infinite rate: %d allowed, Len %d", got, inf.Len())
	}
	// Burst below 1 acts as 1; a tiny rate must not overflow.
	tiny, c := newTestLimiter(t, Config{Rate: 1e-300, Burst: 0})
	if got := take(tiny, addr("192.0.2.1"), 3); got != 1 {
		t.Errorf("tiny rate: %d allowed, want 1", got)
	}
	c.advance(50 * 365 * 24 * time.Hour)
	if tiny.Allow(addr("192.0.2.1")) {
		t.Error("tiny rate refilled within 50 years")
	}
	// The default clock works.
	real := NewLimiter(Config{Rate: 1, Burst: 2}, nil)
	if got := take(real, addr("192.0.2.1"), 3); got != 2 {
		t.Errorf("time.Now clock: %d allowed, want 2", got)
	}
}

func TestShardCapacity(t *testing.T) {
	for _, max := range []int{1, 2, 15, 16, 100, 1000, 1023, 1024, 1025, 100000} {
		l, _ := newTestLimiter(t, Config{Rate: 1, Burst: 1, MaxEntries: max})
		total := 0
		for i := range l.shards {
			total += l.shards[i].limit
			if l.shards[i].limit < 1 {
				t.Errorf("MaxEntries %d: shard %d has capacity %d", max, i, l.shards[i].limit)
			}
		}
		if total != max || len(l.shards) > maxShards {
			t.Errorf("MaxEntries %d: %d shards, capacity %d", max, len(l.shards), total)
		}
	}
	l, _ := newTestLimiter(t, Config{Rate: 1, Burst: 1})
	if len(l.shards) != maxShards {
		t.Errorf("default: %d shards", len(l.shards))
	}
}

// TestEvictionPrefersFullBuckets uses capacities small enough for one shard,
// so the eviction sample covers every entry.
func TestEvictionPrefersFullBuckets(t *testing.T) {
	l, c := newTestLimiter(t, Config{Rate: 1, Burst: 2, MaxEntries: 8})
	if len(l.shards) != 1 {
		t.Fatalf("%d shards", len(l.shards))
	}
	full := addr("198.18.0.100")
	l.Allow(full) // refilled again long before the others arrive
	c.advance(10 * time.Second)
	var drained []netip.Addr
	for i := range 7 {
		ip := netip.AddrFrom4([4]byte{198, 18, 0, byte(i)})
		take(l, ip, 2)
		drained = append(drained, ip)
	}
	if l.Len() != 8 {
		t.Fatalf("Len = %d", l.Len())
	}
	if !l.Allow(addr("198.18.1.1")) {
		t.Fatal("new source refused")
	}
	if l.Len() != 8 {
		t.Fatalf("Len = %d after eviction", l.Len())
	}
	for _, ip := range drained {
		if l.Allow(ip) {
			t.Errorf("%v was forgotten although a full bucket could be evicted", ip)
		}
	}

	// With no full bucket, the entry with the least debt goes.
	l, c = newTestLimiter(t, Config{Rate: 1, Burst: 2, MaxEntries: 2})
	a, b := addr("198.18.0.1"), addr("198.18.0.2")
	take(l, a, 2) // tat = 2s
	c.advance(time.Second)
	take(l, b, 2) // tat = 3s
	c.advance(500 * time.Millisecond)
	if !l.Allow(addr("198.18.0.3")) {
		t.Fatal("new source refused")
	}
	if l.Allow(b) {
		t.Error("b (most debt) was evicted instead of a")
	}
	if got := take(l, a, 3); got != 2 {
		t.Errorf("a was not evicted: %d allowed, want a fresh burst of 2", got)
	}
}

func TestMemoryBoundUnderFlood(t *testing.T) {
	const max = 10000
	l, c := newTestLimiter(t, Config{Rate: 100, Burst: 200, MaxEntries: max})
	known := addr("198.18.255.1")
	take(l, known, 200)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var b16 [16]byte
	for i := range 1_000_000 {
		var ip netip.Addr
		if i%2 == 0 {
			ip = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		} else {
			// A distinct /64 each time.
			binary.BigEndian.PutUint64(b16[:8], 0x20010db8_00000000|uint64(i))
			ip = netip.AddrFrom16(b16)
		}
		if !l.Allow(ip) {
			t.Fatalf("new source %v refused", ip)
		}
		if i%100_000 == 0 {
			c.advance(time.Millisecond)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)

	if n := l.Len(); n > max || n < max*9/10 {
		t.Errorf("Len = %d after a million sources, want close to and at most %d", n, max)
	}
	// The tables (64 shards x 512 slots x 24 bytes = 768 KiB) are allocated
	// during the flood; allow generous slack but far less than a million
	// entries would need.
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 4<<20 {
		t.Errorf("heap grew by %d bytes during the flood", grew)
	}
	t.Logf("Len %d, heap growth %d bytes", l.Len(), int64(after.HeapAlloc)-int64(before.HeapAlloc))
}

func TestConcurrentExact(t *testing.T) {
	const (
		workers = 8
		sources = 300
		tries   = 20
		burst   = 5
	)
	l, c := newTestLimiter(t, Config{Rate: 10, Burst: burst})
	var allowed [sources]atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range sources * tries {
				s := (i + w*37) % sources
				if l.Allow(netip.AddrFrom4([4]byte{198, 18, byte(s >> 8), byte(s)})) {
					allowed[s].Add(1)
				}
				if i%500 == 0 {
					_ = l.Len()
				}
			}
		}()
	}
	wg.Wait()
	for s := range allowed {
		if got := allowed[s].Load(); got != burst {
			t.Fatalf("source %d: %d allowed with a frozen clock, want %d", s, got, burst)
		}
	}
	// Advance the clock while workers run: totals stay within the bound
	// burst + rate*elapsed per source.
	var stop atomic.Bool
	var total atomic.Int64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				if l.Allow(netip.AddrFrom4([4]byte{198, 19, 0, byte((i + w) % 4)})) {
					total.Add(1)
				}
			}
		}()
	}
	for range 100 {
		c.advance(10 * time.Millisecond) // one second in all
		runtime.Gosched()
	}
	stop.Store(true)
	wg.Wait()
	if got, limit := total.Load(), int64(4*(burst+10)); got > limit {
		t.Errorf("%d allowed over 1s for 4 sources, bound %d", got, limit)
	}
}

func TestAllowNoAllocs(t *testing.T) {
	l, c := newTestLimiter(t, Config{Rate: 1e6, Burst: 10})
	ip4, ip6 := addr("192.0.2.1"), addr("2001:db8::1")
	l.Allow(ip4)
	l.Allow(ip6)
	allocs := testing.AllocsPerRun(1000, func() {
		c.advance(time.Microsecond)
		l.Allow(ip4)
		l.Allow(ip6)
	})
	if allocs != 0 {
		t.Errorf("Allow allocates %v times per run", allocs)
	}
}
