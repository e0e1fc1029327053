package healthcheck

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics exports check results per backend and server.
type Metrics struct {
	duration *prometheus.HistogramVec
	failures *prometheus.CounterVec
}

// NewMetrics creates the check metrics and registers them with reg (nil:
// not registered). When reg already holds them, as after a reload, the
// registered collectors are reused. Any other registration error panics: it
// is a programming error.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "palisade_server_check_duration_seconds",
			Help:    "Duration of active health checks.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"backend", "server"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "palisade_server_check_failures_total",
			Help: "Failed active health checks.",
		}, []string{"backend", "server"}),
	}
	if reg != nil {
		m.duration = register(reg, m.duration)
		m.failures = register(reg, m.failures)
	}
	return m
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic("healthcheck: registering metrics: " + err.Error())
}

// Observe records one check result of server in backend. The failure
// counter is created at 0 on the first observation so it exists before the
// first failure. A nil *Metrics does nothing.
func (m *Metrics) Observe(backend, server string, r Result) {
	if m == nil {
		return
	}
	m.duration.WithLabelValues(backend, server).Observe(r.Duration.Seconds())
	c := m.failures.WithLabelValues(backend, server)
	if !r.OK {
		c.Inc()
	}
}

// Delete removes the series of a server that left the config.
func (m *Metrics) Delete(backend, server string) {
	if m == nil {
		return
	}
	m.duration.DeleteLabelValues(backend, server)
	m.failures.DeleteLabelValues(backend, server)
}
