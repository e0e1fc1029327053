package healthcheck

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func gather(t *testing.T, reg *prometheus.Registry) map[string][]*dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]*dto.Metric{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf.GetMetric()
	}
	return out
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.Observe("app", "app1", Result{OK: true, Duration: 3 * time.Millisecond})
	m.Observe("app", "app1", Result{OK: false, Duration: time.Second})
	m.Observe("app", "app1", Result{OK: false, Duration: 2 * time.Second})
	m.Observe("app", "app2", Result{OK: true, Duration: time.Millisecond})

	got := gather(t, reg)
	fails := got["palisade_server_check_failures_total"]
	if len(fails) != 2 {
		t.Fatalf("%d failure series, want 2 (app2 at 0)", len(fails))
	}
	for _, f := range fails {
		l := labels(f)
		want := map[string]float64{"app1": 2, "app2": 0}[l["server"]]
		if l["backend"] != "app" || f.GetCounter().GetValue() != want {
			t.Errorf("failures %v = %v, want %v", l, f.GetCounter().GetValue(), want)
		}
	}
	for _, h := range got["palisade_server_check_duration_seconds"] {
		l := labels(h)
		if l["server"] != "app1" {
			continue
		}
		if h.GetHistogram().GetSampleCount() != 3 || h.GetHistogram().GetSampleSum() != 3.003 {
			t.Errorf("app1 histogram: count %d sum %v", h.GetHistogram().GetSampleCount(), h.GetHistogram().GetSampleSum())
		}
	}

	m.Delete("app", "app1")
	got = gather(t, reg)
	for name, ms := range got {
		for _, x := range ms {
			if labels(x)["server"] == "app1" {
				t.Errorf("%s still has app1 after Delete", name)
			}
		}
	}

	// A second NewMetrics on the same registry (a reload) shares the series.
	m2 := NewMetrics(reg)
	m2.Observe("app", "app2", Result{OK: false})
	for _, f := range gather(t, reg)["palisade_server_check_failures_total"] {
		if f.GetCounter().GetValue() != 1 {
			t.Errorf("shared counter = %v, want 1", f.GetCounter().GetValue())
		}
	}

	var nilM *Metrics
	nilM.Observe("a", "b", Result{})
	nilM.Delete("a", "b")
	NewMetrics(nil).Observe("a", "b", Result{})
}
