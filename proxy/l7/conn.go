package l7

import (
	"bytes"
	"context"
	"errors"
	"github.com/palisade-lb/palisade/proxy/proxyproto"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/palisade-lb/palisade/proxy/l7/http1"
)

const (
	stBusy  int32 = iota
	stIdle        // between requests of a keep-alive connection
	stFresh       // accepted, waiting for its first request
)

// Reusing an idle server connection risks the server closing it at the same
// moment; requests that cannot be retried then (non-idempotent, or with a
// streamed body) only reuse connections idle for less than this.
const nonIdempotentMaxIdle = time.Second

// spliceMin is the body remainder from which bodies are moved with splice(2)
// instead of through the user-space buffer.
const spliceMin = 64 << 10

// conn is the per-client-connection state, pooled with its buffers.
type conn struct {
	h      *Handler
	ctx    context.Context
	nc     net.Conn
	tcp    *net.TCPConn
	isTLS  bool
	client netip.AddrPort
	pbuf   []byte // PROXY header scratch

	rbuf        []byte // client bytes rbuf[roff:rn]
	roff, rn    int
	req         http1.Request
	headLen     int
	obuf        []byte // request head (+ body prefix) for the server
	ubuf        []byte // server bytes ubuf[:un]; scratch for streaming bodies
	un          int
	respHeadLen int
	resp        http1.Response
	wbuf        []byte // response head (+ body prefix) for the client
	chunk       http1.Chunked
	lr          io.LimitedReader
	tried       Tried
	served      int
	g           *gio // the goroutine path's I/O state (nil on the event loops)
	state       atomic.Int32
	draining    atomic.Bool
	dprev       *conn // drainSet list
	dnext       *conn
	inDrain     bool
	ec          atomic.Pointer[econn] // served on an event loop (engine.go), not handed off
	cc          countConn             // nc on the goroutine path: the client connection, counted
	count       func(in, out uint64)  // the frontend's byte counters; may be nil

	// per request
	failStatus int // last retryable failure of this request
	failWhy    string
	logMethod  []byte
	respAt     time.Time // response head received
	lastEnd    time.Time // previous response sent
	logPath    []byte
	start      time.Time
	bytesIn    int64
	bytesOut   int64
}

// gio is the state of the goroutine path's client I/O: writes through the
// raw conn and the deadlines last set. A connection served on the event
// loops has none (it would be a tenth of an idle one's memory) until it is
// handed to a goroutine.
type gio struct {
	rdl, wdl   time.Time // last deadlines set on nc (see deadlineFresh)
	rawc       syscall.RawConn
	rawWriteFn func(uintptr) bool // g.rawWrite, bound once per gio
	wpend      []byte
	werr       error
}

func (c *conn) init(ctx context.Context, h *Handler, nc net.Conn, client netip.AddrPort, isTLS bool) {
	c.h, c.ctx, c.client, c.isTLS = h, ctx, client, isTLS
	c.setClient(nc)
	if g := c.g; g != nil {
		g.rawc = nil
		g.rdl, g.wdl = time.Time{}, time.Time{}
	}
	c.roff, c.rn, c.served = 0, 0, 0
	c.lastEnd = time.Time{}
	c.state.Store(stBusy)
	c.draining.Store(false)
}

// setClient makes nc (nil on the event loop) the client connection, counted
// through c.cc.
func (c *conn) setClient(nc net.Conn) {
	c.tcp, _ = nc.(*net.TCPConn)
	c.cc.Conn, c.nc = nc, nil
	c.cc.take()
	if nc != nil {
		c.nc = &c.cc
		if c.g == nil {
			c.g = &gio{}
			c.g.rawWriteFn = c.g.rawWrite
		}
	}
}

// writeProxyHeader sends the PROXY header for this client on a fresh server connection.
func (c *conn) writeProxyHeader(u *upConn, version int) error {
	var local netip.AddrPort
	if ta, ok := c.nc.LocalAddr().(*net.TCPAddr); ok {
		local = ta.AddrPort()
	}
	var hdr []byte
	if version == 1 {
		hdr = proxyproto.AppendV1(c.pbuf[:0], c.client, local)
	} else {
		hdr = proxyproto.AppendV2(c.pbuf[:0], c.client, local)
	}
	c.pbuf = hdr
	_, err := u.nc.Write(hdr)
	return err
}

