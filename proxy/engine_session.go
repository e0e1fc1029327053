package proxy

import (
	"context"
	"github.com/palisade-lb/palisade/proxy/internal/pipes"
	"github.com/palisade-lb/palisade/proxy/internal/rawsock"
	"log/slog"
	"math"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/palisade-lb/palisade/internal/state"
	"github.com/palisade-lb/palisade/proxy/balance"
	"github.com/palisade-lb/palisade/proxy/l7"
	"github.com/palisade-lb/palisade/proxy/proxyproto"
)

// end is one socket of an engine session and the bytes read from it that
// are still on their way to the other socket.
type end struct {
	fd  int
	seq uint32 // epoll registration, against stale events for a reused fd
	s   *esession
	w   l7.Watcher // instead of s: an http connection's socket

	readable bool // edge-triggered readiness, cleared on EAGAIN
	writable bool
	rdhup    bool       // the peer has sent its FIN
	rerr     unix.Errno // a read failed (reset) after bytes still to pass on
	eof      bool       // read returned 0
	finished bool       // the EOF was passed on (FIN or close)

	buf    []byte // pending bytes [off:n], or nil
	off, n int
	p      *pipes.Pipe // splice pipe and bytes in it, or nil
	inPipe int
	splice bool  // the last read filled the buffer: move bulk with splice
	last   int64 // last read or write (loop clock), for inactivity timeouts
}

const (
	stProxyHeader = iota // reading the client's PROXY protocol header
	stConnecting
	stEstablished
	stClosed
)

// esession is one tcp connection served by an event loop: accepted,
// connected to a server (with retries), then piped both ways until both
// directions end, an error, a timeout or a forced close.
type esession struct {
	l      *loop
	f      *Frontend
	b      *Backend
	srv    *state.Server
	c, s   end
	state  uint8
	tries  int
	tried  attempt
	hash   uint64
	client netip.AddrPort
	local  netip.AddrPort
	start  time.Time // only with access_log

	toServer, toClient int64
	flushedIn          int64 // toServer already added to the counters
	flushedOut         int64
	connectBy          int64
	waitUntil          int64 // while waiting for resources: when to give up
	track
	done   int    // directions finished
	hdrDue bool   // the PROXY header is still to go to this server connection
	queued bool   // on the loop's ready list
	gen    uint32 // lives of this struct: the loop reuses closed sessions
}

// engineServed reports whether the event loops serve this frontend: tcp
// mode, and http mode without TLS or an accepted PROXY header.
func (f *Frontend) engineServed() bool { return f.l7 == nil || f.l7eng != nil }

// acceptEngine admits and starts serving one connection on loop l.
func (f *Frontend) acceptEngine(l *loop, fd int, client netip.AddrPort) {
	if f.l7eng != nil {
		f.acceptHTTP(l, fd, client)
		return
	}
	if !f.admitAccepted(fd, client) {
		return
	}
	st := f.stats
	s := l.newSession()
	s.l, s.f, s.b, s.client, s.hash = l, f, f.backend, client, balance.HashIP(client.Addr())
	s.track = track{idx: -1, deadline: math.MaxInt64}
	s.c = end{fd: fd, s: s, last: l.now}
	s.s = end{fd: -1, s: s}
	if f.cfg.AccessLog {
		s.start = time.Now()
	}
	if !f.join(s) {
		st.current.Add(-1)
		rawsock.Close(fd) // shutting down
		return
	}
	if s.b.cfg.SendProxy != 0 {
		s.local = rawsock.SockName(fd) // a PROXY header from the client may replace it
	}
	if err := l.register(&s.c); err != nil {
		l.log.Warn("registering a connection", "error", err)
		s.state = stClosed
		st.current.Add(-1)
		rawsock.ResetClose(fd)
		f.part(s)
		return
	}
	if f.cfg.AcceptProxy {
		s.state = stProxyHeader
		s.connectBy = l.now + int64(f.cfg.ProxyTimeout)
		s.deadline = s.connectBy
		l.track(s)
		s.c.readable = true // the header usually came with the handshake's last ACK
		s.readHeader()
		return
	}
	l.track(s)
	if !s.connectNext() {
		s.noServer()
	}
}

