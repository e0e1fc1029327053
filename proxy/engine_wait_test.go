package proxy

import (
	"log/slog"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A loop that keeps finding events never parks, so the runtime's poller can
// be left without a thread; wait then starts a goroutine (the nudge) at most
// once per nudgeAfter, and not at all when the loop parked within it.
func TestBusyLoopNudges(t *testing.T) {
	l := waitLoop(t)
	nudges := 0
	l.nudge = func() { nudges++ }
	signal(t, l)
	l.base = time.Now().Add(-time.Second) // so the last park (0) was a second ago

	if n := l.wait(); n != 1 || nudges != 1 {
		t.Fatalf("busy for a second: wait gave %d events and %d nudges, want 1 and 1", n, nudges)
	}
	if n := l.wait(); n != 1 || nudges != 1 {
		t.Fatalf("at once again: %d events and %d nudges, want 1 and still 1", n, nudges)
	}
	l.nudged -= int64(2 * nudgeAfter)
	if n := l.wait(); n != 1 || nudges != 2 {
		t.Fatalf("busy for another nudgeAfter: %d events and %d nudges, want 1 and 2", n, nudges)
	}

	// nothing pending: the loop parks until its sweep is due, and notes it
	drainWake(t, l)
	l.nudged -= int64(2 * nudgeAfter)
	before := int64(time.Since(l.base))
	l.next = before + int64(5*time.Millisecond)
	if n := l.wait(); n != 0 {
		t.Fatalf("parked until the sweep: %d events, want 0", n)
	}
	if l.parked < before {
		t.Fatalf("a park at %v was not noted (parked %v)", time.Duration(before), time.Duration(l.parked))
	}
	if nudges != 3 {
		// the nudge before that park: the previous one was over nudgeAfter ago
		t.Fatalf("%d nudges, want 3", nudges)
	}
}

// Before parking, wait yields the CPU once and polls again: what arrived
// during the yield is returned without a park. With events pending, or
// sessions on the ready list, it does not yield.
func TestWaitYieldsBeforePark(t *testing.T) {
	l := waitLoop(t)
	yields := 0
	arrive := func() { // an event comes in while the loop is yielding
		yields++
		signal(t, l)
	}
	l.yield = arrive
	l.next = int64(time.Since(l.base)) + int64(200*time.Millisecond) // bounds the park the yield should avoid
	if n := l.wait(); n != 1 || yields != 1 {
		t.Fatalf("an event during the yield: wait gave %d events after %d yields, want 1 after 1", n, yields)
	}
	if l.parked != 0 {
		t.Fatalf("the loop parked (at %v) though the event came in its yield", time.Duration(l.parked))
	}
	if n := l.wait(); n != 1 || yields != 1 { // the eventfd stays readable
		t.Fatalf("an event pending: %d events after %d yields, want 1 and no new yield", n, yields)
	}

	drainWake(t, l)
	l.yield = func() { yields++ }
	l.ready = append(l.ready, &esession{})
	if n := l.wait(); n != 0 || yields != 1 {
		t.Fatalf("a session ready, no events: %d events after %d yields, want 0 and no new yield", n, yields)
	}
	l.ready = l.ready[:0]

	before := int64(time.Since(l.base))
	l.next = before + int64(5*time.Millisecond)
	if n := l.wait(); n != 0 || yields != 2 {
		t.Fatalf("nothing pending: %d events after %d yields, want 0 after 2", n, yields)
	}
	if l.parked < before {
		t.Fatalf("the park at %v was not noted (parked %v)", time.Duration(before), time.Duration(l.parked))
	}
}

// waitLoop is a loop for wait's tests, without nudges, closed when the test
// ends.
func waitLoop(t *testing.T) *loop {
	t.Helper()
	l, err := newLoop(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.closeFiles)
	l.nudge = func() {}
	return l
}

// signal makes l's wake eventfd readable: an event for wait until drainWake.
func signal(t *testing.T, l *loop) {
	one := [8]byte{1}
	if _, err := unix.Write(l.wake, one[:]); err != nil {
		t.Fatal(err)
	}
}

// drainWake reads l's wake eventfd: no event pending.
func drainWake(t *testing.T, l *loop) {
	var buf [8]byte
	if _, err := unix.Read(l.wake, buf[:]); err != nil {
		t.Fatal(err)
	}
}