func (c *conn) release() {
	c.h, c.ctx, c.nc, c.tcp, c.count = nil, nil, nil, nil, nil
	if c.g != nil {
		c.g.rawc = nil
	}
	c.cc.Conn = nil
	c.tried.reset()
	if cap(c.rbuf) > 64<<10 {
		c.rbuf = make([]byte, 16<<10)
	}
	if cap(c.ubuf) > 64<<10 {
		c.ubuf = make([]byte, 32<<10)
	}
	if cap(c.wbuf) > 64<<10 {
		c.wbuf = make([]byte, 0, 4<<10)
	}
	if cap(c.obuf) > 64<<10 {
		c.obuf = make([]byte, 0, 4<<10)
	}
}

// onDrain runs when the ServeConn context is cancelled: an idle keep-alive
// connection is woken up and closed; a busy one finishes its request first,
// and so does a fresh one (accepted, its first request maybe on the wire):
// closing it would lose that request, which the client cannot know is safe
// to retry. Its wait is bounded by timeouts.http_request.
func (c *conn) onDrain() {
	c.draining.Store(true)
	if e := c.ec.Load(); e != nil {
		e.drainPost()
		return
	}
	if c.state.Load() == stIdle {
		c.nc.SetReadDeadline(time.Unix(1, 0)) // tracker left stale on purpose: drain ends the loop
	}
}

func (c *conn) serve() {
	defer c.flushBytes()
	for {
		if !c.readHead() {
			return
		}
		if !c.handle() {
			return
		}
		c.flushBytes()
		c.served++
		if c.draining.Load() {
			return
		}
	}
}

// logServer logs a server-side problem. Kept out of line so the hot
// functions' stack frames stay small (goroutine stacks start small and every
// growth copies them).
//
//go:noinline
func (c *conn) logServer(msg string, be *backendRef, srv Server, err error) {
	if err != nil {
		c.h.log.Warn(msg, "backend", be.name, "server", srv.Name(), "addr", srv.Addr(), "err", err)
		return
	}
	c.h.log.Warn(msg, "backend", be.name, "server", srv.Name())
}

func (c *conn) readDeadline(t time.Time) { c.g.rdl = t; c.nc.SetReadDeadline(t) }

// writeClient writes b to the client. On plain TCP it first writes without
// blocking and without arming the write deadline (a timer update per
// response): the kernel usually takes the whole response at once. Only a
// remainder waits for the client, under timeouts.client.
func (c *conn) writeClient(b []byte) error {
	g := c.g
	if c.tcp != nil {
		if g.rawc == nil {
			rc, err := c.tcp.SyscallConn()
			if err != nil {
				return err
			}
			g.rawc = rc
		}
		g.wpend, g.werr = b, nil
		err := g.rawc.Write(g.rawWriteFn)
		c.cc.out.Add(uint64(len(b) - len(g.wpend))) // written past c.cc
		b, g.wpend = g.wpend, nil
		if err == nil {
			err = g.werr
		}
		if err != nil || len(b) == 0 {
			return err
		}
	}
	if t := time.Now().Add(c.h.cfg.Timeouts.Client); !deadlineFresh(g.wdl, t, c.h.cfg.Timeouts.Client) {
		c.writeDeadline(t)
	}
	_, err := c.nc.Write(b)
	return err
}

// rawWrite is the syscall.RawConn callback of writeClient: one non-blocking
// pass, never waiting.
func (g *gio) rawWrite(fd uintptr) bool {
	for len(g.wpend) > 0 {
		n, err := syscall.Write(int(fd), g.wpend)
		if n > 0 {
			g.wpend = g.wpend[n:]
		}
		if err == syscall.EINTR {
			continue
		}
		if err != nil && err != syscall.EAGAIN {
			g.werr = err
		}
		if err != nil || n <= 0 {
			break
		}
	}
	return true
}
func (c *conn) writeDeadline(t time.Time) { c.g.wdl = t; c.nc.SetWriteDeadline(t) }

