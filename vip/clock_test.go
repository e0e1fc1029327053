package vip

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// manualClock is a Clock whose time only moves when Advance is called.
type manualClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*manualTimer
}

type manualTimer struct {
	clk    *manualClock
	c      chan time.Time
	at     time.Time
	active bool
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &manualTimer{clk: c, c: make(chan time.Time, 1), at: c.now.Add(d), active: true}
	c.timers = append(c.timers, t)
	return t
}

func (t *manualTimer) C() <-chan time.Time { return t.c }

func (t *manualTimer) Reset(d time.Duration) {
	t.clk.mu.Lock()
	defer t.clk.mu.Unlock()
	t.drain()
	t.at, t.active = t.clk.now.Add(d), true
}

func (t *manualTimer) Stop() {
	t.clk.mu.Lock()
	defer t.clk.mu.Unlock()
	t.drain()
	t.active = false
}

func (t *manualTimer) drain() {
	select {
	case <-t.c:
	default:
	}
}

// Advance moves time and fires the timers that are due.
func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, t := range c.timers {
		if t.active && !t.at.After(c.now) {
			t.active = false
			select {
			case t.c <- c.now:
			default:
			}
		}
	}
}

// armed reports whether some timer is armed to fire at exactly at.
func (c *manualClock) armed(at time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.timers {
		if t.active && t.at.Equal(at) {
			return true
		}
	}
	return false
}

// runOnClock runs inst until the test ends; the cleanup then stops it,
// moving clk on while the graceful stop waits (on clk) for a successor.
func runOnClock(t *testing.T, inst *Instance, clk *manualClock) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		inst.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		for range 1000 {
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
				clk.Advance(100 * time.Millisecond)
			}
		}
		t.Error("instance did not stop")
	})
}

// TestInstanceInjectedClock drives an instance purely by a manual clock:
// master-down after exactly 3*interval+skew, then one advert per interval.
func TestInstanceInjectedClock(t *testing.T) {
	clk := &manualClock{now: t0}
	b := newBus()
	c := icfg("a", 100)
	c.AdvertInterval = time.Second
	c.GARP.Repeat = 1 // a single GARP round: no burst timer in between
	inst, err := NewInstance(c, Options{
		Network: &fakeNet{bus: b, name: "a", primary: me}, Clock: clk, Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	runOnClock(t, inst, clk)

	down := t0.Add(MasterDownInterval(100, time.Second))
	waitFor(t, 2*time.Second, "BACKUP with the master-down timer armed", func() bool {
		return inst.Status().State == StateBackup && clk.armed(down)
	})
	clk.Advance(down.Sub(t0) - time.Millisecond)
	if s := inst.Status().State; s != StateBackup {
		t.Fatalf("state %v before master down", s)
	}
	clk.Advance(time.Millisecond)
	waitFor(t, time.Second, "MASTER at master down", func() bool { return inst.Status().State == StateMaster })
	if since := inst.Status().Since; !since.Equal(down) {
		t.Fatalf("since %v, want %v", since, down)
	}
	conn := b.conn("a")
	for i := 2; i <= 4; i++ {
		next := down.Add(time.Duration(i-1) * time.Second)
		waitFor(t, time.Second, "advert timer armed", func() bool { return clk.armed(next) })
		clk.Advance(time.Second)
		waitFor(t, time.Second, "one more advert", func() bool { return len(conn.advertPriorities()) == i })
	}
}

type flakyNet struct {
	mu    sync.Mutex
	fails int
	next  Network
}

func (n *flakyNet) Open(cfg NetConfig) (Conn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fails > 0 {
		n.fails--
		return nil, errors.New("no such interface")
	}
	return n.next.Open(cfg)
}

func TestInstanceFaultUntilInterfaceOpens(t *testing.T) {
	clk := &manualClock{now: t0}
	net := &flakyNet{fails: 2, next: &fakeNet{bus: newBus(), name: "a", primary: me}}
	inst, err := NewInstance(icfg("a", 100), Options{Network: net, Clock: clk, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	runOnClock(t, inst, clk)
	waitFor(t, time.Second, "FAULT", func() bool { return inst.Status().State == StateFault })
	if c := inst.Status().Cause; !strings.Contains(c, "no such interface") {
		t.Fatalf("cause %q", c)
	}
	for i := 0; i < 2; i++ {
		waitFor(t, time.Second, "retry timer", func() bool { return clk.armed(clk.Now().Add(time.Second)) })
		clk.Advance(time.Second)
	}
	waitFor(t, time.Second, "BACKUP once the interface opened", func() bool { return inst.Status().State == StateBackup })
}