// admitAccepted counts a connection a loop accepted and applies max_conns,
// then the ACL and the rate limit (after the PROXY header, with
// proxy_protocol.accept). A refused connection is counted, reset and
// closed, and admitAccepted reports false; else it is in
// frontend_current_connections until its end.
func (f *Frontend) admitAccepted(fd int, client netip.AddrPort) bool {
	st := f.stats
	cur := st.current.Add(1)
	st.total.Add(1)
	r := Reject(-1)
	switch {
	case f.cfg.MaxConns > 0 && cur > int64(f.cfg.MaxConns):
		r = RejectMaxConns
	case f.cfg.AcceptProxy:
		// the client's address is known once its PROXY header is read
	default:
		r = f.admit(client)
	}
	if r >= 0 {
		st.current.Add(-1)
		st.Count(r)
		rawsock.ResetClose(fd)
		return false
	}
	return true
}

// admit applies the ACL and the rate limit to a client; -1 admits it.
func (f *Frontend) admit(client netip.AddrPort) Reject {
	switch {
	case f.acl != nil && !f.acl.Allowed(client.Addr()):
		return RejectACL
	case f.limiter != nil && !f.limiter.Allow(client.Addr()):
		return RejectRateLimit
	}
	return -1
}

// readHeader reads the client's PROXY protocol header (as strictly as the
// goroutine path: proxyproto.Parse), then admits the client it names and
// connects. Bytes after the header are kept and forwarded first.
func (s *esession) readHeader() {
	c, l := &s.c, s.l
	for c.readable {
		if c.buf == nil {
			c.buf = l.getBuf()
		}
		if c.n == len(c.buf) {
			s.reject(RejectProxyProtocol)
			return
		}
		n, e := rawsock.Read(c.fd, c.buf[c.n:])
		switch {
		case e == unix.EAGAIN:
			c.readable = false
			return
		case e == unix.EINTR:
			continue
		case e != 0 || n == 0:
			s.reject(RejectProxyProtocol)
			return
		}
		c.n += n
		h, hl, err := proxyproto.Parse(c.buf[:c.n])
		if err == proxyproto.ErrNeedMore {
			continue
		}
		if err != nil {
			s.f.log.Debug("bad PROXY header", "error", err)
			s.reject(RejectProxyProtocol)
			return
		}
		if h.Command == proxyproto.Proxy && h.Src.IsValid() {
			s.client, s.local = h.Src, h.Dst
			s.hash = balance.HashIP(s.client.Addr())
		}
		c.off = hl
		if c.off == c.n {
			l.putBuf(c.buf)
			c.buf, c.off, c.n = nil, 0, 0
		}
		if r := s.f.admit(s.client); r >= 0 {
			s.reject(r)
			return
		}
		s.state = stConnecting
		s.deadline = math.MaxInt64
		if !s.connectNext() {
			s.noServer()
		}
		return
	}
}