// deadlineFresh reports whether a deadline last set to last may stand in for target:
// it is not later than target and at most d/16 earlier. Hot paths then skip
// the timer update, so a timeout d fires after between 15/16 d and d of
// inactivity.
func deadlineFresh(last, target time.Time, d time.Duration) bool {
	return !last.After(target) && target.Sub(last) <= d>>4
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readHead reads until a complete request head is buffered. false: the
// connection is done (error answered or peer gone).
func (c *conn) readHead() bool {
	h := c.h
	started := false
	for {
		if c.rn > c.roff {
			n, err := http1.ParseRequest(c.rbuf[c.roff:c.rn], &c.req, h.lim)
			if err == nil {
				c.headLen = n
				c.state.Store(stBusy)
				return true
			}
			if err != http1.ErrIncomplete {
				pe, _ := err.(*http1.Error)
				c.reject(pe.Status, pe.Reason)
				return false
			}
			if !started {
				started = true
				c.state.Store(stBusy)
				c.readDeadline(time.Now().Add(h.cfg.Timeouts.HTTPRequest))
			}
		} else {
			c.roff, c.rn = 0, 0
			d := h.cfg.Timeouts.Idle
			if c.served == 0 {
				d = h.cfg.Timeouts.HTTPRequest
			}
			now := c.lastEnd // when the previous response was sent
			if c.served == 0 || now.IsZero() {
				now = time.Now()
			}
			if t := now.Add(d); !deadlineFresh(c.g.rdl, t, d) {
				c.readDeadline(t)
			}
			if c.served == 0 {
				c.state.Store(stFresh)
			} else {
				c.state.Store(stIdle)
				if c.draining.Load() {
					return false
				}
			}
		}
		if !c.roomInRbuf() {
			c.reject(431, "request header section too large")
			return false
		}
		n, err := c.nc.Read(c.rbuf[c.rn:])
		c.rn += n
		if n > 0 {
			// Bytes of a request arrived: a drain now waits for it. The
			// http_request deadline is armed above if the head is incomplete.
			c.state.Store(stBusy)
		}
		if err != nil && n == 0 {
			if c.rn > c.roff && isTimeout(err) && !c.draining.Load() {
				c.reject(408, "timeout reading request head")
			}
			return false
		}
	}
}

// roomInRbuf makes room after rbuf[roff:rn] for more of a request head:
// the pending bytes move to the front, or rbuf grows up to max_header_bytes
// (plus 4 KiB for the request line). False: the head is too large (431).
func (c *conn) roomInRbuf() bool {
	if c.rn < len(c.rbuf) {
		return true
	}
	if c.roff > 0 {
		c.rn = copy(c.rbuf, c.rbuf[c.roff:c.rn])
		c.roff = 0
		return true
	}
	limit := c.h.cfg.MaxHeaderBytes + 4096
	if len(c.rbuf) >= limit {
		return false
	}
	nb := make([]byte, min(2*len(c.rbuf), limit))
	copy(nb, c.rbuf[:c.rn])
	c.rbuf = nb
	return true
}

// reject answers a request palisade refuses before any backend is involved,
// and closes the connection.
func (c *conn) reject(status int, reason string) {
	c.h.log.Info("request rejected", "client", c.client.String(), "status", status, "reason", reason)
	c.h.none.observe(status, 0)
	c.writeError(status, true)
}

func (c *conn) writeError(status int, closeConn bool) {
	c.wbuf = appendErrorResponse(c.wbuf[:0], status, closeConn)
	c.writeClient(c.wbuf)
	if closeConn {
		c.lingerClose()
	}
}

// lingerClose half-closes and drains briefly so the client reads the error
// response instead of a reset caused by its unread request bytes.
func (c *conn) lingerClose() {
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := c.nc.(closeWriter); ok {
		cw.CloseWrite()
		c.readDeadline(time.Now().Add(500 * time.Millisecond))
		var buf [4096]byte
		for total := 0; total < 1<<20; {
			n, err := c.nc.Read(buf[:])
			total += n
			if err != nil {
				break
			}
		}
	}
}

// handle routes and answers one request; false closes the connection.
func (c *conn) handle() bool {
	req := &c.req
	c.start = time.Now()
	c.bytesIn, c.bytesOut = 0, 0
	c.logMethod = append(c.logMethod[:0], req.Method...)
	path := req.Path()
	c.logPath = append(c.logPath[:0], path...)

	if string(req.Method) == "CONNECT" {
		c.reject(405, "CONNECT not supported")
		return false
	}
	host, rd, be := c.route(path)
	if rd != nil {
		return c.redirect(rd, host)
	}
	if be == nil {
		keep := !req.Close && !req.HasBody()
		c.finishLocal(503, keep, "no route and no default_backend")
		return keep
	}
	return c.forward(be, host, path)
}

// finishLocal answers with a palisade-generated error and accounts for it.
func (c *conn) finishLocal(status int, keep bool, why string) {
	c.writeError(status, !keep)
	c.h.none.observe(status, time.Since(c.start).Seconds())
	c.h.log.Warn("request failed", "status", status, "reason", why,
		"method", string(c.logMethod), "path", string(c.logPath))
	c.roff += c.headLen
}

func (c *conn) redirect(rd *Redirect, host []byte) bool {
	req := &c.req
	b := c.wbuf[:0]
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(rd.Code), 10)
	b = append(b, ' ')
	b = append(b, statusText(rd.Code)...)
	b = append(b, "\r\nLocation: "...)
	b = appendLocation(b, rd, host, req.OriginTarget(), c.isTLS)
	keep := !req.Close && !req.HasBody() && !c.draining.Load()
	b = append(b, "\r\nContent-Length: 0\r\n"...)
	if !keep {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "\r\n"...)
	c.wbuf = b
	err := c.writeClient(b)
	c.h.none.observe(rd.Code, time.Since(c.start).Seconds())
	c.accessLog(nil, nil, rd.Code)
	c.roff += c.headLen
	return keep && err == nil
}

