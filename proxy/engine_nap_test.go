package proxy

import (
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// napStep is one call of napper.update in TestNapperDecides.
type napStep struct {
	at          int64
	u           threadUsage
	on          bool
	read        bool // whether update samples at all
	naps, found int  // naps in the window before this step, and the events they found
}

func TestNapperDecides(t *testing.T) {
	w := int64(napWindow)
	busy := func(tid int, cpu, sleeps, preempts int64) threadUsage {
		return threadUsage{tid: tid, cpu: cpu, sleeps: sleeps, preempts: preempts}
	}
	cases := []struct {
		name       string
		steps      []napStep
		newThreads int
	}{
		{"first sample only starts a window", []napStep{{w, busy(7, 0, 0, 0), false, true, 0, 0}}, 1},
		{"the first sample is taken at once, even at time 0", []napStep{
			{0, busy(7, 0, 0, 0), false, true, 0, 0},
			{w / 2, busy(7, 0, 0, 0), false, false, 0, 0},
			{w, busy(7, w*9/10, 1000, 10), true, true, 0, 0},
		}, 1},
		{"busy, alone on its CPU", []napStep{
			{w, busy(7, 0, 0, 0), false, true, 0, 0},
			{2 * w, busy(7, w*9/10, 1000, 10), true, true, 0, 0},
		}, 1},
		{"within the window nothing is read", []napStep{
			{w, busy(7, 0, 0, 0), false, true, 0, 0},
			{2 * w, busy(7, w*9/10, 1000, 10), true, true, 0, 0},
			{2*w + w/2, busy(7, 0, 0, 0), true, false, 0, 0},
		}, 1},
		{"exactly half busy", []napStep{
			{w, busy(7, 0, 0, 0), false, true, 0, 0},
			{2 * w, busy(7, w/2, 1000, 0), true, true, 0, 0},
		}, 1},
		{"under half busy", []napStep{
			{w, busy(7, 0, 0, 0), false, true, 0, 0},
			{2 * w, busy(7, w/2-1, 1000, 0), false, true, 0, 0},
		}, 1},
		{"preempted in a quarter of its sleeps: CPU shared", []napStep{
			{w, busy(7, 0, 0, 0), false, true, 0, 0},
			{2 * w, busy(7, w, 1000, 250), false, true, 0, 0},
		}, 1},
		{"preempted just under a quarter", []napStep{
			{w, busy(7, 0, 0, 0), false, true, 0, 0},
			{2 * w, busy(7, w, 1000, 249), true, true, 0, 0},
		}, 1},
		{"never slept: nothing a nap would save", []napStep{
			{w, busy(7, 0, 0, 0), false, true, 0, 0},
			{2 * w, busy(7, w, 0, 0), false, true, 0, 0},
		}, 1},
		{"moved to another thread: off, and a new window", []napStep{
			{w, busy(7, 0, 0, 0), false, true, 0, 0},
			{2 * w, busy(7, w, 1000, 0), true, true, 0, 0},
			{3 * w, busy(8, 5*w, 9000, 0), false, true, 0, 0},
			{4 * w, busy(8, 6*w, 10000, 0), true, true, 0, 0},
		}, 2},
		{"naps that find little: a rest of napRest windows", append([]napStep{
			{w, busy(7, 0, 0, 0), false, true, 0, 0},
			{2 * w, busy(7, w, 1000, 0), true, true, 0, 0},
			{3 * w, busy(7, 2*w, 2000, 0), false, true, napJudge, napJudge*5/4 - 1},
		}, append(restSteps(4*w, napRest-1, busy),
			napStep{(3 + napRest) * w, busy(7, (2+napRest)*w, 2000+napRest*1000, 0), true, true, 0, 0})...), 1},
		{"naps that find enough: on", []napStep{
			{w, busy(7, 0, 0, 0), false, true, 0, 0},
			{2 * w, busy(7, w, 1000, 0), true, true, 0, 0},
			{3 * w, busy(7, 2*w, 2000, 0), true, true, napJudge, napJudge * 5 / 4},
		}, 1},
		{"too few naps to judge", []napStep{
			{w, busy(7, 0, 0, 0), false, true, 0, 0},
			{2 * w, busy(7, w, 1000, 0), true, true, 0, 0},
			{3 * w, busy(7, 2*w, 2000, 0), true, true, napJudge - 1, 0},
		}, 1},
		{"shared again: off", []napStep{
			{w, busy(7, 0, 0, 0), false, true, 0, 0},
			{2 * w, busy(7, w, 1000, 0), true, true, 0, 0},
			{3 * w, busy(7, 2*w, 2000, 700), false, true, 0, 0},
		}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var next threadUsage
			reads, newThreads := 0, 0
			n := napper{usage: func() threadUsage { reads++; return next }, newThread: func() { newThreads++ }}
			for i, s := range c.steps {
				next = s.u
				if s.naps > 0 {
					for range s.naps - 1 {
						n.napped(0)
					}
					n.napped(s.found)
				}
				before := reads
				n.update(s.at, 0)
				if read := reads > before; read != s.read {
					t.Fatalf("step %d: sampled %v, want %v", i, read, s.read)
				}
				if n.on != s.on {
					t.Fatalf("step %d: on %v, want %v", i, n.on, s.on)
				}
			}
			if newThreads != c.newThreads {
				t.Fatalf("%d new threads, want %d", newThreads, c.newThreads)
			}
		})
	}
}

