package vip

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// InstanceConfig is one vrrp.instances entry of DESIGN.md. The daemon maps
// the parsed config onto it; zero values take the documented defaults.
type InstanceConfig struct {
	// Name identifies the instance in logs, metrics, the admin API and notify.
	Name string
	// Interface carries the adverts and the VIPs.
	Interface string
	// VirtualRouterID is 1..255 and must match the peers'.
	VirtualRouterID uint8
	// Priority is 1..254, or 255 for the address owner. Default 100.
	Priority uint8
	// AdvertInterval is a multiple of 10ms in 10ms..40.95s. Default 1s.
	AdvertInterval time.Duration
	// Preempt lets a higher-priority backup take over from a running master.
	Preempt bool
	// PreemptDelay: how long a backup tolerates a lower-priority master
	// before preempting it. Default 0 (at once).
	PreemptDelay time.Duration
	// VIPs are the IPv4 virtual addresses, with their prefix length.
	VIPs []netip.Prefix
	// UnicastPeers: send adverts to these addresses instead of 224.0.0.18,
	// and accept adverts only from them.
	UnicastPeers []netip.Addr
	// Track lowers the effective priority, or forces FAULT, while a tracked
	// frontend or interface is down.
	Track []Track
	GARP  GARPConfig
	// Notify is an optional executable called as `Notify INSTANCE STATE PRIORITY`
	// on every state change, STATE one of MASTER, BACKUP, FAULT, STOP (the
	// instance stopped). Calls run one at a time in order, asynchronously to
	// the election; each is killed after NotifyTimeout.
	Notify string
	// NotifyTimeout bounds one notify run. Default 10s.
	NotifyTimeout time.Duration
}

// Track is one tracking entry: exactly one of Frontend or Interface is set.
// While the tracked object is down, Weight (usually negative) is added to the
// priority; Weight 0 means the instance goes to FAULT instead.
type Track struct {
	Frontend  string
	Interface string
	Weight    int
}

// GARPConfig controls gratuitous ARP on becoming MASTER.
type GARPConfig struct {
	// Repeat is the number of rounds in a burst (each round sends a request
	// and a reply per VIP). Default 5.
	Repeat int
	// Interval between the rounds of a burst. Default 100ms.
	Interval time.Duration
	// Refresh repeats the burst this often while MASTER. Default 60s;
	// negative disables the refresh.
	Refresh time.Duration
}

// Defaults applied by WithDefaults.
const (
	DefaultPriority       = 100
	DefaultAdvertInterval = time.Second
	DefaultGARPRepeat     = 5
	DefaultGARPInterval   = 100 * time.Millisecond
	DefaultGARPRefresh    = 60 * time.Second
	DefaultNotifyTimeout  = 10 * time.Second
)

// ErrInvalidConfig is wrapped by every validation error.
var ErrInvalidConfig = errors.New("invalid vrrp instance config")

// WithDefaults returns c with zero values replaced by the defaults.
func (c InstanceConfig) WithDefaults() InstanceConfig {
	if c.Priority == 0 {
		c.Priority = DefaultPriority
	}
	if c.AdvertInterval == 0 {
		c.AdvertInterval = DefaultAdvertInterval
	}
	if c.GARP.Repeat == 0 {
		c.GARP.Repeat = DefaultGARPRepeat
	}
	if c.GARP.Interval == 0 {
		c.GARP.Interval = DefaultGARPInterval
	}
	if c.GARP.Refresh == 0 {
		c.GARP.Refresh = DefaultGARPRefresh
	}
	if c.NotifyTimeout == 0 {
		c.NotifyTimeout = DefaultNotifyTimeout
	}
	return c
}

// Validate checks c after defaults.
func (c InstanceConfig) Validate() error {
	c = c.WithDefaults()
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: instance %q: %s", ErrInvalidConfig, c.Name, fmt.Sprintf(format, a...))
	}
	switch {
	case c.Name == "":
		return bad("name is required")
	case c.Interface == "":
		return bad("interface is required")
	case c.VirtualRouterID == 0:
		return bad("virtual_router_id must be 1..255")
	case c.AdvertInterval < 10*time.Millisecond || c.AdvertInterval > MaxAdvertInterval*10*time.Millisecond:
		return bad("advert_interval %v out of 10ms..40.95s", c.AdvertInterval)
	case c.AdvertInterval%(10*time.Millisecond) != 0:
		return bad("advert_interval %v is not a multiple of 10ms", c.AdvertInterval)
	case c.PreemptDelay < 0:
		return bad("preempt_delay must not be negative")
	case len(c.VIPs) == 0:
		return bad("at least one vip is required")
	case len(c.VIPs) > MaxAddresses:
		return bad("at most %d vips", MaxAddresses)
	case c.GARP.Repeat < 0 || c.GARP.Interval < 0:
		return bad("garp repeat and interval must not be negative")
	case c.NotifyTimeout < 0:
		return bad("notify timeout must not be negative")
	}
	for _, p := range c.VIPs {
		if !p.IsValid() || !p.Addr().Is4() {
			return bad("vip %v is not an IPv4 prefix", p)
		}
	}
	for _, a := range c.UnicastPeers {
		if !a.Is4() {
			return bad("unicast peer %v is not IPv4", a)
		}
	}
	for _, t := range c.Track {
		if (t.Frontend == "") == (t.Interface == "") {
			return bad("a track entry needs exactly one of frontend or interface")
		}
		if t.Weight < -254 || t.Weight > 254 {
			return bad("track weight %d out of -254..254", t.Weight)
		}
	}
	return nil
}

// Equal reports whether a and b configure the same instance (after defaults);
// a reload keeps an equal instance running untouched.
func (c InstanceConfig) Equal(o InstanceConfig) bool {
	a, b := c.WithDefaults(), o.WithDefaults()
	return a.Name == b.Name && a.Interface == b.Interface && a.VirtualRouterID == b.VirtualRouterID &&
		a.Priority == b.Priority && a.AdvertInterval == b.AdvertInterval && a.Preempt == b.Preempt &&
		a.PreemptDelay == b.PreemptDelay && slices.Equal(a.VIPs, b.VIPs) &&
		slices.Equal(a.UnicastPeers, b.UnicastPeers) && slices.Equal(a.Track, b.Track) &&
		a.GARP == b.GARP && a.Notify == b.Notify && a.NotifyTimeout == b.NotifyTimeout
}

func (c InstanceConfig) vipAddrs() []netip.Addr {
	out := make([]netip.Addr, len(c.VIPs))
	for i, p := range c.VIPs {
		out[i] = p.Addr()
	}
	return out
}

// centiseconds converts a validated advert interval for the wire.
func centiseconds(d time.Duration) uint16 {
	cs := d / (10 * time.Millisecond)
	if cs < 1 {
		return 1
	}
	if cs > MaxAdvertInterval {
		return MaxAdvertInterval
	}
	return uint16(cs)
}
