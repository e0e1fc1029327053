package config

import (
	"net"
	"strconv"

	"github.com/palisade-lb/palisade/bpf"
	"github.com/palisade-lb/palisade/vip"
)

// InstanceConfigs maps the vrrp section onto VRRP instance configs.
func (c *VRRP) InstanceConfigs() []vip.InstanceConfig {
	out := make([]vip.InstanceConfig, 0, len(c.Instances))
	for i := range c.Instances {
		in := &c.Instances[i]
		vc := vip.InstanceConfig{Name: in.Name, Interface: in.Interface, VirtualRouterID: uint8(in.VirtualRouterID),
			Priority: uint8(in.Priority), AdvertInterval: in.AdvertInterval.D(), Preempt: in.Preempt,
			PreemptDelay: in.PreemptDelay.D(), VIPs: Prefixes(in.VIPs), Notify: in.Notify,
			GARP: vip.GARPConfig{Repeat: in.GARP.Repeat, Interval: in.GARP.Interval.D(), Refresh: in.GARP.Refresh.D()}}
		if vc.GARP.Refresh == 0 {
			vc.GARP.Refresh = -1 // config: 0 = no refresh
		}
		for _, p := range in.UnicastPeers {
			vc.UnicastPeers = append(vc.UnicastPeers, p.Addr)
		}
		for _, t := range in.Track {
			vc.Track = append(vc.Track, vip.Track{Frontend: t.Frontend, Interface: t.Interface, Weight: t.Weight})
		}
		out = append(out, vc)
	}
	return out
}

// FilterConfig maps the synflood section onto the XDP filter's config; the
// protected ports are the frontends' listening ports.
func (f *File) FilterConfig() bpf.Config {
	s := &f.Synflood
	return bpf.Config{
		PerSource: bpf.Limit{Rate: s.PerSource.SynRate.PerSecond, Burst: uint32(s.PerSource.Burst)},
		PerPort:   bpf.Limit{Rate: s.PerPort.SynRate.PerSecond, Burst: uint32(s.PerPort.Burst)},
		Allow:     Prefixes(s.Allow), Deny: Prefixes(s.Deny),
		Ports: f.listenPorts(), Mode: s.Mode,
	}
}

func (f *File) listenPorts() []uint16 {
	seen := map[uint16]bool{}
	var out []uint16
	for _, fe := range f.Frontends {
		for _, l := range fe.Listen {
			_, p, err := net.SplitHostPort(l)
			if err != nil {
				continue
			}
			n, err := strconv.ParseUint(p, 10, 16)
			if err == nil && !seen[uint16(n)] {
				seen[uint16(n)] = true
				out = append(out, uint16(n))
			}
		}
	}
	return out
}