// connectNext starts connecting to the next server: the balancer's pick
// first, then (up to retries more) servers not tried yet, or tried ones
// again once every server has failed. It returns false when none is left.
func (s *esession) connectNext() bool {
	b := s.b
	for {
		srv := s.srv // kept by waitResources: the postponed attempt goes on
		if srv == nil {
			if s.tries == 0 {
				srv = b.pick(s.hash, &s.tried, skipFull)
			} else {
				if s.tries > b.cfg.Retries {
					return false
				}
				srv = b.pick(s.hash, &s.tried, s.tried.skip)
				if srv == nil && s.tried.n > 0 {
					s.tried.reset()
					srv = b.pick(s.hash, &s.tried, s.tried.skip)
				}
			}
			if srv == nil {
				return false
			}
			s.tries++
		}
		fd, e := rawsock.Connect(srv.AddrPort())
		if fd < 0 {
			if localShortage(e) {
				s.waitResources(srv, e)
				return true
			}
			s.connectFailed(srv, e)
			continue
		}
		s.waitUntil = 0
		s.srv = srv
		s.s = end{fd: fd, s: s, last: s.l.now}
		s.hdrDue = b.cfg.SendProxy != 0
		if err := s.l.register(&s.s); err != nil {
			// epoll out of memory or watches: a shortage here, not the server's fault
			rawsock.Close(fd)
			s.s.fd = -1
			if en, ok := err.(unix.Errno); ok && (en == unix.ENOMEM || en == unix.ENOSPC) {
				s.waitResources(srv, en)
				return true
			}
			s.connectFailed(srv, err)
			continue
		}
		s.state = stConnecting
		if e == 0 {
			s.s.writable = true
			if s.connected() {
				return true
			}
			continue
		}
		s.connectBy = math.MaxInt64
		if to := b.cfg.ConnectTimeout; to > 0 {
			s.connectBy = s.l.now + int64(to)
		}
		s.setDeadline(s.connectBy)
		return s.early()
	}
}

// early forwards what the client has sent while the connect is still in
// progress, as HAProxy does: on a nearby server the connect has often
// completed by now, and then a successful write finishes it without waiting
// for the EPOLLOUT event. EAGAIN means still connecting. It returns false if
// no server is left.
func (s *esession) early() bool {
	c := &s.c
	if c.buf == nil && !s.readClient() {
		return true // the client failed: the session has ended
	}
	if c.buf == nil && !s.hdrDue {
		return true
	}
	switch e := s.writeFirst(); e {
	case 0:
		s.s.writable = true
		s.connected()
		return true
	case unix.EAGAIN:
		return true
	default:
		s.connectFailed(s.srv, e)
		return s.connectNext()
	}
}

// readClient reads what the client has sent so far into its buffer (none
// there: c.buf stays nil). It returns false if the client failed, and the
// session has ended.
func (s *esession) readClient() bool {
	c, l := &s.c, s.l
	b := l.getBuf()
	n, e := rawsock.Read(c.fd, b)
	if e != 0 || n == 0 {
		l.putBuf(b)
		switch e {
		case unix.EAGAIN:
			c.readable = false
		case 0, unix.EINTR:
			c.readable = true // EOF: the pump passes it on once connected
		default:
			// a reset reads as EOF once reported: act on it now
			s.fail(c, e)
			return false
		}
		return true
	}
	c.buf, c.off, c.n = b, 0, n
	c.last = l.now
	if n == len(b) {
		c.splice = true
	} else if !c.rdhup {
		c.readable = false
	}
	return true
}

// writeFirst writes to the server what goes first: the PROXY header when it
// is due, and the client's bytes read so far, in one system call (one
// segment, not two). A header only partly taken (a fresh socket takes all of
// it or nothing) is EPROTO: the attempt fails.
func (s *esession) writeFirst() unix.Errno {
	c := &s.c
	var data []byte
	if c.buf != nil {
		data = c.buf[c.off:c.n]
	}
	hl := 0
	var n int
	var e unix.Errno
	if s.hdrDue {
		var b [proxyproto.MaxV1Len]byte // a v2 header for TCP is 52 bytes
		hdr := s.proxyHeader(b[:0])
		hl = len(hdr)
		n, e = rawsock.Send(s.s.fd, hdr, data, false)
		if e == 0 && n < hl {
			return unix.EPROTO // the rest cannot follow as one header: give this connection up
		}
		if e == 0 {
			s.hdrDue = false
		}
	} else if len(data) > 0 {
		n, e = rawsock.Write(s.s.fd, data)
	}
	if e != 0 {
		return e
	}
	if n -= hl; n > 0 {
		c.off += n
		s.moved(c, n)
	}
	return 0
}

// proxyHeader appends the PROXY header (send_proxy) for this session to b.
func (s *esession) proxyHeader(b []byte) []byte {
	if s.b.cfg.SendProxy == 1 {
		return proxyproto.AppendV1(b, s.client, s.local)
	}
	return proxyproto.AppendV2(b, s.client, s.local)
}

