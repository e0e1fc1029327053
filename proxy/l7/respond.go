package l7

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/palisade-lb/palisade/proxy/l7/http1"
)

// respond forwards the parsed response (head in ubuf[:respHeadLen]) and its
// body to the client, then pools or closes the server connection. It returns
// whether the client connection stays open and the response bytes received.
func (c *conn) respond(be *backendRef, srv Server, u *upConn, sticky Server) (bool, int64) {
	h := c.h
	req := &c.req
	resp := &c.resp
	isHead := string(c.logMethod) == "HEAD"
	kind := resp.Body(isHead)
	upgrade := resp.Status == 101
	if upgrade && !req.Upgrade {
		u.nc.Close()
		c.writeError(502, true)
		c.logServer("request failed: 101 Switching Protocols without an Upgrade request", be, srv, nil)
		resp.Status = 502
		return false, 0
	}
	clientKeep := !req.Close && !c.draining.Load()
	decode := false
	switch kind {
	case http1.BodyClose:
		clientKeep = false
	case http1.BodyChunked:
		if req.Minor == 0 {
			decode, clientKeep = true, false
		}
	}
	upKeep := !resp.Close && kind != http1.BodyClose && !upgrade
	var setCookie Server
	if name := be.b.Cookie(); name != "" && sticky != srv {
		setCookie = srv
	}
	w := c.buildResponse(c.wbuf[:0], kind, decode, clientKeep, upgrade, be, setCookie)
	body := c.ubuf[c.respHeadLen:c.un]
	out := int64(c.un)
	var rem int64
	switch kind {
	case http1.BodyNone:
		if len(body) > 0 {
			upKeep = false
		}
		if upgrade {
			w = append(w, body...)
		}
	case http1.BodyLength:
		take := int(min(int64(len(body)), resp.ContentLength))
		if len(body) > take {
			upKeep = false
		}
		w = append(w, body[:take]...)
		rem = resp.ContentLength - int64(take)
	case http1.BodyChunked:
		c.chunk.Reset()
		var n int
		var err error
		if decode {
			n, w, err = c.chunk.Decode(body, w)
		} else {
			n, err = c.chunk.Feed(body)
			w = append(w, body[:n]...)
		}
		if err != nil {
			return c.abortResponse(be, srv, u, "invalid chunked response: "+err.Error())
		}
		if c.chunk.Done() && n < len(body) {
			upKeep = false
		}
	case http1.BodyClose:
		w = append(w, body...)
	}
	c.wbuf = w
	if err := c.writeClient(w); err != nil {
		u.nc.Close()
		return false, out
	}
	c.bytesOut = int64(len(w))
	switch {
	case upgrade:
		c.tunnel(u)
		return false, out
	case kind == http1.BodyLength && rem > 0:
		u.ackNow()
		n, rerr, werr := c.copyN(c.nc, c.tcp, u.nc, u.tcp, rem, h.cfg.Timeouts.Server, h.cfg.Timeouts.Client, u)
		out += n
		c.bytesOut += n
		if rerr != nil || werr != nil {
			u.nc.Close()
			if rerr != nil {
				c.logServer("response body truncated", be, srv, rerr)
			}
			return false, out
		}
	case kind == http1.BodyChunked && !c.chunk.Done():
		u.ackNow()
		for !c.chunk.Done() {
			n, err := u.nc.Read(c.ubuf)
			if n > 0 {
				out += int64(n)
				var k int
				var ferr error
				var wb []byte
				if decode {
					k, wb, ferr = c.chunk.Decode(c.ubuf[:n], c.wbuf[:0])
					c.wbuf = wb
				} else {
					k, ferr = c.chunk.Feed(c.ubuf[:n])
					wb = c.ubuf[:k]
				}
				if len(wb) > 0 {
					if werr := c.writeClient(wb); werr != nil {
						u.nc.Close()
						return false, out
					}
					c.bytesOut += int64(len(wb))
				}
				if ferr != nil {
					u.nc.Close()
					c.logServer("invalid chunked response body", be, srv, ferr)
					return false, out
				}
				if c.chunk.Done() && k < n {
					upKeep = false
				}
				u.armDeadline(time.Now(), h.cfg.Timeouts.Server)
				continue
			}
			if err != nil {
				u.nc.Close()
				c.logServer("response body truncated", be, srv, err)
				return false, out
			}
		}
	case kind == http1.BodyClose:
		u.ackNow()
		for {
			n, err := u.nc.Read(c.ubuf)
			if n > 0 {
				out += int64(n)
				if werr := c.writeClient(c.ubuf[:n]); werr != nil {
					break
				}
				c.bytesOut += int64(n)
				u.armDeadline(time.Now(), h.cfg.Timeouts.Server)
			}
			if err != nil {
				break
			}
		}
		u.nc.Close()
		return false, out
	}
	if upKeep && !u.private {
		h.pool.put(u, int64(c.respAt.Sub(h.epoch)))
	} else {
		u.nc.Close()
	}
	return clientKeep, out
}

