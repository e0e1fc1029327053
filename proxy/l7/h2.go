package l7

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"

	"github.com/palisade-lb/palisade/proxy/l7/http1"
)

// h2Handler serves HTTP/2 clients (TLS + ALPN h2) and forwards their requests
// to servers over HTTP/1.1 with net/http's transport. Routing, header rules,
// forwarding headers, retries, metrics and logs follow the HTTP/1.1 path.
type h2Handler struct {
	h    *Handler
	once sync.Once
	tr   *http.Transport
}

func (x *h2Handler) transport() *http.Transport {
	x.once.Do(func() {
		t := x.h.cfg.Timeouts
		d := &net.Dialer{Timeout: t.Connect, KeepAlive: 30 * time.Second}
		x.tr = &http.Transport{
			DialContext:           d.DialContext,
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       t.Idle,
			ResponseHeaderTimeout: t.Server,
			DisableCompression:    true,
		}
	})
	return x.tr
}

func (x *h2Handler) close() {
	if x.tr != nil {
		x.tr.CloseIdleConnections()
	}
}

// serve runs HTTP/2 on tc, a *tls.Conn or an h2CountConn over one.
func (x *h2Handler) serve(ctx context.Context, tc net.Conn, client netip.AddrPort) {
	t := x.h.cfg.Timeouts
	hs := &http.Server{
		Handler:           &h2Request{x: x, client: client},
		ReadHeaderTimeout: t.HTTPRequest,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    x.h.cfg.MaxHeaderBytes,
		ErrorLog:          nil,
	}
	h2s := &http2.Server{IdleTimeout: t.Idle, MaxUploadBufferPerConnection: 1 << 20}
	if err := http2.ConfigureServer(hs, h2s); err != nil {
		x.h.log.Error("http2 setup", "err", err)
		return
	}
	// Cancelling ctx sends GOAWAY: streams in flight finish, then the conn closes.
	stop := context.AfterFunc(ctx, func() { hs.Shutdown(context.Background()) })
	defer stop()
	h2s.ServeConn(tc, &http2.ServeConnOpts{
		Context:    context.WithoutCancel(ctx),
		BaseConfig: hs,
		Handler:    hs.Handler,
	})
}

type h2Request struct {
	x      *h2Handler
	client netip.AddrPort
}

