package daemon

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics exports the daemon's state. Counters live as atomics in the data
// path and are read at scrape time, so the hot path pays nothing for them.
type metrics struct {
	d             *Daemon
	reloadOK      prometheus.Gauge
	reloadSuccess prometheus.Gauge
}

var (
	descFeConns    = prometheus.NewDesc("palisade_frontend_connections_total", "Connections accepted.", []string{"frontend"}, nil)
	descFeCurrent  = prometheus.NewDesc("palisade_frontend_current_connections", "Connections open now.", []string{"frontend"}, nil)
	descFeBytes    = prometheus.NewDesc("palisade_frontend_bytes_total", "Bytes from (in) and to (out) clients.", []string{"frontend", "direction"}, nil)
	descFeRejected = prometheus.NewDesc("palisade_frontend_rejected_total", "Connections refused, by reason.", []string{"frontend", "reason"}, nil)

	descBeUp     = prometheus.NewDesc("palisade_backend_up", "1 when at least one server can take connections.", []string{"backend"}, nil)
	descBeActive = prometheus.NewDesc("palisade_backend_active_servers", "Servers that can take connections.", []string{"backend"}, nil)

	descSrvUp       = prometheus.NewDesc("palisade_server_up", "1 when the server's checks say up.", []string{"backend", "server"}, nil)
	descSrvState    = prometheus.NewDesc("palisade_server_state", "Admin state: 1 for the current one.", []string{"backend", "server", "state"}, nil)
	descSrvWeight   = prometheus.NewDesc("palisade_server_weight", "Effective weight.", []string{"backend", "server"}, nil)
	descSrvCurrent  = prometheus.NewDesc("palisade_server_current_connections", "Connections open now.", []string{"backend", "server"}, nil)
	descSrvConns    = prometheus.NewDesc("palisade_server_connections_total", "Connections established.", []string{"backend", "server"}, nil)
	descSrvFailures = prometheus.NewDesc("palisade_server_connect_failures_total", "Failed connection attempts.", []string{"backend", "server"}, nil)
	descSrvChanges  = prometheus.NewDesc("palisade_server_health_changes_total", "Health state changes (checks, passive).", []string{"backend", "server"}, nil)
	descSrvBytes    = prometheus.NewDesc("palisade_server_bytes_total", "Bytes to (out) and from (in) the server.", []string{"backend", "server", "direction"}, nil)
)

func newMetrics(d *Daemon, reg prometheus.Registerer) *metrics {
	m := &metrics{
		d: d,
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{Name: "palisade_config_last_reload_successful",
			Help: "1 if the last config load or reload succeeded."}),
		reloadSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "palisade_config_last_reload_success_timestamp_seconds",
			Help: "Time of the last successful config load."}),
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: "palisade_build_info", Help: "Build information.",
		ConstLabels: prometheus.Labels{"version": d.opts.Version, "commit": d.opts.Commit, "goversion": runtime.Version()}})
	build.Set(1)
	reg.MustRegister(m, m.reloadOK, m.reloadSuccess, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) reloaded(r *ReloadResult) {
	if r.OK {
		m.reloadOK.Set(1)
		m.reloadSuccess.Set(float64(r.At.UnixNano()) / 1e9)
	} else {
		m.reloadOK.Set(0)
	}
}

// Describe sends nothing: the collector is unchecked, since its series
// follow the config.
func (m *metrics) Describe(chan<- *prometheus.Desc) {}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	for _, s := range m.d.stats.All() {
		v := s.Snapshot()
		ch <- prometheus.MustNewConstMetric(descFeConns, prometheus.CounterValue, float64(v.Total), v.Name)
		ch <- prometheus.MustNewConstMetric(descFeCurrent, prometheus.GaugeValue, float64(v.Current), v.Name)
		ch <- prometheus.MustNewConstMetric(descFeBytes, prometheus.CounterValue, float64(v.BytesIn), v.Name, "in")
		ch <- prometheus.MustNewConstMetric(descFeBytes, prometheus.CounterValue, float64(v.BytesOut), v.Name, "out")
		for r, n := range v.Rejected {
			ch <- prometheus.MustNewConstMetric(descFeRejected, prometheus.CounterValue, float64(n), v.Name, r)
		}
	}
	g := m.d.cur.Load()
	if g == nil {
		return
	}
	for name, b := range g.backends {
		active := b.ActiveServers()
		ch <- prometheus.MustNewConstMetric(descBeActive, prometheus.GaugeValue, float64(active), name)
		ch <- prometheus.MustNewConstMetric(descBeUp, prometheus.GaugeValue, b2f(active > 0), name)
		for _, s := range b.Servers() {
			bn, sn := name, s.Name()
			c := s.Counters()
			ch <- prometheus.MustNewConstMetric(descSrvUp, prometheus.GaugeValue, b2f(s.Health().String() == "up"), bn, sn)
			for _, st := range []string{"ready", "drain", "maint"} {
				ch <- prometheus.MustNewConstMetric(descSrvState, prometheus.GaugeValue, b2f(s.Admin().String() == st), bn, sn, st)
			}
			ch <- prometheus.MustNewConstMetric(descSrvWeight, prometheus.GaugeValue, float64(s.Weight()), bn, sn)
			ch <- prometheus.MustNewConstMetric(descSrvCurrent, prometheus.GaugeValue, float64(c.Conns), bn, sn)
			ch <- prometheus.MustNewConstMetric(descSrvConns, prometheus.CounterValue, float64(c.Total), bn, sn)
			ch <- prometheus.MustNewConstMetric(descSrvFailures, prometheus.CounterValue, float64(c.ConnectFails), bn, sn)
			ch <- prometheus.MustNewConstMetric(descSrvChanges, prometheus.CounterValue, float64(c.HealthChanges), bn, sn)
			ch <- prometheus.MustNewConstMetric(descSrvBytes, prometheus.CounterValue, float64(c.BytesOut), bn, sn, "out")
			ch <- prometheus.MustNewConstMetric(descSrvBytes, prometheus.CounterValue, float64(c.BytesIn), bn, sn, "in")
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
