package healthcheck

import (
	"context"
	"time"
)

// Result is the outcome of one check.
type Result struct {
	// OK reports whether the server passed the check.
	OK bool
	// Reason says what the check saw, for humans: "connect: connection
	// refused", "status 503", "role:slave", "status 200".
	Reason string
	// Duration is how long the check took, connect included.
	Duration time.Duration
}

// Checker probes a server once. The context carries the check timeout; a
// Checker returns when it expires. Check is safe for concurrent use.
type Checker interface {
	Check(ctx context.Context) Result
}

// CheckerFunc adapts a function to [Checker].
type CheckerFunc func(ctx context.Context) Result

// Check calls f(ctx).
func (f CheckerFunc) Check(ctx context.Context) Result { return f(ctx) }
