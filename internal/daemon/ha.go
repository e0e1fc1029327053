package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/palisade-lb/palisade/bpf"
	"github.com/palisade-lb/palisade/internal/api"
	"github.com/palisade-lb/palisade/internal/config"
	"github.com/palisade-lb/palisade/vip"
)

// ha owns the VRRP instances and the XDP SYN-flood filter: the parts of the
// process that act on the host's network rather than on connections.
type ha struct {
	d    *Daemon
	vrrp *vip.Manager

	mu        sync.Mutex
	filter    *bpf.Filter
	filterCfg config.Synflood
	filterErr string
	collector *bpf.Collector
	tracked   map[string]bool // frontend → last health pushed to VRRP
}

func newHA(d *Daemon) (*ha, error) {
	h := &ha{d: d, tracked: map[string]bool{}}
	h.vrrp = vip.NewManager(vip.ManagerOptions{Logger: d.log.With("component", "vrrp"), Registerer: d.opts.Registry,
		Network: d.opts.VRRPNetwork})
	c, err := bpf.NewCollector(d.opts.Registry)
	if err != nil {
		return nil, fmt.Errorf("registering synflood metrics: %w", err)
	}
	h.collector = c
	return h, nil
}

// applyVRRP starts, restarts or stops instances; unchanged ones keep running.
func (h *ha) applyVRRP(c *config.VRRP) error {
	h.pushTracking(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return h.vrrp.Apply(ctx, c.InstanceConfigs())
}

// pushTracking tells VRRP the health of every tracked frontend that changed
// (all of them when force).
func (h *ha) pushTracking(force bool) {
	g := h.d.cur.Load()
	if g == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range g.cfg.VRRP.Instances {
		for _, t := range g.cfg.VRRP.Instances[i].Track {
			if t.Frontend == "" {
				continue
			}
			ok := h.d.FrontendHealthy(t.Frontend)
			if prev, seen := h.tracked[t.Frontend]; force || !seen || prev != ok {
				h.tracked[t.Frontend] = ok
				h.vrrp.SetFrontendHealth(t.Frontend, ok)
			}
		}
	}
}

// trackLoop re-evaluates tracked frontends every 50ms until ctx is done.
func (h *ha) trackLoop(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.pushTracking(false)
		}
	}
}

// stopVRRP releases every VIP with a priority-0 advert.
func (h *ha) stopVRRP(ctx context.Context) {
	if err := h.vrrp.Stop(ctx); err != nil {
		h.d.log.Error("stopping vrrp", "error", err)
	}
}

// applySynflood loads, updates or removes the XDP filter. Without the
// privileges or kernel support it logs one clear error and returns nil,
// unless synflood.required is set.
func (h *ha) applySynflood(c *config.Config) error {
	s := c.Synflood
	h.mu.Lock()
	defer h.mu.Unlock()
	if !s.Enabled {
		h.closeFilterLocked()
		h.filterCfg, h.filterErr = s, ""
		return nil
	}
	bc := c.FilterConfig()
	sameLink := h.filter != nil && h.filterCfg.Interface == s.Interface && h.filterCfg.XDPMode == s.XDPMode
	if sameLink {
		if err := h.filter.Update(bc); err == nil {
			h.filterCfg, h.filterErr = s, ""
			return nil
		} else {
			h.d.log.Warn("updating synflood filter in place failed; reloading it", "error", err)
		}
	}
	h.closeFilterLocked()
	f, err := bpf.Load(bc)
	if err == nil {
		if err = f.Attach(s.Interface, s.XDPMode); err != nil {
			_ = f.Close()
			f = nil
		}
	}
	h.filterCfg = s
	if err != nil {
		h.filterErr = err.Error()
		if s.Required {
			return fmt.Errorf("synflood.required is set and the XDP filter cannot run: %w", err)
		}
		why := "the kernel does not support it"
		if errors.Is(err, bpf.ErrPermission) {
			why = "missing privileges (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON)"
		} else if !errors.Is(err, bpf.ErrUnsupported) {
			why = "it could not be attached"
		}
		h.d.log.Error("synflood filter disabled: "+why+"; running without it", "interface", s.Interface, "error", err)
		return nil
	}
	h.filter, h.filterErr = f, ""
	h.collector.SetFilter(f)
	h.d.log.Info("synflood filter attached", "interface", s.Interface, "xdp_mode", f.Mode(), "mode", s.Mode, "ports", len(bc.Ports))
	return nil
}

func (h *ha) closeFilterLocked() {
	if h.filter == nil {
		return
	}
	h.collector.SetFilter(nil)
	if err := h.filter.Close(); err != nil {
		h.d.log.Error("detaching synflood filter", "error", err)
	} else {
		h.d.log.Info("synflood filter detached", "interface", h.filterCfg.Interface)
	}
	h.filter = nil
}

func (h *ha) closeFilter() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closeFilterLocked()
}

func (h *ha) synfloodStatus() api.Synflood {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := api.Synflood{Enabled: h.filterCfg.Enabled, Error: h.filterErr}
	if h.filter != nil {
		fs := h.filter.Status()
		st.Attached, st.Interface, st.Mode = fs.Attached, fs.Interface, fs.Mode
		if c, err := h.filter.Counters(); err == nil {
			st.Counters = c
		}
	} else if h.filterCfg.Enabled {
		st.Interface = h.filterCfg.Interface
	}
	return st
}

func (h *ha) vrrpStatus() []api.VRRP {
	out := []api.VRRP{}
	for _, s := range h.vrrp.Status() {
		v := api.VRRP{Name: s.Name, Interface: s.Interface, VirtualRouterID: int(s.VirtualRouterID), State: s.State.String(),
			Priority: int(s.Priority), EffectivePriority: int(s.EffectivePriority), Since: s.Since, VIPs: s.VIPs}
		if s.Master.IsValid() {
			v.Master = s.Master.String()
		}
		out = append(out, v)
	}
	return out
}

func (h *ha) resign(ctx context.Context, name string) error {
	err := h.vrrp.Resign(ctx, name)
	switch {
	case errors.Is(err, vip.ErrUnknownInstance):
		return fmt.Errorf("vrrp instance %q: %w", name, ErrNotFound)
	case errors.Is(err, vip.ErrNotMaster):
		return fmt.Errorf("vrrp instance %q: %w: %w", name, ErrInvalid, err)
	}
	return err
}
