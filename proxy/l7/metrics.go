package l7

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the HTTP metric families. Create it once per process with
// NewMetrics and pass it to every Handler (handlers are rebuilt on reload; the
// families are not).
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics creates and registers palisade_http_requests_total{frontend,backend,code}
// and palisade_http_request_duration_seconds{frontend,backend}. reg may be nil
// (metrics are then kept but not exported). Registering into a registry that
// already holds them reuses the existing collectors.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "palisade_http_requests_total",
			Help: "HTTP requests answered, by frontend, backend and status class (1xx..5xx).",
		}, []string{"frontend", "backend", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "palisade_http_request_duration_seconds",
			Help:    "Time from the request head received to the response fully sent.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"frontend", "backend"}),
	}
	if reg == nil {
		return m, nil
	}
	if err := reg.Register(m.requests); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, err
		}
		m.requests = are.ExistingCollector.(*prometheus.CounterVec)
	}
	if err := reg.Register(m.duration); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, err
		}
		m.duration = are.ExistingCollector.(*prometheus.HistogramVec)
	}
	return m, nil
}

// noBackend is the backend label of responses palisade produced before a
// backend was chosen (parse errors, redirects, no route).
const noBackend = "-"

// stats are the pre-resolved children for one frontend+backend pair.
type stats struct {
	codes [6]prometheus.Counter // index status/100; 0 unused
	dur   prometheus.Observer
}

func (m *Metrics) stats(frontend, backend string) *stats {
	s := &stats{dur: m.duration.WithLabelValues(frontend, backend)}
	for i := 1; i <= 5; i++ {
		s.codes[i] = m.requests.WithLabelValues(frontend, backend, string(rune('0'+i))+"xx")
	}
	return s
}

func (s *stats) observe(status int, seconds float64) {
	c := status / 100
	if c < 1 || c > 5 {
		c = 5
	}
	s.codes[c].Inc()
	s.dur.Observe(seconds)
}