var h2HopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func (hr *h2Request) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := hr.x.h
	start := time.Now()
	// Route on a head view of the request.
	var view http1.Request
	view.Method = []byte(r.Method)
	for k, vs := range r.Header {
		for _, v := range vs {
			view.Headers = append(view.Headers, http1.Header{Name: []byte(k), Value: []byte(v)})
		}
	}
	path := []byte(r.URL.EscapedPath())
	host := []byte(r.Host)
	rt := h.router.match(&view, hostOnly(host), path)
	be := h.router.def
	if rt != nil {
		if rt.redirect != nil {
			target := r.URL.RequestURI()
			loc := appendLocation(nil, rt.redirect, host, []byte(target), true)
			w.Header().Set("Location", string(loc))
			w.WriteHeader(rt.redirect.Code)
			h.none.observe(rt.redirect.Code, time.Since(start).Seconds())
			return
		}
		be = rt.backend
	}
	if be == nil {
		h2Error(w, 503)
		h.none.observe(503, time.Since(start).Seconds())
		h.log.Warn("request failed", "status", 503, "reason", "no route and no default_backend", "method", r.Method, "path", string(path))
		return
	}
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme = "http"
	out.Proto, out.ProtoMajor, out.ProtoMinor = "HTTP/1.1", 1, 1
	for _, k := range h2HopHeaders {
		out.Header.Del(k)
	}
	for _, k := range h.reqRules.drop {
		out.Header.Del(k)
	}
	if h.cfg.Forwarded {
		ip := hr.client.Addr().Unmap()
		if prior := out.Header.Values("X-Forwarded-For"); len(prior) > 0 {
			out.Header.Set("X-Forwarded-For", strings.Join(prior, ", ")+", "+ip.String())
		} else {
			out.Header.Set("X-Forwarded-For", ip.String())
		}
		out.Header.Set("X-Forwarded-Proto", "https")
		out.Header.Set("X-Forwarded-Host", r.Host)
		fb := appendForwarded(nil, hr.client, host, true)
		if prior := out.Header.Values("Forwarded"); len(prior) > 0 {
			out.Header.Set("Forwarded", strings.Join(prior, ", ")+", "+string(fb))
		} else {
			out.Header.Set("Forwarded", string(fb))
		}
	}
	if h.cfg.RequestID && out.Header.Get("X-Request-Id") == "" {
		out.Header.Set("X-Request-Id", string(h.appendRequestID(nil)))
	}
	for _, s := range h.reqRules.set {
		out.Header.Set(s.name, s.value)
	}
	for _, s := range h.reqRules.add {
		out.Header.Add(s.name, s.value)
	}
	replayable := r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0
	if r.ContentLength == 0 {
		out.Body = http.NoBody
	}
	idem := http1.Idempotent(view.Method)

	var hash uint64
	if be.b.HashURI() {
		hash = HashPath(path)
	}
	var tried Tried
	var sticky Server
	if name := be.b.Cookie(); name != "" {
		if ck, err := r.Cookie(name); err == nil && ck.Value != "" {
			sticky = be.b.PickByName(ck.Value)
		}
	}
	retries := be.b.Retries()
	tr := hr.x.transport()
	for first := true; ; first = false {
		var srv Server
		if first && sticky != nil {
			srv = sticky
		} else {
			srv = be.b.Pick(hash, &tried)
		}
		if srv == nil {
			h2Error(w, 503)
			be.st.observe(503, time.Since(start).Seconds())
			h.log.Warn("request failed", "backend", be.name, "status", 503, "reason", "no server available", "method", r.Method, "path", string(path))
			return
		}
		out.URL.Host = srv.Addr()
		tSent := time.Now()
		resp, err := tr.RoundTrip(out)
		if err != nil {
			var oe *net.OpError
			connectFail := errors.As(err, &oe) && oe.Op == "dial"
			timeout := isTimeout(err)
			srv.Done(Outcome{ConnectFailed: connectFail, Timeout: timeout, EmptyResponse: !connectFail && !timeout})
			h.log.Warn("upstream request failed", "backend", be.name, "server", srv.Name(), "err", err)
			if r.Context().Err() != nil {
				return
			}
			if (connectFail || replayable && idem && !timeout) && retries > 0 {
				retries--
				tried.add(srv)
				continue
			}
			status := 502
			switch {
			case timeout:
				status = 504
			case connectFail:
				status = 503
			}
			h2Error(w, status)
			be.st.observe(status, time.Since(start).Seconds())
			return
		}
		respDur := time.Since(tSent)
		hdr := w.Header()
		for k, vs := range resp.Header {
			hdr[k] = vs
		}
		for _, k := range h2HopHeaders {
			hdr.Del(k)
		}
		for _, k := range h.respRules.drop {
			hdr.Del(k)
		}
		if name := be.b.Cookie(); name != "" && sticky != srv {
			hdr.Add("Set-Cookie", name+"="+srv.Name()+"; Path=/; HttpOnly")
		}
		for _, s := range h.respRules.set {
			hdr.Set(s.name, s.value)
		}
		for _, s := range h.respRules.add {
			hdr.Add(s.name, s.value)
		}
		if resp.ContentLength >= 0 {
			hdr.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
		}
		w.WriteHeader(resp.StatusCode)
		n, cerr := copyFlush(w, resp.Body, resp.ContentLength < 0)
		resp.Body.Close()
		srv.Done(Outcome{Status: resp.StatusCode, BytesOut: n, Response: respDur})
		be.st.observe(resp.StatusCode, time.Since(start).Seconds())
		if cerr != nil {
			h.log.Warn("response body truncated", "backend", be.name, "server", srv.Name(), "err", cerr)
		}
		if h.cfg.AccessLog {
			h.log.Info("access", "backend", be.name, "server", srv.Name(), "client", hr.client.Addr().String(),
				"proto", "HTTP/2", "method", r.Method, "path", string(path), "status", resp.StatusCode,
				"bytes_out", n, "response_ms", ms(respDur), "total_ms", ms(time.Since(start)))
		}
		return
	}
}

func copyFlush(w http.ResponseWriter, r io.Reader, flush bool) (int64, error) {
	buf := make([]byte, 32<<10)
	var total int64
	rc := http.NewResponseController(w)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
			if flush {
				rc.Flush()
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

func h2Error(w http.ResponseWriter, status int) {
	b := appendErrorResponse(nil, status, false)
	i := strings.Index(string(b), "\r\n\r\n")
	w.Header().Set("Content-Type", "text/html")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(status)
	w.Write(b[i+4:])
}
