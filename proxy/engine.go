package proxy

import (
	"errors"
	"fmt"
	"github.com/palisade-lb/palisade/proxy/internal/rawsock"
	"log/slog"
	"math"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The engine is the tcp-mode data path: a few event loops (one per
// GOMAXPROCS) that each own an epoll set and serve every connection they
// accept from start to end with non-blocking system calls — accept, connect,
// read/write for small exchanges, splice(2) for bulk — and no goroutine per
// connection. This is the shape of HAProxy's own loop, and what lets a new
// connection cost as little CPU as it does there.
//
// A loop parks in the Go scheduler, not in the kernel: its epoll descriptor is
// itself registered with the runtime's poller (it is readable while events
// are pending), so an idle loop holds no thread and a busy one never pays for
// a blocking system call.
//
// Plain http-mode frontends are served here too (proxy/l7 engine.go, through
// the l7.Loop methods in engine_http.go); TLS ones run a goroutine per
// connection and keep Go's accept loop. Listeners chooses per listener.

const (
	loopEvents     = 256
	acceptBatch    = 32
	sweepSpacing   = 10 * time.Millisecond // timeouts fire within this of their time
	nudgeAfter     = time.Millisecond      // see wait
	markListener   = math.MaxInt32         // epoll data of a listening socket
	markWake       = math.MaxInt32 - 1     // epoll data of the wake eventfd
	maxSeq         = math.MaxInt32 - 2
	loopBufPoolCap = 1024
	// loopSessionPoolCap bounds each loop's closed sessions kept for reuse.
	loopSessionPoolCap = 1024
	flowBudget         = 8 << 20 // bytes one direction reads per turn
	acceptPause        = 100 * time.Millisecond
	resourceRetry      = 50 * time.Millisecond
	bytesFlush         = 1 << 20 // a session adds its bytes to the shared counters every MiB
)

// pausedListener is a listener a loop stopped accepting on after accept
// failed for lack of resources (descriptors, memory).
type pausedListener struct {
	ln    *listener
	until int64
}

// engine owns the event loops. Its loops start with the first listener
// attached and end in stop.
type engine struct {
	log     *slog.Logger
	mu      sync.Mutex
	loops   []*loop
	wg      sync.WaitGroup
	adopted atomic.Uint32 // round robin of adopted connections
}

func newEngine(log *slog.Logger) *engine { return &engine{log: log} }

// start opens the loops if they are not running yet.
func (e *engine) start() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.loops != nil {
		return nil
	}
	n := runtime.GOMAXPROCS(0)
	loops := make([]*loop, 0, n)
	for range n {
		l, err := newLoop(e.log)
		if err != nil {
			for _, l := range loops {
				l.closeFiles()
			}
			return err
		}
		loops = append(loops, l)
	}
	e.loops = loops
	for _, l := range loops {
		e.wg.Add(1)
		go func() { defer e.wg.Done(); l.run() }()
	}
	return nil
}

// attach makes every loop accept on ln (whose handler must be engine-served).
func (e *engine) attach(ln *listener) error {
	if err := e.start(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, l := range e.loops {
		l.lnMu.Lock()
		l.lns[ln.fd] = ln
		err := l.addListener(ln)
		l.lnMu.Unlock()
		if err != nil {
			for _, l := range e.loops[:i+1] {
				e.detachOne(l, ln)
			}
			return fmt.Errorf("adding listener to the event loop: %w", err)
		}
	}
	return nil
}

// detach stops every loop accepting on ln; when it returns no loop touches
// ln's descriptor any more, so it may be closed.
func (e *engine) detach(ln *listener) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, l := range e.loops {
		e.detachOne(l, ln)
	}
}

func (e *engine) detachOne(l *loop, ln *listener) {
	// in one step under lnMu, so the end of an accept pause (resume)
	// cannot put ln back in between
	l.lnMu.Lock()
	delete(l.lns, ln.fd)
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, ln.fd, nil)
	l.lnMu.Unlock()
	done := make(chan struct{})
	l.post(func() { // an accept in progress on ln is over; forget its pause
		kept := l.paused[:0]
		for _, p := range l.paused {
			if p.ln != ln {
				kept = append(kept, p)
			}
		}
		l.paused = kept
		close(done)
	})
	<-done
}

