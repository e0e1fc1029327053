package proxy

import (
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// The copy loop is HAProxy's splice-auto: a direction starts by reading
// into a small pooled buffer; as soon as a read fills it (a bulk transfer),
// it switches to splice(2) through a pooled pipe, so the bytes never enter
// user space; once the source has nothing more to give, the pipe goes back
// to the pool and the direction waits with no buffer and no pipe held. Small
// request/response exchanges thus cost one read and one write each, bulk
// transfers move in pipe-sized zero-copy chunks, and an idle connection
// holds neither memory nor pipe descriptors.

const (
	copyBufSize  = 16 << 10
	pipeSize     = 256 << 10 // F_SETPIPE_SZ; the kernel may round or refuse (then 64 KiB)
	maxIdlePipes = 256
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

type pipe struct {
	r, w int
	size int
}

var idlePipes = make(chan *pipe, maxIdlePipes)

func getPipe() (*pipe, error) {
	select {
	case p := <-idlePipes:
		return p, nil
	default:
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, err
	}
	p := &pipe{r: fds[0], w: fds[1], size: 64 << 10}
	if n, err := unix.FcntlInt(uintptr(p.w), unix.F_SETPIPE_SZ, pipeSize); err == nil {
		p.size = n
	}
	return p, nil
}

// putPipe returns an empty pipe to the pool; a pipe with data left in it
// (the write side failed) is closed.
func putPipe(p *pipe, empty bool) {
	if empty {
		select {
		case idlePipes <- p:
			return
		default:
		}
	}
	p.close()
}

func (p *pipe) close() {
	_ = unix.Close(p.r)
	_ = unix.Close(p.w)
}

// CloseIdlePipes closes the pooled pipes (at stop, so no descriptor outlives the proxy).
func CloseIdlePipes() {
	for {
		select {
		case p := <-idlePipes:
			p.close()
		default:
			return
		}
	}
}

// copyStream copies src to dst until src's EOF (returned as nil) or an
// error, and returns the bytes moved.
func copyStream(dst, src *net.TCPConn) (int64, error) {
	rsrc, err := src.SyscallConn()
	if err != nil {
		return 0, err
	}
	rdst, err := dst.SyscallConn()
	if err != nil {
		return 0, err
	}
	var total int64
	for {
		var bp *[]byte
		var n int
		var rerr error
		err := rsrc.Read(func(fd uintptr) bool {
			bp = bufPool.Get().(*[]byte)
			n, rerr = unix.Read(int(fd), *bp)
			if rerr == unix.EAGAIN {
				bufPool.Put(bp)
				bp = nil
				return false // wait for readability holding no buffer
			}
			if rerr == unix.EINTR {
				bufPool.Put(bp)
				bp = nil
				return false
			}
			return true
		})
		switch {
		case err != nil:
			return total, err
		case rerr != nil:
			bufPool.Put(bp)
			return total, rerr
		case n == 0:
			bufPool.Put(bp)
			return total, nil
		}
		full := n == len(*bp)
		_, werr := dst.Write((*bp)[:n])
		bufPool.Put(bp)
		if werr != nil {
			return total, werr
		}
		total += int64(n)
		if full {
			m, eof, err := spliceBurst(rdst, rsrc)
			total += m
			if err != nil || eof {
				return total, err
			}
		}
	}
}

// spliceBurst moves bytes with splice(2) while the source has them ready.
// It returns when the source would block (eof false, err nil), at EOF, or
// on an error.
func spliceBurst(rdst, rsrc syscall.RawConn) (moved int64, eof bool, err error) {
	p, err := getPipe()
	if err != nil {
		return 0, false, nil // no pipe (fd limit): stay on the buffered path
	}
	inPipe := 0
	defer func() { putPipe(p, inPipe == 0) }()
	for {
		var n int64
		var serr error
		rerr := rsrc.Read(func(fd uintptr) bool {
			n, serr = unix.Splice(int(fd), nil, p.w, nil, p.size, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			return serr != unix.EINTR
		})
		switch {
		case rerr != nil:
			return moved, false, rerr
		case serr == unix.EAGAIN:
			return moved, false, nil // drained: back to waiting without a pipe
		case serr != nil:
			return moved, false, serr
		case n == 0:
			return moved, true, nil
		}
		inPipe = int(n)
		for inPipe > 0 {
			var m int64
			var werr error
			wrerr := rdst.Write(func(fd uintptr) bool {
				m, werr = unix.Splice(p.r, nil, int(fd), nil, inPipe, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
				return werr != unix.EAGAIN && werr != unix.EINTR
			})
			if wrerr != nil {
				return moved, false, wrerr
			}
			if werr != nil {
				return moved, false, werr
			}
			inPipe -= int(m)
			moved += m
		}
	}
}
