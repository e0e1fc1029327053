package l7

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/palisade-lb/palisade/proxy/internal/pipes"
	"github.com/palisade-lb/palisade/proxy/internal/rawsock"
	"github.com/palisade-lb/palisade/proxy/l7/http1"
	"github.com/palisade-lb/palisade/proxy/proxyproto"
)

// The engine path serves plain HTTP/1.x connections on package proxy's event
// loops: one loop goroutine runs many connections as state machines with
// non-blocking system calls, as HAProxy does, instead of one goroutine per
// connection. It shares the request and response code of the goroutine
// path (conn): parsing, routing, header rewriting, balancing, retries,
// metrics and logs are the same. What it runs itself is the common exchange:
// a request whose body (if any) is already buffered, forwarded on a pooled
// or new server connection, and its response of any framing. Anything else
// — a streamed or 100-continue body, an Upgrade, CONNECT, a malformed
// request, a redirect or a request no route takes, a backend sending PROXY
// headers — is
// handed over, at the request boundary, to a goroutine running the
// goroutine path (handoff), which keeps the connection to its end.

// engine connection states
const (
	esHead    uint8 = iota // reading a request head
	esConnect              // connecting to a server
	esSend                 // sending the request
	esWait                 // waiting for the response head
	esBody                 // forwarding the response
	esLocal                // sending a response palisade made (an error)
	esLinger               // error answered: draining the client before close
	esDone                 // closed or handed off
)

// econn is one client connection served on a Loop.
type econn struct {
	conn
	lp    Loop
	fd    int
	timer Timer
	done  func()
	pool  *epool

	st                  uint8
	cRead, cWrite, cHup bool
	cRdhup              bool   // the client's FIN was seen: reads go on until EOF
	out                 []byte // bytes waiting for the client to take them
	out2                []byte // and after them (empty while out is)
	deadline            int64
	headAt              int64 // first byte of a partial head (loop clock)
	idleAt              int64 // last response sent (loop clock)

	// the exchange in progress
	be                      *backendRef
	x                       exchange
	srv                     Server
	u                       *eup
	oOff                    int  // obuf bytes sent
	fresh, picked           bool // picked: a server was picked for this request
	tDial, tSent            time.Time
	connectDur, queued      time.Duration
	got                     bool // response bytes received
	kind                    http1.BodyKind
	rem                     int64 // Content-Length body left to forward
	decode, upKeep, cliKeep bool
	respIn                  int64       // response bytes received
	lastUp                  int64       // server activity (loop clock)
	p                       *pipes.Pipe // splicing a large body, or nil
	inPipe                  int         // bytes in p
	noPipe                  bool        // no pipe to be had: copy this body

	ds         *drainSet
	rbp, ubp   *[]byte         // the pooled buffers behind rbuf, ubuf (nil: none held)
	obp, wbp   *[]byte         // behind obuf, wbuf
	qhp, shp   *[]http1.Header // the pooled arrays behind req.Headers, resp.Headers
	opts       *EngineOptions
	cIn, cOut  uint64 // client bytes not yet given to CountBytes
	needHdr    bool   // the PROXY header is still to be read
	closeLocal bool   // esLocal: close once the response is sent
	lingered   int    // bytes dropped in esLinger
	mu         sync.Mutex
	handed     net.Conn // set by handoff
	gen        uint64   // connections served by this (pooled) econn so far
	finMore    bool     // the last response went with MSG_MORE (or corked), for the FIN to join it
}

// EngineOptions are a frontend's settings ServeEngine applies beyond the
// Handler's: admission after a PROXY header, and byte counting.
type EngineOptions struct {
	ProxyHeader  bool          // the client starts with a PROXY v1/v2 header
	ProxyTimeout time.Duration // for the whole header
	// Admit decides on the client the header names (ok false: no valid
	// header in time); false ends the connection with a reset. Required
	// with ProxyHeader.
	Admit func(client netip.AddrPort, ok bool) bool
	// CountBytes, if set, is given the bytes read from and written to the
	// client, after each exchange and at close (also after a handoff).
	CountBytes func(in, out uint64)
}

// EngineConn is a connection served by ServeEngine.
type EngineConn struct {
	e   *econn
	gen uint64
	lp  Loop
}

// econnPool recycles engine connections: a connection per request
// (Connection: close) would otherwise allocate its state each time.
var econnPool = sync.Pool{New: func() any { return &econn{} }}

// The buffers are held only while they hold something: an idle keep-alive
// connection keeps none (a few KiB of state instead of 56).
var (
	rbufs = newBufPool(16 << 10)
	ubufs = newBufPool(32 << 10)
	heads = newBufPool(4 << 10) // obuf, wbuf
)

// bufPool hands out byte slices of one size. A slice comes in a *[]byte,
// and goes back through it (a Put without allocation); a caller that grows
// the slice still gives back the original.
type bufPool struct{ p sync.Pool }

func newBufPool(size int) *bufPool {
	return &bufPool{p: sync.Pool{New: func() any { b := make([]byte, size); return &b }}}
}

// take returns the buffer *h holds, getting one from the pool into *h first
// if it holds none.
func (bp *bufPool) take(h **[]byte) []byte {
	if *h == nil {
		*h = bp.p.Get().(*[]byte)
	}
	return **h
}

// drop gives the buffer *h holds (if any) back.
func (bp *bufPool) drop(h **[]byte) {
	if *h != nil {
		bp.p.Put(*h)
		*h = nil
	}
}

// hdrArrays holds the parsers' header arrays, taken per exchange like the
// buffers: an idle keep-alive connection holds none.
var hdrArrays = sync.Pool{New: func() any { h := make([]http1.Header, 0, 16); return &h }}

// takeHdrs gives *h, the Headers a parser appends to, a pooled array unless
// *p already holds one for it.
func takeHdrs(p **[]http1.Header, h *[]http1.Header) {
	if *p == nil {
		*p = hdrArrays.Get().(*[]http1.Header)
		*h = (**p)[:0]
	}
}

// dropHdrs gives the array behind *h back (the one the parser grew it to,
// if it did).
func dropHdrs(p **[]http1.Header, h *[]http1.Header) {
	if *p != nil {
		**p = (*h)[:0]
		hdrArrays.Put(*p)
		*p, *h = nil, nil
	}
}