// attempt result
type result uint8

const (
	resOK         result = iota
	resRetryFresh        // reused connection was stale: same server, new connection
	resRetryOther        // try another server
	resFail              // response written (error or partial); stop
)

func (c *conn) forward(be *backendRef, host, path []byte) bool {
	req := &c.req
	bodyStart := c.roff + c.headLen
	bodyDone := !req.HasBody()
	inBuf := 0
	switch {
	case req.Chunked:
		c.chunk.Reset()
		n, err := c.chunk.Feed(c.rbuf[bodyStart:c.rn])
		if err != nil {
			pe, _ := err.(*http1.Error)
			c.reject(pe.Status, pe.Reason)
			return false
		}
		inBuf = n
		bodyDone = c.chunk.Done()
	case req.ContentLength > 0:
		inBuf = int(min(int64(c.rn-bodyStart), req.ContentLength))
		bodyDone = int64(inBuf) == req.ContentLength
	}
	c.obuf = c.buildRequest(c.obuf[:0], host)
	c.obuf = append(c.obuf, c.rbuf[bodyStart:bodyStart+inBuf]...)
	c.bytesIn = int64(inBuf)
	c.roff = bodyStart + inBuf
	replayable := bodyDone
	x := c.beginExchange(be, path, replayable)
	idem, maxAge, hash, retries, sticky := x.idem, x.maxAge, x.hash, x.retries, x.sticky
	first := true
	for {
		srv := c.pickServer(be, hash, first, sticky)
		first = false
		if srv == nil {
			return c.failBeforeResponse(be, nil, 503, bodyDone, "no server available")
		}
		fresh := false
		for {
			res, keep := c.attempt(be, srv, fresh, maxAge, replayable, idem, bodyDone, sticky)
			switch res {
			case resOK, resFail:
				return keep
			case resRetryFresh:
				fresh = true
				continue
			}
			break
		}
		// resRetryOther: srv.Done was called by attempt.
		c.tried.add(srv)
		if retries <= 0 {
			return c.failBeforeResponse(be, srv, c.failStatus, bodyDone, c.failWhy+" (retries exhausted)")
		}
		retries--
	}
}

// route finds what serves the parsed request: a redirect, a backend, or
// neither (no route and no default_backend). host is the request's
// authority (Host, or the absolute target's).
func (c *conn) route(path []byte) (host []byte, rd *Redirect, be *backendRef) {
	req := &c.req
	host = req.Host
	if a := req.Authority(); a != nil {
		host = a
	}
	be = c.h.router.def
	if rt := c.h.router.match(req, hostOnly(host), path); rt != nil {
		if rt.redirect != nil {
			return host, rt.redirect, nil
		}
		be = rt.backend
	}
	return host, nil, be
}

