package balance

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// fake is a Server with atomically settable weight and connection count.
type fake struct {
	id string
	w  atomic.Int64
	c  atomic.Int64
}

func (f *fake) ID() string   { return f.id }
func (f *fake) Weight() int  { return int(f.w.Load()) }
func (f *fake) Conns() int64 { return f.c.Load() }

func newFakes(weights ...int) []*fake {
	fs := make([]*fake, len(weights))
	for i, w := range weights {
		fs[i] = &fake{id: fmt.Sprintf("be/s%d", i)}
		fs[i].w.Store(int64(w))
	}
	return fs
}

func servers(fs []*fake) []Server {
	out := make([]Server, len(fs))
	for i, f := range fs {
		out[i] = f
	}
	return out
}

func index(fs []*fake, s Server) int {
	for i, f := range fs {
		if Server(f) == s {
			return i
		}
	}
	return -1
}

func mustNew(t testing.TB, name string, fs []*fake) Policy {
	t.Helper()
	p, err := New(name, servers(fs))
	if err != nil {
		t.Fatalf("New(%q): %v", name, err)
	}
	if r, ok := p.(*random2); ok {
		r.int64n = rand.New(rand.NewPCG(1, 2)).Int64N
	}
	return p
}

func TestNew(t *testing.T) {
	for _, name := range Names() {
		if _, err := New(name, servers(newFakes(1, 1))); err != nil {
			t.Errorf("New(%q): %v", name, err)
		}
	}
	for _, name := range []string{"", "RoundRobin", "static-rr", "hdr"} {
		if _, err := New(name, nil); !errors.Is(err, ErrUnknownPolicy) {
			t.Errorf("New(%q) error = %v, want ErrUnknownPolicy", name, err)
		}
	}
	if _, err := New(RoundRobin, []Server{newFakes(1)[0], nil}); err == nil {
		t.Error("New with a nil server: no error")
	}
}

// TestNewCopiesList checks that changing the caller's slice after New does
// not change the policy.
func TestNewCopiesList(t *testing.T) {
	fs := newFakes(1, 1)
	list := servers(fs)
	for _, name := range Names() {
		p, err := New(name, list)
		if err != nil {
			t.Fatal(err)
		}
		saved := list[0]
		list[0] = list[1]
		for i := range 50 {
			if got := p.Pick(uint64(i), func(s Server) bool { return s == fs[1] }); got != fs[0] {
				t.Errorf("%s: picked %v after caller changed its slice, want s0", name, got)
				break
			}
		}
		list[0] = saved
	}
}

// TestNeverPickIneligible covers, for every policy: no servers, all down,
// all skipped, and that a down or skipped server is never chosen.
func TestNeverPickIneligible(t *testing.T) {
	skipS2 := func(s Server) bool { return s.ID() == "be/s2" }
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			if got := mustNew(t, name, nil).Pick(1, nil); got != nil {
				t.Errorf("no servers: picked %v", got.ID())
			}
			if got := mustNew(t, name, newFakes(0, 0, -1)).Pick(1, nil); got != nil {
				t.Errorf("all down: picked %v", got.ID())
			}
			all := func(Server) bool { return true }
			if got := mustNew(t, name, newFakes(1, 2, 3)).Pick(1, all); got != nil {
				t.Errorf("all skipped: picked %v", got.ID())
			}

			fs := newFakes(1, 0, 5, 2)
			p := mustNew(t, name, fs)
			seen := make([]int, len(fs))
			for i := range 4000 {
				s := p.Pick(HashString(fmt.Sprint(i)), skipS2)
				if s == nil {
					t.Fatalf("pick %d: nil with servers up", i)
				}
				seen[index(fs, s)]++
			}
			if seen[1] != 0 || seen[2] != 0 {
				t.Errorf("picks %v: down s1 or skipped s2 chosen", seen)
			}
			if name != First && (seen[0] == 0 || seen[3] == 0) {
				t.Errorf("picks %v: an eligible server was never chosen", seen)
			}

			// Weight changes apply to the next pick.
			fs[0].w.Store(0)
			fs[3].w.Store(0)
			if got := p.Pick(7, skipS2); got != nil {
				t.Errorf("after all remaining went down: picked %v", got.ID())
			}
			fs[3].w.Store(1)
			if got := p.Pick(7, skipS2); got != fs[3] {
				t.Errorf("after s3 came back: picked %v, want s3", got)
			}
		})
	}
}

