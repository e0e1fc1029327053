package l7

import (
	"math"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// testLoop is a Loop for this package's tests: one epoll set served by one
// goroutine, with the same contract as package proxy's loops (edge-triggered
// sockets, a timeout sweep, Post). proxy's own tests and the daemon's run
// the real loops.
type testLoop struct {
	epfd, wake int
	base       time.Time
	now        int64
	moved      int64 // bytes counted by Moved
	watchers   map[int]Watcher
	timers     map[*testTimer]struct{}

	mu    sync.Mutex
	cmds  []func()
	ended bool
	done  chan struct{}
}

type testTimer struct {
	l  *testLoop
	t  Timed
	at int64
}

func (x *testTimer) Set(at int64) { x.at = at }
func (x *testTimer) Stop()        { delete(x.l.timers, x) }

func newTestLoop() (*testLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, err
	}
	l := &testLoop{epfd: epfd, wake: wake, base: time.Now(), watchers: map[int]Watcher{},
		timers: map[*testTimer]struct{}{}, done: make(chan struct{})}
	go l.run()
	return l, nil
}

func (l *testLoop) Watch(fd int, w Watcher) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return err
	}
	l.watchers[fd] = w
	return nil
}

func (l *testLoop) Unwatch(fd int) {
	delete(l.watchers, fd)
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
}

func (l *testLoop) Now() int64 { return l.now }

func (l *testLoop) Moved(n int) { l.moved += int64(n) }

func (l *testLoop) Track(t Timed) Timer {
	x := &testTimer{l: l, t: t, at: math.MaxInt64}
	l.timers[x] = struct{}{}
	return x
}

func (l *testLoop) Post(fn func()) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		return false
	}
	l.cmds = append(l.cmds, fn)
	one := [8]byte{1}
	_, _ = unix.Write(l.wake, one[:])
	return true
}

// stop ends the loop: tracked items are shut down, descriptors closed.
func (l *testLoop) stop() {
	l.Post(nil) // nil: the end
	<-l.done
}

func (l *testLoop) run() {
	defer close(l.done)
	events := make([]unix.EpollEvent, 64)
	for {
		n, err := unix.EpollWait(l.epfd, events, 5)
		if err != nil && err != unix.EINTR {
			panic(err)
		}
		l.now = int64(time.Since(l.base))
		for _, ev := range events[:max(n, 0)] {
			fd := int(ev.Fd)
			if fd == l.wake {
				var b [8]byte
				_, _ = unix.Read(l.wake, b[:])
				l.mu.Lock()
				cmds := l.cmds
				l.cmds = nil
				l.mu.Unlock()
				for _, fn := range cmds {
					if fn == nil {
						l.end()
						return
					}
					fn()
				}
				continue
			}
			if w := l.watchers[fd]; w != nil {
				w.Ready(ev.Events)
			}
		}
		for x := range l.timers {
			if x.at <= l.now {
				x.at = x.t.Deadline()
				if x.at <= l.now {
					x.t.Expire()
				}
			}
		}
	}
}

func (l *testLoop) end() {
	l.mu.Lock()
	l.ended = true
	l.mu.Unlock()
	for x := range l.timers {
		x.t.Shutdown()
		delete(l.timers, x)
	}
	unix.Close(l.epfd)
	unix.Close(l.wake)
}
