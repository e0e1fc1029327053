package balance

import (
	"math"
	"strings"
	"testing"
)

func pickSeq(p Policy, fs []*fake, n int, skip func(Server) bool) string {
	var b strings.Builder
	for range n {
		s := p.Pick(0, skip)
		if s == nil {
			b.WriteByte('-')
			continue
		}
		b.WriteByte(byte('a' + index(fs, s)))
	}
	return b.String()
}

func TestRoundRobinSequence(t *testing.T) {
	tests := []struct {
		weights []int
		want    string
	}{
		{[]int{5, 1, 1}, "aabacaa" + "aabacaa"},
		{[]int{1, 1, 1}, "abcabc"},
		{[]int{1, 2, 3}, "cbacbc" + "cbacbc"},
		{[]int{0, 1, 0, 1}, "bdbd"},
		{[]int{0, 0}, "---"},
	}
	for _, tc := range tests {
		fs := newFakes(tc.weights...)
		p := mustNew(t, RoundRobin, fs)
		if got := pickSeq(p, fs, len(tc.want), nil); got != tc.want {
			t.Errorf("weights %v: sequence %q, want %q", tc.weights, got, tc.want)
		}
	}
}

// TestRoundRobinSmooth checks that every window of sum(weights) consecutive
// picks holds exactly each server's weight, i.e. no bursts.
func TestRoundRobinSmooth(t *testing.T) {
	weights := []int{7, 3, 1, 5}
	fs := newFakes(weights...)
	p := mustNew(t, RoundRobin, fs)
	seq := pickSeq(p, fs, 16*20, nil)
	for start := 0; start+16 <= len(seq); start += 16 {
		for i, w := range weights {
			if got := strings.Count(seq[start:start+16], string(rune('a'+i))); got != w {
				t.Fatalf("window %d %q: server %d picked %d times, want %d", start/16, seq[start:start+16], i, got, w)
			}
		}
	}
	// Smooth: weight 7 of 16 never gets three picks in a row.
	if strings.Contains(seq, "aaa") {
		t.Errorf("sequence %q has a burst of 3 for weight 7 of 16", seq[:16])
	}
}

func TestRoundRobinRuntimeWeights(t *testing.T) {
	fs := newFakes(1, 1)
	p := mustNew(t, RoundRobin, fs)
	pickSeq(p, fs, 11, nil)
	fs[1].w.Store(3)
	seq := pickSeq(p, fs, 400, nil)
	if a, b := strings.Count(seq, "a"), strings.Count(seq, "b"); a < 99 || a > 101 || b < 299 || b > 301 {
		t.Errorf("after weight change 1:3: a=%d b=%d over 400 picks", a, b)
	}
	// A skipped server keeps its place: skipping b once does not reorder the rest.
	fs = newFakes(1, 1, 1)
	p = mustNew(t, RoundRobin, fs)
	skipB := func(s Server) bool { return s == fs[1] }
	got := pickSeq(p, fs, 1, nil) + pickSeq(p, fs, 1, skipB) + pickSeq(p, fs, 4, nil)
	if strings.Count(got[2:], "b") < 1 || strings.Contains(got, "-") {
		t.Errorf("sequence with a skip %q", got)
	}
	// A server coming back from weight 0 joins the rotation at once.
	fs = newFakes(1, 0)
	p = mustNew(t, RoundRobin, fs)
	pickSeq(p, fs, 5, nil)
	fs[1].w.Store(1)
	if got := pickSeq(p, fs, 4, nil); strings.Count(got, "b") != 2 {
		t.Errorf("after s1 came back: %q, want two b", got)
	}
}

func TestLeastConnPicksLeastLoaded(t *testing.T) {
	tests := []struct {
		weights []int
		conns   []int64
		want    int
	}{
		{[]int{1, 1, 1}, []int64{5, 2, 7}, 1},
		{[]int{1, 2}, []int64{4, 6}, 1},                 // 4/1 > 6/2
		{[]int{1, 3}, []int64{1, 4}, 0},                 // 1/1 < 4/3
		{[]int{100, 1}, []int64{99, 1}, 0},              // 0.99 < 1
		{[]int{1, 1, 1}, []int64{9, 0, 0}, -1},          // tie between 1 and 2
		{[]int{0, 1}, []int64{0, 1000}, 1},              // down is never least loaded
		{[]int{1, 1}, []int64{-3, 0}, -1},               // negative counts as zero
		{[]int{256, 256}, []int64{1 << 62, 1 << 61}, 1}, // no overflow
	}
	for _, tc := range tests {
		fs := newFakes(tc.weights...)
		for i, c := range tc.conns {
			fs[i].c.Store(c)
		}
		p := mustNew(t, LeastConn, fs)
		seen := map[int]bool{}
		for range 6 {
			seen[index(fs, p.Pick(0, nil))] = true
		}
		switch {
		case tc.want >= 0 && (len(seen) != 1 || !seen[tc.want]):
			t.Errorf("weights %v conns %v: picked %v, want only %d", tc.weights, tc.conns, seen, tc.want)
		case tc.want < 0 && len(seen) != 2:
			t.Errorf("weights %v conns %v: picked %v, want ties to rotate", tc.weights, tc.conns, seen)
		}
	}
}

