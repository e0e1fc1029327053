package healthcheck

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Passive turns real-traffic failures into a forced down: MaxFails
// consecutive failures (no Success in between) within Window trip it, and it
// calls onTrip once. It re-arms on the next Success, on Reset, or once Window
// has passed since the trip, so a server that comes back and keeps failing
// trips again. A nil *Passive, or one with MaxFails 0, ignores everything.
//
// Fail and Success are safe for concurrent use and do not allocate; Success
// is a single atomic load when there is nothing to clear.
type Passive struct {
	clock  Clock
	window time.Duration
	onTrip func(reason string)
	reason string

	dirty atomic.Bool // failures recorded or tripped: Success must clear

	mu      sync.Mutex
	fails   []time.Time // ring of the last len(fails) failure times
	n       int         // failures in the ring
	head    int         // index of the oldest failure
	tripped bool
	tripAt  time.Time
}

// NewPassive returns a passive check; zero Window means 10s, nil clock the
// system clock. onTrip runs on the goroutine whose Fail tripped it, outside
// any lock; the daemon wires it to Scheduler.ForceDown.
func NewPassive(spec PassiveSpec, clock Clock, onTrip func(reason string)) *Passive {
	if spec.MaxFails <= 0 {
		return nil
	}
	if spec.Window <= 0 {
		spec.Window = DefaultPassiveWindow
	}
	if clock == nil {
		clock = SystemClock
	}
	if onTrip == nil {
		onTrip = func(string) {}
	}
	return &Passive{
		clock:  clock,
		window: spec.Window,
		onTrip: onTrip,
		reason: fmt.Sprintf("passive: %d consecutive traffic failures within %s", spec.MaxFails, spec.Window),
		fails:  make([]time.Time, spec.MaxFails),
	}
}

// Fail records one real-traffic failure.
func (p *Passive) Fail() {
	if p == nil {
		return
	}
	p.mu.Lock()
	now := p.clock.Now() // under the lock, so the ring stays in time order
	p.dirty.Store(true)
	if p.tripped {
		if now.Sub(p.tripAt) < p.window {
			p.mu.Unlock()
			return
		}
		p.tripped = false
	}
	// Drop failures older than the window.
	for p.n > 0 && now.Sub(p.fails[p.head]) > p.window {
		p.head = (p.head + 1) % len(p.fails)
		p.n--
	}
	p.fails[(p.head+p.n)%len(p.fails)] = now
	p.n++
	if p.n < len(p.fails) {
		p.mu.Unlock()
		return
	}
	p.n, p.head = 0, 0
	p.tripped, p.tripAt = true, now
	p.mu.Unlock()
	p.onTrip(p.reason)
}

// Success records one successful use of the server: it clears the failure
// streak and re-arms a trip.
func (p *Passive) Success() {
	if p == nil || !p.dirty.Load() {
		return
	}
	p.Reset()
}

// Reset forgets all failures and re-arms.
func (p *Passive) Reset() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.n, p.head, p.tripped = 0, 0, false
	p.dirty.Store(false)
	p.mu.Unlock()
}