// adopt hands a connection accepted by Go's accept loop to an event loop,
// for a tcp frontend whose listener could not join the loops. The
// connection's descriptor is duplicated for the loop and c is closed.
func (e *engine) adopt(c *net.TCPConn, f *Frontend) error {
	if err := e.start(); err != nil {
		return err
	}
	client := addrPort(c.RemoteAddr())
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return err
	}
	if derr != nil {
		return fmt.Errorf("duplicating the connection: %w", derr)
	}
	_ = c.Close() // the duplicate keeps the socket (non-blocking: the flag is shared)
	e.mu.Lock()
	loops := e.loops
	e.mu.Unlock()
	if len(loops) > 0 {
		l := loops[int(e.adopted.Add(1))%len(loops)]
		if l.post(func() { f.acceptEngine(l, fd, client) }) {
			return nil
		}
	}
	rawsock.ResetClose(fd)
	return errors.New("the event loops have stopped")
}

// stop ends the loops: sessions still open are closed (their frontends
// have drained by now) and the loops' descriptors are released.
func (e *engine) stop() {
	e.mu.Lock()
	loops := e.loops
	e.loops = nil
	e.mu.Unlock()
	for _, l := range loops {
		l.post(func() { l.quit = true })
	}
	e.wg.Wait()
	for _, l := range loops {
		l.closeFiles()
	}
}

// loop is one event loop. Everything but lns, cmds and the wake counter is
// touched only by its own goroutine.
type loop struct {
	log  *slog.Logger
	epfd int
	wake int // eventfd
	file *os.File
	rc   syscall.RawConn

	lnMu sync.Mutex
	lns  map[int]*listener // listening sockets by descriptor

	cmdMu   sync.Mutex
	cmds    []func()
	closed  bool        // the wake eventfd is closed: posts are dropped
	pending atomic.Bool // a wake is signalled and not consumed

	events    []unix.EpollEvent
	ends      []*end // by descriptor
	seq       uint32
	sessions  []tracked // everything with a deadline: sessions, http connections
	paused    []pausedListener
	pauses    atomic.Int64 // accept pauses so far
	warned    int64        // when a pause was last logged (at most once a second)
	ready     []*esession  // sessions with work left over from their turn
	spare     []*esession
	free      []*esession // closed sessions to reuse: a new connection allocates nothing
	dead      []*esession // closed in this iteration; reused from the next one
	waitN     int         // wait's result, set by waitFn
	waitCalls int         // waitFn's calls in this wait: more than one means it parked
	waitFn    func(fd uintptr) bool
	bufs      [][]byte
	now       int64     // nanoseconds since base, refreshed once per iteration
	base      time.Time // monotonic origin of now
	next      int64     // next timeout sweep (math.MaxInt64: none)
	armed     int64     // the park deadline currently set
	quit      bool
	parked    int64  // when the loop last parked (as now)
	nudged    int64  // when wait last started a goroutine to wake a P
	nudge     func() // that goroutine (a field for tests)
	yield     func() // gives up the CPU before a park (a field for tests)
	nap       napper // whether to nap before a park (engine_nap.go)
	moved     int64  // bytes moved between clients and servers (for nap)
	napFn     func() // the nap (a field for tests)
	sa        unix.RawSockaddrAny
}

func newLoop(log *slog.Logger) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("creating epoll: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("creating eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake), Pad: markWake}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(wake)
		return nil, fmt.Errorf("adding eventfd: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(wake)
		return nil, err
	}
	// os.NewFile registers a non-blocking descriptor with the runtime poller.
	f := os.NewFile(uintptr(epfd), "epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		_ = unix.Close(wake)
		return nil, err
	}
	l := &loop{log: log, epfd: epfd, wake: wake, file: f, rc: rc, lns: map[int]*listener{},
		events: make([]unix.EpollEvent, loopEvents), base: time.Now(), next: math.MaxInt64, armed: math.MaxInt64,
		nudge: func() { go func() {}() }, yield: schedYield,
		nap: napper{usage: currentThreadUsage, newThread: setTimerSlack}, napFn: nap}
	l.waitFn = l.pollOnce
	return l, nil
}

