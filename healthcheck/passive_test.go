package healthcheck

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type tripCounter struct {
	n      atomic.Int32
	reason atomic.Value
}

func (c *tripCounter) trip(reason string) { c.n.Add(1); c.reason.Store(reason) }

func TestPassiveTrip(t *testing.T) {
	clk := newFakeClock()
	var trips tripCounter
	p := NewPassive(PassiveSpec{MaxFails: 3, Window: 10 * time.Second}, clk, trips.trip)

	p.Fail()
	clk.Advance(4 * time.Second)
	p.Fail()
	if trips.n.Load() != 0 {
		t.Fatal("tripped after 2 failures")
	}
	clk.Advance(6 * time.Second) // third failure exactly 10s after the first
	p.Fail()
	if trips.n.Load() != 1 {
		t.Fatalf("%d trips after 3 failures in 10s", trips.n.Load())
	}
	if r := trips.reason.Load(); r != "passive: 3 consecutive traffic failures within 10s" {
		t.Errorf("reason %q", r)
	}
	// Further failures belong to the same trip.
	for i := 0; i < 10; i++ {
		p.Fail()
	}
	if trips.n.Load() != 1 {
		t.Fatalf("%d trips, want one per trip", trips.n.Load())
	}
	// A success re-arms it.
	p.Success()
	p.Fail()
	p.Fail()
	p.Fail()
	if trips.n.Load() != 2 {
		t.Fatalf("%d trips after re-arm", trips.n.Load())
	}
	// So does the window passing since the trip: failures then count afresh.
	clk.Advance(10*time.Second + time.Nanosecond)
	p.Fail()
	p.Fail()
	if trips.n.Load() != 2 {
		t.Fatal("failures before the re-arm counted")
	}
	p.Fail()
	if trips.n.Load() != 3 {
		t.Fatalf("%d trips after the window passed", trips.n.Load())
	}
}

func TestPassiveWindowSlides(t *testing.T) {
	clk := newFakeClock()
	var trips tripCounter
	p := NewPassive(PassiveSpec{MaxFails: 3, Window: 10 * time.Second}, clk, trips.trip)
	p.Fail() // t0
	clk.Advance(6 * time.Second)
	p.Fail() // t0+6
	clk.Advance(5 * time.Second)
	p.Fail() // t0+11: t0 is out of the window, 2 in it
	if trips.n.Load() != 0 {
		t.Fatal("tripped with a failure older than the window")
	}
	clk.Advance(time.Second)
	p.Fail() // t0+12: 6, 11, 12
	if trips.n.Load() != 1 {
		t.Fatalf("%d trips", trips.n.Load())
	}
}

func TestPassiveSuccessClearsStreak(t *testing.T) {
	clk := newFakeClock()
	var trips tripCounter
	p := NewPassive(PassiveSpec{MaxFails: 2}, clk, trips.trip)
	for i := 0; i < 100; i++ {
		p.Fail()
		p.Success()
	}
	if trips.n.Load() != 0 {
		t.Fatal("interleaved failures tripped")
	}
	p.Fail()
	p.Reset()
	p.Fail()
	if trips.n.Load() != 0 {
		t.Fatal("Reset did not clear")
	}
	p.Fail()
	if trips.n.Load() != 1 {
		t.Fatal("no trip")
	}
}

func TestPassiveOff(t *testing.T) {
	p := NewPassive(PassiveSpec{MaxFails: 0}, nil, func(string) { t.Fatal("tripped while off") })
	if p != nil {
		t.Fatal("max_fails 0 returned a live Passive")
	}
	p.Fail()
	p.Success()
	p.Reset()
}

func TestPassiveConcurrent(t *testing.T) {
	var trips tripCounter
	p := NewPassive(PassiveSpec{MaxFails: 3, Window: time.Hour}, SystemClock, trips.trip)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				p.Fail()
			}
		}()
	}
	wg.Wait()
	if n := trips.n.Load(); n != 1 {
		t.Errorf("%d trips from one burst, want 1", n)
	}
}

func TestPassiveNoAllocs(t *testing.T) {
	p := NewPassive(PassiveSpec{MaxFails: 5, Window: time.Hour}, SystemClock, func(string) {})
	if a := testing.AllocsPerRun(1000, func() { p.Fail(); p.Fail(); p.Success(); p.Success() }); a != 0 {
		t.Errorf("%v allocations per Fail/Success", a)
	}
	for i := 0; i < 10; i++ {
		p.Fail() // trips
	}
	if a := testing.AllocsPerRun(1000, func() { p.Fail() }); a != 0 {
		t.Errorf("%v allocations per Fail while tripped", a)
	}
}

// TestPassiveForcesSchedulerDown wires Passive to Scheduler.ForceDown as the
// daemon does.
func TestPassiveForcesSchedulerDown(t *testing.T) {
	clk := newFakeClock()
	chk := &scriptChecker{clk: clk, results: []bool{true, true, true}}
	rec := &recorder{clk: clk}
	s := NewScheduler(chk, Timing{Interval: 2 * time.Second, Rise: 2}, Options{Start: StateUp, Clock: clk, Rand: half}, rec.report)
	p := NewPassive(PassiveSpec{MaxFails: 2, Window: time.Second}, clk, s.ForceDown)
	runScheduler(t, s.Run)
	p.Fail()
	p.Fail()
	if s.State() != StateDown {
		t.Fatalf("state %s after passive trip", s.State())
	}
	stepTo(t, clk, rec, 3) // forced event, then two passing checks
	checkEvents(t, rec, []wantEvent{
		{0, false, true, "passive: 2 consecutive traffic failures within 1s"},
		{1 * time.Second, false, false, ""},
		{3 * time.Second, true, true, "2 consecutive successes"},
	})
}

func BenchmarkPassiveSuccess(b *testing.B) {
	p := NewPassive(PassiveSpec{MaxFails: 3}, SystemClock, func(string) {})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p.Success()
		}
	})
}

func BenchmarkPassiveFailSuccess(b *testing.B) {
	p := NewPassive(PassiveSpec{MaxFails: 3}, SystemClock, func(string) {})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p.Fail()
			p.Success()
		}
	})
}