// exchange is how one request is balanced and retried.
type exchange struct {
	idem    bool          // the method is idempotent
	maxAge  time.Duration // oldest idle server connection it may reuse
	hash    uint64        // for uri_hash
	retries int           // other servers it may try after a failure
	sticky  Server        // the cookie's server, picked (a slot taken), or nil
}

// beginExchange sets up the request to be sent to be: a request that could
// not be retried on a stale connection (not idempotent, or its body not
// replayable) only reuses recently idle ones. The set of servers tried
// starts empty.
func (c *conn) beginExchange(be *backendRef, path []byte, replayable bool) exchange {
	req := &c.req
	x := exchange{idem: http1.Idempotent(req.Method), maxAge: c.h.cfg.Timeouts.Idle, retries: be.b.Retries()}
	if !x.idem || !replayable {
		x.maxAge = nonIdempotentMaxIdle
	}
	if be.b.HashURI() {
		x.hash = HashPath(path)
	}
	c.tried.reset()
	if name := be.b.Cookie(); name != "" {
		if v := cookieValue(req, name); len(v) > 0 {
			x.sticky = be.b.PickByName(string(v))
		}
	}
	return x
}

// pickServer chooses the server of an attempt: the sticky one first, then
// the balancer's choice among those not tried yet, and once every server
// has been tried, one of them again (HAProxy does too). nil: none is up.
func (c *conn) pickServer(be *backendRef, hash uint64, first bool, sticky Server) Server {
	if first && sticky != nil {
		return sticky
	}
	if srv := be.b.Pick(hash, &c.tried); srv != nil || c.tried.Len() == 0 {
		return srv
	}
	return be.b.Pick(hash, nil)
}

func (c *conn) failBeforeResponse(be *backendRef, srv Server, status int, bodyDone bool, why string) bool {
	keep := bodyDone && !c.req.Close && !c.draining.Load()
	c.writeError(status, !keep)
	be.st.observe(status, time.Since(c.start).Seconds())
	sname := ""
	if srv != nil {
		sname = srv.Name()
	}
	c.h.log.Warn("request failed", "backend", be.name, "server", sname, "status", status, "reason", why,
		"method", string(c.logMethod), "path", string(c.logPath))
	c.accessLog(be, srv, status)
	return keep
}

