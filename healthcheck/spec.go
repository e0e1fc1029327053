package healthcheck

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Type names an active check probe.
type Type string

// Probe types, as written in the config's health.type.
const (
	TypeTCP         Type = "tcp"
	TypeHTTP        Type = "http"
	TypeHTTPS       Type = "https"
	TypeSendExpect  Type = "send_expect"
	TypeRedisMaster Type = "redis_master"
	TypeNone        Type = "none"
)

// Defaults, as HAProxy's.
const (
	DefaultInterval       = 2 * time.Second
	DefaultTimeout        = time.Second
	DefaultRise           = 2
	DefaultFall           = 3
	DefaultPath           = "/"
	DefaultMethod         = "GET"
	DefaultExpectStatus   = "200-399"
	DefaultPassiveWindow  = 10 * time.Second
	DefaultAgentInterval  = 2 * time.Second
	defaultSpreadFraction = 0.05
)

// Spec mirrors a backend's health: block. Zero values mean "default": the
// empty Type is tcp, Interval 2s, Timeout 1s, Rise 2, Fall 3, FastInter and
// DownInter the Interval, Port the server's own port, Path "/", Method GET,
// Host the server address's host, ExpectStatus "200-399".
type Spec struct {
	Type         Type
	Interval     time.Duration
	Timeout      time.Duration
	Rise         int
	Fall         int
	FastInter    time.Duration
	DownInter    time.Duration
	Port         int
	Path         string
	Method       string
	Host         string
	ExpectStatus string // "200", "200-399", "200,204,300-399"
	ExpectBody   string // substring of the first 64 KiB of the body; empty: not checked
	TLS          TLSSpec
	Steps        []Step
	Passive      PassiveSpec
	Agent        *AgentSpec // nil: no agent check
}

// TLSSpec configures https checks. Without Verify the certificate is not
// checked; with it, CA (a PEM bundle file) replaces the system roots when set.
// SNI defaults to the Host header's host, else the server's host name.
type TLSSpec struct {
	SNI    string
	Verify bool
	CA     string
}

// Step is one send_expect step; exactly one field is set. Expect is a
// substring, ExpectRegex a Go regular expression; both are matched against
// the data received since the previous expect step matched.
type Step struct {
	Send        string
	Expect      string
	ExpectRegex string
}

// PassiveSpec configures passive checks: MaxFails consecutive real-traffic
// failures within Window (default 10s) force the server down. MaxFails 0 is off.
type PassiveSpec struct {
	MaxFails int
	Window   time.Duration
}

// AgentSpec configures an HAProxy agent check on the server's host at Port,
// every Interval (default 2s). Send, when set, is written after connecting.
type AgentSpec struct {
	Port     int
	Interval time.Duration
	Send     string
}

// Timing is the scheduling part of a Spec.
type Timing struct {
	Interval  time.Duration
	Timeout   time.Duration
	FastInter time.Duration
	DownInter time.Duration
	Rise      int
	Fall      int
}

// WithDefaults returns t with zero fields set to their defaults.
func (t Timing) WithDefaults() Timing {
	if t.Interval <= 0 {
		t.Interval = DefaultInterval
	}
	if t.Timeout <= 0 {
		t.Timeout = DefaultTimeout
	}
	if t.FastInter <= 0 {
		t.FastInter = t.Interval
	}
	if t.DownInter <= 0 {
		t.DownInter = t.Interval
	}
	if t.Rise <= 0 {
		t.Rise = DefaultRise
	}
	if t.Fall <= 0 {
		t.Fall = DefaultFall
	}
	return t
}

// Timing returns the spec's scheduling parameters with defaults applied.
func (s Spec) Timing() Timing {
	return Timing{
		Interval: s.Interval, Timeout: s.Timeout, FastInter: s.FastInter,
		DownInter: s.DownInter, Rise: s.Rise, Fall: s.Fall,
	}.WithDefaults()
}

// WithDefaults returns s with zero fields set to their defaults.
func (s Spec) WithDefaults() Spec {
	if s.Type == "" {
		s.Type = TypeTCP
	}
	t := s.Timing()
	s.Interval, s.Timeout, s.FastInter, s.DownInter, s.Rise, s.Fall =
		t.Interval, t.Timeout, t.FastInter, t.DownInter, t.Rise, t.Fall
	if s.Path == "" {
		s.Path = DefaultPath
	}
	if s.Method == "" {
		s.Method = DefaultMethod
	}
	if s.ExpectStatus == "" {
		s.ExpectStatus = DefaultExpectStatus
	}
	if s.Passive.Window <= 0 {
		s.Passive.Window = DefaultPassiveWindow
	}
	if s.Agent != nil {
		a := *s.Agent
		if a.Interval <= 0 {
			a.Interval = DefaultAgentInterval
		}
		s.Agent = &a
	}
	return s
}