func (c *conn) abortResponse(be *backendRef, srv Server, u *upConn, why string) (bool, int64) {
	u.nc.Close()
	c.writeError(502, true)
	c.h.log.Warn("request failed", "backend", be.name, "server", srv.Name(), "status", 502, "reason", why)
	c.resp.Status = 502
	return false, int64(c.un)
}

// tunnel relays bytes both ways after a 101 until both directions are closed.
// Plain TCP on both sides moves the bytes with splice(2) (io.Copy between the
// two *net.TCPConn).
func (c *conn) tunnel(u *upConn) {
	var zero time.Time
	c.nc.SetDeadline(zero)
	u.nc.SetDeadline(zero)
	if c.rn > c.roff {
		if _, err := u.nc.Write(c.rbuf[c.roff:c.rn]); err != nil {
			u.nc.Close()
			return
		}
		c.roff = c.rn
	}
	type closeWriter interface{ CloseWrite() error }
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, err := io.Copy(c.nc, u.nc)
		if cw, ok := c.nc.(closeWriter); ok && err == nil {
			cw.CloseWrite()
		} else {
			c.nc.Close()
		}
	}()
	_, err := io.Copy(u.nc, c.nc)
	if cw, ok := u.nc.(closeWriter); ok && err == nil {
		cw.CloseWrite()
	} else {
		u.nc.Close()
	}
	wg.Wait()
	u.nc.Close()
}

// hop-by-hop fields never forwarded as received.
func hopKind(k http1.Kind) bool {
	switch k {
	case http1.KindConnection, http1.KindKeepAlive, http1.KindProxyConnection, http1.KindTE,
		http1.KindTrailer, http1.KindUpgrade, http1.KindContentLength, http1.KindTransferEncoding,
		http1.KindHop:
		return true
	}
	return false
}

