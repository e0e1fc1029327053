package proxy

import (
	"math"

	"golang.org/x/sys/unix"

	"github.com/palisade-lb/palisade/proxy/internal/pipes"
	"github.com/palisade-lb/palisade/proxy/l7"
)

// A loop is the l7.Loop of the http connections it serves.

// Watch implements l7.Loop.
func (l *loop) Watch(fd int, w l7.Watcher) error { return l.register(&end{fd: fd, w: w}) }

// Unwatch implements l7.Loop.
func (l *loop) Unwatch(fd int) {
	if fd >= 0 && fd < len(l.ends) {
		l.ends[fd] = nil
	}
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
}

// Now implements l7.Loop.
func (l *loop) Now() int64 { return l.now }

// Post implements l7.Loop.
func (l *loop) Post(fn func()) bool { return l.post(fn) }

// Moved implements l7.Loop.
func (l *loop) Moved(n int) { l.moved += int64(n) }

// Track implements l7.Loop.
func (l *loop) Track(t l7.Timed) l7.Timer {
	x := &l7timer{track: track{idx: -1, deadline: math.MaxInt64}, l: l, t: t}
	l.track(x)
	return x
}

// l7timer puts an l7.Timed in the loop's sweep.
type l7timer struct {
	track
	l *loop
	t l7.Timed
}

func (x *l7timer) computeDeadline() int64 { return x.t.Deadline() }
func (x *l7timer) timeout()               { x.t.Expire() }
func (x *l7timer) close(string)           { x.t.Shutdown() }

func (x *l7timer) Set(at int64) {
	x.deadline = at
	x.l.schedule(at)
}

func (x *l7timer) Stop() { x.l.untrack(x) }

// CloseIdlePipes closes the pooled splice pipes (at stop, so no descriptor
// outlives the proxy).
func CloseIdlePipes() { pipes.CloseIdle() }