// attempt runs one exchange with srv. It calls srv.Done unless it returns
// resRetryFresh (the same server is tried again on a new connection).
func (c *conn) attempt(be *backendRef, srv Server, fresh bool, maxAge time.Duration, replayable, idem, bodyDone bool, sticky Server) (result, bool) {
	h := c.h
	addr := srv.Addr()
	var queued time.Duration
	if h.cfg.AccessLog {
		queued = time.Since(c.start) // routing + server choice
	}
	var u *upConn
	if !fresh && be.sendProxy == 0 {
		u = h.pool.get(addr, int64(c.start.Sub(h.epoch)), maxAge)
	}
	tSent := c.start
	var connectDur time.Duration
	if u == nil {
		var err error
		tDial := time.Now()
		// not c.ctx: its cancellation means "drain" (finish this request),
		// not "abandon it"; the dialer's timeout bounds the connect
		u, err = h.pool.dial(context.WithoutCancel(c.ctx), addr)
		tSent = time.Now()
		connectDur = tSent.Sub(tDial)
		if err == nil && be.sendProxy != 0 {
			u.private = true
			if err = c.writeProxyHeader(u, be.sendProxy); err != nil {
				u.nc.Close()
			}
		}
		if err != nil {
			srv.Done(Outcome{ConnectFailed: true, Timeout: isTimeout(err), Connect: connectDur})
			c.logServer("connect failed", be, srv, err)
			c.failStatus, c.failWhy = 503, "connect failed"
			return resRetryOther, false
		}
	}
	u.armDeadline(tSent, h.cfg.Timeouts.Server)
	if _, err := u.nc.Write(c.obuf); err != nil {
		u.nc.Close()
		if u.reused {
			return resRetryFresh, false
		}
		srv.Done(Outcome{EmptyResponse: true, Connect: connectDur})
		c.logServer("sending request failed", be, srv, err)
		if replayable {
			c.failStatus, c.failWhy = 502, "sending request failed"
			return resRetryOther, false
		}
		return resFail, c.failBeforeResponse(be, srv, 502, bodyDone, "sending request failed")
	}
	if !bodyDone {
		if c.req.Expect100 && c.req.Minor == 1 {
			if err := c.writeClient(continue100); err != nil {
				u.nc.Close()
				srv.Done(Outcome{Aborted: true, Connect: connectDur})
				return resFail, false
			}
		}
		if status, why := c.sendBody(u); status != 0 {
			if status == 502 && c.earlyResponse(u) {
				// The server answered before taking the whole body (413,
				// 401, ...): pass its answer on, then close, as the rest of
				// the client's body was not read.
				c.req.Close = true
				keep, out := c.respond(be, srv, u, sticky)
				c.finishExchange(be, srv, Outcome{Status: c.resp.Status, BytesIn: c.bytesIn, BytesOut: out, Connect: connectDur}, queued)
				if !keep {
					c.lingerClose() // let the client read the answer before our close resets it
				}
				return resOK, keep
			}
			u.nc.Close()
			srv.Done(Outcome{Aborted: status != 502, BytesIn: c.bytesIn, Connect: connectDur})
			if status == 502 {
				return resFail, c.failBeforeResponse(be, srv, 502, false, why)
			}
			if status > 0 {
				c.reject(status, why)
			}
			return resFail, false
		}
		// The wait for the response starts now, not when the head was sent:
		// a long upload is not server inactivity.
		u.armDeadline(time.Now(), h.cfg.Timeouts.Server)
	}
	err := c.readResponseHead(u)
	c.respAt = time.Now()
	respDur := c.respAt.Sub(tSent)
	if err != nil {
		u.nc.Close()
		switch {
		case err == errEmptyResponse && u.reused && replayable:
			return resRetryFresh, false
		case err == errEmptyResponse:
			srv.Done(Outcome{EmptyResponse: true, BytesIn: c.bytesIn, Connect: connectDur, Response: respDur})
			if replayable && idem {
				c.logServer("empty response, retrying", be, srv, nil)
				c.failStatus, c.failWhy = 502, "server closed the connection without a response"
				return resRetryOther, false
			}
			return resFail, c.failBeforeResponse(be, srv, 502, bodyDone, "server closed the connection without a response")
		case err == errSilentTimeout && replayable && idem:
			// HAProxy's retry-on response-timeout: the server said nothing
			// (stopped, overloaded), so an idempotent request may go elsewhere.
			srv.Done(Outcome{Timeout: true, BytesIn: c.bytesIn, Connect: connectDur, Response: respDur})
			c.logServer("server timeout without a response, retrying", be, srv, nil)
			c.failStatus, c.failWhy = 504, "server timeout"
			return resRetryOther, false
		case err == errSilentTimeout, isTimeout(err):
			srv.Done(Outcome{Timeout: true, BytesIn: c.bytesIn, Connect: connectDur, Response: respDur})
			return resFail, c.failBeforeResponse(be, srv, 504, bodyDone, "server timeout")
		default:
			srv.Done(Outcome{BadResponse: true, BytesIn: c.bytesIn, Connect: connectDur, Response: respDur})
			return resFail, c.failBeforeResponse(be, srv, 502, bodyDone, "bad response: "+err.Error())
		}
	}
	keep, out := c.respond(be, srv, u, sticky)
	c.finishExchange(be, srv, Outcome{Status: c.resp.Status, BytesIn: c.bytesIn, BytesOut: out, Connect: connectDur, Response: respDur}, queued)
	return resOK, keep
}

// finishExchange accounts for a response forwarded from srv.
func (c *conn) finishExchange(be *backendRef, srv Server, o Outcome, queued time.Duration) {
	srv.Done(o)
	c.lastEnd = time.Now()
	be.st.observe(o.Status, c.lastEnd.Sub(c.start).Seconds())
	if c.h.cfg.AccessLog {
		c.accessLogTimes(be, srv, o.Status, queued, o.Connect, o.Response)
	}
}

