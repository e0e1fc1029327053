package bpf

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"
)

// Map capacities; Config values beyond them are rejected by Load and Update.
const (
	MaxPorts    = 1024  // entries of the protected-port map
	MaxPrefixes = 16384 // per list and address family
	// SourceTableSize bounds the per-source LRU; least recently seen sources
	// are evicted first (and start over with a full burst when seen again).
	SourceTableSize = 65536
	// DefaultTrustTTL is used when Config.TrustTTL is zero.
	DefaultTrustTTL = 5 * time.Minute
)

// Limit is a token bucket: Rate SYNs per second sustained, Burst SYNs at once.
// Rate 0 disables the limit. Burst 0 means max(1, ceil(Rate)).
type Limit struct {
	Rate  float64
	Burst uint32
}

// Config is the filter's whole behaviour. The daemon maps the `synflood`
// section of the palisade config onto it.
type Config struct {
	// PerSource limits SYNs per client address (IPv4 /32, IPv6 /64).
	PerSource Limit
	// PerPort limits SYNs per destination port from all untrusted sources
	// together; it caps floods from random spoofed sources.
	PerPort Limit
	// Allow lists sources that are never limited; Deny lists sources whose
	// SYNs are always dropped. Deny wins over Allow. IPv4-mapped IPv6
	// prefixes (::ffff:0:0/96 and longer) are treated as IPv4.
	Allow, Deny []netip.Prefix
	// Ports are the protected destination ports (the frontends' ports).
	// SYNs to other ports, and all non-SYN traffic, pass untouched.
	Ports []uint16
	// TrustTTL is how long a source stays exempt from the per-port budget
	// after one of its segments matched an established socket on this host.
	// Zero means DefaultTrustTTL; negative disables trusting.
	TrustTTL time.Duration
	// Mode is FilterRateLimit ("" means that) or FilterSyncookie: answer
	// SYNs from XDP with SYN cookies instead of budgeting them per port.
	// Syncookie mode needs net.ipv4.tcp_syncookies=2 in the namespace of
	// the attached interface; Attach and Update set it while the filter is
	// attached in that mode and restore the previous value afterwards.
	Mode string
}

// Filter modes (Config.Mode).
const (
	FilterRateLimit = "ratelimit"
	FilterSyncookie = "syncookie"
)

// compiled is Config turned into map contents.
type compiled struct {
	kcfg    synfloodConfig
	ports   []uint16
	allowV4 []synfloodLpmV4
	allowV6 []synfloodLpmV6
	denyV4  []synfloodLpmV4
	denyV6  []synfloodLpmV6
}

// Rates below minRate would need intervals that overflow the TAT arithmetic.
const (
	minRate      = 1e-6
	maxRate      = 1e9
	maxTolerance = uint64(1) << 62
)

func compileLimit(name string, l Limit) (interval, tolerance uint64, err error) {
	if math.IsNaN(l.Rate) || math.IsInf(l.Rate, 0) || l.Rate < 0 {
		return 0, 0, fmt.Errorf("%s rate %v: must be a finite number >= 0", name, l.Rate)
	}
	if l.Rate == 0 {
		return 0, 0, nil
	}
	if l.Rate < minRate || l.Rate > maxRate {
		return 0, 0, fmt.Errorf("%s rate %v/s: out of range [%g, %g]", name, l.Rate, minRate, maxRate)
	}
	burst := uint64(l.Burst)
	if burst == 0 {
		burst = uint64(math.Max(1, math.Ceil(l.Rate)))
	}
	interval = uint64(math.Round(1e9 / l.Rate))
	if interval == 0 {
		interval = 1
	}
	if burst-1 > maxTolerance/interval {
		tolerance = maxTolerance
	} else {
		tolerance = (burst - 1) * interval
	}
	return interval, tolerance, nil
}

func compilePrefixes(name string, list []netip.Prefix) (v4 []synfloodLpmV4, v6 []synfloodLpmV6, err error) {
	for _, p := range list {
		if !p.IsValid() {
			return nil, nil, fmt.Errorf("%s: invalid prefix %v", name, p)
		}
		addr, bits := p.Addr(), p.Bits()
		if addr.Is4In6() && bits >= 96 {
			addr, bits = addr.Unmap(), bits-96
		}
		p = netip.PrefixFrom(addr, bits).Masked()
		if p.Addr().Is4() {
			v4 = append(v4, synfloodLpmV4{Prefixlen: uint32(bits), Addr: p.Addr().As4()})
		} else {
			v6 = append(v6, synfloodLpmV6{Prefixlen: uint32(bits), Addr: p.Addr().As16()})
		}
	}
	if len(v4) > MaxPrefixes || len(v6) > MaxPrefixes {
		return nil, nil, fmt.Errorf("%s: more than %d prefixes per address family", name, MaxPrefixes)
	}
	return v4, v6, nil
}

// Validate reports every problem Load or Update would reject cfg for,
// without touching the kernel (for `palisade check`).
func (c Config) Validate() error {
	_, err := c.compile()
	return err
}

func (c Config) compile() (*compiled, error) {
	var out compiled
	var errs []error
	var err error
	out.kcfg.SrcIntervalNs, out.kcfg.SrcToleranceNs, err = compileLimit("per_source", c.PerSource)
	errs = append(errs, err)
	out.kcfg.PortIntervalNs, out.kcfg.PortToleranceNs, err = compileLimit("per_port", c.PerPort)
	errs = append(errs, err)
	switch {
	case c.TrustTTL == 0:
		out.kcfg.TrustTtlNs = uint64(DefaultTrustTTL)
	case c.TrustTTL > 0:
		out.kcfg.TrustTtlNs = uint64(c.TrustTTL)
	}
	switch c.Mode {
	case "", FilterRateLimit:
	case FilterSyncookie:
		out.kcfg.Mode = 1
	default:
		errs = append(errs, fmt.Errorf("mode %q: want %s or %s", c.Mode, FilterRateLimit, FilterSyncookie))
	}
	out.allowV4, out.allowV6, err = compilePrefixes("allow", c.Allow)
	errs = append(errs, err)
	out.denyV4, out.denyV6, err = compilePrefixes("deny", c.Deny)
	errs = append(errs, err)

	out.ports = slices.Clone(c.Ports)
	slices.Sort(out.ports)
	out.ports = slices.Compact(out.ports)
	if slices.Contains(out.ports, 0) {
		errs = append(errs, errors.New("ports: port 0 is not a valid destination"))
	}
	if len(out.ports) > MaxPorts {
		errs = append(errs, fmt.Errorf("ports: more than %d", MaxPorts))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("invalid synflood config: %w", err)
	}
	return &out, nil
}
