package healthcheck

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// scriptChecker returns scripted results and records the fake time of each call.
type scriptChecker struct {
	clk     *fakeClock
	mu      sync.Mutex
	results []bool
	calls   []time.Time
	// block, when set, is received from before the call with that index returns.
	block map[int]chan struct{}
	// took advances the fake clock during each check.
	took time.Duration
}

func (c *scriptChecker) Check(ctx context.Context) Result {
	c.mu.Lock()
	i := len(c.calls)
	c.calls = append(c.calls, c.clk.Now())
	ok := i < len(c.results) && c.results[i]
	gate, took := c.block[i], c.took
	c.mu.Unlock()
	if took > 0 {
		c.clk.Advance(took)
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
		}
	}
	if ok {
		return Result{OK: true, Reason: "status 200", Duration: 1200 * time.Microsecond}
	}
	return Result{Reason: "connect: connection refused", Duration: 1200 * time.Microsecond}
}

func (c *scriptChecker) numCalls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.calls)
}

type recorder struct {
	clk    *fakeClock
	mu     sync.Mutex
	events []Event
	at     []time.Time
}

func (r *recorder) report(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	r.at = append(r.at, r.clk.Now())
}

func (r *recorder) snapshot() ([]Event, []time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...), append([]time.Time(nil), r.at...)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// runScheduler starts s.Run and stops it at cleanup.
func runScheduler(t *testing.T, run func(context.Context)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func half() float64 { return 0.5 }

// stepTo fires timers one at a time until n events were reported; the
// first check may run without a timer (Immediate).
func stepTo(t *testing.T, clk *fakeClock, rec *recorder, n int) {
	t.Helper()
	for rec.count() < n {
		have := rec.count()
		waitFor(t, "an armed timer or a result", func() bool { return rec.count() > have || len(clk.pending()) == 1 })
		if rec.count() > have {
			continue
		}
		clk.fireNext(t)
		waitFor(t, "the check result", func() bool { return rec.count() > have })
	}
}

type wantEvent struct {
	at      time.Duration // since t0
	up      bool
	changed bool
	reason  string // substring; "" = must be empty when !changed
}

func checkEvents(t *testing.T, rec *recorder, want []wantEvent) {
	t.Helper()
	events, at := rec.snapshot()
	if len(events) != len(want) {
		t.Fatalf("got %d events, want %d: %+v", len(events), len(want), events)
	}
	for i, w := range want {
		e := events[i]
		if got := at[i].Sub(t0); got != w.at {
			t.Errorf("event %d at t0+%s, want t0+%s", i, got, w.at)
		}
		if e.Up != w.up || e.Changed != w.changed {
			t.Errorf("event %d: up=%v changed=%v, want up=%v changed=%v", i, e.Up, e.Changed, w.up, w.changed)
		}
		if w.reason != "" && !strings.Contains(e.Reason, w.reason) {
			t.Errorf("event %d reason %q, want it to contain %q", i, e.Reason, w.reason)
		}
		if !e.Changed && e.Reason != "" {
			t.Errorf("event %d: unchanged event has reason %q", i, e.Reason)
		}
	}
}

// TestSchedulerTiming walks one server through up, down and up again and
// checks the fake time of every check: interval while fully up, fastinter
// while transitioning, downinter while fully down.
func TestSchedulerTiming(t *testing.T) {
	clk := newFakeClock()
	chk := &scriptChecker{clk: clk, results: []bool{
		true,               // t0: first check decides: up
		false, false, true, // 2s, 2.5s, 3s: two failures, then a success resets
		false, false, false, // 5s, 5.5s, 6s: down at 6s
		false,       // 11s (downinter 5s): still down, counter stays 0
		true, false, // 16s, 16.5s: one success, then a failure resets
		true, true, // 21.5s, 22s: up at 22s
		true, // 24s: interval again
	}}
	rec := &recorder{clk: clk}
	s := NewScheduler(chk, Timing{
		Interval: 2 * time.Second, FastInter: 500 * time.Millisecond, DownInter: 5 * time.Second,
		Timeout: time.Second, Rise: 2, Fall: 3,
	}, Options{Start: StateUnknown, Immediate: true, Clock: clk, Rand: half}, rec.report)
	runScheduler(t, s.Run)

	stepTo(t, clk, rec, len(chk.results))
	s2 := time.Second
	ms := time.Millisecond
	checkEvents(t, rec, []wantEvent{
		{0, true, true, "first check passed: status 200 (1.2ms)"},
		{2 * s2, true, false, ""},
		{2*s2 + 500*ms, true, false, ""},
		{3 * s2, true, false, ""},
		{5 * s2, true, false, ""},
		{5*s2 + 500*ms, true, false, ""},
		{6 * s2, false, true, "3 consecutive failures, last: connect: connection refused (1.2ms)"},
		{11 * s2, false, false, ""},
		{16 * s2, false, false, ""},
		{16*s2 + 500*ms, false, false, ""},
		{21*s2 + 500*ms, false, false, ""},
		{22 * s2, true, true, "2 consecutive successes, last: status 200 (1.2ms)"},
		{24 * s2, true, false, ""},
	})
	if got := clk.waitTimer(t).Sub(t0); got != 26*time.Second {
		t.Errorf("next check at t0+%s, want t0+26s", got)
	}
	if s.State() != StateUp {
		t.Errorf("state %s, want up", s.State())
	}
}

// TestSchedulerFallExample is the timing from the brief: interval 2s,
// fastinter 500ms, fall 3: down at exactly t0+2s+500ms+500ms.
func TestSchedulerFallExample(t *testing.T) {
	clk := newFakeClock()
	chk := &scriptChecker{clk: clk, results: []bool{false, false, false}}
	rec := &recorder{clk: clk}
	s := NewScheduler(chk, Timing{Interval: 2 * time.Second, FastInter: 500 * time.Millisecond, Fall: 3},
		Options{Start: StateUp, Clock: clk, Rand: func() float64 { return 0.75 }}, rec.report)
	// Start up: the first check comes after Rand × interval = 1.5s, and
	// every later delay is jittered by (2×Rand-1)×5% = +2.5%: 512.5ms.
	runScheduler(t, s.Run)
	stepTo(t, clk, rec, 3)
	checkEvents(t, rec, []wantEvent{
		{1500 * time.Millisecond, true, false, ""},
		{2012500 * time.Microsecond, true, false, ""},
		{2525 * time.Millisecond, false, true, "3 consecutive failures"},
	})

	// Without jitter (Rand 0.5) the same walk is exactly 2s+500ms+500ms.
	clk2 := newFakeClock()
	chk2 := &scriptChecker{clk: clk2, results: []bool{true, false, false, false}}
	rec2 := &recorder{clk: clk2}
	s2 := NewScheduler(chk2, Timing{Interval: 2 * time.Second, FastInter: 500 * time.Millisecond, Fall: 3},
		Options{Start: StateUnknown, Immediate: true, Clock: clk2, Rand: half}, rec2.report)
	runScheduler(t, s2.Run)
	stepTo(t, clk2, rec2, 4)
	checkEvents(t, rec2, []wantEvent{
		{0, true, true, "first check passed"},
		{2 * time.Second, true, false, ""},
		{2*time.Second + 500*time.Millisecond, true, false, ""},
		{2*time.Second + 500*time.Millisecond + 500*time.Millisecond, false, true, "3 consecutive failures"},
	})
}

// TestSchedulerSlowChecks: delays count from the start of a check, so
// checks that run into their timeout still mark the server down within
// fall × interval; a check longer than the interval is followed at once.
func TestSchedulerSlowChecks(t *testing.T) {
	clk := newFakeClock()
	chk := &scriptChecker{clk: clk, results: []bool{false, false, false}, took: time.Second}
	rec := &recorder{clk: clk}
	s := NewScheduler(chk, Timing{Interval: 2 * time.Second, Timeout: time.Second, Fall: 3},
		Options{Start: StateUp, Immediate: true, Clock: clk, Rand: half}, rec.report)
	runScheduler(t, s.Run)
	stepTo(t, clk, rec, 3)
	checkEvents(t, rec, []wantEvent{
		{1 * time.Second, true, false, ""},
		{3 * time.Second, true, false, ""},
		{5 * time.Second, false, true, "3 consecutive failures"},
	})
	chk.mu.Lock()
	calls := append([]time.Time(nil), chk.calls...)
	chk.took = 3 * time.Second // longer than the 2s downinter
	// Hold the fifth check until the test ends (Run's context cancels it).
	chk.block = map[int]chan struct{}{4: make(chan struct{})}
	chk.mu.Unlock()
	for i, want := range []time.Duration{0, 2 * time.Second, 4 * time.Second} {
		if calls[i].Sub(t0) != want {
			t.Errorf("check %d started at t0+%s, want t0+%s", i, calls[i].Sub(t0), want)
		}
	}
	// The next check starts at t0+6s and ends at t0+9s; the one after
	// follows at once, since t0+8s has passed.
	stepTo(t, clk, rec, 4)
	waitFor(t, "back-to-back check", func() bool { return chk.numCalls() == 5 })
	chk.mu.Lock()
	defer chk.mu.Unlock()
	if got := chk.calls[4].Sub(t0); got != 9*time.Second {
		t.Errorf("overrun check followed at t0+%s, want t0+9s", got)
	}
}

func TestSchedulerUnknownStartFails(t *testing.T) {
	clk := newFakeClock()
	chk := &scriptChecker{clk: clk, results: []bool{false, true}}
	rec := &recorder{clk: clk}
	s := NewScheduler(chk, Timing{Interval: time.Second, DownInter: 3 * time.Second, FastInter: 100 * time.Millisecond},
		Options{Clock: clk, Rand: func() float64 { return 0.25 }}, rec.report)
	if s.State() != StateUnknown {
		t.Fatalf("initial state %s", s.State())
	}
	runScheduler(t, s.Run)
	// Not immediate: the first check waits Rand × interval = 250ms.
	if at := clk.waitTimer(t); at.Sub(t0) != 250*time.Millisecond {
		t.Fatalf("first check at t0+%s, want t0+250ms", at.Sub(t0))
	}
	stepTo(t, clk, rec, 1)
	// Down decided at once; the next check is at downinter (-2.5% jitter with Rand 0.25).
	if at := clk.waitTimer(t); at.Sub(t0) != 250*time.Millisecond+3*time.Second-75*time.Millisecond {
		t.Errorf("second check at t0+%s", at.Sub(t0))
	}
	stepTo(t, clk, rec, 2)
	events, _ := rec.snapshot()
	if !events[0].Changed || events[0].Up || !strings.Contains(events[0].Reason, "first check failed: connect: connection refused") {
		t.Errorf("first event %+v", events[0])
	}
	if events[1].Changed || events[1].Up {
		t.Errorf("one success out of rise 2 changed state: %+v", events[1])
	}
}

func TestSchedulerStartDown(t *testing.T) {
	clk := newFakeClock()
	chk := &scriptChecker{clk: clk, results: []bool{true}}
	rec := &recorder{clk: clk}
	s := NewScheduler(chk, Timing{Rise: 1, DownInter: 4 * time.Second},
		Options{Start: StateDown, Clock: clk, Rand: half}, rec.report)
	runScheduler(t, s.Run)
	// A fully-down server spreads its first check over downinter.
	if at := clk.fireNext(t); at.Sub(t0) != 2*time.Second {
		t.Errorf("first check at t0+%s, want t0+2s", at.Sub(t0))
	}
	waitFor(t, "result", func() bool { return rec.count() == 1 })
	checkEvents(t, rec, []wantEvent{{2 * time.Second, true, true, "check passed: status 200"}})
	// Up with defaults: next check after the default 2s interval.
	if at := clk.waitTimer(t); at.Sub(t0) != 4*time.Second {
		t.Errorf("next check at t0+%s, want t0+4s", at.Sub(t0))
	}
}

func TestSchedulerForceDown(t *testing.T) {
	clk := newFakeClock()
	release := make(chan struct{})
	chk := &scriptChecker{clk: clk, results: []bool{true, true, true, true, true}, block: map[int]chan struct{}{1: release}}
	rec := &recorder{clk: clk}
	s := NewScheduler(chk, Timing{Interval: 2 * time.Second, FastInter: 500 * time.Millisecond, DownInter: time.Second, Rise: 2, Fall: 3},
		Options{Start: StateUp, Immediate: true, Clock: clk, Rand: half}, rec.report)
	runScheduler(t, s.Run)
	stepTo(t, clk, rec, 1) // t0: passes, already up
	if at := clk.waitTimer(t); at.Sub(t0) != 2*time.Second {
		t.Fatalf("next check at t0+%s", at.Sub(t0))
	}

	s.ForceDown("passive: 3 consecutive traffic failures within 10s")
	if s.State() != StateDown {
		t.Fatalf("state %s after ForceDown", s.State())
	}
	s.ForceDown("again") // already down: no second event
	waitFor(t, "the forced event", func() bool { return rec.count() == 2 })
	// The pending check moves forward to downinter (1s) from now.
	waitFor(t, "rescheduled check", func() bool {
		p := clk.pending()
		return len(p) == 1 && p[0].Equal(t0.Add(time.Second))
	})
	clk.set(t0.Add(time.Second)) // check 1 starts and blocks
	waitFor(t, "check to start", func() bool { return chk.numCalls() == 2 })
	s.ForceDown("during a check") // the in-flight success must not count
	close(release)
	waitFor(t, "in-flight result", func() bool { return rec.count() == 3 })
	stepTo(t, clk, rec, 5)
	checkEvents(t, rec, []wantEvent{
		{0, true, false, ""},
		{0, false, true, "passive: 3 consecutive traffic failures within 10s"},
		{time.Second, false, false, ""}, // started before the second ForceDown: ignored
		{2 * time.Second, false, false, ""},
		{2*time.Second + 500*time.Millisecond, true, true, "2 consecutive successes"},
	})
	events, _ := rec.snapshot()
	if !events[1].Forced || events[1].Result != (Result{}) {
		t.Errorf("forced event %+v", events[1])
	}
}

// TestSchedulerForceDownConcurrent hammers ForceDown while checks run.
func TestSchedulerForceDownConcurrent(t *testing.T) {
	var mu sync.Mutex
	var events []Event
	var calls int
	chk := CheckerFunc(func(ctx context.Context) Result {
		mu.Lock()
		calls++
		mu.Unlock()
		return Result{OK: true, Reason: "connected"}
	})
	s := NewScheduler(chk, Timing{Interval: time.Millisecond, Rise: 1, Fall: 1},
		Options{Start: StateUp, Immediate: true}, func(e Event) {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		})
	runScheduler(t, s.Run)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				s.ForceDown("test")
			}
		}()
	}
	wg.Wait()
	// Successes bring it back.
	waitFor(t, "server up again", func() bool { return s.State() == StateUp })
	mu.Lock()
	defer mu.Unlock()
	up := true
	for _, e := range events {
		if e.Changed && e.Up == up {
			t.Fatalf("change event does not change state: %+v", e)
		}
		if e.Changed {
			up = e.Up
		}
	}
	if !up {
		t.Error("last change not up")
	}
}

func TestSchedulerStopsOnCancelDuringCheck(t *testing.T) {
	started := make(chan struct{})
	chk := CheckerFunc(func(ctx context.Context) Result {
		close(started)
		<-ctx.Done()
		return Result{Reason: "timeout"}
	})
	var reported int
	s := NewScheduler(chk, Timing{Timeout: time.Hour}, Options{Immediate: true}, func(Event) { reported++ })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	<-started
	cancel()
	<-done
	if reported != 0 {
		t.Errorf("a canceled check was reported")
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		850 * time.Nanosecond:      "1µs",
		1234 * time.Microsecond:    "1.2ms",
		1003400 * time.Microsecond: "1.003s",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