// localShortage reports errors of this host, not of the server: out of
// descriptors, memory or source ports.
func localShortage(e unix.Errno) bool {
	switch e {
	case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM, unix.EADDRNOTAVAIL:
		return true
	}
	return false
}

// waitResources keeps the client while this host lacks the resources for a
// server connection: the attempt is postponed (srv keeps the slot it
// acquired, counted once, and is not blamed) and tried again every
// resourceRetry, for up to the connect timeout (5 s without one), before
// the client is turned away.
func (s *esession) waitResources(srv *state.Server, e unix.Errno) {
	s.srv = srv
	s.state = stConnecting
	now := s.l.now
	if s.waitUntil == 0 {
		to := s.b.cfg.ConnectTimeout
		if to <= 0 {
			to = 5 * time.Second
		}
		s.waitUntil = now + int64(to)
		s.f.log.Debug("no resources for a server connection; waiting", "error", e)
	}
	s.connectBy = min(now+int64(resourceRetry), s.waitUntil)
	s.setDeadline(s.connectBy)
}

func (s *esession) setDeadline(d int64) {
	s.deadline = d
	s.l.schedule(d)
}

// connectFailed records a failed attempt and releases the server's slot.
func (s *esession) connectFailed(srv *state.Server, err error) {
	srv.ConnectFailed()
	srv.Release()
	if s.s.fd >= 0 {
		s.l.closeEnd(&s.s, false)
	}
	s.srv = nil
	s.f.log.Debug("connect failed", "server", srv.ID(), "error", err)
}

// connected finishes a connect: the PROXY header goes first, then bytes flow.
// It returns false (with the attempt counted as failed) if the header cannot
// be sent.
func (s *esession) connected() bool {
	if s.hdrDue {
		if s.c.buf == nil && !s.readClient() {
			return true // the client failed: the session has ended
		}
		if e := s.writeFirst(); e != 0 {
			s.connectFailed(s.srv, e)
			return false
		}
	}
	s.srv.Succeeded()
	s.state = stEstablished
	s.c.last, s.s.last = s.l.now, s.l.now
	s.setDeadline(s.computeDeadline())
	s.pump()
	return true
}

// reject ends a session before it reaches a server: the client gets a reset.
func (s *esession) reject(r Reject) {
	s.f.stats.Count(r)
	s.state = stClosed
	s.l.untrack(s)
	if s.c.buf != nil {
		s.l.putBuf(s.c.buf)
		s.c.buf = nil
	}
	s.l.closeEnd(&s.c, true)
	s.f.stats.current.Add(-1)
	s.f.part(s)
}

// noServer ends a session that found no server.
func (s *esession) noServer() {
	s.reject(RejectNoServer)
	if s.f.cfg.AccessLog {
		s.f.log.LogAttrs(context.Background(), slog.LevelInfo, "connection",
			slog.String("client", s.client.String()), slog.String("backend", s.b.cfg.Name),
			slog.String("termination", "no_server"), slog.Duration("duration", time.Since(s.start)))
	}
}

// event handles readiness of one of the session's sockets.
func (s *esession) event(e *end, ev uint32) {
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		e.readable = true
	}
	if ev&unix.EPOLLRDHUP != 0 {
		e.rdhup = true
	}
	if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		e.writable = true
	}
	switch s.state {
	case stEstablished:
		s.pump()
	case stProxyHeader:
		if e == &s.c && e.readable {
			s.readHeader()
		}
	case stConnecting:
		if e != &s.s {
			if ev&unix.EPOLLERR != 0 {
				// the client reset while we connect: give the slot back now
				// (a FIN alone is a half-close, passed on once connected)
				s.fail(e, rawsock.SockError(e.fd))
			}
			return
		}
		if ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			err := rawsock.SockError(s.s.fd)
			s.connectFailed(s.srv, err)
			if !s.connectNext() {
				s.noServer()
			}
			return
		}
		if ev&unix.EPOLLOUT != 0 && !s.connected() {
			if !s.connectNext() {
				s.noServer()
			}
		}
	}
}