// takeHeads gives obuf and wbuf (appended to from empty) pooled arrays.
func (e *econn) takeHeads() {
	if e.obp == nil {
		e.obuf = heads.take(&e.obp)[:0]
	}
	if e.wbp == nil {
		e.wbuf = heads.take(&e.wbp)[:0]
	}
}

// dropHeads gives them back, once the exchange (retries included) is over
// and the client has taken the response head.
func (e *econn) dropHeads() {
	heads.drop(&e.obp)
	heads.drop(&e.wbp)
	e.obuf, e.wbuf = nil, nil
	dropHdrs(&e.qhp, &e.req.Headers)
	dropHdrs(&e.shp, &e.resp.Headers)
}

// dropRbuf gives the request buffer back; it holds nothing (roff == rn).
func (e *econn) dropRbuf() {
	rbufs.drop(&e.rbp)
	e.rbuf, e.roff, e.rn = nil, 0, 0
}

// dropUbuf gives the response buffer back once nothing refers to it.
func (e *econn) dropUbuf() {
	ubufs.drop(&e.ubp)
	e.ubuf, e.un = nil, 0
}

// ServeEngine serves the accepted non-blocking client socket fd on loop lp;
// it is called on lp's goroutine. done runs once the connection has ended
// (on the loop, or on the goroutine it was handed to). ctx is the drain
// context of ServeConn; opts may be nil. A Handler with TLS does not serve on
// the engine: ServeEngine closes fd and calls done.
func (h *Handler) ServeEngine(ctx context.Context, lp Loop, fd int, client netip.AddrPort, opts *EngineOptions, done func()) *EngineConn {
	if h.tlsConfig != nil {
		rawsock.Close(fd)
		done()
		return &EngineConn{}
	}
	e := econnPool.Get().(*econn)
	e.mu.Lock() // a stale post from the loop this econn last served on reads lp and gen
	e.lp = lp
	e.mu.Unlock()
	e.fd, e.done, e.st, e.ds = fd, done, esHead, nil
	e.cHup, e.cRdhup, e.out, e.out2, e.headAt, e.u, e.srv = false, false, nil, nil, 0, nil, nil
	e.opts, e.cIn, e.cOut, e.finMore = opts, 0, 0, false
	e.needHdr = opts != nil && opts.ProxyHeader
	ec := &EngineConn{e, e.gen, lp}
	c := &e.conn
	c.init(ctx, h, nil, client, false)
	c.ec.Store(e)
	e.pool = h.epoolFor(lp)
	if err := lp.Watch(fd, e); err != nil {
		h.log.Warn("registering a connection", "error", err)
		rawsock.ResetClose(fd)
		e.fd = -1
		e.st = esDone
		e.recycle()
		done()
		return ec
	}
	e.timer = lp.Track(e)
	if ctx.Done() != nil {
		e.ds = h.drainSetFor(ctx)
		e.ds.add(c)
	}
	e.idleAt = lp.Now()
	if e.needHdr {
		e.setDeadline(e.idleAt + int64(opts.ProxyTimeout))
	} else {
		e.setDeadline(e.idleAt + int64(h.cfg.Timeouts.HTTPRequest))
	}
	c.state.Store(stFresh)
	e.cRead, e.cWrite = true, true // the request often came with the handshake
	e.head()
	return ec
}

// Abort closes the connection at once (a forced drain); any goroutine.
func (ec *EngineConn) Abort() {
	e, gen := ec.e, ec.gen
	if e == nil {
		return
	}
	e.mu.Lock()
	nc := e.handed
	if e.gen != gen {
		nc = nil // ended; the econn serves another connection now
	}
	e.mu.Unlock()
	if nc != nil {
		nc.Close()
		return
	}
	ec.lp.Post(func() {
		if !e.current(gen) {
			return
		}
		e.mu.Lock()
		nc := e.handed // handed off since Abort looked
		e.mu.Unlock()
		if nc != nil {
			nc.Close()
		} else if e.st != esDone {
			e.closeAll(true)
		}
	})
}

// drainPost asks the loop to run drain (from conn.onDrain, any goroutine).
func (e *econn) drainPost() {
	e.mu.Lock()
	gen, lp := e.gen, e.lp
	e.mu.Unlock()
	lp.Post(func() {
		if e.current(gen) {
			e.drain()
		}
	})
}

// current reports whether e still serves the connection of generation gen.
// A pooled econn may serve its next connection on another loop, where
// recycle writes gen: posted work reads it under mu. When it is current,
// the caller runs on e's own loop and may touch its state.
func (e *econn) current(gen uint64) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.gen == gen
}

// recycle returns an econn that ended on the loop (not handed off) to the
// pool; posted work for it is recognised as stale by its generation.
func (e *econn) recycle() {
	e.leave()
	c := &e.conn
	e.mu.Lock()
	e.gen++
	e.mu.Unlock()
	c.ec.Store(nil)
	c.h, c.ctx = nil, nil
	c.tried.reset()
	e.be, e.x, e.timer = nil, exchange{}, nil
	e.dropRbuf()
	e.dropUbuf()
	e.dropHeads()
	econnPool.Put(e)
}

// drain runs on the loop when the drain context is cancelled: an idle
// keep-alive connection closes now; a busy or fresh one after its request
// (see conn.onDrain).
func (e *econn) drain() {
	if e.st == esHead && e.served > 0 && e.rn == e.roff {
		e.closeAll(false)
	}
}

func (e *econn) setDeadline(at int64) {
	e.deadline = at
	e.timer.Set(at)
}

// Deadline implements Timed.
func (e *econn) Deadline() int64 { return e.deadline }

// Shutdown implements Timed.
func (e *econn) Shutdown() { e.closeAll(true) }

