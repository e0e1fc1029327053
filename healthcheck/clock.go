package healthcheck

import (
	"math/rand/v2"
	"time"
)

// Clock is the time source of schedulers and passive checks; tests inject a
// fake one.
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) Timer
}

// Timer is a one-shot timer as returned by Clock.NewTimer.
type Timer interface {
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it did.
	Stop() bool
}

// SystemClock is the real clock.
var SystemClock Clock = systemClock{}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) NewTimer(d time.Duration) Timer { return sysTimer{time.NewTimer(d)} }

type sysTimer struct{ t *time.Timer }

func (t sysTimer) C() <-chan time.Time { return t.t.C }
func (t sysTimer) Stop() bool          { return t.t.Stop() }

// Options are the run-time knobs shared by Scheduler and AgentRunner.
type Options struct {
	// Start is the state the server starts in (Scheduler only). It
	// survives reloads, so the daemon passes the state it kept.
	Start State
	// Immediate runs the first check at once instead of after a random
	// delay of 0..interval (which spreads the checks of many servers).
	Immediate bool
	// Clock defaults to SystemClock.
	Clock Clock
	// Rand returns numbers in [0,1) for the spread; default math/rand/v2.
	// 0.5 yields no jitter.
	Rand func() float64
}

func (o Options) withDefaults() Options {
	if o.Clock == nil {
		o.Clock = SystemClock
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	return o
}

// initialDelay is the delay before the first check.
func (o Options) initialDelay(interval time.Duration) time.Duration {
	if o.Immediate {
		return 0
	}
	return time.Duration(o.Rand() * float64(interval))
}

// jitter spreads d by ±5%.
func (o Options) jitter(d time.Duration) time.Duration {
	return d + time.Duration(float64(d)*defaultSpreadFraction*(2*o.Rand()-1))
}
