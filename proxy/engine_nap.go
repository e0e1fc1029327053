package proxy

import (
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A loop that finds nothing to do may nap before it parks: sleep napLength,
// keeping its P and without asking to be woken, then poll once more.
//
// A parked loop is woken by whoever makes one of its descriptors ready.
// When the loop's CPU went idle meanwhile, that waker pays for an interrupt
// to the idle CPU and its way out of idle (on a virtual machine, an exit to
// the hypervisor on each side). A napping loop is woken by its own timer and
// takes what arrived in the nap in one poll. That pays while the loop has a
// CPU to itself and is busy with short gaps between events, as when the
// clients and servers it connects run on other CPUs. Then most naps end with
// events waiting (97 % of them, bench-tcp -pin 0:1). On CPUs shared with
// busy clients and servers a parked loop's CPU rarely goes idle, wake-ups
// are cheap, and the nap's timer and second sleep cost more than they save.
//
// So napper watches the thread the loop runs on over windows of napWindow.
// The loop naps in the next window only if, in the last one, it used at
// least half the time and was preempted (involuntary context switches) in
// fewer than one of napPreemptRatio of its sleeps. Measured under load, per
// second: pinned keep-alive, 17,510 sleeps and 95 preemptions (pinned new
// connections: about one preemption in ten sleeps); on two shared CPUs,
// 5,270 and 3,301.
//
// A nap that finds one event saves one wake-up and costs the loop more CPU
// than that park would have. Pinned bulk transfers' naps found 0.85-0.92
// events each (about 1.02 per nap that found any), at 4-9 % more CPU per
// GB. So once a window's naps (at least napJudge of them) found fewer than
// 5 events per 4 naps, the loop does not nap for napRest windows; new
// connections' naps found about 1.5 each, keep-alive requests' 4.
//
// A nap delays what arrives during it, and when the clients and servers
// wait on the loop rather than the other way round, that delay is lost
// rate. Pinned keep-alive behind four connections (bench-tcp -conns 4) ran
// at 0.89x the rate and 1.10x the CPU per request with napping on; behind
// fifty it ran 1.08x faster. So the loop compares the bytes it moved per
// second with naps and without: after napProbe windows of naps in a row
// one window goes without. When a window without naps moved more than
// napGain more than its neighbour with naps, a trial of napTrial windows
// follows (those two among them), alternating, half with naps; when the
// windows without moved more than napGain more in all, the loop rests
// without napping, napRest windows at first and twice as long after each
// trial that ends the same way (up to napRestMax); after a rest a trial
// runs again. Only windows in which the loop was busy and alone (as below),
// on the same thread, count. Single windows are too noisy to decide on:
// behind four connections, single comparisons put windows with naps at
// 0.85-0.94x; behind fifty, windows without naps at 0.91-1.03x; on new
// connections behind four (where napping gained about 4 %) one window
// without naps in six came out over 5 % ahead, and resting on that ran
// 0.97x the build before (behind in 7 rounds of 7).
//
// A loop naps only if it parked within napRun. A napping loop that keeps
// finding events would never park, and a goroutine that waits for its P
// or for the runtime's poller (health checks, TLS connections) could wait
// for sysmon, up to 10 ms; parking at least once per napRun bounds that.
const (
	napLength       = 20 * time.Microsecond
	napWindow       = 100 * time.Millisecond
	napPreemptRatio = 4
	napRun          = time.Millisecond
	napJudge        = 100
	napRest         = 10
	napProbe        = 10
	napGain         = 0.05
	napTrial        = 6
	napRestMax      = 8 * napRest
)

// threadUsage is what the kernel counts for one thread (getrusage(2)).
type threadUsage struct {
	tid      int
	cpu      int64 // user and system time, nanoseconds
	sleeps   int64 // voluntary context switches
	preempts int64 // involuntary context switches
}

// napper decides whether a loop naps; it is owned by the loop's goroutine.
type napper struct {
	usage     func() threadUsage // of the calling thread
	newThread func()             // called on the thread of a sample from a thread not seen last
	at        int64              // when last sampled (loop time)
	last      threadUsage        // that sample (tid 0: none yet)
	on        bool
	naps      int64 // naps in this window
	found     int64 // events they found
	rest      int   // windows left without napping
	moved     int64 // bytes moved by the loop at the last sample
	prev      napSample
	streak    int          // windows in a row with napping on
	trial     int          // windows left in a trial
	tally     [2]napSample // a trial's windows without [0] and with [1] naps, summed
	restLen   int          // the next rest after a trial (0: napRest)
	retest    bool         // a rest has ended: a trial starts with the next window
}

// napSample is a window, or windows summed. The zero sample (no window yet,
// or the thread changed after it) is not busy, so it is never compared.
type napSample struct {
	bytes, span int64 // bytes moved, nanoseconds
	on          bool  // napping was on
	busy        bool  // the loop was busy and alone on its CPU
}

func (w napSample) rate() float64 { return float64(w.bytes) / float64(max(w.span, 1)) }

// against reports whether without moved more than napGain more than with.
func against(without, with napSample) bool { return without.rate() > with.rate()*(1+napGain) }

// count adds a busy window to the trial's tally.
func (n *napper) count(w napSample) {
	if w.busy {
		t := &n.tally[b2i(w.on)]
		t.bytes += w.bytes
		t.span += w.span
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// napped counts a nap and the events the poll after it found.
func (n *napper) napped(events int) {
	n.naps++
	n.found += int64(events)
}

// update samples the thread's usage once per napWindow and decides again;
// moved is the bytes the loop has moved so far. A sample from another
// thread than the last (the runtime moved the loop's goroutine) only starts
// a new window, and calls newThread.
func (n *napper) update(now, moved int64) {
	if n.last.tid != 0 && now-n.at < int64(napWindow) {
		return
	}
	u := n.usage()
	prev, span := n.last, now-n.at
	naps, found, bytes := n.naps, n.found, moved-n.moved
	n.at, n.last, n.naps, n.found, n.moved = now, u, 0, 0, moved
	if prev.tid != u.tid {
		if n.newThread != nil {
			n.newThread()
		}
		n.on, n.prev, n.streak, n.trial, n.retest = false, napSample{}, 0, 0, false
		n.rest = max(n.rest-1, 0)
		return
	}
	cpu, sleeps, preempts := u.cpu-prev.cpu, u.sleeps-prev.sleeps, u.preempts-prev.preempts
	w := napSample{
		bytes: bytes,
		span:  span,
		on:    n.on,
		busy:  cpu*2 >= span && sleeps > 0 && preempts*napPreemptRatio < sleeps,
	}
	switch p := n.prev; {
	case n.retest:
		n.retest, n.tally, n.trial = false, [2]napSample{}, napTrial
	case n.trial > 0:
		n.count(w)
		// a trial without busy windows of both kinds decides nothing
		if n.trial--; n.trial == 0 && n.tally[0].span > 0 && n.tally[1].span > 0 {
			n.restLen = max(n.restLen, napRest)
			if against(n.tally[0], n.tally[1]) {
				n.rest, n.restLen = n.restLen, min(2*n.restLen, napRestMax)
			} else {
				n.restLen = napRest
			}
		}
	case n.rest == 0 && p.busy && w.busy && p.on != w.on:
		without, with := p, w
		if p.on {
			without, with = w, p
		}
		if against(without, with) {
			n.tally = [2]napSample{}
			n.count(p)
			n.count(w)
			n.trial = napTrial - 2
		}
	}
	n.prev = w
	if naps >= napJudge && found*4 < naps*5 {
		n.rest, n.trial, n.retest = napRest, 0, false
	}
	switch {
	case n.rest > 0:
		n.rest--
		n.retest = n.rest == 0
		n.on = false
	case !w.busy:
		n.on = false
	case n.trial > 0:
		n.on = !w.on // alternate
	case n.streak >= napProbe:
		n.on = false // a window without naps to compare with
	default:
		n.on = true
	}
	if n.on {
		n.streak++
	} else {
		n.streak = 0
	}
}

// currentThreadUsage reads the calling thread's usage.
func currentThreadUsage() threadUsage {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_THREAD, &ru)
	return threadUsage{
		tid:      unix.Gettid(),
		cpu:      ru.Utime.Nano() + ru.Stime.Nano(),
		sleeps:   ru.Nvcsw,
		preempts: ru.Nivcsw,
	}
}

// setTimerSlack makes the calling thread's timed sleeps last 1 µs longer
// at most, not the default 50 µs: a nap lasts about napLength.
func setTimerSlack() { _ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1000, 0, 0, 0) }

// nap sleeps napLength, keeping the loop's P. Through a system call the
// runtime knows of (entersyscall), sysmon would hand the P to another
// thread after 20 µs; with one P that thread runs on the loop's CPU and
// preempts the loop, which then stops napping.
func nap() {
	ts := unix.NsecToTimespec(int64(napLength))
	_, _, _ = unix.RawSyscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
}
