package healthcheck

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxBodyScan bounds how much of a response body is read for expect_body.
const maxBodyScan = 64 << 10

// maxResponseRead bounds everything read from one response, headers included.
const maxResponseRead = 1 << 20

var errResponseTooLarge = errors.New("response headers larger than 1 MiB")

// capReader fails reads beyond n bytes with errResponseTooLarge.
type capReader struct {
	r io.Reader
	n int
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, errResponseTooLarge
	}
	if len(p) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= n
	return n, err
}

// HTTPChecker sends one HTTP/1.1 request over a fresh connection (TLS for
// https) and passes when the status is in expect_status and, if set, the
// first 64 KiB of the body contain expect_body.
type HTTPChecker struct {
	addr     func() string
	method   string
	uri      *url.URL
	host     string // explicit Host header; empty: the server's host
	statuses statusSet
	body     []byte
	tls      *tls.Config // nil for plain http
	sni      string
}

func newHTTPChecker(spec Spec, addr func() string) (*HTTPChecker, error) {
	statuses, err := parseStatusSet(spec.ExpectStatus)
	if err != nil {
		return nil, fmt.Errorf("expect_status: %w", err)
	}
	uri, err := parsePath(spec.Path)
	if err != nil {
		return nil, fmt.Errorf("path: %w", err)
	}
	c := &HTTPChecker{
		addr: addr, method: spec.Method, uri: uri, host: spec.Host,
		statuses: statuses, body: []byte(spec.ExpectBody),
	}
	if spec.Type == TypeHTTPS {
		if c.tls, err = tlsBase(spec.TLS); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		c.sni = spec.TLS.SNI
		if c.sni == "" && spec.Host != "" {
			c.sni = hostOf(spec.Host)
		}
	}
	return c, nil
}

// Check runs one request. Reasons: "status 200" on success; "connect: ...",
// "tls: ...", "read: ...", "status 503", "status 200, body does not contain
// \"ok\"" on failure.
func (c *HTTPChecker) Check(ctx context.Context) Result {
	start := time.Now()
	target := c.addr()
	conn, stop, err := dial(ctx, target)
	if err != nil {
		return fail(ctx, start, "connect", err)
	}
	defer func() { stop(); _ = conn.Close() }()
	rw := conn
	if c.tls != nil {
		cfg := c.tls.Clone()
		cfg.ServerName = c.sni
		if cfg.ServerName == "" {
			cfg.ServerName = hostOf(target)
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(ctx, start, "tls", err)
		}
		rw = tc
	}
	host := c.host
	if host == "" {
		host = hostOf(target)
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
	}
	req := &http.Request{
		Method:     c.method,
		URL:        c.uri,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Host:       host,
		Header:     http.Header{"User-Agent": {"palisade-check"}},
		Close:      true,
	}
	bw := bufio.NewWriterSize(rw, 1024)
	if err := req.Write(bw); err != nil {
		return fail(ctx, start, "write", err)
	}
	if err := bw.Flush(); err != nil {
		return fail(ctx, start, "write", err)
	}
	lr := &capReader{r: rw, n: maxResponseRead}
	resp, err := http.ReadResponse(bufio.NewReaderSize(lr, 4096), req)
	if err != nil {
		return fail(ctx, start, "read", err)
	}
	defer resp.Body.Close()
	if !c.statuses.contains(resp.StatusCode) {
		return Result{Reason: fmt.Sprintf("status %d", resp.StatusCode), Duration: time.Since(start)}
	}
	if len(c.body) > 0 {
		found, err := scanFor(resp.Body, c.body, maxBodyScan)
		if !found {
			reason := fmt.Sprintf("status %d, body does not contain %q", resp.StatusCode, c.body)
			if err != nil {
				reason = fmt.Sprintf("status %d, reading body: %s", resp.StatusCode, errText(ctx, err))
			}
			return Result{Reason: reason, Duration: time.Since(start)}
		}
	}
	return Result{OK: true, Reason: fmt.Sprintf("status %d", resp.StatusCode), Duration: time.Since(start)}
}

// scanFor reads r until needle shows up within the first limit bytes. err is
// non-nil only for a read error other than a clean end of the body.
func scanFor(r io.Reader, needle []byte, limit int) (bool, error) {
	buf := make([]byte, 0, min(limit, 8<<10))
	chunk := make([]byte, 4096)
	for len(buf) < limit {
		n, err := r.Read(chunk[:min(len(chunk), limit-len(buf))])
		if n > 0 {
			// Search only the new bytes plus an overlap of len(needle)-1.
			from := max(0, len(buf)-len(needle)+1)
			buf = append(buf, chunk[:n]...)
			if bytes.Contains(buf[from:], needle) {
				return true, nil
			}
		}
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
	return false, nil
}