// earlyResponse reports whether the server, which stopped taking the request
// body, has sent a response head; it waits at most a second for it.
func (c *conn) earlyResponse(u *upConn) bool {
	u.nc.SetReadDeadline(time.Now().Add(min(time.Second, c.h.cfg.Timeouts.Server)))
	u.dl = time.Time{}
	if c.readResponseHead(u) != nil {
		return false
	}
	c.respAt = time.Now()
	return c.resp.Status >= 200
}

var continue100 = []byte("HTTP/1.1 100 Continue\r\n\r\n")

// sendBody streams the rest of the request body to the server. A non-zero
// status reports the failure: 400 invalid chunking, 408 client timeout, -1
// client gone, 502 server write failure.
func (c *conn) sendBody(u *upConn) (int, string) {
	h := c.h
	req := &c.req
	// Everything buffered belongs to the body so far; start reading afresh.
	c.roff, c.rn = 0, 0
	c.readDeadline(time.Now().Add(h.cfg.Timeouts.Client))
	if !req.Chunked {
		rem := req.ContentLength - c.bytesIn
		n, rerr, werr := c.copyN(u.nc, u.tcp, c.nc, c.tcp, rem, h.cfg.Timeouts.Client, h.cfg.Timeouts.Server, u)
		c.bytesIn += n
		switch {
		case werr != nil:
			return 502, "sending request body failed"
		case rerr != nil && isTimeout(rerr):
			return 408, "timeout reading request body"
		case rerr != nil:
			return -1, ""
		}
		return 0, ""
	}
	for !c.chunk.Done() {
		n, err := c.nc.Read(c.ubuf)
		if n > 0 {
			k, ferr := c.chunk.Feed(c.ubuf[:n])
			if k > 0 {
				if _, werr := u.nc.Write(c.ubuf[:k]); werr != nil {
					return 502, "sending request body failed"
				}
				c.bytesIn += int64(k)
			}
			if ferr != nil {
				pe, _ := ferr.(*http1.Error)
				return pe.Status, pe.Reason
			}
			if c.chunk.Done() {
				// Pipelined bytes after the body stay for the next request.
				c.rn = copy(c.rbuf, c.ubuf[k:n])
				return 0, ""
			}
			now := time.Now()
			if t := now.Add(h.cfg.Timeouts.Client); !deadlineFresh(c.g.rdl, t, h.cfg.Timeouts.Client) {
				c.readDeadline(t)
			}
			u.armDeadline(now, h.cfg.Timeouts.Server)
			continue
		}
		if err != nil {
			if isTimeout(err) {
				return 408, "timeout reading request body"
			}
			return -1, ""
		}
	}
	return 0, ""
}

// copyN moves n bytes from src to dst, by splice(2) when both are TCP and the
// amount is large, else through c.ubuf. Deadlines are inactivity timeouts:
// armed at the start and refreshed after every piece. It reports the read and
// write errors separately.
func (c *conn) copyN(dst net.Conn, dtcp *net.TCPConn, src net.Conn, stcp *net.TCPConn, n int64, srcTimeout, dstTimeout time.Duration, u *upConn) (int64, error, error) {
	// Deadlines set below bypass the trackers.
	defer func() { c.g.rdl, c.g.wdl, u.dl = time.Time{}, time.Time{}, time.Time{} }()
	var dstDeadline time.Time
	arm := func() {
		now := time.Now()
		dstDeadline = now.Add(dstTimeout)
		src.SetReadDeadline(now.Add(srcTimeout))
		dst.SetWriteDeadline(dstDeadline)
	}
	arm()
	var done int64
	if dtcp != nil && stcp != nil && n >= spliceMin {
		// A peer that moves at least piece bytes per timeout never times out.
		const piece = 256 << 10
		for done < n {
			want := min(n-done, piece)
			c.lr = io.LimitedReader{R: stcp, N: want}
			k, err := dtcp.ReadFrom(&c.lr)
			done += k
			c.countSpliced(dtcp, stcp, k)
			if err != nil {
				// splice reports both sides' errors alike: a broken pipe or an
				// expired write deadline is the writer's, anything else the reader's.
				if errors.Is(err, syscall.EPIPE) || isTimeout(err) && !time.Now().Before(dstDeadline) {
					return done, nil, err
				}
				return done, err, nil
			}
			if k < want {
				return done, io.ErrUnexpectedEOF, nil
			}
			if done < n {
				arm()
			}
		}
		return done, nil, nil
	}
	for done < n {
		k, rerr := src.Read(c.ubuf[:min(int64(len(c.ubuf)), n-done)])
		if k > 0 {
			if _, werr := dst.Write(c.ubuf[:k]); werr != nil {
				return done, nil, werr
			}
			done += int64(k)
			if done < n {
				arm()
			}
		}
		if rerr != nil && done < n {
			if rerr == io.EOF {
				rerr = io.ErrUnexpectedEOF
			}
			return done, rerr, nil
		}
	}
	return done, nil, nil
}