// Expire implements Timed: the deadline of the current state has passed.
func (e *econn) Expire() {
	switch e.st {
	case esHead:
		if e.needHdr {
			e.opts.Admit(netip.AddrPort{}, false)
			e.closeAll(true)
			return
		}
		if e.rn > e.roff && !e.draining.Load() {
			e.local(408, "timeout reading request head", true)
			return
		}
		e.closeAll(false)
	case esConnect:
		e.connectFailed(os.ErrDeadlineExceeded)
	case esSend, esWait:
		e.serverTimeout()
	case esBody:
		if (len(e.out) > 0 || e.inPipe > 0) && e.lp.Now()-e.lastUp < int64(e.h.cfg.Timeouts.Server) {
			e.h.log.Debug("client timeout during a response")
		} else {
			e.logServer("response body truncated", e.be, e.srv, os.ErrDeadlineExceeded)
		}
		e.endExchange()
		e.closeAll(false) // a FIN: the client keeps what it was sent and sees the body cut
	case esLocal:
		e.closeAll(true)
	case esLinger:
		e.closeAll(false)
	}
}

// Ready implements Watcher for the client socket.
func (e *econn) Ready(ev uint32) {
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		e.cRead = true
	}
	if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		e.cWrite = true
	}
	if ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		e.cHup = true
	}
	if ev&unix.EPOLLRDHUP != 0 {
		e.cRdhup = true
	}
	switch e.st {
	case esHead:
		e.head()
	case esLinger:
		e.linger()
	case esLocal:
		if e.cHup {
			e.closeAll(true)
		} else if e.cWrite {
			e.flushLocal()
		}
	case esBody:
		if e.cHup {
			e.endExchange()
			e.closeAll(true)
			return
		}
		if e.cWrite && (len(e.out) > 0 || e.inPipe > 0) {
			e.body()
		}
	case esConnect, esSend, esWait:
		if e.cHup {
			e.closeAll(true) // the client is gone: give the server slot back now
		}
	}
}

// head reads and parses until a whole request head is buffered, then
// serves it.
func (e *econn) head() {
	c := &e.conn
	h := c.h
	for {
		if e.needHdr {
			if c.rn > 0 {
				if !e.proxyHeader() {
					return
				}
				if !e.needHdr {
					continue
				}
			}
		} else if c.rn > c.roff {
			takeHdrs(&e.qhp, &c.req.Headers)
			n, err := http1.ParseRequest(c.rbuf[c.roff:c.rn], &c.req, h.lim)
			if err == nil {
				c.headLen = n
				c.state.Store(stBusy)
				e.request()
				return
			}
			if err != http1.ErrIncomplete {
				e.handoff() // the goroutine path answers the error
				return
			}
			if e.headAt == 0 {
				c.state.Store(stBusy)
				e.headAt = e.lp.Now()
				e.setDeadline(e.headAt + int64(h.cfg.Timeouts.HTTPRequest))
			}
		} else {
			c.roff, c.rn = 0, 0
			if e.served > 0 {
				c.state.Store(stIdle)
				if c.draining.Load() {
					e.closeAll(false)
					return
				}
			}
		}
		if !e.cRead {
			if c.rn == c.roff {
				e.dropRbuf()
			}
			return
		}
		if c.rbuf == nil {
			c.rbuf = rbufs.take(&e.rbp)
		}
		if c.rn == len(c.rbuf) && e.needHdr {
			e.opts.Admit(netip.AddrPort{}, false) // no header is this long
			e.closeAll(true)
			return
		}
		if !c.roomInRbuf() {
			e.handoff() // answers 431
			return
		}
		space := len(c.rbuf) - c.rn
		n, en := rawsock.Read(e.fd, c.rbuf[c.rn:])
		switch {
		case en == unix.EAGAIN:
			e.cRead = false
			if c.rn == c.roff {
				e.dropRbuf()
			}
			return
		case en == unix.EINTR:
			continue
		case en != 0 || n == 0:
			if e.needHdr {
				e.opts.Admit(netip.AddrPort{}, false) // left before its header
			}
			e.closeAll(en != 0)
			return
		}
		c.rn += n
		e.cIn += uint64(n)
		e.lp.Moved(n)
		c.state.Store(stBusy)
		if n < space && !e.cHup && !e.cRdhup {
			// a short read took all there was: the next bytes bring a new edge
			e.cRead = false
		}
	}
}

// proxyHeader parses the client's PROXY protocol header (strictly, as the
// tcp path does) from the bytes read so far and admits the client it names;
// false: the connection has ended.
func (e *econn) proxyHeader() bool {
	c := &e.conn
	hd, hl, err := proxyproto.Parse(c.rbuf[:c.rn])
	switch {
	case err == proxyproto.ErrNeedMore:
		return true
	case err != nil:
		c.h.log.Debug("bad PROXY header", "error", err)
		e.opts.Admit(netip.AddrPort{}, false)
		e.closeAll(true)
		return false
	}
	if hd.Command == proxyproto.Proxy && hd.Src.IsValid() {
		c.client = hd.Src
	}
	c.roff = hl
	e.needHdr = false
	if !e.opts.Admit(c.client, true) {
		e.closeAll(true)
		return false
	}
	e.setDeadline(e.lp.Now() + int64(c.h.cfg.Timeouts.HTTPRequest))
	return true
}

// request serves a parsed request head: on the engine when it is the common
// case, else by handoff.
func (e *econn) request() {
	c := &e.conn
	req := &c.req
	if string(req.Method) == "CONNECT" || req.Upgrade || req.Expect100 {
		e.handoff()
		return
	}
	bodyStart := c.roff + c.headLen
	inBuf := 0
	switch {
	case req.Chunked:
		c.chunk.Reset()
		n, err := c.chunk.Feed(c.rbuf[bodyStart:c.rn])
		if err != nil || !c.chunk.Done() {
			e.handoff()
			return
		}
		inBuf = n
	case req.ContentLength > 0:
		if int64(c.rn-bodyStart) < req.ContentLength {
			e.handoff()
			return
		}
		inBuf = int(req.ContentLength)
	}
	path := req.Path()
	host, rd, be := c.route(path)
	if rd != nil || be == nil || be.sendProxy != 0 {
		e.handoff()
		return
	}
	c.start = time.Now()
	c.bytesIn, c.bytesOut = int64(inBuf), 0
	c.logMethod = append(c.logMethod[:0], req.Method...)
	c.logPath = append(c.logPath[:0], path...)
	e.takeHeads()
	c.obuf = c.buildRequest(c.obuf[:0], host)
	c.obuf = append(c.obuf, c.rbuf[bodyStart:bodyStart+inBuf]...)
	c.roff = bodyStart + inBuf
	e.headAt = 0
	e.be = be
	e.x = c.beginExchange(be, path, true) // the body is all buffered
	e.picked = false
	e.next()
}

