package healthcheck_test

import (
	"context"
	"log/slog"
	"time"

	"github.com/palisade-lb/palisade/healthcheck"
	"github.com/prometheus/client_golang/prometheus"
)

// Example shows how the daemon wires one server: active checks, passive
// checks forcing it down, and metrics.
func Example() {
	spec := healthcheck.Spec{
		Type:    healthcheck.TypeHTTP,
		Path:    "/healthz",
		Passive: healthcheck.PassiveSpec{MaxFails: 3, Window: 10 * time.Second},
	}
	addr := func() string { return "127.0.0.1:8080" } // re-resolved by the daemon
	checker, err := healthcheck.New(spec, addr)
	if err != nil || checker == nil { // nil: type none, no active check
		return
	}
	metrics := healthcheck.NewMetrics(prometheus.NewRegistry())
	sched := healthcheck.NewScheduler(checker, spec.Timing(),
		healthcheck.Options{Start: healthcheck.StateUnknown},
		func(e healthcheck.Event) {
			if !e.Forced {
				metrics.Observe("app", "app1", e.Result)
			}
			if e.Changed {
				slog.Info("server health changed", "backend", "app", "server", "app1", "up", e.Up, "reason", e.Reason)
			}
		})
	passive := healthcheck.NewPassive(spec.Passive, nil, sched.ForceDown)
	_ = passive // the proxy calls passive.Fail() / passive.Success() per connection

	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the daemon cancels on reload or stop
	sched.Run(ctx)
}