func (l *loop) closeFiles() {
	l.cmdMu.Lock()
	l.closed = true
	l.cmdMu.Unlock()
	_ = l.file.Close()
	_ = unix.Close(l.wake)
}

// post runs fn on the loop's goroutine, soon; after the loop has ended
// (its sessions are all closed by then) fn is dropped and post says false.
func (l *loop) post(fn func()) bool {
	l.cmdMu.Lock()
	defer l.cmdMu.Unlock() // held over the write: closeFiles cannot close the eventfd under it
	if l.closed {
		return false
	}
	l.cmds = append(l.cmds, fn)
	if l.pending.CompareAndSwap(false, true) {
		one := [8]byte{1}
		_, _ = unix.Write(l.wake, one[:])
	}
	return true
}

func (l *loop) runCommands() {
	var buf [8]byte
	_, _ = unix.Read(l.wake, buf[:])
	l.pending.Store(false)
	l.cmdMu.Lock()
	cmds := l.cmds
	l.cmds = nil
	l.cmdMu.Unlock()
	for _, fn := range cmds {
		fn()
	}
}

func (l *loop) run() {
	for !l.quit {
		n := l.wait()
		l.now = int64(time.Since(l.base))
		for i := range n {
			ev := &l.events[i]
			switch ev.Pad {
			case markWake:
				l.runCommands()
			case markListener:
				l.accept(int(ev.Fd))
			default:
				fd := int(ev.Fd)
				if fd < len(l.ends) {
					if e := l.ends[fd]; e != nil && e.seq == uint32(ev.Pad) {
						if e.s != nil {
							e.s.event(e, ev.Events)
						} else {
							e.w.Ready(ev.Events)
						}
					}
				}
			}
		}
		if len(l.ready) > 0 {
			batch := l.ready
			l.ready = l.spare
			for i, s := range batch {
				batch[i] = nil
				s.queued = false
				if s.state == stEstablished {
					s.pump()
				}
			}
			l.spare = batch[:0]
		}
		if l.now >= l.next {
			l.sweep()
		}
		if len(l.dead) > 0 {
			l.recycle()
		}
	}
	for len(l.sessions) > 0 {
		l.sessions[len(l.sessions)-1].close("shutdown")
	}
}

// recycle makes the sessions closed in this iteration reusable. Events
// still due to them were dropped by their ends' sequence numbers; one still
// on the ready list waits for its turn to pass first.
func (l *loop) recycle() {
	keep := l.dead[:0]
	for _, s := range l.dead {
		switch {
		case s.queued:
			keep = append(keep, s)
		case len(l.free) < loopSessionPoolCap:
			l.free = append(l.free, s)
		}
	}
	clear(l.dead[len(keep):])
	l.dead = keep
}

// newSession is a zeroed session for a new connection, reused when it can be;
// its gen is one more than its previous life's.
func (l *loop) newSession() *esession {
	n := len(l.free)
	if n == 0 {
		return &esession{}
	}
	s := l.free[n-1]
	l.free[n-1] = nil
	l.free = l.free[:n-1]
	*s = esession{gen: s.gen + 1}
	return s
}

// requeue gives s another turn after the next poll.
func (l *loop) requeue(s *esession) {
	if !s.queued {
		s.queued = true
		l.ready = append(l.ready, s)
	}
}