// pump moves whatever can move now, both ways.
func (s *esession) pump() {
	if s.flow(&s.c, &s.s) {
		s.flow(&s.s, &s.c)
	}
}

// flow moves bytes from src to dst until one of them would block, or until
// it has read flowBudget bytes (8 MiB: a few milliseconds): then the session waits its turn on the
// loop's ready list, so one bulk transfer cannot hold the loop (the edge is
// consumed; nothing else would bring it back). It returns false if the
// session ended.
func (s *esession) flow(src, dst *end) bool {
	l := s.l
	budget := flowBudget
	for {
		if src.inPipe > 0 && src.off == src.n { // the pipe's bytes follow the buffer's
			if !dst.writable {
				return true
			}
			n, e := rawsock.Splice(src.p.R, dst.fd, src.inPipe)
			if e == unix.EAGAIN {
				dst.writable = false
				return true
			}
			if e != 0 {
				return s.fail(dst, e)
			}
			src.inPipe -= n
			s.moved(src, n)
			dst.last = l.now
			if src.inPipe > 0 {
				// a short splice does not mean the socket is full (no
				// EPOLLOUT edge may follow): only EAGAIN says so
				continue
			}
		}
		if src.n > src.off {
			if !dst.writable {
				return true
			}
			if src.splice && src.inPipe == 0 && src.readable && !src.eof && (src.p != nil || s.takePipe(src)) {
				// A full read starts bulk: take what follows into the pipe
				// before the buffer goes, and send the buffer with MSG_MORE.
				// The start of a large reply then leaves in full-sized
				// segments, not as a short one of its own (see
				// l7's econn.flushOut: a Linux client's receive window
				// would not grow).
				n, e := s.pipeIn(src, dst)
				if e != 0 && e != unix.EAGAIN && e != unix.EINTR {
					src.rerr = e // acted on once the buffer's bytes are out
				}
				budget -= n
			}
			var n int
			var e unix.Errno
			if src.inPipe > 0 || src.eof && !src.finished {
				// MSG_MORE before the pipe's bytes, or before the FIN
				// passed on below: it then leaves with the last bytes, not
				// as a segment (and an ACK) of its own
				n, e = rawsock.Send(dst.fd, src.buf[src.off:src.n], nil, true)
			} else {
				n, e = rawsock.Write(dst.fd, src.buf[src.off:src.n])
			}
			if e == unix.EAGAIN {
				dst.writable = false
				return true
			}
			if e != 0 {
				return s.fail(dst, e)
			}
			src.off += n
			s.moved(src, n)
			dst.last = l.now
			if src.off < src.n {
				continue // as for splice: wait only after EAGAIN
			}
		}
		if src.buf != nil {
			l.putBuf(src.buf)
			src.buf, src.off, src.n = nil, 0, 0
		}
		if src.inPipe > 0 {
			continue // the pipe filled before the buffer went
		}
		if src.rerr != 0 {
			return s.fail(src, src.rerr)
		}
		if src.eof {
			if !src.finished {
				src.finished = true
				if src.p != nil {
					// the EOF was found with the last bytes (pipeIn):
					// a half-closed session keeps no pipe for this way
					pipes.Put(src.p, true)
					src.p = nil
				}
				s.done++
				if s.done == 2 {
					s.close("closed")
					return false
				}
				// the other way may go on: pass the end on as a FIN
				if e := rawsock.ShutdownWrite(dst.fd); e != 0 {
					return s.fail(dst, e)
				}
			}
			return true
		}
		if !src.readable {
			return true
		}
		if budget <= 0 {
			l.requeue(s)
			return true
		}
		if src.splice {
			if src.p == nil && !s.takePipe(src) {
				continue
			}
			n, e := s.pipeIn(src, dst)
			switch {
			case e == unix.EAGAIN:
				return true
			case e == unix.EINTR:
				continue
			case e != 0:
				return s.fail(src, e)
			}
			budget -= n
			continue
		}
		b := l.getBuf()
		n, e := rawsock.Read(src.fd, b)
		switch {
		case e == unix.EAGAIN:
			src.readable = false
			l.putBuf(b)
			return true
		case e == unix.EINTR:
			l.putBuf(b)
			continue
		case e != 0:
			l.putBuf(b)
			return s.fail(src, e)
		case n == 0:
			l.putBuf(b)
			src.eof = true
			continue
		}
		src.buf, src.off, src.n = b, 0, n
		src.last = l.now
		budget -= n
		switch {
		case n == len(b):
			src.splice = true
		case !src.rdhup:
			// a short read took everything queued; the next arrival is a
			// new edge, so no read is spent on EAGAIN
			src.readable = false
		default:
			// the peer's FIN is in: the read that finds it comes before
			// these bytes go, so that the FIN can go with them
			m := src.afterFIN(rawsock.Read(src.fd, b[n:]))
			src.n += m
			budget -= m
		}
	}
}