func (c *conn) buildRequest(b []byte, host []byte) []byte {
	h := c.h
	req := &c.req
	b = append(b, req.Method...)
	b = append(b, ' ')
	t := req.OriginTarget()
	if len(t) == 0 || t[0] == '?' {
		b = append(b, '/')
	}
	b = append(b, t...)
	hasHost := len(req.Host) > 0 || req.Authority() != nil
	if hasHost {
		b = append(b, " HTTP/1.1\r\n"...)
	} else {
		// HTTP/1.0 client without Host: stay HTTP/1.0 rather than invent one.
		b = append(b, " HTTP/1.0\r\nConnection: keep-alive\r\n"...)
	}
	fwd := h.cfg.Forwarded
	lastXFF, lastFwd := -1, -1
	if fwd {
		for i := range req.Headers {
			switch req.Headers[i].Kind {
			case http1.KindXForwardedFor:
				lastXFF = i
			case http1.KindForwarded:
				lastFwd = i
			}
		}
	}
	hasRID := false
	for i := range req.Headers {
		hd := &req.Headers[i]
		switch hd.Kind {
		case http1.KindHost:
			if a := req.Authority(); a != nil {
				b = append(b, "Host: "...)
				b = append(b, a...)
				b = append(b, "\r\n"...)
				continue
			}
		case http1.KindExpect:
			if req.Expect100 {
				continue // answered by the proxy
			}
		case http1.KindXForwardedProto, http1.KindXForwardedHost:
			if fwd {
				continue
			}
		case http1.KindXForwardedFor:
			if fwd && i == lastXFF && !h.reqRules.drops(hd.Name) {
				b = append(b, hd.Name...)
				b = append(b, ": "...)
				b = append(b, hd.Value...)
				b = append(b, ", "...)
				b = c.client.Addr().Unmap().AppendTo(b)
				b = append(b, "\r\n"...)
				continue
			}
		case http1.KindForwarded:
			if fwd && i == lastFwd && !h.reqRules.drops(hd.Name) {
				b = append(b, hd.Name...)
				b = append(b, ": "...)
				b = append(b, hd.Value...)
				b = append(b, ", "...)
				b = appendForwarded(b, c.client, host, c.isTLS)
				b = append(b, "\r\n"...)
				continue
			}
		case http1.KindXRequestID:
			hasRID = true
		default:
			if hopKind(hd.Kind) {
				continue
			}
		}
		if len(h.reqRules.drop) > 0 && h.reqRules.drops(hd.Name) {
			continue
		}
		b = append(b, hd.Name...)
		b = append(b, ": "...)
		b = append(b, hd.Value...)
		b = append(b, "\r\n"...)
	}
	if hasHost && len(req.Host) == 0 {
		b = append(b, "Host: "...)
		b = append(b, req.Authority()...)
		b = append(b, "\r\n"...)
	}
	switch {
	case req.Chunked:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	case req.ContentLength >= 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, req.ContentLength, 10)
		b = append(b, "\r\n"...)
	}
	if req.Upgrade {
		b = append(b, "Connection: upgrade\r\nUpgrade: "...)
		b = append(b, req.UpgradeProto...)
		b = append(b, "\r\n"...)
	}
	if fwd {
		if lastXFF < 0 {
			b = append(b, "X-Forwarded-For: "...)
			b = c.client.Addr().Unmap().AppendTo(b)
			b = append(b, "\r\n"...)
		}
		b = append(b, "X-Forwarded-Proto: "...)
		if c.isTLS {
			b = append(b, "https\r\n"...)
		} else {
			b = append(b, "http\r\n"...)
		}
		if len(host) > 0 {
			b = append(b, "X-Forwarded-Host: "...)
			b = append(b, host...)
			b = append(b, "\r\n"...)
		}
		if lastFwd < 0 {
			b = append(b, "Forwarded: "...)
			b = appendForwarded(b, c.client, host, c.isTLS)
			b = append(b, "\r\n"...)
		}
	}
	if h.cfg.RequestID && !hasRID {
		b = append(b, "X-Request-ID: "...)
		b = h.appendRequestID(b)
		b = append(b, "\r\n"...)
	}
	b = appendRules(b, &h.reqRules)
	return append(b, "\r\n"...)
}

// appendForwarded appends one Forwarded element (RFC 7239) for client.
func appendForwarded(b []byte, client netip.AddrPort, host []byte, isTLS bool) []byte {
	a := client.Addr().Unmap()
	b = append(b, "for="...)
	if a.Is6() {
		b = append(b, "\"["...)
		b = a.AppendTo(b)
		b = append(b, "]\""...)
	} else {
		b = a.AppendTo(b)
	}
	if len(host) > 0 {
		b = append(b, ";host=\""...)
		b = append(b, host...)
		b = append(b, '"')
	}
	if isTLS {
		return append(b, ";proto=https"...)
	}
	return append(b, ";proto=http"...)
}

func (h *Handler) appendRequestID(b []byte) []byte {
	b = append(b, h.ridPrefix[:]...)
	n := h.ridSeq.Add(1)
	const digits = "0123456789abcdef"
	for i := 60; i >= 0; i -= 4 {
		b = append(b, digits[(n>>uint(i))&0xf])
	}
	return b
}

func appendRules(b []byte, r *compiledRules) []byte {
	for _, s := range r.set {
		b = append(b, s.name...)
		b = append(b, ": "...)
		b = append(b, s.value...)
		b = append(b, "\r\n"...)
	}
	for _, s := range r.add {
		b = append(b, s.name...)
		b = append(b, ": "...)
		b = append(b, s.value...)
		b = append(b, "\r\n"...)
	}
	return b
}