// next picks a server for the request (again, after a failed attempt) and
// starts an attempt on it.
func (e *econn) next() {
	srv := e.pickServer(e.be, e.x.hash, !e.picked, e.x.sticky)
	e.picked = true
	if srv == nil {
		e.fail(nil, 503, "no server available")
		return
	}
	e.srv = srv
	e.fresh = false
	e.attempt()
}

// retryOther moves on to another server after srv failed (srv.Done called).
func (e *econn) retryOther(status int, why string) {
	c := &e.conn
	c.tried.add(e.srv)
	srv := e.srv
	e.srv = nil
	if e.x.retries <= 0 {
		e.fail(srv, status, why+" (retries exhausted)")
		return
	}
	e.x.retries--
	e.next()
}

// attempt sends the request to e.srv on a pooled connection, or connects.
func (e *econn) attempt() {
	c := &e.conn
	h := c.h
	if h.cfg.AccessLog {
		e.queued = time.Since(c.start)
	}
	e.connectDur, e.got, e.oOff = 0, false, 0
	if c.ubuf == nil {
		c.ubuf = ubufs.take(&e.ubp)
	}
	addr := e.srv.Addr()
	if !e.fresh {
		if u := e.pool.get(addr, e.lp.Now(), e.x.maxAge); u != nil {
			e.u = u
			u.owner = e
			e.tSent = c.start
			e.send()
			return
		}
	}
	ap, err := serverAddrPort(e.srv, addr)
	if err != nil {
		e.connectFailed(err)
		return
	}
	e.tDial = time.Now()
	fd, en := rawsock.Connect(ap)
	if fd < 0 {
		e.connectFailed(en)
		return
	}
	u := &eup{fd: fd, addr: addr, pool: e.pool, owner: e, writable: en == 0}
	if err := e.lp.Watch(fd, u); err != nil {
		rawsock.Close(fd)
		e.connectFailed(err)
		return
	}
	e.u = u
	if en == 0 {
		e.connected()
		return
	}
	e.st = esConnect
	e.setDeadline(e.lp.Now() + int64(h.cfg.Timeouts.Connect))
}

// AddrPorter is a Server that keeps its address parsed (package proxy's
// servers do, once per address change): the engine then parses none per
// connect.
type AddrPorter interface{ AddrPort() netip.AddrPort }

