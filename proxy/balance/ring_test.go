package balance

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

const ringKeys = 100000

func keyHashes(n int) []uint64 {
	hs := make([]uint64, n)
	for i := range hs {
		hs[i] = HashString(fmt.Sprintf("/static/img/%d.png", i))
	}
	return hs
}

// assign maps every key to a server ID ("" when Pick returns nil).
func assign(p Policy, keys []uint64, skip func(Server) bool) []string {
	out := make([]string, len(keys))
	for i, h := range keys {
		if s := p.Pick(h, skip); s != nil {
			out[i] = s.ID()
		}
	}
	return out
}

func countMoves(t *testing.T, before, after []string, gone map[string]bool) (moved int) {
	t.Helper()
	for i := range before {
		if before[i] == after[i] {
			continue
		}
		moved++
		if !gone[before[i]] {
			t.Fatalf("key %d moved %s -> %s though %s stayed", i, before[i], after[i], before[i])
		}
		if gone[after[i]] {
			t.Fatalf("key %d moved to %s which is gone", i, after[i])
		}
	}
	return moved
}

func share(a []string, id string) int {
	n := 0
	for _, s := range a {
		if s == id {
			n++
		}
	}
	return n
}

func TestRingServerDownMovesOnlyItsKeys(t *testing.T) {
	fs := newFakes(1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
	p := mustNew(t, Source, fs)
	keys := keyHashes(ringKeys)
	before := assign(p, keys, nil)

	fs[3].w.Store(0)
	down := assign(p, keys, nil)
	moved := countMoves(t, before, down, map[string]bool{"be/s3": true})
	if moved != share(before, "be/s3") || share(down, "be/s3") != 0 {
		t.Errorf("s3 down: moved %d keys, s3 owned %d", moved, share(before, "be/s3"))
	}
	t.Logf("s3 down: %d of %d keys moved (%.1f%%)", moved, ringKeys, 100*float64(moved)/ringKeys)

	fs[3].w.Store(1)
	if restored := assign(p, keys, nil); countMoves(t, before, restored, nil) != 0 {
		t.Error("restoring s3 did not restore the mapping")
	}

	// skip (a failed connect, a full server) behaves like down for that pick.
	skipped := assign(p, keys, func(s Server) bool { return s == fs[7] })
	countMoves(t, before, skipped, map[string]bool{"be/s7": true})

	// Half weight (slowstart, ctl weight) moves about half of its keys, all
	// to servers that stayed, and nothing else.
	fs2 := newFakes(100, 100, 100, 100)
	p2 := mustNew(t, URIHash, fs2)
	full := assign(p2, keys, nil)
	fs2[2].w.Store(50)
	half := assign(p2, keys, nil)
	for i := range full {
		if full[i] != half[i] && full[i] != "be/s2" {
			t.Fatalf("key %d moved %s -> %s at half weight of s2", i, full[i], half[i])
		}
		if half[i] == "be/s2" && full[i] != "be/s2" {
			t.Fatalf("key %d moved to s2 when s2 lost weight", i)
		}
	}
	if r := float64(share(half, "be/s2")) / float64(share(full, "be/s2")); r < 0.35 || r > 0.65 {
		t.Errorf("s2 at half weight kept %.2f of its keys, want ~0.5", r)
	}
	fs2[2].w.Store(1000) // above its configured weight: no growth
	if over := assign(p2, keys, nil); countMoves(t, full, over, nil) != 0 {
		t.Error("weight above the configured one changed the mapping")
	}
}

func TestRingReload(t *testing.T) {
	keys := keyHashes(ringKeys)
	const n = 10
	fs := newFakes(1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
	before := assign(mustNew(t, Source, fs), keys, nil)

	// Same servers in another order: the same mapping.
	rev := make([]*fake, n)
	for i := range fs {
		rev[n-1-i] = fs[i]
	}
	if got := assign(mustNew(t, Source, rev), keys, nil); countMoves(t, before, got, nil) != 0 {
		t.Error("config order changed the mapping")
	}

	// One server removed by a reload.
	without := append(append([]*fake{}, fs[:4]...), fs[5:]...)
	after := assign(mustNew(t, Source, without), keys, nil)
	moved := countMoves(t, before, after, map[string]bool{"be/s4": true})
	if frac := float64(moved) / ringKeys; frac > 1.5/n {
		t.Errorf("removing 1 of %d servers moved %.3f of keys, want <= %.3f", n, frac, 1.5/n)
	}
	t.Logf("reload without s4: %.2f%% of keys moved", 100*float64(moved)/ringKeys)

	// One server added: only keys that now go to it move.
	added := append(append([]*fake{}, fs...), newFakes(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)[10])
	after = assign(mustNew(t, Source, added), keys, nil)
	moved = 0
	for i := range before {
		if before[i] != after[i] {
			moved++
			if after[i] != "be/s10" {
				t.Fatalf("key %d moved %s -> %s, not to the new server", i, before[i], after[i])
			}
		}
	}
	if frac := float64(moved) / ringKeys; frac > 1.5/(n+1) {
		t.Errorf("adding an 11th server moved %.3f of keys", frac)
	}
}

func TestRingFairness(t *testing.T) {
	keys := keyHashes(ringKeys)
	for _, n := range []int{3, 10, 50} {
		weights := make([]int, n)
		for i := range weights {
			weights[i] = 100
		}
		fs := newFakes(weights...)
		got := assign(mustNew(t, Source, fs), keys, nil)
		lo, hi := 2.0, 0.0
		for _, f := range fs {
			r := float64(share(got, f.id)) * float64(n) / ringKeys
			lo, hi = min(lo, r), max(hi, r)
		}
		t.Logf("%d servers: share/fair between %.3f and %.3f", n, lo, hi)
		if lo < 0.75 || hi > 1.25 {
			t.Errorf("%d servers: share/fair between %.3f and %.3f, want within ±25%%", n, lo, hi)
		}
	}
}

// cfgFake reports a configured weight apart from its current one.
type cfgFake struct {
	*fake
	cfg int
}

func (c cfgFake) ConfigWeight() int { return c.cfg }

func TestRingSizing(t *testing.T) {
	for _, tc := range []struct{ max, ref int64 }{
		{-5, 1}, {0, 1}, {1, 1}, {2, 2}, {3, 4}, {100, 128}, {128, 128}, {129, 256}, {256, 256},
	} {
		if got := refWeight(tc.max); got != tc.ref {
			t.Errorf("refWeight(%d) = %d, want %d", tc.max, got, tc.ref)
		}
	}
	// A server down at construction (weight 0) is sized like the heaviest,
	// so it gets a full share when it comes up.
	fs := newFakes(10, 10, 0)
	r := mustNew(t, Source, fs).(*ring)
	if got, want := r.pointsFor(r.cfgW[2]), r.pointsFor(10); got != want || len(r.points) != 3*want {
		t.Errorf("down server got %d points, want %d like the others", got, want)
	}
	// ConfigWeighter sizes by the configured weight even in slowstart.
	fs = newFakes(100, 1)
	list := []Server{fs[0], cfgFake{fs[1], 50}}
	p, err := New(Source, list)
	if err != nil {
		t.Fatal(err)
	}
	r = p.(*ring)
	if want := pointsPerServer*100/128 + pointsPerServer*50/128; len(r.points) != want {
		t.Errorf("ring has %d points, want %d", len(r.points), want)
	}
	keys := keyHashes(20000)
	slow := share(assign(p, keys, nil), "be/s1")
	fs[1].w.Store(50)
	full := share(assign(p, keys, nil), "be/s1")
	if slow == 0 || slow*10 > full || full < 20000/5 {
		t.Errorf("slowstart server owns %d keys at weight 1, %d at 50", slow, full)
	}
	// Weights much smaller than the reference still get at least one point.
	r = mustNew(t, Source, newFakes(256, 1)).(*ring)
	if got := r.pointsFor(1); got != 1 {
		t.Errorf("weight 1 of 256: %d points, want 1", got)
	}
}

// TestRingReloadUnequal removes the single heaviest server and adds a light
// one: as long as the highest weight stays within its power of two, only the
// keys of the removed server and those now owned by the new one move.
func TestRingReloadUnequal(t *testing.T) {
	keys := keyHashes(ringKeys)
	fs := newFakes(120, 100, 100, 100, 100, 100, 100, 100, 70, 30)
	before := assign(mustNew(t, Source, fs), keys, nil)
	next := append(append([]*fake{}, fs[1:]...), &fake{id: "be/new"})
	next[len(next)-1].w.Store(50)
	after := assign(mustNew(t, Source, next), keys, nil)
	moved := 0
	for i := range before {
		if before[i] == after[i] {
			continue
		}
		moved++
		if before[i] != "be/s0" && after[i] != "be/new" {
			t.Fatalf("key %d moved %s -> %s", i, before[i], after[i])
		}
	}
	t.Logf("reload -s0(120) +new(50): %.2f%% of keys moved", 100*float64(moved)/ringKeys)
}

// TestRingMostlyDown walks a long way round the ring: with one server left
// up out of many it must still be found, and with none, nil.
func TestRingMostlyDown(t *testing.T) {
	ws := make([]int, 300) // beyond the reject cache
	for i := range ws {
		ws[i] = 1
	}
	for _, n := range []int{20, 300} {
		fs := newFakes(ws[:n]...)
		p := mustNew(t, Source, fs)
		for _, f := range fs {
			f.w.Store(0)
		}
		if s := p.Pick(42, nil); s != nil {
			t.Errorf("%d servers all down: picked %v", n, s.ID())
		}
		fs[n/2].w.Store(1)
		rng := rand.New(rand.NewPCG(5, 6))
		for range 200 {
			if s := p.Pick(rng.Uint64(), nil); s != fs[n/2] {
				t.Fatalf("%d servers, one up: picked %v", n, s)
			}
		}
	}
}

func TestHashes(t *testing.T) {
	for _, s := range []string{"", "a", "/index.html", "10.0.0.1"} {
		if HashString(s) != HashBytes([]byte(s)) {
			t.Errorf("HashString(%q) != HashBytes", s)
		}
	}
	if HashString("/a") == HashString("/b") {
		t.Error("HashString collides on /a and /b")
	}
	v4 := netip.MustParseAddr("192.0.2.1")
	if HashIP(v4) != HashIP(netip.MustParseAddr("::ffff:192.0.2.1")) {
		t.Error("IPv4 and IPv4-mapped IPv6 hash differently")
	}
	if HashIP(netip.MustParseAddr("fe80::1%eth0")) != HashIP(netip.MustParseAddr("fe80::1")) {
		t.Error("zone changes the hash")
	}
	if HashIP(v4) == HashIP(netip.MustParseAddr("192.0.2.2")) || HashIP(v4) == HashIP(netip.Addr{}) {
		t.Error("distinct addresses share a hash")
	}
	// Neighbouring client addresses spread over the ring (source policy on
	// a /16 of clients).
	fs := newFakes(1, 1, 1, 1)
	p := mustNew(t, Source, fs)
	counts := make([]int, len(fs))
	for i := range 1 << 16 {
		a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		counts[index(fs, p.Pick(HashIP(a), nil))]++
	}
	for i, c := range counts {
		if c < (1<<16)/4*7/10 || c > (1<<16)/4*13/10 {
			t.Errorf("server %d got %d of 65536 adjacent client addresses (%v)", i, c, counts)
		}
	}
	ip6 := netip.MustParseAddr("2001:db8::1")
	if n := testing.AllocsPerRun(100, func() {
		HashIP(v4)
		HashIP(ip6)
		HashString("/x")
	}); n != 0 {
		t.Errorf("hashing allocates %v times", n)
	}
}