var (
	errEmptyResponse = errors.New("empty response")
	// errSilentTimeout: timeouts.server passed without one response byte.
	errSilentTimeout = errors.New("no response within the server timeout")
)

// parseResponseHead parses the response head buffered in ubuf[:un]. done:
// a final head is there (respHeadLen set); interim responses (1xx other
// than 101) are dropped from the buffer on the way. Neither done nor err:
// more bytes are needed.
func (c *conn) parseResponseHead() (done bool, err error) {
	for c.un > 0 {
		n, err := http1.ParseResponse(c.ubuf[:c.un], &c.resp, 65536)
		switch {
		case err == http1.ErrIncomplete:
			return false, nil
		case err != nil:
			return false, err
		case c.resp.Status >= 200 || c.resp.Status == 101:
			c.respHeadLen = n
			return true, nil
		}
		c.un = copy(c.ubuf, c.ubuf[n:c.un])
	}
	return false, nil
}

var errResponseHeadTooLarge = errors.New("response head too large")

// roomInUbuf makes room after ubuf[:un] for more of a response head (up to
// 64 KiB and a bit).
func (c *conn) roomInUbuf() error {
	if c.un < len(c.ubuf) {
		return nil
	}
	if len(c.ubuf) >= 64<<10+4096 {
		return errResponseHeadTooLarge
	}
	nb := make([]byte, 2*len(c.ubuf)+4096)
	copy(nb, c.ubuf[:c.un])
	c.ubuf = nb
	return nil
}

// readResponseHead reads the final response head into ubuf, skipping interim
// (1xx other than 101) responses.
func (c *conn) readResponseHead(u *upConn) error {
	c.un = 0
	got := false
	for {
		if done, err := c.parseResponseHead(); done || err != nil {
			return err
		}
		if err := c.roomInUbuf(); err != nil {
			return err
		}
		n, err := u.nc.Read(c.ubuf[c.un:])
		c.un += n
		if n > 0 {
			got = true
		}
		if err != nil && n == 0 {
			if !got && !isTimeout(err) {
				return errEmptyResponse
			}
			if !isTimeout(err) {
				return errors.New("truncated response head")
			}
			if !got {
				return errSilentTimeout
			}
			return err
		}
	}
}

// appendLocation builds a redirect target: the request URL with the parts set
// in rd replaced.
func appendLocation(b []byte, rd *Redirect, host, target []byte, isTLS bool) []byte {
	scheme := "http"
	if isTLS {
		scheme = "https"
	}
	if rd.Scheme != "" {
		scheme = rd.Scheme
	}
	b = append(b, scheme...)
	b = append(b, "://"...)
	hn := hostOnly(host)
	if rd.Host != "" {
		b = append(b, rd.Host...)
	} else {
		b = append(b, hn...)
	}
	switch {
	case rd.Port != 0:
		if !(rd.Port == 80 && scheme == "http" || rd.Port == 443 && scheme == "https") {
			b = append(b, ':')
			b = strconv.AppendInt(b, int64(rd.Port), 10)
		}
	case rd.Host == "" && rd.Scheme == "" && len(hn) < len(host):
		b = append(b, host[len(hn):]...) // same origin: keep the port
	}
	t := target
	if rd.Path != "" {
		b = append(b, rd.Path...)
		if !strings.Contains(rd.Path, "?") {
			if i := bytes.IndexByte(t, '?'); i >= 0 {
				b = append(b, t[i:]...)
			}
		}
		return b
	}
	if len(t) == 0 || t[0] != '/' {
		b = append(b, '/')
	}
	return append(b, t...)
}