// wait returns the number of ready events, parking the goroutine (not the
// thread) while there are none, until the next timeout sweep is due; with
// sessions on the ready list it only polls.
//
// Before it parks, the loop yields its CPU once (sched_yield) and polls
// again. A client or server that is runnable on the same CPU runs first, and
// what it sends the loop meanwhile is taken without a park and a wake-up,
// which the sender pays for (the wake-up of a parked loop runs in its write).
// With nothing else runnable the yield returns at once. Measured on plain
// HTTP behind a one-thread wrk, small keep-alive responses (README): 0.8
// epoll_pwait calls per request instead of 2.1 (most were the runtime's,
// around parks), and 0.94 -> 1.00 of HAProxy's rate (medians of 5 and 8
// runs); one request per connection went from 1.32 to 1.56.
//
// Before the yield, a busy loop alone on its CPU may nap (engine_nap.go).
//
// A loop that has not parked for nudgeAfter starts an empty goroutine first.
// The runtime has one network poller: the thread that wakes from it runs the
// first loop it readies and leaves nobody polling, so while that loop stays
// busy, another loop's events wait for sysmon's poll, every 10 ms. The new
// goroutine wakes an idle P, whose scheduler polls on its way back to sleep
// and runs the loops it finds ready. Measured on new tcp connections (wrk
// -t2 -c50, Connection: close, 4 runs of 5 s each way): the slowest request
// took 21-23 ms without it and 9-11 ms in three runs of four with it (21 in
// the fourth); rate, p99 and CPU per request did not change beyond noise.
func (l *loop) wait() int {
	if now := int64(time.Since(l.base)); now-l.parked > int64(nudgeAfter) && now-l.nudged > int64(nudgeAfter) {
		l.nudged = now
		l.nudge()
	}
	if n, _ := epollWait(l.epfd, l.events); n > 0 || len(l.ready) > 0 {
		return n
	}
	if l.nap.update(l.now, l.moved); l.nap.on && l.now-l.parked < int64(napRun) {
		l.napFn()
		n, _ := epollWait(l.epfd, l.events)
		if l.nap.napped(n); n > 0 {
			return n
		}
	}
	l.yield()
	if l.next != l.armed {
		l.armed = l.next
		var t time.Time
		if l.next != math.MaxInt64 {
			t = l.base.Add(time.Duration(l.next))
		}
		_ = l.file.SetReadDeadline(t)
	}
	l.waitN, l.waitCalls = 0, 0
	err := l.rc.Read(l.waitFn)
	n := l.waitN
	if l.waitCalls > 1 || err != nil {
		l.parked = int64(time.Since(l.base))
	}
	if err != nil {
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			l.log.Error("event loop wait failed", "error", err)
			time.Sleep(10 * time.Millisecond)
		}
		return 0
	}
	return n
}

// pollOnce is wait's poll, one per readiness of the loop's descriptor; it
// says whether the wait is over (events, or an error).
func (l *loop) pollOnce(fd uintptr) bool {
	l.waitCalls++
	n, e := epollWait(int(fd), l.events)
	l.waitN = n
	return n > 0 || (e != 0 && e != unix.EINTR && e != unix.EAGAIN)
}

func schedYield() { unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0) }

func epollWait(epfd int, events []unix.EpollEvent) (int, unix.Errno) {
	r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
		uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), 0
}

// register adds a connection's descriptor to the loop, edge-triggered.
func (l *loop) register(e *end) error {
	for e.fd >= len(l.ends) {
		l.ends = append(l.ends, make([]*end, max(64, len(l.ends)))...)
	}
	l.seq++
	if l.seq > maxSeq {
		l.seq = 1
	}
	e.seq = l.seq
	l.ends[e.fd] = e
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET,
		Fd: int32(e.fd), Pad: int32(e.seq)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, e.fd, &ev); err != nil {
		l.ends[e.fd] = nil
		return err
	}
	return nil
}

// closeEnd closes a connection's descriptor (which also leaves the epoll set).
func (l *loop) closeEnd(e *end, reset bool) {
	if e.fd < 0 {
		return
	}
	if l.ends[e.fd] == e {
		l.ends[e.fd] = nil
	}
	if reset {
		rawsock.ResetClose(e.fd)
	} else {
		rawsock.Close(e.fd)
	}
	e.fd = -1
}

func (l *loop) getBuf() []byte {
	if n := len(l.bufs); n > 0 {
		b := l.bufs[n-1]
		l.bufs = l.bufs[:n-1]
		return b
	}
	return make([]byte, 16<<10) // a full read switches to splice (pipes)
}

func (l *loop) putBuf(b []byte) {
	if len(l.bufs) < loopBufPoolCap {
		l.bufs = append(l.bufs, b)
	}
}

