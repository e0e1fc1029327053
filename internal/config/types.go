package config

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Duration is a Go duration string in the config ("1.5s", "100ms", "2m").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

func (d *Duration) decodeScalar(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q (use Go syntax such as 500ms, 2s, 1m30s)", s)
	}
	if v < 0 {
		return fmt.Errorf("duration %q must not be negative", s)
	}
	*d = Duration(v)
	return nil
}

// Rate is a number of events per time unit, written "N/s" or "N/m".
type Rate struct {
	PerSecond float64
	text      string
}

func (r Rate) String() string {
	if r.text != "" {
		return r.text
	}
	return strconv.FormatFloat(r.PerSecond, 'f', -1, 64) + "/s"
}

// IsZero reports whether no rate was set.
func (r Rate) IsZero() bool { return r.PerSecond == 0 }

func (r *Rate) decodeScalar(s string) error {
	num, unit, ok := strings.Cut(s, "/")
	if !ok {
		return fmt.Errorf("invalid rate %q (use N/s or N/m, e.g. 200/s)", s)
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n <= 0 || math.IsInf(n, 0) || math.IsNaN(n) {
		return fmt.Errorf("invalid rate %q: %q is not a positive number", s, num)
	}
	switch unit {
	case "s":
	case "m":
		n /= 60
	default:
		return fmt.Errorf("invalid rate %q: unit must be s or m", s)
	}
	*r = Rate{PerSecond: n, text: s}
	return nil
}

// Prefix is a CIDR ("10.0.0.0/8", "2001:db8::/32") or a single address (taken as /32 or /128).
type Prefix struct{ netip.Prefix }

func (p *Prefix) decodeScalar(s string) error {
	if strings.Contains(s, "/") {
		v, err := netip.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("invalid CIDR %q", s)
		}
		if v.Addr().Is4In6() {
			v = netip.PrefixFrom(v.Addr().Unmap(), v.Bits()-96)
		}
		p.Prefix = v
		return nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return fmt.Errorf("invalid address or CIDR %q", s)
	}
	a = a.Unmap()
	p.Prefix = netip.PrefixFrom(a, a.BitLen())
	return nil
}

// Addr is a single IP address.
type Addr struct{ netip.Addr }

func (a *Addr) decodeScalar(s string) error {
	v, err := netip.ParseAddr(s)
	if err != nil {
		return fmt.Errorf("invalid IP address %q", s)
	}
	a.Addr = v.Unmap()
	return nil
}

// Prefixes converts a list of config prefixes to netip prefixes.
func Prefixes(ps []Prefix) []netip.Prefix {
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		out[i] = p.Prefix
	}
	return out
}