// serverAddrPort is srv's address, addr, as the engine connects to it.
func serverAddrPort(srv Server, addr string) (netip.AddrPort, error) {
	if a, ok := srv.(AddrPorter); ok {
		if ap := a.AddrPort(); ap.IsValid() {
			return ap, nil
		}
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return ap, err
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

func (e *econn) connectFailed(err error) {
	if e.u != nil {
		e.u.close()
		e.u = nil
	}
	dur := time.Since(e.tDial)
	e.srv.Done(Outcome{ConnectFailed: true, Timeout: errors.Is(err, os.ErrDeadlineExceeded), Connect: dur})
	e.logServer("connect failed", e.be, e.srv, err)
	e.retryOther(503, "connect failed")
}

// connected: the connect finished (the socket turned writable).
func (e *econn) connected() {
	if en := rawsock.SockError(e.u.fd); en != 0 {
		e.connectFailed(en)
		return
	}
	e.tSent = time.Now()
	e.connectDur = e.tSent.Sub(e.tDial)
	e.send()
}

// send writes the request to the server.
func (e *econn) send() {
	c := &e.conn
	u := e.u
	e.st = esSend
	for e.oOff < len(c.obuf) {
		n, en := rawsock.Write(u.fd, c.obuf[e.oOff:])
		switch {
		case en == unix.EAGAIN:
			u.writable = false
			e.lastUp = e.lp.Now()
			e.setDeadline(e.lastUp + int64(c.h.cfg.Timeouts.Server))
			return
		case en == unix.EINTR:
			continue
		case en != 0:
			e.sendFailed(en)
			return
		}
		e.oOff += n
	}
	e.st = esWait
	c.un = 0
	u.drained = false
	e.lastUp = e.lp.Now()
	e.setDeadline(e.lastUp + int64(c.h.cfg.Timeouts.Server))
	if u.readable {
		e.wait()
	}
}

func (e *econn) sendFailed(err error) {
	u := e.u
	e.u = nil
	u.close()
	if u.reused {
		e.fresh = true
		e.attempt()
		return
	}
	e.srv.Done(Outcome{EmptyResponse: true, Connect: e.connectDur})
	e.logServer("sending request failed", e.be, e.srv, err)
	e.retryOther(502, "sending request failed")
}

// wait reads the response head, skipping interim responses.
func (e *econn) wait() {
	c := &e.conn
	u := e.u
	takeHdrs(&e.shp, &c.resp.Headers)
	for {
		done, err := c.parseResponseHead()
		if err == nil && !done && u.readable {
			err = c.roomInUbuf()
		}
		switch {
		case err != nil:
			e.badResponse(err)
			return
		case done:
			c.respAt = time.Now()
			e.respond()
			return
		case !u.readable:
			return
		}
		space := len(c.ubuf) - c.un
		n, en := rawsock.Read(u.fd, c.ubuf[c.un:])
		switch {
		case en == unix.EAGAIN:
			u.readable = false
			return
		case en == unix.EINTR:
			continue
		case en != 0 || n == 0:
			if e.got {
				e.badResponse(errors.New("truncated response head"))
				return
			}
			e.emptyResponse()
			return
		}
		c.un += n
		e.got = true
		e.lastUp = e.lp.Now()
		if n < space && !u.hup {
			// a short read took all there was: the next bytes bring a new
			// edge (body and spliceBody acknowledge these if they wait)
			u.readable, u.drained = false, true
		}
	}
}

func (e *econn) respDur() time.Duration { return time.Since(e.tSent) }

func (e *econn) emptyResponse() {
	u := e.u
	e.u = nil
	u.close()
	if u.reused {
		e.fresh = true
		e.attempt()
		return
	}
	e.srv.Done(Outcome{EmptyResponse: true, BytesIn: e.bytesIn, Connect: e.connectDur, Response: e.respDur()})
	if e.x.idem {
		e.logServer("empty response, retrying", e.be, e.srv, nil)
		e.retryOther(502, "server closed the connection without a response")
		return
	}
	srv := e.srv
	e.srv = nil
	e.fail(srv, 502, "server closed the connection without a response")
}

func (e *econn) badResponse(err error) {
	e.u.close()
	e.u = nil
	e.srv.Done(Outcome{BadResponse: true, BytesIn: e.bytesIn, Connect: e.connectDur, Response: e.respDur()})
	srv := e.srv
	e.srv = nil
	e.fail(srv, 502, "bad response: "+err.Error())
}

func (e *econn) serverTimeout() {
	e.u.close()
	e.u = nil
	e.srv.Done(Outcome{Timeout: true, BytesIn: e.bytesIn, Connect: e.connectDur, Response: e.respDur()})
	if !e.got && e.x.idem {
		e.logServer("server timeout without a response, retrying", e.be, e.srv, nil)
		e.retryOther(504, "server timeout")
		return
	}
	srv := e.srv
	e.srv = nil
	e.fail(srv, 504, "server timeout")
}

// respond starts forwarding the response whose head is in ubuf (as conn.respond).
func (e *econn) respond() {
	c := &e.conn
	req := &c.req
	resp := &c.resp
	kind := resp.Body(string(c.logMethod) == "HEAD")
	if resp.Status == 101 {
		// never asked for: upgrades are handed off
		e.u.close()
		e.u = nil
		e.logServer("request failed: 101 Switching Protocols without an Upgrade request", e.be, e.srv, nil)
		resp.Status = 502
		e.endExchange()
		e.local(502, "", true)
		return
	}
	e.cliKeep = !req.Close && !c.draining.Load()
	e.decode = false
	switch kind {
	case http1.BodyClose:
		e.cliKeep = false
	case http1.BodyChunked:
		if req.Minor == 0 {
			e.decode, e.cliKeep = true, false
		}
	}
	e.upKeep = !resp.Close && kind != http1.BodyClose
	var setCookie Server
	if name := e.be.b.Cookie(); name != "" && e.x.sticky != e.srv {
		setCookie = e.srv
	}
	w := c.buildResponse(c.wbuf[:0], kind, e.decode, e.cliKeep, false, e.be, setCookie)
	body := c.ubuf[c.respHeadLen:c.un]
	e.respIn = int64(c.un)
	e.kind, e.rem, e.noPipe, e.out2 = kind, 0, false, nil
	switch kind {
	case http1.BodyNone:
		if len(body) > 0 {
			e.upKeep = false
		}
	case http1.BodyLength:
		take := int(min(int64(len(body)), resp.ContentLength))
		if len(body) > take {
			e.upKeep = false
		}
		w, e.out2 = appendOrLink(w, body[:take])
		e.rem = resp.ContentLength - int64(take)
	case http1.BodyChunked:
		c.chunk.Reset()
		var n int
		var err error
		if e.decode {
			n, w, err = c.chunk.Decode(body, w)
		} else {
			n, err = c.chunk.Feed(body)
			w, e.out2 = appendOrLink(w, body[:n])
		}
		if err != nil {
			e.u.close()
			e.u = nil
			c.h.log.Warn("request failed", "backend", e.be.name, "server", e.srv.Name(), "status", 502,
				"reason", "invalid chunked response: "+err.Error())
			resp.Status = 502
			e.endExchange()
			e.local(502, "", true)
			return
		}
		if c.chunk.Done() && n < len(body) {
			e.upKeep = false
		}
	case http1.BodyClose:
		w, e.out2 = appendOrLink(w, body)
	}
	c.wbuf = w
	e.out = w
	c.bytesOut = int64(len(w) + len(e.out2))
	e.st = esBody
	e.body()
}

// appendOrLink appends body to the response head w while it fits w's
// (pooled, 4 KiB) array; a larger body prefix is sent after w as it is
// (writev), not copied.
func appendOrLink(w, body []byte) ([]byte, []byte) {
	if len(body) == 0 || len(w)+len(body) <= cap(w) {
		return append(w, body...), nil
	}
	return w, body
}

// bodyDone reports whether the server has sent the whole response.
func (e *econn) bodyDone() bool {
	switch e.kind {
	case http1.BodyLength:
		return e.rem == 0 && e.inPipe == 0
	case http1.BodyChunked:
		return e.chunk.Done()
	case http1.BodyClose:
		return false
	}
	return true
}

// flushOut sends out, then out2, to the client. It reports whether all is
// sent; false: it waits for the client (under timeouts.client), or a write
// failed and the connection has ended (the exchange recorded first). With
// body bytes in the pipe it sends with MSG_MORE: the splice that follows
// fills the last segment, and the head leaves with the body's start in
// full-sized segments (as a server that sends with TCP_CORK does). Sent in a
// short segment of its own, the head is the only segment of the response
// that carries a new timestamp echo, and a Linux client then takes no
// receive-RTT sample from it (as we read the kernel): measured, its receive
// window stayed at the initial ~94 KiB, and a larger response waited for
// window updates.
func (e *econn) flushOut() bool {
	for len(e.out) > 0 {
		if !e.cWrite {
			e.setDeadline(e.lp.Now() + int64(e.h.cfg.Timeouts.Client))
			return false
		}
		var n int
		var en unix.Errno
		// MSG_MORE: body bytes waiting in the pipe go next (spliceBody),
		// or the connection closes after these last bytes and the FIN goes
		// with them
		last := e.st == esBody && !e.cliKeep && e.bodyDone()
		if more := e.inPipe > 0 || last; more || len(e.out2) > 0 {
			e.finMore = e.finMore || last
			n, en = rawsock.Send(e.fd, e.out, e.out2, more)
		} else {
			n, en = rawsock.Write(e.fd, e.out)
		}
		switch {
		case en == unix.EAGAIN:
			e.cWrite = false
			continue
		case en == unix.EINTR:
			continue
		case en != 0:
			e.endExchange()
			e.closeAll(true)
			return false
		}
		e.cOut += uint64(n)
		e.lp.Moved(n)
		if n < len(e.out) {
			e.out = e.out[n:]
		} else {
			e.out, e.out2 = e.out2[n-len(e.out):], nil
		}
	}
	return true
}

// body moves the response to the client: what is waiting first, then more
// from the server while the client takes it.
func (e *econn) body() {
	c := &e.conn
	h := c.h
	for {
		if len(e.out) > 0 && e.p == nil && e.kind == http1.BodyLength && e.rem >= spliceMin && !e.noPipe && e.u.readable {
			// take what the server has sent of the body before the head
			// goes: flushOut then sends the head with MSG_MORE
			if !e.takePipe() {
				continue
			}
			if n, en := e.pipeIn(); en != 0 && en != unix.EAGAIN && en != unix.EINTR || en == 0 && n == 0 {
				// nothing has reached the client yet: it gets a 502
				pipes.Put(e.p, true)
				e.p = nil
				e.badResponse(fmt.Errorf("body truncated: %w", truncation(en)))
				return
			}
		}
		if !e.flushOut() {
			return
		}
		if e.bodyDone() {
			e.finish()
			return
		}
		if e.kind == http1.BodyLength && (e.p != nil || e.rem >= spliceMin && !e.noPipe) {
			if e.p == nil && !e.takePipe() {
				continue
			}
			if e.spliceBody() {
				e.finish()
			}
			return
		}
		u := e.u
		if !u.readable {
			u.ackDrained()
			e.setDeadline(e.lastUp + int64(h.cfg.Timeouts.Server))
			return
		}
		buf := c.ubuf
		if e.kind == http1.BodyLength {
			buf = buf[:min(int64(len(buf)), e.rem)]
		}
		n, en := rawsock.Read(u.fd, buf)
		switch {
		case en == unix.EAGAIN:
			u.readable = false
			rawsock.AckNow(u.fd)
			continue
		case en == unix.EINTR:
			continue
		case en != 0 || n == 0:
			if e.kind == http1.BodyClose && en == 0 {
				e.upKeep, e.cliKeep = false, false
				e.finish()
				return
			}
			var err error = io.ErrUnexpectedEOF
			if en != 0 {
				err = en
			}
			e.logServer("response body truncated", e.be, e.srv, err)
			e.endExchange()
			e.closeAll(false)
			return
		}
		e.lastUp = e.lp.Now()
		e.respIn += int64(n)
		switch e.kind {
		case http1.BodyLength:
			e.rem -= int64(n)
			e.out = buf[:n]
		case http1.BodyChunked:
			var k int
			var err error
			if e.decode {
				k, c.wbuf, err = c.chunk.Decode(buf[:n], c.wbuf[:0])
				e.out = c.wbuf
			} else {
				k, err = c.chunk.Feed(buf[:n])
				e.out = buf[:k]
			}
			if err != nil {
				// pass on what was valid, then end both connections
				e.logServer("invalid chunked response body", e.be, e.srv, err)
				_, _ = rawsock.Write(e.fd, e.out)
				e.endExchange()
				e.closeAll(false)
				return
			}
			if c.chunk.Done() && k < n {
				e.upKeep = false
			}
		default:
			e.out = buf[:n]
		}
		c.bytesOut += int64(len(e.out))
	}
}

// spliceBody moves the rest of a Content-Length body from the server to
// the client through e.p with splice(2): the bytes stay in the kernel. It
// reports whether the body is through; false: it waits for a socket, or the
// connection has ended.
func (e *econn) spliceBody() bool {
	c := &e.conn
	h := c.h
	u := e.u
	for {
		if e.inPipe > 0 {
			if !e.cWrite {
				e.setDeadline(e.lp.Now() + int64(h.cfg.Timeouts.Client))
				return false
			}
			if e.rem == 0 && !e.cliKeep && !e.finMore {
				// the connection closes after these last bytes: they wait
				// for the FIN, which closeAll's shutdown sends with them
				rawsock.Cork(e.fd)
				e.finMore = true
			}
			n, en := rawsock.Splice(e.p.R, e.fd, e.inPipe)
			switch {
			case en == unix.EAGAIN:
				e.cWrite = false
				continue
			case en == unix.EINTR:
				continue
			case en != 0:
				e.endExchange()
				e.closeAll(true)
				return false
			}
			e.inPipe -= n
			e.cOut += uint64(n)
			e.lp.Moved(n)
			c.bytesOut += int64(n)
			continue
		}
		if e.rem == 0 {
			pipes.Put(e.p, true)
			e.p = nil
			return true
		}
		if !u.readable {
			u.ackDrained()
			e.setDeadline(e.lastUp + int64(h.cfg.Timeouts.Server))
			return false
		}
		n, en := e.pipeIn()
		switch {
		case en == unix.EAGAIN, en == unix.EINTR:
			continue
		case en != 0 || n == 0:
			e.bodyTruncated(en)
			return false
		}
	}
}

// takePipe gets e.p for a body to splice; false: no pipe to be had, and
// the body is copied through the buffer instead.
func (e *econn) takePipe() bool {
	p, err := pipes.Get()
	if err != nil {
		e.noPipe = true
		return false
	}
	e.p = p
	return true
}

// pipeIn splices what the server has sent of the body, up to the pipe's
// size, into the empty pipe. On EAGAIN the server socket is drained and
// acknowledged at once (see rawsock.AckNow).
func (e *econn) pipeIn() (int, unix.Errno) {
	u := e.u
	n, en := rawsock.Splice(u.fd, e.p.W, int(min(int64(e.p.Size), e.rem)))
	switch {
	case en == unix.EAGAIN:
		u.readable = false
		rawsock.AckNow(u.fd)
	case en == 0 && n > 0:
		e.rem -= int64(n)
		e.inPipe += n
		e.respIn += int64(n)
		e.lastUp = e.lp.Now()
	}
	return n, en
}

// truncation is the error of a body read that failed (en) or met the
// server's EOF (en 0) early.
func truncation(en unix.Errno) error {
	if en != 0 {
		return en
	}
	return io.ErrUnexpectedEOF
}

// bodyTruncated ends both connections after the server failed (en) or
// closed (en 0) before the end of a Content-Length body.
func (e *econn) bodyTruncated(en unix.Errno) {
	e.logServer("response body truncated", e.be, e.srv, truncation(en))
	e.endExchange()
	e.closeAll(false)
}

// finish ends an exchange whose response has been passed on: the server
// connection is pooled or closed, the outcome recorded, and the client
// connection goes on to its next request or closes.
func (e *econn) finish() {
	c := &e.conn
	if e.upKeep {
		e.u.owner = nil
		e.pool.put(e.u, e.lp.Now())
	} else {
		e.u.close()
	}
	e.u = nil
	e.endExchange()
	e.dropUbuf()
	e.dropHeads()
	if !e.cliKeep {
		e.closeAll(false)
		return
	}
	e.served++
	e.st = esHead
	e.idleAt = e.lp.Now()
	e.setDeadline(e.idleAt + int64(c.h.cfg.Timeouts.Idle))
	if c.draining.Load() && c.rn == c.roff {
		e.closeAll(false)
		return
	}
	e.head()
}

// countBytes hands the client bytes counted so far to EngineOptions.CountBytes.
func (e *econn) countBytes() {
	if e.cIn|e.cOut != 0 && e.opts != nil && e.opts.CountBytes != nil {
		e.opts.CountBytes(e.cIn, e.cOut)
	}
	e.cIn, e.cOut = 0, 0
}

// endExchange records the outcome of a response from e.srv, complete or not.
func (e *econn) endExchange() {
	c := &e.conn
	e.countBytes()
	if e.srv == nil {
		return
	}
	o := Outcome{Status: c.resp.Status, BytesIn: c.bytesIn, BytesOut: e.respIn, Connect: e.connectDur,
		Response: c.respAt.Sub(e.tSent)}
	srv := e.srv
	e.srv = nil
	srv.Done(o)
	c.lastEnd = time.Now()
	e.be.st.observe(o.Status, c.lastEnd.Sub(c.start).Seconds())
	if c.h.cfg.AccessLog {
		c.accessLogTimes(e.be, srv, o.Status, e.queued, o.Connect, o.Response)
	}
}

// fail answers an error for a request no server answered (as conn.failBeforeResponse).
func (e *econn) fail(srv Server, status int, why string) {
	c := &e.conn
	e.dropUbuf()
	keep := !c.req.Close && !c.draining.Load()
	e.be.st.observe(status, time.Since(c.start).Seconds())
	sname := ""
	if srv != nil {
		sname = srv.Name()
	}
	c.h.log.Warn("request failed", "backend", e.be.name, "server", sname, "status", status, "reason", why,
		"method", string(c.logMethod), "path", string(c.logPath))
	c.accessLog(e.be, srv, status)
	e.local(status, "", !keep)
}

// local sends a palisade-made error response; with closeConn the
// connection then lingers (so the client reads the answer, not a reset)
// and closes, else the next request is read.
func (e *econn) local(status int, reason string, closeConn bool) {
	c := &e.conn
	if reason != "" {
		c.h.log.Info("request rejected", "client", c.client.String(), "status", status, "reason", reason)
		c.h.none.observe(status, 0)
	}
	e.takeHeads()
	c.wbuf = appendErrorResponse(c.wbuf[:0], status, closeConn)
	e.out, e.out2, e.closeLocal, e.st = c.wbuf, nil, closeConn, esLocal
	e.flushLocal()
}

// flushLocal sends the rest of a palisade-made response (within
// timeouts.client), then reads the next request or closes.
func (e *econn) flushLocal() {
	c := &e.conn
	if !e.flushOut() {
		return
	}
	e.dropHeads()
	if !e.closeLocal {
		e.served++
		e.st = esHead
		e.idleAt = e.lp.Now()
		e.setDeadline(e.idleAt + int64(c.h.cfg.Timeouts.Idle))
		e.head()
		return
	}
	rawsock.ShutdownWrite(e.fd)
	e.st = esLinger
	e.lingered = 0
	e.setDeadline(e.lp.Now() + int64(500*time.Millisecond))
	e.linger()
}

// linger reads and drops what the client still sends, until its FIN, for
// at most 1 MiB (and 500 ms, the deadline local set).
func (e *econn) linger() {
	var buf [4096]byte
	for e.cRead {
		n, en := rawsock.Read(e.fd, buf[:])
		switch {
		case en == unix.EAGAIN:
			e.cRead = false
		case en == unix.EINTR:
		case en != 0 || n == 0 || e.lingered+n >= 1<<20:
			e.closeAll(false)
			return
		}
		e.lingered += n
		e.cIn += uint64(n)
	}
}

// closeAll ends the connection: the server connection in use is closed
// (its server slot given back if the exchange was open), then the client's.
func (e *econn) closeAll(reset bool) {
	if e.st == esDone && e.fd < 0 {
		return
	}
	if e.u != nil {
		e.u.close()
		e.u = nil
	}
	if e.srv != nil {
		e.srv.Done(Outcome{Aborted: true, BytesIn: e.bytesIn, Connect: e.connectDur})
		e.srv = nil
	}
	if e.p != nil {
		pipes.Put(e.p, e.inPipe == 0)
		e.p, e.inPipe = nil, 0
	}
	e.st = esDone
	if e.timer != nil {
		e.timer.Stop()
	}
	if e.fd >= 0 {
		e.lp.Unwatch(e.fd)
		switch {
		case reset:
			rawsock.ResetClose(e.fd)
		case e.finMore:
			// the last bytes wait (MSG_MORE) for the FIN: the shutdown sends
			// them with it, before a close that finds unread client bytes
			// resets the connection (and would drop them)
			rawsock.ShutdownWrite(e.fd)
			rawsock.Close(e.fd)
		default:
			rawsock.Close(e.fd)
		}
		e.fd = -1
	}
	e.countBytes()
	done := e.done
	e.recycle()
	done()
}

// leave takes the connection out of its drain set.
func (e *econn) leave() {
	if e.ds != nil {
		e.ds.remove(&e.conn)
	}
}

// handoff gives the connection, at a request boundary (the request is
// buffered, unserved), to a goroutine running the goroutine path.
func (e *econn) handoff() {
	c := &e.conn
	e.countBytes()
	e.timer.Stop()
	e.lp.Unwatch(e.fd)
	f := os.NewFile(uintptr(e.fd), "client")
	nc, err := net.FileConn(f) // a duplicate, in Go's poller
	_ = f.Close()
	e.fd = -1
	e.st = esDone
	if err != nil {
		c.h.log.Warn("handing a connection to a goroutine", "error", err)
		e.leave()
		e.done()
		return
	}
	c.setClient(nc)
	if e.opts != nil {
		c.count = e.opts.CountBytes // counted from here on through c.cc
	}
	// the goroutine owns the buffers now: never back to the pools
	e.rbp, e.ubp, e.obp, e.wbp, e.qhp, e.shp = nil, nil, nil, nil, nil, nil
	if c.ubuf == nil {
		c.ubuf = make([]byte, 32<<10)
	}
	e.mu.Lock()
	e.handed = nc // for Abort; this econn is never recycled
	e.mu.Unlock()
	c.ec.Store(nil) // onDrain now acts on nc (see conn.onDrain)
	go func() {
		c.serve()
		e.leave()
		_ = nc.Close()
		e.done()
	}()
}

// eup is a server connection of the engine path: in use by one econn, or
// idle in its loop's pool (owner nil), where it stays registered.
type eup struct {
	fd                 int
	addr               string
	pool               *epool
	owner              *econn
	readable, writable bool
	hup                bool // the server shut down or failed: read to the end
	drained            bool // a short read emptied the socket, not yet acknowledged
	reused             bool
	idleSince          int64
}

// Ready implements Watcher for the server socket.
func (u *eup) Ready(ev uint32) {
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		u.readable = true
	}
	if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		u.writable = true
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		u.hup = true
	}
	e := u.owner
	if e == nil {
		// idle: the server closed it (or sent something unasked)
		if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			u.pool.remove(u)
			u.close()
		}
		return
	}
	switch e.st {
	case esConnect:
		if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			e.connected()
		}
	case esSend:
		if u.writable {
			e.send()
		}
	case esWait:
		if u.readable {
			e.wait()
		}
	case esBody:
		if u.readable && len(e.out) == 0 && e.inPipe == 0 {
			e.body()
		}
	}
}