// TestDistribution checks every policy hands out picks in proportion to
// weight. Where the policy looks at load, connections accumulate as they
// would under a steady stream of long connections.
func TestDistribution(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		picks   int
		hold    bool    // count each pick as an open connection
		tol     float64 // allowed relative deviation per server
	}{
		{RoundRobin, []int{1, 1, 1}, 6000, false, 0},
		{RoundRobin, []int{1, 2, 3}, 6000, false, 0},
		{RoundRobin, []int{100, 50, 0, 7}, 15700, false, 0},
		{LeastConn, []int{1, 1, 1}, 6000, true, 0.001},
		{LeastConn, []int{1, 2, 3}, 6000, true, 0.001},
		{LeastConn, []int{1, 1, 1}, 6000, false, 0}, // idle: ties rotate evenly
		{Random2, []int{1, 1, 1}, 6000, true, 0.01},
		{Random2, []int{1, 2, 3}, 6000, true, 0.01},
		{Random2, []int{1, 1, 1}, 60000, false, 0.03}, // idle: weighted random
		{Random2, []int{1, 2, 3}, 60000, false, 0.03},
		// A ring share's spread is about 1/sqrt(points): ~6% for 256
		// points, ~12.5% for the 64 points of weight 1 against 3.
		{Source, []int{1, 1, 1}, 60000, false, 0.20},
		{Source, []int{1, 2, 3}, 60000, false, 0.20},
		{URIHash, []int{1, 2, 3}, 60000, false, 0.20},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%v/hold=%v", tc.name, tc.weights, tc.hold), func(t *testing.T) {
			fs := newFakes(tc.weights...)
			p := mustNew(t, tc.name, fs)
			got := make([]int, len(fs))
			for i := range tc.picks {
				s := p.Pick(HashString(fmt.Sprintf("key-%d", i)), nil)
				if s == nil {
					t.Fatal("nil pick")
				}
				got[index(fs, s)]++
				if tc.hold {
					s.(*fake).c.Add(1)
				}
			}
			sum := 0
			for _, w := range tc.weights {
				sum += w
			}
			for i, w := range tc.weights {
				want := float64(tc.picks) * float64(w) / float64(sum)
				dev := float64(got[i]) - want
				if dev < -want*tc.tol-1 || dev > want*tc.tol+1 {
					t.Errorf("server %d (weight %d): %d picks, want %.0f ±%.1f%% (all: %v)", i, w, got[i], want, tc.tol*100, got)
				}
			}
			t.Logf("picks %v", got)
		})
	}
}

func TestFirst(t *testing.T) {
	fs := newFakes(0, 3, 1)
	p := mustNew(t, First, fs)
	for range 10 {
		if got := p.Pick(0, nil); got != fs[1] {
			t.Fatalf("picked %v, want s1 (first up)", got)
		}
	}
	full := func(s Server) bool { return s.Conns() >= 2 }
	fs[1].c.Store(2)
	if got := p.Pick(0, full); got != fs[2] {
		t.Errorf("s1 full: picked %v, want s2", got)
	}
	fs[0].w.Store(1)
	if got := p.Pick(0, full); got != fs[0] {
		t.Errorf("s0 up: picked %v, want s0", got)
	}
}

// TestConcurrentPick runs many pickers against weight flips and connection
// churn; run it under -race. s0 stays up, so a pick must never be nil.
func TestConcurrentPick(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			fs := newFakes(1, 5, 5, 5, 5, 5, 5, 5)
			p, err := New(name, servers(fs))
			if err != nil {
				t.Fatal(err)
			}
			var stop atomic.Bool
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(3, 4))
				for i := 0; i < 200000 && !stop.Load(); i++ {
					fs[1+rng.IntN(len(fs)-1)].w.Store(int64(rng.IntN(4) * 3))
				}
			}()
			const pickers, picks = 8, 5000
			errs := make(chan string, pickers)
			var pwg sync.WaitGroup
			for g := range pickers {
				pwg.Add(1)
				go func() {
					defer pwg.Done()
					tried := fs[1+g%(len(fs)-1)]
					skip := func(s Server) bool { return s == tried }
					for i := range picks {
						s := p.Pick(uint64(g*picks+i)*0x9e3779b97f4a7c15, skip)
						if s == nil {
							errs <- "nil pick while s0 is up"
							return
						}
						if s == tried {
							errs <- "picked a skipped server"
							return
						}
						f := s.(*fake)
						f.c.Add(1)
						if i%2 == 0 {
							f.c.Add(-1)
						}
					}
				}()
			}
			pwg.Wait()
			stop.Store(true)
			wg.Wait()
			close(errs)
			for e := range errs {
				t.Error(e)
			}
		})
	}
}

// TestPickDoesNotAllocate guards the hot-path contract.
func TestPickDoesNotAllocate(t *testing.T) {
	for _, name := range Names() {
		fs := newFakes(3, 0, 1, 2, 5, 1, 1, 1)
		p := mustNew(t, name, fs)
		skip := func(s Server) bool { return s == Server(fs[4]) }
		var h uint64
		allocs := testing.AllocsPerRun(1000, func() {
			h += 0x9e3779b97f4a7c15
			p.Pick(h, skip)
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocs per Pick, want 0", name, allocs)
		}
	}
}
