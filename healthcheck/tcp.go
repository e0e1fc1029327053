package healthcheck

import (
	"context"
	"time"
)

// TCPChecker passes when a TCP connection to the server can be opened.
type TCPChecker struct {
	addr func() string
}

// NewTCPChecker returns a connect check against addr().
func NewTCPChecker(addr func() string) *TCPChecker { return &TCPChecker{addr: addr} }

// Check connects and closes at once.
func (c *TCPChecker) Check(ctx context.Context) Result {
	start := time.Now()
	conn, stop, err := dial(ctx, c.addr())
	if err != nil {
		return fail(ctx, start, "connect", err)
	}
	d := time.Since(start)
	stop()
	_ = conn.Close()
	return Result{OK: true, Reason: "connected", Duration: d}
}