// takePipe gets src a pipe to splice through; false: none to be had (fd
// limit), and src stays on the buffered path.
func (s *esession) takePipe(src *end) bool {
	p, err := pipes.Get()
	if err != nil {
		src.splice = false
		return false
	}
	src.p = p
	return true
}

// pipeIn splices what src has into its empty pipe. Drained (EAGAIN), src
// goes back to waiting with neither pipe nor buffer, and the bulk read so
// far is acknowledged now: a sender waiting for that ACK would wait for the
// delayed-ACK timer (40 ms). Short exchanges keep the delayed ACK, which
// rides on the reply. At EOF (0 bytes) the pipe goes back too. dst is where
// the bytes go (corked when the EOF is found behind them).
func (s *esession) pipeIn(src, dst *end) (int, unix.Errno) {
	n, e := rawsock.Splice(src.fd, src.p.W, src.p.Size)
	if e == 0 && n > 0 && n < src.p.Size && src.rdhup {
		// The peer's FIN is in: look for the EOF behind these bytes now,
		// so that it goes with them (as flow does for a short read). They
		// leave in several splices, the last segment corked until the
		// shutdown that passes the FIN on.
		n += src.afterFIN(rawsock.Splice(src.fd, src.p.W, src.p.Size-n))
		if src.eof {
			rawsock.Cork(dst.fd)
		}
	}
	switch {
	case e == unix.EAGAIN:
		rawsock.AckNow(src.fd)
		src.readable, src.splice = false, false
		pipes.Put(src.p, true)
		src.p = nil
	case e != 0:
	case n == 0:
		src.eof = true
		pipes.Put(src.p, true)
		src.p = nil
	default:
		src.inPipe = n
		src.last = s.l.now
	}
	return n, e
}

// afterFIN takes the result of a read or splice made, after the peer's FIN
// came in, to find the EOF behind bytes about to be passed on: it notes the
// EOF (0 bytes) or a reset (kept in rerr until those bytes are out), and
// returns the bytes it found instead, if any.
func (e *end) afterFIN(n int, err unix.Errno) int {
	switch {
	case err == 0 && n == 0:
		e.eof = true
	case err == 0:
		return n
	case err != unix.EAGAIN && err != unix.EINTR:
		e.rerr = err
	}
	return 0
}

func (s *esession) moved(src *end, n int) {
	s.l.moved += int64(n)
	if src == &s.c {
		s.toServer += int64(n)
	} else {
		s.toClient += int64(n)
	}
	if s.toServer-s.flushedIn+s.toClient-s.flushedOut >= bytesFlush {
		s.flushBytes()
	}
}

// flushBytes adds the bytes moved since the last flush to the frontend's and
// the server's counters: a long transfer shows up as it goes, not at its end,
// while short sessions pay for the shared counters once, at close.
func (s *esession) flushBytes() {
	in, out := s.toServer-s.flushedIn, s.toClient-s.flushedOut
	if in == 0 && out == 0 {
		return
	}
	s.f.stats.AddBytes(uint64(in), uint64(out))
	if s.srv != nil {
		s.srv.AddBytes(uint64(in), uint64(out))
	}
	s.flushedIn, s.flushedOut = s.toServer, s.toClient
}

