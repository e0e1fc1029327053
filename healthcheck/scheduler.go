package healthcheck

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// State is a server's health as seen by its checks.
type State uint8

// Health states.
const (
	// StateUnknown: no check has decided yet; the first result does.
	StateUnknown State = iota
	StateUp
	StateDown
)

func (s State) String() string {
	switch s {
	case StateUnknown:
		return "unknown"
	case StateUp:
		return "up"
	case StateDown:
		return "down"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Event reports one check result, or a forced down.
type Event struct {
	Result Result
	// Up is the server's health after this event.
	Up bool
	// Changed is set when this event changed the state (including the
	// first decision from StateUnknown).
	Changed bool
	// Reason explains a change for the log: "3 consecutive failures, last:
	// connect: connection refused (1.2ms)". Empty when nothing changed.
	Reason string
	// Forced marks the event of a ForceDown; Result is zero then.
	Forced bool
}

// Scheduler runs one server's active check with HAProxy's semantics.
//
// A health counter runs from 0 (fully down) to rise+fall-1 (fully up); the
// server is up at rise or more. A failure while up lowers it, and the fall-th
// consecutive failure marks the server down (counter 0). A success while up
// resets it to fully up. A success while down raises it, and the rise-th
// consecutive success marks the server up (fully up); a failure while down
// resets it to 0. Checks run every interval while fully up, every downinter
// while fully down, and every fastinter in between. The first check runs
// after a random 0..interval delay unless Options.Immediate is set; every
// later delay is jittered by ±5% and counts from the start of the previous
// check (at once if that check took longer), so a server that stops
// answering is marked down within interval + (fall-1) × fastinter + timeout
// of its failure. Each check gets its own Timing.Timeout.
type Scheduler struct {
	check  Checker
	t      Timing
	opts   Options
	report func(Event)
	wake   chan struct{}

	emit sync.Mutex // serialises state transitions with report calls

	mu     sync.Mutex
	state  State
	health int
	gen    uint64 // bumped by ForceDown; results of older checks do not count
}

// NewScheduler returns a scheduler for check; zero Timing fields take the
// defaults. report is called with every result, from the Run goroutine, and
// with forced downs, from the ForceDown caller; calls never overlap. report
// must not call ForceDown. Nothing runs until Run.
func NewScheduler(check Checker, t Timing, opts Options, report func(Event)) *Scheduler {
	s := &Scheduler{
		check:  check,
		t:      t.WithDefaults(),
		opts:   opts.withDefaults(),
		report: report,
		wake:   make(chan struct{}, 1),
		state:  opts.Start,
	}
	if s.report == nil {
		s.report = func(Event) {}
	}
	switch s.state {
	case StateUp:
		s.health = s.maxHealth()
	case StateDown:
		s.health = 0
	default:
		s.state = StateUnknown
	}
	return s
}

// Timing returns the effective timing, defaults applied.
func (s *Scheduler) Timing() Timing { return s.t }

// State returns the current health state.
func (s *Scheduler) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

func (s *Scheduler) maxHealth() int { return s.t.Rise + s.t.Fall - 1 }

// interval returns the delay before the next check for the current health.
func (s *Scheduler) interval() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.state == StateUnknown || s.health == s.maxHealth():
		return s.t.Interval
	case s.health == 0:
		return s.t.DownInter
	}
	return s.t.FastInter
}

// Run checks until ctx is done. It must be called at most once at a time.
func (s *Scheduler) Run(ctx context.Context) {
	clk := s.opts.Clock
	next := clk.Now().Add(s.opts.initialDelay(s.interval()))
	for {
		timer := clk.NewTimer(max(0, next.Sub(clk.Now())))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-s.wake:
			// Forced down: check again no later than downinter from now.
			timer.Stop()
			if soon := clk.Now().Add(s.opts.jitter(s.interval())); soon.Before(next) {
				next = soon
			}
			continue
		case <-timer.C():
		}
		s.mu.Lock()
		gen := s.gen
		s.mu.Unlock()
		started := clk.Now()
		cctx, cancel := context.WithTimeout(ctx, s.t.Timeout)
		res := s.check.Check(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		s.apply(res, gen)
		next = nextStart(started, s.opts.jitter(s.interval()), clk.Now())
	}
}

