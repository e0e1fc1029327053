package vip

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the palisade_vrrp_* series of DESIGN.md, shared by all
// instances of a Manager.
type Metrics struct {
	state       *prometheus.GaugeVec
	priority    *prometheus.GaugeVec
	transitions *prometheus.CounterVec
	receivedC   *prometheus.CounterVec
	droppedC    *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them on reg (nil: not
// registered). Collectors already registered by an earlier Metrics on the
// same registry are reused.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "palisade_vrrp_state", Help: "1 for the current VRRP state of the instance, 0 for the others.",
		}, []string{"instance", "state"}),
		priority: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "palisade_vrrp_priority", Help: "Effective VRRP priority of the instance (configured priority adjusted by tracking).",
		}, []string{"instance"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "palisade_vrrp_transitions_total", Help: "VRRP state transitions of the instance.",
		}, []string{"instance"}),
		receivedC: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "palisade_vrrp_adverts_received_total", Help: "Valid VRRP adverts received by the instance.",
		}, []string{"instance"}),
		droppedC: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "palisade_vrrp_adverts_dropped_total", Help: "VRRP packets dropped by the instance, by reason.",
		}, []string{"instance", "reason"}),
	}
	if reg == nil {
		return m
	}
	m.state = register(reg, m.state)
	m.priority = register(reg, m.priority)
	m.transitions = register(reg, m.transitions)
	m.receivedC = register(reg, m.receivedC)
	m.droppedC = register(reg, m.droppedC)
	return m
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic("vip: registering metrics: " + err.Error())
	}
	return c
}

func (m *Metrics) setState(instance string, s State) {
	for _, st := range States {
		v := 0.0
		if st == s {
			v = 1
		}
		m.state.WithLabelValues(instance, st.String()).Set(v)
	}
}

func (m *Metrics) setPriority(instance string, p uint8) {
	m.priority.WithLabelValues(instance).Set(float64(p))
}

func (m *Metrics) transition(instance string) { m.transitions.WithLabelValues(instance).Inc() }
func (m *Metrics) received(instance string)   { m.receivedC.WithLabelValues(instance).Inc() }
func (m *Metrics) dropped(instance string, r DropReason) {
	m.droppedC.WithLabelValues(instance, r.String()).Inc()
}

// forget deletes every series of a removed instance.
func (m *Metrics) forget(instance string) {
	l := prometheus.Labels{"instance": instance}
	m.state.DeletePartialMatch(l)
	m.priority.DeletePartialMatch(l)
	m.transitions.DeletePartialMatch(l)
	m.receivedC.DeletePartialMatch(l)
	m.droppedC.DeletePartialMatch(l)
}