// fail ends the session after an error on e.
func (s *esession) fail(e *end, errno unix.Errno) bool {
	reset := errno == unix.ECONNRESET || errno == unix.EPIPE
	switch {
	case e == &s.c && reset:
		s.end("client_reset", true)
	case e == &s.c:
		s.end("client_error", true)
	case reset:
		s.close("server_reset")
	default:
		s.close("server_error")
	}
	return false
}

// computeDeadline is when the session times out if nothing moves before.
func (s *esession) computeDeadline() int64 {
	switch s.state {
	case stConnecting, stProxyHeader:
		return s.connectBy
	case stEstablished:
		d := int64(math.MaxInt64)
		if to := s.f.cfg.ClientTimeout; to > 0 {
			d = s.c.last + int64(to)
		}
		if to := s.b.cfg.ServerTimeout; to > 0 {
			d = min(d, s.s.last+int64(to))
		}
		return d
	}
	return math.MaxInt64
}

// timeout acts on a passed deadline: a connect that took too long is a
// failed attempt (retried elsewhere); an inactive session is closed.
func (s *esession) timeout() {
	switch s.state {
	case stProxyHeader:
		s.reject(RejectProxyProtocol)
	case stConnecting:
		if s.s.fd < 0 { // waiting for resources (waitResources)
			if s.l.now >= s.waitUntil {
				s.srv.Release()
				s.srv = nil
				s.noServer()
			} else if !s.connectNext() {
				s.noServer()
			}
			return
		}
		s.connectFailed(s.srv, unix.ETIMEDOUT)
		if !s.connectNext() {
			s.noServer()
		}
	case stEstablished:
		if to := s.f.cfg.ClientTimeout; to > 0 && s.l.now >= s.c.last+int64(to) {
			s.close("client_timeout")
		} else {
			s.close("server_timeout")
		}
	}
}

// abort closes the session from any goroutine (Drain).
func (s *esession) abort(reason string) {
	gen := s.gen
	s.l.post(func() {
		if s.gen == gen { // not closed and reused meanwhile
			s.close(reason)
		}
	})
}

// close ends a session in any state but closed: both sockets close, buffers
// and pipes go back, counters and the access log line are written.
func (s *esession) close(reason string) { s.end(reason, false) }

// end closes the session; resetServer closes the server side with a reset
// instead of a FIN. A client whose side failed (a reset, or an error such as
// a TCP keepalive timeout) has aborted, not finished: the server is told so, as
// a direct client's reset would tell it, and can drop the work it was doing
// for it (HAProxy does the same). A failed server side is passed on as a
// clean close, as HAProxy does, after whatever it sent.
func (s *esession) end(reason string, resetServer bool) {
	if s.state == stClosed {
		return
	}
	s.state = stClosed
	l := s.l
	l.untrack(s)
	for _, e := range [2]*end{&s.c, &s.s} {
		if e.buf != nil {
			l.putBuf(e.buf)
			e.buf = nil
		}
		if e.p != nil {
			pipes.Put(e.p, e.inPipe == 0)
			e.p = nil
		}
		l.closeEnd(e, resetServer && e == &s.s)
	}
	f := s.f
	s.flushBytes()
	f.stats.current.Add(-1)
	if s.srv != nil {
		s.srv.Release()
	}
	f.part(s)
	if f.cfg.AccessLog {
		srv := ""
		if s.srv != nil {
			srv = s.srv.Name()
		}
		f.log.LogAttrs(context.Background(), slog.LevelInfo, "connection",
			slog.String("client", s.client.String()), slog.String("backend", s.b.cfg.Name),
			slog.String("server", srv), slog.Int64("bytes_in", s.toServer),
			slog.Int64("bytes_out", s.toClient), slog.Duration("duration", time.Since(s.start)),
			slog.String("termination", reason))
	}
	l.dead = append(l.dead, s)
}