// FieldError is one invalid Spec field. Field is the config key path below
// health:, e.g. "expect_status" or "steps[2].expect_regex".
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// ValidateSpec checks everything New would reject, plus ranges, and returns
// every problem as *FieldError values joined with errors.Join; nil when valid.
func ValidateSpec(spec Spec) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	switch spec.Type {
	case "", TypeTCP, TypeHTTP, TypeHTTPS, TypeSendExpect, TypeRedisMaster, TypeNone:
	default:
		bad("type", "unknown check type %q (want tcp, http, https, send_expect, redis_master or none)", spec.Type)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"interval", spec.Interval}, {"timeout", spec.Timeout}, {"fastinter", spec.FastInter}, {"downinter", spec.DownInter}, {"passive.window", spec.Passive.Window}} {
		if d.v < 0 {
			bad(d.name, "must not be negative, got %s", d.v)
		}
	}
	if spec.Rise < 0 {
		bad("rise", "must be at least 1, got %d", spec.Rise)
	}
	if spec.Fall < 0 {
		bad("fall", "must be at least 1, got %d", spec.Fall)
	}
	if spec.Port < 0 || spec.Port > 65535 {
		bad("port", "must be 0..65535, got %d", spec.Port)
	}
	if spec.Passive.MaxFails < 0 {
		bad("passive.max_fails", "must not be negative, got %d", spec.Passive.MaxFails)
	}
	if a := spec.Agent; a != nil {
		if a.Port < 1 || a.Port > 65535 {
			bad("agent.port", "must be 1..65535, got %d", a.Port)
		}
		if a.Interval < 0 {
			bad("agent.interval", "must not be negative, got %s", a.Interval)
		}
	}
	switch spec.Type {
	case TypeHTTP, TypeHTTPS:
		if _, err := parseStatusSet(orDefault(spec.ExpectStatus, DefaultExpectStatus)); err != nil {
			bad("expect_status", "%v", err)
		}
		if m := orDefault(spec.Method, DefaultMethod); !isToken(m) {
			bad("method", "%q is not a valid HTTP method", m)
		}
		if _, err := parsePath(orDefault(spec.Path, DefaultPath)); err != nil {
			bad("path", "%v", err)
		}
		if spec.Host != "" && !validHost(spec.Host) {
			bad("host", "%q is not a valid Host header", spec.Host)
		}
		if spec.Type == TypeHTTPS {
			if spec.TLS.SNI != "" && !validHost(spec.TLS.SNI) {
				bad("tls.sni", "%q is not a valid server name", spec.TLS.SNI)
			}
			if spec.TLS.CA != "" {
				if _, err := loadCA(spec.TLS.CA); err != nil {
					bad("tls.ca", "%v", err)
				}
			}
		}
	case TypeSendExpect:
		if len(spec.Steps) == 0 {
			bad("steps", "send_expect needs at least one step")
		}
		for i, st := range spec.Steps {
			field := fmt.Sprintf("steps[%d]", i)
			n := 0
			for _, set := range []bool{st.Send != "", st.Expect != "", st.ExpectRegex != ""} {
				if set {
					n++
				}
			}
			if n != 1 {
				bad(field, "exactly one of send, expect, expect_regex must be set")
				continue
			}
			if st.ExpectRegex != "" {
				if _, err := regexp.Compile(st.ExpectRegex); err != nil {
					bad(field+".expect_regex", "%v", err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// New builds the probe for spec. addr returns the server's current
// host:port and is called once per check; spec.Port, when set, replaces its
// port. For type none New returns a nil Checker and no error: the server is
// not actively checked.
func New(spec Spec, addr func() string) (Checker, error) {
	if err := ValidateSpec(spec); err != nil {
		return nil, err
	}
	if addr == nil {
		return nil, errors.New("healthcheck: nil address function")
	}
	spec = spec.WithDefaults()
	if spec.Port != 0 {
		addr = withPort(addr, spec.Port)
	}
	switch spec.Type {
	case TypeTCP:
		return &TCPChecker{addr: addr}, nil
	case TypeHTTP, TypeHTTPS:
		return newHTTPChecker(spec, addr)
	case TypeSendExpect:
		return newSendExpectChecker(spec.Steps, addr)
	case TypeRedisMaster:
		return &RedisMasterChecker{addr: addr}, nil
	case TypeNone:
		return nil, nil
	}
	return nil, fmt.Errorf("healthcheck: unknown check type %q", spec.Type)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// withPort wraps addr so its port is replaced by port. A malformed address
// is passed through; the dial reports it.
func withPort(addr func() string, port int) func() string {
	p := strconv.Itoa(port)
	return func() string {
		a := addr()
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			return a
		}
		return net.JoinHostPort(host, p)
	}
}

// hostOf returns the host part of a host:port (or a bare host).
func hostOf(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return true
}

func validHost(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; c <= ' ' || c >= 0x7f || c == '/' || c == '?' || c == '#' || c == '@' {
			return false
		}
	}
	return true
}

func parsePath(p string) (*url.URL, error) {
	if !strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("%q must start with /", p)
	}
	u, err := url.ParseRequestURI(p)
	if err != nil {
		return nil, fmt.Errorf("%q is not a valid request path", p)
	}
	return u, nil
}

func loadCA(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificates found", file)
	}
	return pool, nil
}

// tlsBase returns the per-checker TLS config; ServerName is set per check.
func tlsBase(t TLSSpec) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: !t.Verify} //nolint:gosec // verify is a user choice, default off as in HAProxy
	if t.Verify && t.CA != "" {
		pool, err := loadCA(t.CA)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}