func TestCmpLoad(t *testing.T) {
	tests := []struct {
		ca     int64
		wa     int
		cb     int64
		wb     int
		expect int
	}{
		{0, 1, 0, 5, 0},
		{1, 1, 2, 2, 0},
		{1, 2, 1, 1, -1},
		{3, 1, 5, 2, 1},
		{math.MaxInt64, 1000, math.MaxInt64, 999, -1},
		{math.MaxInt64, 1 << 40, math.MaxInt64 - 1, 1 << 40, 1},
	}
	for _, tc := range tests {
		if got := cmpLoad(tc.ca, tc.wa, tc.cb, tc.wb); got != tc.expect {
			t.Errorf("cmpLoad(%d/%d, %d/%d) = %d, want %d", tc.ca, tc.wa, tc.cb, tc.wb, got, tc.expect)
		}
	}
}

func TestRandom2PrefersLessLoaded(t *testing.T) {
	fs := newFakes(1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
	for _, f := range fs[1:] {
		f.c.Store(100)
	}
	fs[0].c.Store(0)
	fs[9].c.Store(1000)
	p := mustNew(t, Random2, fs)
	const n = 20000
	got := make([]int, len(fs))
	for range n {
		got[index(fs, p.Pick(0, nil))]++
	}
	// s0 wins whenever it is one of the two distinct draws: 1-(9/10)(8/9) = 20%.
	if f := float64(got[0]) / n; f < 0.18 || f > 0.22 {
		t.Errorf("idle server picked %.1f%% of the time, want ~20%% (picks %v)", f*100, got)
	}
	// The most loaded server loses every pair it is drawn into.
	if got[9] != 0 {
		t.Errorf("most loaded server picked %d times (picks %v)", got[9], got)
	}

	// Two servers: the draws are always distinct, so the lighter one always wins.
	fs = newFakes(5, 5)
	fs[0].c.Store(7)
	p = mustNew(t, Random2, fs)
	for range 100 {
		if s := p.Pick(0, nil); s != fs[1] {
			t.Fatalf("picked %v, want the less loaded s1", s.ID())
		}
	}
	// Weight counts: 6 conns on weight 4 is lighter than 2 on weight 1.
	fs = newFakes(4, 1)
	fs[0].c.Store(6)
	fs[1].c.Store(2)
	p = mustNew(t, Random2, fs)
	for range 100 {
		if s := p.Pick(0, nil); s != fs[0] {
			t.Fatalf("picked %v, want s0 (6/4 < 2/1)", s.ID())
		}
	}
}

// TestRandom2WeightsShrinkMidPick forces the draw to land beyond the weights
// actually seen in the next pass (a concurrent weight drop).
func TestRandom2WeightsShrinkMidPick(t *testing.T) {
	fs := newFakes(10, 10, 10)
	p := mustNew(t, Random2, fs).(*random2)
	calls := 0
	p.int64n = func(n int64) int64 {
		calls++
		if calls == 1 {
			fs[2].w.Store(0) // vanishes between the count and the draw
		}
		return n - 1
	}
	s := p.Pick(0, nil)
	if s != fs[0] && s != fs[1] {
		t.Errorf("picked %v after s2 dropped, want s0 or s1", s)
	}
}

// TestRoundRobinFlapNoBurst takes a server down whenever it is owed picks,
// again and again; when it stays up it must get its share without a burst.
func TestRoundRobinFlapNoBurst(t *testing.T) {
	fs := newFakes(1, 1, 1)
	p := mustNew(t, RoundRobin, fs).(*roundRobin)
	for range 2000 {
		p.Pick(0, nil)
		if p.current[2] > 0 {
			fs[2].w.Store(0)
			p.Pick(0, nil)
			fs[2].w.Store(1)
		}
	}
	var sum int64
	for _, c := range p.current {
		sum += c
	}
	if sum != 0 {
		t.Errorf("sum of current values drifted to %d", sum)
	}
	seq := pickSeq(p, fs, 300, nil)
	if strings.Contains(seq, "cc") {
		t.Errorf("server back from flapping got a burst: %q", seq)
	}
	for i := range fs {
		if n := strings.Count(seq, string(rune('a'+i))); n < 99 || n > 101 {
			t.Errorf("server %d: %d of 300 picks after flapping", i, n)
		}
	}
}
