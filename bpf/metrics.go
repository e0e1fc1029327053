package bpf

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports palisade_synflood_packets_total{verdict} (pass,
// drop_rate, drop_deny, and for syncookie mode syncookie_sent and
// drop_syncookie), read from the kernel at scrape time. It outlives
// filters: on reload the daemon points it at the new Filter with SetFilter,
// or at nil when the filter is disabled (then nothing is exported).
type Collector struct {
	mu   sync.Mutex
	f    *Filter
	desc *prometheus.Desc
}

// NewCollector creates a Collector and registers it on reg.
func NewCollector(reg prometheus.Registerer) (*Collector, error) {
	c := &Collector{desc: prometheus.NewDesc("palisade_synflood_packets_total",
		"TCP SYNs to protected ports judged by the XDP SYN-flood filter, by verdict.",
		[]string{"verdict"}, nil)}
	if err := reg.Register(c); err != nil {
		return nil, err
	}
	return c, nil
}

// SetFilter selects the filter whose counters are exported (nil: none).
func (c *Collector) SetFilter(f *Filter) {
	c.mu.Lock()
	c.f = f
	c.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	f := c.f
	c.mu.Unlock()
	if f == nil {
		return
	}
	m, err := f.Counters()
	if err != nil {
		if err != ErrClosed {
			ch <- prometheus.NewInvalidMetric(c.desc, err)
		}
		return
	}
	for _, v := range []string{VerdictPass, VerdictDropRate, VerdictDropDeny, VerdictSyncookieSent, VerdictDropSyncookie} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(m[v]), v)
	}
}