// TestNapperComparesRates runs napper over busy windows of a load that moves
// withNaps bytes in a window with naps and without in one without; want is
// napping after each window ('+' on, '-' off).
func TestNapperComparesRates(t *testing.T) {
	probe := "-" + strings.Repeat("+", napProbe) + "-" + strings.Repeat("+", napProbe) + "-+"
	// window 2 loses to window 1: a trial of windows 1-6, a rest of napRest
	// windows, a trial of 6 starting with naps, and a rest twice as long
	rest := "-+-+-+" + strings.Repeat("-", napRest) + "+-+-+-" + strings.Repeat("-", 2*napRest) + "+"
	// window 12 (the first without naps) is lucky and starts a trial, which
	// naps win overall (3100 against 3000 bytes)
	lucky := "-" + strings.Repeat("+", napProbe) + "-+-+-" + strings.Repeat("+", napProbe) + "-"
	cases := []struct {
		name              string
		withNaps, without int64
		lucky             int // the window (by its last update) that moves 10 % more
		want              string
	}{
		{"the same either way: naps, and a window without every napProbe", 1000, 1000, 0, probe},
		{"faster with naps", 1000, 500, 0, probe},
		{"faster without, but within napGain", 1000, 1049, 0, probe},
		{"faster without by more than napGain: rests, then tries again", 1000, 1051, 0, rest},
		{"one lucky window without naps: no rest", 1000, 1000, napProbe + 2, lucky},
		{"nothing moved", 0, 0, 0, probe},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := int64(napWindow)
			u := threadUsage{tid: 7}
			n := napper{usage: func() threadUsage { return u }}
			var moved int64
			got := ""
			for i := range len(c.want) {
				if i > 0 {
					b := c.without
					if n.on {
						b = c.withNaps
					}
					if i == c.lucky {
						b += b / 10
					}
					moved += b
					u.cpu += w * 9 / 10
					u.sleeps += 1000
				}
				n.update(int64(i+1)*w, moved)
				got += map[bool]string{true: "+", false: "-"}[n.on]
			}
			if got != c.want {
				t.Fatalf("napping %s, want %s", got, c.want)
			}
		})
	}
}

// A trial whose windows with naps were not busy (the load went away)
// decides nothing: no rest, though only windows without naps moved bytes.
func TestNapperTrialNeedsBothKinds(t *testing.T) {
	w := int64(napWindow)
	u := threadUsage{tid: 7, cpu: w, sleeps: 1000}
	n := napper{usage: func() threadUsage { return u }, last: u, at: w, moved: 0, trial: 1, on: true,
		tally: [2]napSample{{bytes: 5000, span: 3 * w}}}
	u.cpu += w / 10 // not busy
	u.sleeps += 1000
	n.update(2*w, 1000)
	if n.trial != 0 || n.rest != 0 {
		t.Fatalf("trial %d, rest %d after a trial without busy windows with naps, want 0 and 0", n.trial, n.rest)
	}
}

// Rests double after each trial that ends against naps, up to napRestMax.
func TestNapperRestsGrow(t *testing.T) {
	w := int64(napWindow)
	u := threadUsage{tid: 7}
	n := napper{usage: func() threadUsage { return u }}
	var moved int64
	var rests []int
	for i := range 400 {
		if i > 0 {
			moved += map[bool]int64{true: 1000, false: 1100}[n.on]
			u.cpu += w * 9 / 10
			u.sleeps += 1000
		}
		before := n.rest
		n.update(int64(i+1)*w, moved)
		if n.rest > before {
			rests = append(rests, n.rest+1) // set, and the first window already counted
		}
	}
	want := []int{napRest, 2 * napRest, 4 * napRest, napRestMax, napRestMax}
	if len(rests) < len(want) || !slices.Equal(rests[:len(want)], want) {
		t.Fatalf("rests %v, want %v first", rests, want)
	}
}