// accept takes up to acceptBatch connections from a listener; the listener
// is level-triggered, so any left over wake a loop again.
func (l *loop) accept(lfd int) {
	l.lnMu.Lock()
	ln := l.lns[lfd]
	l.lnMu.Unlock()
	if ln == nil {
		return // detached in this batch
	}
	for range acceptBatch {
		fd, e := rawsock.Accept(lfd, &l.sa)
		if e != 0 {
			switch e {
			case unix.EAGAIN, unix.EINTR, unix.ECONNABORTED:
			default:
				// EMFILE, ENFILE, ENOBUFS: the level-triggered listener
				// would wake the loop again at once; it sits out a pause
				// while connections wait in its backlog.
				if l.pauses.Add(1) == 1 || l.now-l.warned >= int64(time.Second) {
					l.warned = l.now
					l.log.Warn("accept failed; pausing this listener", "listen", ln.addr, "error", e,
						"pause", acceptPause.String())
				}
				l.pause(ln)
			}
			return
		}
		h, ok := ln.h.Load().h.(*Frontend)
		if !ok || !h.engineServed() {
			// cannot happen: a listener leaves the loops before its
			// handler changes kind; refused rather than served wrongly
			rawsock.ResetClose(fd)
			continue
		}
		h.acceptEngine(l, fd, rawsock.AddrPortOf(&l.sa))
	}
}

// addListener adds ln to the epoll set, level-triggered and exclusive (one
// loop is woken per connection); the caller holds lnMu.
func (l *loop) addListener(ln *listener) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: int32(ln.fd), Pad: markListener}
	return unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, ln.fd, &ev)
}

// pause takes ln out of this loop's epoll set for acceptPause.
func (l *loop) pause(ln *listener) {
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, ln.fd, nil)
	until := l.now + int64(acceptPause)
	l.paused = append(l.paused, pausedListener{ln: ln, until: until})
	l.schedule(until)
}

// schedule makes the next sweep happen by d (not sooner than sweepSpacing
// from now, so that staggered deadlines do not make it sweep constantly).
func (l *loop) schedule(d int64) {
	if d < l.next {
		l.next = max(d, l.now+int64(sweepSpacing))
	}
}

// resume puts back the paused listeners whose pause is over (unless they
// were detached meanwhile) and returns the end of the earliest pause left.
func (l *loop) resume() int64 {
	next := int64(math.MaxInt64)
	kept := l.paused[:0]
	for _, p := range l.paused {
		if p.until > l.now {
			kept = append(kept, p)
			next = min(next, p.until)
			continue
		}
		var err error
		l.lnMu.Lock() // held over the add: see detachOne
		if l.lns[p.ln.fd] == p.ln {
			err = l.addListener(p.ln)
		}
		l.lnMu.Unlock()
		if err != nil {
			l.log.Error("resuming a paused listener", "listen", p.ln.addr, "error", err)
		}
	}
	l.paused = kept
	return next
}

// tracked is what the timeout sweep looks after.
type tracked interface {
	tracking() *track
	// computeDeadline is asked once the cached deadline has passed: the
	// deadline is often pushed back by activity the sweep did not see.
	computeDeadline() int64
	timeout()
	close(reason string) // the loop is ending
}

// track is a tracked item's place in the sweep.
type track struct {
	idx      int
	deadline int64 // cached; never later than the real one
}

func (t *track) tracking() *track { return t }

// track adds an item to the timeout sweep.
func (l *loop) track(s tracked) {
	t := s.tracking()
	t.idx = len(l.sessions)
	l.sessions = append(l.sessions, s)
	l.schedule(t.deadline)
}

func (l *loop) untrack(s tracked) {
	t := s.tracking()
	i := t.idx
	last := len(l.sessions) - 1
	if i < 0 || i > last || l.sessions[i] != s {
		return
	}
	l.sessions[i] = l.sessions[last]
	l.sessions[i].tracking().idx = i
	l.sessions[last] = nil
	l.sessions = l.sessions[:last]
	t.idx = -1
}

// sweep applies timeouts, ends listener pauses and schedules the next sweep.
func (l *loop) sweep() {
	next := l.resume()
	for i := 0; i < len(l.sessions); {
		s := l.sessions[i]
		t := s.tracking()
		if t.deadline <= l.now {
			t.deadline = s.computeDeadline()
			if t.deadline <= l.now {
				s.timeout()
				if i < len(l.sessions) && l.sessions[i] == s {
					i++ // still open (a connect retry)
					next = min(next, t.deadline)
				}
				continue
			}
		}
		next = min(next, t.deadline)
		i++
	}
	if next != math.MaxInt64 {
		next = max(next, l.now+int64(sweepSpacing))
	}
	l.next = next
}