func (s *Scheduler) apply(res Result, gen uint64) {
	s.emit.Lock()
	defer s.emit.Unlock()
	s.mu.Lock()
	ev := Event{Result: res}
	if gen == s.gen {
		ev.Changed, ev.Reason = s.step(res)
	}
	ev.Up = s.state == StateUp
	s.mu.Unlock()
	s.report(ev)
}

// step applies one result to the health counter; s.mu is held.
func (s *Scheduler) step(res Result) (changed bool, reason string) {
	last := res.Reason + " (" + formatDuration(res.Duration) + ")"
	switch {
	case s.state == StateUnknown && res.OK:
		s.state, s.health = StateUp, s.maxHealth()
		return true, "first check passed: " + last
	case s.state == StateUnknown:
		s.state, s.health = StateDown, 0
		return true, "first check failed: " + last
	case s.state == StateUp && res.OK:
		s.health = s.maxHealth()
	case s.state == StateUp:
		if s.health > s.t.Rise {
			s.health--
			return false, ""
		}
		s.state, s.health = StateDown, 0
		if s.t.Fall == 1 {
			return true, "check failed: " + last
		}
		return true, fmt.Sprintf("%d consecutive failures, last: %s", s.t.Fall, last)
	case res.OK:
		s.health++
		if s.health < s.t.Rise {
			return false, ""
		}
		s.state, s.health = StateUp, s.maxHealth()
		if s.t.Rise == 1 {
			return true, "check passed: " + last
		}
		return true, fmt.Sprintf("%d consecutive successes, last: %s", s.t.Rise, last)
	default:
		s.health = 0
	}
	return false, ""
}

// ForceDown marks the server down now, for passive detection: it then needs
// rise consecutive successful checks, all started after this call, to come
// back, and the next check runs within downinter. It reports a Forced event
// when the server was not already down. Safe for concurrent use.
func (s *Scheduler) ForceDown(reason string) {
	s.emit.Lock()
	defer s.emit.Unlock()
	s.mu.Lock()
	was := s.state
	s.state, s.health = StateDown, 0
	s.gen++
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	if was != StateDown {
		s.report(Event{Up: false, Changed: true, Reason: reason, Forced: true})
	}
}

// nextStart schedules the next check one delay after the previous one
// started, as HAProxy does, so a slow or timing-out check does not stretch
// the detection time; a check that overran its delay is followed at once.
func nextStart(started time.Time, delay time.Duration, now time.Time) time.Time {
	next := started.Add(delay)
	if next.Before(now) {
		return now
	}
	return next
}

// formatDuration rounds d for humans: 850µs, 1.2ms, 1.003s.
func formatDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// AgentRunner queries an agent every interval (jittered ±5%, counted from
// the start of the previous query; first query after a random 0..interval
// delay unless Options.Immediate) and reports every outcome.
type AgentRunner struct {
	check    *AgentChecker
	interval time.Duration
	timeout  time.Duration
	opts     Options
	report   func(AgentEvent)
}

// NewAgentRunner returns a runner for check. Zero interval and timeout take
// the defaults (2s, 1s). report is called from the Run goroutine.
func NewAgentRunner(check *AgentChecker, interval, timeout time.Duration, opts Options, report func(AgentEvent)) *AgentRunner {
	if interval <= 0 {
		interval = DefaultAgentInterval
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if report == nil {
		report = func(AgentEvent) {}
	}
	return &AgentRunner{check: check, interval: interval, timeout: timeout, opts: opts.withDefaults(), report: report}
}

// Run queries until ctx is done.
func (a *AgentRunner) Run(ctx context.Context) {
	clk := a.opts.Clock
	delay := a.opts.initialDelay(a.interval)
	for {
		timer := clk.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C():
		}
		started, start := clk.Now(), time.Now()
		cctx, cancel := context.WithTimeout(ctx, a.timeout)
		reply, err := a.check.Check(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		a.report(AgentEvent{Reply: reply, Err: err, Duration: time.Since(start)})
		now := clk.Now()
		delay = nextStart(started, a.opts.jitter(a.interval), now).Sub(now)
	}
}