func (c *conn) buildResponse(b []byte, kind http1.BodyKind, decode, clientKeep, upgrade bool, be *backendRef, setCookie Server) []byte {
	h := c.h
	resp := &c.resp
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(resp.Status), 10)
	b = append(b, ' ')
	b = append(b, resp.Reason...)
	b = append(b, "\r\n"...)
	for i := range resp.Headers {
		hd := &resp.Headers[i]
		if hopKind(hd.Kind) {
			continue
		}
		if len(h.respRules.drop) > 0 && h.respRules.drops(hd.Name) {
			continue
		}
		b = append(b, hd.Name...)
		b = append(b, ": "...)
		b = append(b, hd.Value...)
		b = append(b, "\r\n"...)
	}
	switch kind {
	case http1.BodyLength:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, resp.ContentLength, 10)
		b = append(b, "\r\n"...)
	case http1.BodyNone:
		if resp.ContentLength >= 0 && resp.Status >= 200 && resp.Status != 204 {
			// HEAD and 304 carry the length of the representation.
			b = append(b, "Content-Length: "...)
			b = strconv.AppendInt(b, resp.ContentLength, 10)
			b = append(b, "\r\n"...)
		}
	case http1.BodyChunked:
		if !decode {
			b = append(b, "Transfer-Encoding: chunked\r\n"...)
		}
	}
	switch {
	case upgrade:
		b = append(b, "Connection: upgrade\r\nUpgrade: "...)
		b = append(b, resp.UpgradeProto...)
		b = append(b, "\r\n"...)
	case !clientKeep && c.req.Minor == 1:
		b = append(b, "Connection: close\r\n"...)
	case clientKeep && c.req.Minor == 0:
		b = append(b, "Connection: keep-alive\r\n"...)
	}
	if setCookie != nil {
		b = append(b, "Set-Cookie: "...)
		b = append(b, be.b.Cookie()...)
		b = append(b, '=')
		b = append(b, setCookie.Name()...)
		b = append(b, "; Path=/; HttpOnly\r\n"...)
	}
	b = appendRules(b, &h.respRules)
	return append(b, "\r\n"...)
}

// cookieValue returns the value of cookie name in the request's Cookie fields.
func cookieValue(req *http1.Request, name string) []byte {
	for i := range req.Headers {
		hd := &req.Headers[i]
		if hd.Kind != http1.KindCookie {
			continue
		}
		v := hd.Value
		for len(v) > 0 {
			var p []byte
			if j := bytes.IndexByte(v, ';'); j >= 0 {
				p, v = v[:j], v[j+1:]
			} else {
				p, v = v, nil
			}
			p = bytes.TrimLeft(p, " \t")
			if len(p) > len(name) && p[len(name)] == '=' && string(p[:len(name)]) == name {
				return bytes.Trim(p[len(name)+1:], "\"")
			}
		}
	}
	return nil
}

func statusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return t
	}
	return "Unknown"
}

var errorBodies = map[int]string{
	400: "Your browser sent an invalid request.",
	405: "The method is not allowed.",
	408: "Your browser didn't send a complete request in time.",
	414: "The request line is too long.",
	431: "The request header section is too large.",
	501: "The transfer coding is not implemented.",
	502: "The server returned an invalid or incomplete response.",
	503: "No server is available to handle this request.",
	504: "The server didn't respond in time.",
	505: "The HTTP version is not supported.",
}

func appendErrorResponse(b []byte, status int, closeConn bool) []byte {
	text := statusText(status)
	msg := errorBodies[status]
	if msg == "" {
		msg = text + "."
	}
	bodyLen := len("<html><body><h1>") + 3 + 1 + len(text) + len("</h1>\n") + len(msg) + len("\n</body></html>\n")
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, text...)
	b = append(b, "\r\nContent-Type: text/html\r\nCache-Control: no-cache\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(bodyLen), 10)
	if closeConn {
		b = append(b, "\r\nConnection: close"...)
	}
	b = append(b, "\r\n\r\n<html><body><h1>"...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, text...)
	b = append(b, "</h1>\n"...)
	b = append(b, msg...)
	return append(b, "\n</body></html>\n"...)
}

// accessLog logs a request answered without a response from a server (no
// queue, connect or response times).
func (c *conn) accessLog(be *backendRef, srv Server, status int) {
	if !c.h.cfg.AccessLog {
		return
	}
	c.accessLogTimes(be, srv, status, 0, 0, 0)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (c *conn) accessLogTimes(be *backendRef, srv Server, status int, queue, connect, response time.Duration) {
	bname, sname := noBackend, "-"
	if be != nil {
		bname = be.name
	}
	if srv != nil {
		sname = srv.Name()
	}
	c.h.log.LogAttrs(c.ctx, slog.LevelInfo, "access",
		slog.String("backend", bname),
		slog.String("server", sname),
		slog.String("client", c.client.Addr().String()),
		slog.String("method", string(c.logMethod)),
		slog.String("path", string(c.logPath)),
		slog.Int("status", status),
		slog.Int64("bytes_in", c.bytesIn),
		slog.Int64("bytes_out", c.bytesOut),
		slog.Float64("queue_ms", ms(queue)),
		slog.Float64("connect_ms", ms(connect)),
		slog.Float64("response_ms", ms(response)),
		slog.Float64("total_ms", ms(time.Since(c.start))),
	)
}
