package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

// dial opens a fresh TCP connection to addr and ties it to ctx: the
// connection's deadline is ctx's deadline, and cancelling ctx unblocks any
// read or write. The returned stop must be called before the connection is
// closed. The connection has no TCP keep-alive: it lives for one check, so
// keep-alive probes would never fire, and setting them up costs four system
// calls.
func dial(ctx context.Context, addr string) (net.Conn, func(), error) {
	d := net.Dialer{KeepAlive: -1}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	return conn, func() { stop() }, nil
}

// fail builds a failed Result whose reason is "stage: what happened".
func fail(ctx context.Context, start time.Time, stage string, err error) Result {
	return Result{OK: false, Reason: stage + ": " + errText(ctx, err), Duration: time.Since(start)}
}

// errText turns a network error into the short text an operator needs:
// "connection refused", "timeout", "connection closed by server".
func errText(ctx context.Context, err error) string {
	if errors.Is(ctx.Err(), context.Canceled) {
		return "check canceled"
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by server"
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "lookup " + dnsErr.Name + ": " + dnsErr.Err
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	var addrErr *net.AddrError
	if errors.As(err, &addrErr) {
		return "bad address " + addrErr.Addr + ": " + addrErr.Err
	}
	return strings.TrimPrefix(err.Error(), "tls: ")
}

// quote shows at most n bytes of data received from a server, escaped.
func quote(b []byte, n int) string {
	if len(b) > n {
		return fmt.Sprintf("%q...", b[:n])
	}
	return fmt.Sprintf("%q", b)
}