// ackDrained acknowledges at once what the short read of a response head
// took, as the EAGAIN of a body read does: a server that holds the rest of
// a response until its data is acknowledged (nginx's tcp_nopush) would
// otherwise wait for the delayed-ACK timer.
func (u *eup) ackDrained() {
	if u.drained {
		u.drained = false
		rawsock.AckNow(u.fd)
	}
}

func (u *eup) close() {
	if u.fd >= 0 {
		if u.owner != nil {
			u.owner.lp.Unwatch(u.fd)
		} else {
			u.pool.lp.Unwatch(u.fd)
		}
		rawsock.Close(u.fd)
		u.fd = -1
	}
}

// epool holds one loop's idle server connections of one Handler, per
// address, newest last. Only its loop touches it, but for close.
type epool struct {
	lp     Loop
	idle   map[string][]*eup
	timer  Timer
	next   int64 // deadline set on timer
	maxAge time.Duration
	closed bool
}

// epoolFor returns the pool of lp, creating it. A connection asks once, so
// the lookup takes no lock once the pool exists.
func (h *Handler) epoolFor(lp Loop) *epool {
	if p, ok := h.epools.Load(lp); ok {
		return p.(*epool)
	}
	h.drainMu.Lock() // with Close
	defer h.drainMu.Unlock()
	if p, ok := h.epools.Load(lp); ok {
		return p.(*epool)
	}
	p := &epool{lp: lp, idle: map[string][]*eup{}, maxAge: h.cfg.Timeouts.Idle, next: math.MaxInt64}
	p.timer = lp.Track(p)
	p.timer.Set(p.next)
	h.epools.Store(lp, p)
	return p
}