// restSteps are count windows from at on, each off though the thread looks busy and alone.
func restSteps(at int64, count int, busy func(int, int64, int64, int64) threadUsage) []napStep {
	w := int64(napWindow)
	var out []napStep
	for i := range count {
		k := int64(i)
		out = append(out, napStep{at + k*w, busy(7, (3+k)*w, 3000+k*1000, 0), false, true, 0, 0})
	}
	return out
}

// With napping on, wait naps before its yield and park, and returns what
// arrived in the nap without parking. It does not nap when napping is off,
// nor when the loop has not parked for napRun.
func TestWaitNapsBeforePark(t *testing.T) {
	l := waitLoop(t)
	naps, yields := 0, 0
	arrive := func() { signal(t, l) }
	l.napFn = func() { naps++; arrive() }
	l.yield = func() { yields++ }
	drain := func() { drainWake(t, l) }
	l.now = int64(time.Since(l.base))
	l.nap = napper{usage: func() threadUsage { t.Fatal("sampled within the window"); return threadUsage{} },
		at: l.now, last: threadUsage{tid: 1}, on: true}
	l.parked = l.now
	l.next = l.now + int64(200*time.Millisecond) // bounds the park the nap should avoid

	if n := l.wait(); n != 1 || naps != 1 || yields != 0 {
		t.Fatalf("an event during the nap: %d events, %d naps, %d yields; want 1, 1, 0", n, naps, yields)
	}
	if l.parked != l.now {
		t.Fatalf("the loop parked (at %v) though the event came in its nap", time.Duration(l.parked))
	}
	if l.nap.naps != 1 || l.nap.found != 1 {
		t.Fatalf("napper counted %d naps finding %d events, want 1 and 1", l.nap.naps, l.nap.found)
	}
	if n := l.wait(); n != 1 || naps != 1 {
		t.Fatalf("an event pending: %d events after %d naps, want 1 and no new nap", n, naps)
	}
	drain()

	// not parked for napRun: the loop parks, though napping is on
	l.napFn = func() { naps++ }
	l.yield = func() { yields++; arrive() }
	l.parked = l.now - int64(napRun)
	if n := l.wait(); n != 1 || naps != 1 || yields != 1 {
		t.Fatalf("busy for napRun: %d events, %d naps, %d yields; want 1, still 1, 1", n, naps, yields)
	}
	drain()

	// napping off
	l.parked = l.now
	l.nap.on = false
	if n := l.wait(); n != 1 || naps != 1 || yields != 2 {
		t.Fatalf("napping off: %d events, %d naps, %d yields; want 1, still 1, 2", n, naps, yields)
	}
	drain()

	// a nap that finds nothing: the loop yields and parks
	l.nap.on = true
	l.yield = func() { yields++ }
	l.next = l.now + int64(5*time.Millisecond)
	before := int64(time.Since(l.base))
	if n := l.wait(); n != 0 || naps != 2 || yields != 3 {
		t.Fatalf("nothing in the nap: %d events, %d naps, %d yields; want 0, 2, 3", n, naps, yields)
	}
	if l.parked < before {
		t.Fatalf("the park at %v was not noted (parked %v)", time.Duration(before), time.Duration(l.parked))
	}
	if l.nap.naps != 2 || l.nap.found != 1 {
		t.Fatalf("napper counted %d naps finding %d events, want 2 and 1", l.nap.naps, l.nap.found)
	}
}

// The real probes, on a locked thread: the usage is this thread's, its CPU
// time grows with work and its sleeps with naps, and the timer slack is set.
func TestThreadUsageAndNap(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	old, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(old), 0, 0, 0)

	setTimerSlack()
	if s, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0); err != nil || s != 1000 {
		t.Fatalf("timer slack %d (%v), want 1000 ns", s, err)
	}
	a := currentThreadUsage()
	if a.tid != unix.Gettid() {
		t.Fatalf("tid %d, want this thread's %d", a.tid, unix.Gettid())
	}
	var ru unix.Rusage
	for {
		if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
			t.Fatal(err)
		}
		if ru.Utime.Nano()+ru.Stime.Nano()-a.cpu >= int64(5*time.Millisecond) {
			break
		}
	}
	const naps = 5
	for range naps {
		nap()
	}
	b := currentThreadUsage()
	if b.tid != a.tid {
		t.Fatalf("tid changed on a locked thread: %d, %d", a.tid, b.tid)
	}
	if d := b.cpu - a.cpu; d < int64(5*time.Millisecond) {
		t.Fatalf("CPU grew by %v after 5 ms of work", time.Duration(d))
	}
	if d := b.sleeps - a.sleeps; d < naps {
		t.Fatalf("%d sleeps after %d naps", d, naps)
	}
}
