package l7

import (
	"context"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/palisade-lb/palisade/proxy/internal/rawsock"
)

// upConn is one connection to a server.
type upConn struct {
	nc        net.Conn
	tcp       *net.TCPConn    // nil when not TCP
	rc        syscall.RawConn // tcp's, for socket options; nil when not TCP
	addr      string
	idleSince int64     // monotonic ns (handler clock) when put back
	reused    bool      // taken from the idle pool
	private   bool      // carries one client's PROXY header: never pooled
	dl        time.Time // last deadline set (see deadlineFresh)
}

// armDeadline sets the read and write deadline to now+d, unless the last one
// set may stand in for it (deadlineFresh).
func (u *upConn) armDeadline(now time.Time, d time.Duration) {
	if t := now.Add(d); !deadlineFresh(u.dl, t, d) {
		u.dl = t
		u.nc.SetDeadline(t)
	}
}

// ackNow acknowledges the bytes read so far at once (rawsock.AckNow): a
// response body has more to come, and nothing goes back to the server before
// it ends for the ACK to ride on.
func (u *upConn) ackNow() {
	if u.rc != nil {
		_ = u.rc.Control(func(fd uintptr) { rawsock.AckNow(int(fd)) })
	}
}

// pool keeps idle keep-alive connections per server address (LIFO, so the
// warmest connection is reused and the surplus ages out).
type pool struct {
	mu      sync.Mutex
	idle    map[string][]*upConn
	closed  bool
	maxIdle int           // per address
	maxAge  time.Duration // idle connections older than this are closed
	dialer  net.Dialer
	purge   *time.Timer // armed while connections are idle
	epoch   time.Time   // origin of the now values put and get are given
}

func newPool(maxIdle int, maxAge, connect time.Duration) *pool {
	return &pool{
		idle:    make(map[string][]*upConn),
		maxIdle: maxIdle,
		maxAge:  maxAge,
		dialer:  net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second},
	}
}

// get returns an idle connection to addr no older than maxAge, or nil.
func (p *pool) get(addr string, now int64, maxAge time.Duration) *upConn {
	var stale []*upConn
	p.mu.Lock()
	l := p.idle[addr]
	var u *upConn
	for len(l) > 0 {
		c := l[len(l)-1]
		l[len(l)-1] = nil
		l = l[:len(l)-1]
		age := time.Duration(now - c.idleSince)
		if age > p.maxAge {
			// Everything below is older still.
			stale = append(stale, c)
			for _, s := range l {
				stale = append(stale, s)
			}
			clear(l)
			l = l[:0]
			break
		}
		if age > maxAge {
			// Too old for this request; keep it for an idempotent one.
			l = append(l, c)
			break
		}
		u = c
		break
	}
	if len(l) == 0 && cap(l) > 0 {
		p.idle[addr] = l[:0]
	} else {
		p.idle[addr] = l
	}
	p.mu.Unlock()
	for _, s := range stale {
		s.nc.Close()
	}
	if u != nil {
		u.reused = true
	}
	return u
}

// put returns a healthy connection for reuse.
func (p *pool) put(u *upConn, now int64) {
	u.idleSince = now
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		u.nc.Close()
		return
	}
	l := p.idle[u.addr]
	if len(l) >= p.maxIdle {
		// Drop the oldest.
		old := l[0]
		copy(l, l[1:])
		l[len(l)-1] = u
		p.mu.Unlock()
		old.nc.Close()
		return
	}
	p.idle[u.addr] = append(l, u)
	if p.purge == nil && !p.epoch.IsZero() {
		p.purge = time.AfterFunc(p.maxAge, p.purgeOld)
	}
	p.mu.Unlock()
}

// purgeOld closes the idle connections older than maxAge, and runs again
// while any are left.
func (p *pool) purgeOld() {
	now := int64(time.Since(p.epoch))
	var old []*upConn
	p.mu.Lock()
	p.purge = nil
	if p.closed {
		p.mu.Unlock()
		return
	}
	left := false
	for addr, l := range p.idle {
		i := 0
		for i < len(l) && time.Duration(now-l[i].idleSince) > p.maxAge {
			old = append(old, l[i])
			i++
		}
		n := copy(l, l[i:])
		clear(l[n:])
		p.idle[addr] = l[:n]
		left = left || n > 0
	}
	if left {
		p.purge = time.AfterFunc(p.maxAge/2, p.purgeOld)
	}
	p.mu.Unlock()
	for _, u := range old {
		u.nc.Close()
	}
}

func (p *pool) dial(ctx context.Context, addr string) (*upConn, error) {
	nc, err := p.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	u := &upConn{nc: nc, addr: addr}
	if u.tcp, _ = nc.(*net.TCPConn); u.tcp != nil {
		u.rc, _ = u.tcp.SyscallConn()
	}
	return u, nil
}

// close closes every idle connection; later puts close immediately.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	if p.purge != nil {
		p.purge.Stop()
		p.purge = nil
	}
	all := p.idle
	p.idle = map[string][]*upConn{}
	p.mu.Unlock()
	for _, l := range all {
		for _, u := range l {
			u.nc.Close()
		}
	}
}
