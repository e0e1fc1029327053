package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// ManagerOptions configure a Manager. Zero values: LinuxNetwork,
// SystemClock, slog.Default, metrics not registered.
type ManagerOptions struct {
	Network    Network
	Clock      Clock
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// OnStateChange, if set, is called after every state change of any
	// instance, from that instance's goroutine; it must return quickly.
	OnStateChange func(InstanceStatus)
}

// Manager runs the VRRP instances of a node and applies reloads.
type Manager struct {
	opts    Options
	metrics *Metrics

	applyMu   sync.Mutex
	mu        sync.Mutex
	instances map[string]*managed
	frontend  map[string]bool
	stopped   bool
}

type managed struct {
	inst   *Instance
	cancel context.CancelFunc
	done   chan struct{}
}

// ErrUnknownInstance is returned for a name no running instance has.
var ErrUnknownInstance = errors.New("unknown vrrp instance")

// NewManager returns a Manager with no instances. It starts nothing.
func NewManager(o ManagerOptions) *Manager {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	m := NewMetrics(o.Registerer)
	return &Manager{
		opts:      Options{Network: o.Network, Clock: o.Clock, Logger: o.Logger, Metrics: m, OnStateChange: o.OnStateChange},
		metrics:   m,
		instances: map[string]*managed{},
		frontend:  map[string]bool{},
	}
}

// ValidateAll checks every config and that names and (interface, VRID) pairs are unique.
func ValidateAll(cfgs []InstanceConfig) error {
	var errs []error
	names := map[string]bool{}
	vrids := map[string]string{}
	for _, c := range cfgs {
		if err := c.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		if names[c.Name] {
			errs = append(errs, fmt.Errorf("%w: duplicate instance name %q", ErrInvalidConfig, c.Name))
		}
		names[c.Name] = true
		key := fmt.Sprintf("%s/%d", c.Interface, c.VirtualRouterID)
		if other, ok := vrids[key]; ok {
			errs = append(errs, fmt.Errorf("%w: instances %q and %q share interface %s and virtual_router_id %d",
				ErrInvalidConfig, other, c.Name, c.Interface, c.VirtualRouterID))
		}
		vrids[key] = c.Name
	}
	return errors.Join(errs...)
}

// Apply makes the running instances match cfgs: instances whose config is
// unchanged keep running untouched (no VIP flap); instances where only
// priority, preempt, preempt_delay, tracking weights/frontends, garp or
// notify changed are updated in place, keeping their state and VIPs; other
// changed ones are stopped (VIPs handed over, priority-0 advert if MASTER)
// and started anew; removed ones are stopped; new ones started. Invalid
// input changes nothing. ctx bounds the wait for stopping and updating
// instances. Calls are serialized.
func (m *Manager) Apply(ctx context.Context, cfgs []InstanceConfig) error {
	if err := ValidateAll(cfgs); err != nil {
		return err
	}
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return errors.New("vrrp manager stopped")
	}
	want := map[string]InstanceConfig{}
	for _, c := range cfgs {
		want[c.Name] = c
	}
	var stopping, updating []*managed
	for name, mi := range m.instances {
		c, ok := want[name]
		if ok && c.Equal(mi.inst.Config()) {
			continue
		}
		if ok && softChange(mi.inst.Config(), c) {
			updating = append(updating, mi)
			continue
		}
		mi.cancel()
		stopping = append(stopping, mi)
		delete(m.instances, name)
	}
	m.mu.Unlock()

	var errs []error
	for _, mi := range updating {
		name := mi.inst.Config().Name
		err := mi.inst.Update(ctx, want[name])
		if err == nil {
			continue
		}
		if !errors.Is(err, errNotRunning) && !errors.Is(err, ErrNeedsRestart) {
			errs = append(errs, fmt.Errorf("updating vrrp instance %q: %w", name, err))
			continue
		}
		// Not in its run loop (e.g. FAULT, interface missing): restart it.
		mi.cancel()
		stopping = append(stopping, mi)
		m.mu.Lock()
		delete(m.instances, name)
		m.mu.Unlock()
	}
	for _, mi := range stopping {
		select {
		case <-mi.done:
			if _, kept := want[mi.inst.Config().Name]; !kept {
				m.metrics.forget(mi.inst.Config().Name)
			}
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("stopping vrrp instance %q: %w", mi.inst.Config().Name, ctx.Err()))
		}
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range cfgs {
		if mi, running := m.instances[c.Name]; running {
			mi.inst.SetSiblingVRIDs(siblings(cfgs, c))
			continue
		}
		inst, err := NewInstance(c, m.opts)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for f, ok := range m.frontend {
			inst.SetFrontendHealth(f, ok)
		}
		inst.SetSiblingVRIDs(siblings(cfgs, c))
		runCtx, cancel := context.WithCancel(context.Background())
		mi := &managed{inst: inst, cancel: cancel, done: make(chan struct{})}
		m.instances[c.Name] = mi
		go func() {
			defer close(mi.done)
			if err := inst.Run(runCtx); err != nil {
				m.opts.Logger.Error("vrrp: instance stopped", "instance", c.Name, "err", err)
			}
		}()
	}
	return errors.Join(errs...)
}

// Stop stops every instance gracefully and waits for them, at most until ctx
// is done. A MASTER sends a priority-0 advert and keeps its VIPs until a
// successor's advert arrives (at most Skew_Time(1) + advert/4, capped at 2s,
// when there is none), then removes them. The Manager cannot be used after.
//
// Apply starts one goroutine per instance; Stop (or removal by Apply) ends it.
func (m *Manager) Stop(ctx context.Context) error {
	m.mu.Lock()
	m.stopped = true
	all := make([]*managed, 0, len(m.instances))
	for name, mi := range m.instances {
		mi.cancel()
		all = append(all, mi)
		delete(m.instances, name)
	}
	m.mu.Unlock()
	for _, mi := range all {
		select {
		case <-mi.done:
		case <-ctx.Done():
			return fmt.Errorf("stopping vrrp instances: %w", ctx.Err())
		}
	}
	return nil
}

// Resign makes the named MASTER instance hand over to a backup.
func (m *Manager) Resign(ctx context.Context, name string) error {
	m.mu.Lock()
	mi, ok := m.instances[name]
	m.mu.Unlock()
	if !ok {
		return fmt.Errorf("resign %q: %w", name, ErrUnknownInstance)
	}
	return mi.inst.Resign(ctx)
}

// Status returns a snapshot of every instance, sorted by name.
func (m *Manager) Status() []InstanceStatus {
	m.mu.Lock()
	out := make([]InstanceStatus, 0, len(m.instances))
	for _, mi := range m.instances {
		out = append(out, mi.inst.Status())
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b InstanceStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// SetFrontendHealth records whether a frontend can serve and passes it to
// every instance tracking it, now and after reloads.
func (m *Manager) SetFrontendHealth(frontend string, ok bool) {
	m.mu.Lock()
	m.frontend[frontend] = ok
	insts := make([]*Instance, 0, len(m.instances))
	for _, mi := range m.instances {
		insts = append(insts, mi.inst)
	}
	m.mu.Unlock()
	for _, i := range insts {
		i.SetFrontendHealth(frontend, ok)
	}
}

// siblings returns the VRIDs of the other instances on c's interface.
func siblings(cfgs []InstanceConfig, c InstanceConfig) []uint8 {
	var v []uint8
	for _, o := range cfgs {
		if o.Name != c.Name && o.Interface == c.Interface {
			v = append(v, o.VirtualRouterID)
		}
	}
	return v
}