// get takes the newest idle connection to addr if it has been idle for at
// most maxAge (a request that cannot be retried asks for less than the
// pool's age limit: older connections stay for the others; Expire closes
// them at the limit).
func (p *epool) get(addr string, now int64, maxAge time.Duration) *eup {
	l := p.idle[addr]
	if len(l) == 0 {
		return nil
	}
	u := l[len(l)-1]
	if time.Duration(now-u.idleSince) > maxAge {
		return nil
	}
	l[len(l)-1] = nil
	p.idle[addr] = l[:len(l)-1]
	u.reused = true
	return u
}

func (p *epool) put(u *eup, now int64) {
	if p.closed {
		u.close()
		return
	}
	u.idleSince = now
	l := p.idle[u.addr]
	if len(l) >= 256 {
		old := l[0]
		copy(l, l[1:])
		l = l[:len(l)-1]
		old.close()
	}
	p.idle[u.addr] = append(l, u)
	if at := now + int64(p.maxAge); at < p.next {
		p.next = at
		p.timer.Set(at)
	}
}

func (p *epool) remove(u *eup) {
	l := p.idle[u.addr]
	for i, x := range l {
		if x == u {
			copy(l[i:], l[i+1:])
			l[len(l)-1] = nil
			p.idle[u.addr] = l[:len(l)-1]
			return
		}
	}
}

// Deadline implements Timed: the oldest idle connection's expiry.
func (p *epool) Deadline() int64 {
	d := int64(math.MaxInt64)
	for _, l := range p.idle {
		if len(l) > 0 {
			d = min(d, l[0].idleSince+int64(p.maxAge))
		}
	}
	p.next = d
	return d
}

// Expire implements Timed: idle connections past timeouts.idle are closed.
func (p *epool) Expire() {
	now := p.lp.Now()
	for addr, l := range p.idle {
		i := 0
		for i < len(l) && time.Duration(now-l[i].idleSince) > p.maxAge {
			l[i].close()
			i++
		}
		if i > 0 {
			n := copy(l, l[i:])
			clear(l[n:])
			p.idle[addr] = l[:n]
		}
	}
	p.timer.Set(p.Deadline())
}

// Shutdown implements Timed.
func (p *epool) Shutdown() { p.closeAll() }

func (p *epool) closeAll() {
	p.closed = true
	for addr, l := range p.idle {
		for _, u := range l {
			u.close()
		}
		delete(p.idle, addr)
	}
	p.timer.Stop()
}
