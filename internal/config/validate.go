package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/palisade-lb/palisade/healthcheck"
	"github.com/palisade-lb/palisade/vip"
)

func (d *decoder) validate(f *File) {
	d.validateAdmin(&f.Global.Admin)
	backends := map[string]*Backend{}
	for i := range f.Backends {
		b := &f.Backends[i]
		if prev, ok := backends[b.Name]; ok {
			d.errAt(b.KeyPos("name"), "duplicate backend name %q (first defined at line %d)", b.Name, prev.KeyPos("name").Line)
			continue
		}
		backends[b.Name] = b
		d.validateBackend(b)
	}
	frontends := map[string]*Frontend{}
	var listeners []listenAddr
	for i := range f.Frontends {
		fe := &f.Frontends[i]
		if prev, ok := frontends[fe.Name]; ok {
			d.errAt(fe.KeyPos("name"), "duplicate frontend name %q (first defined at line %d)", fe.Name, prev.KeyPos("name").Line)
		} else {
			frontends[fe.Name] = fe
		}
		listeners = d.validateFrontend(fe, backends, listeners)
	}
	d.validateVRRP(&f.VRRP, frontends)
	d.validateSynflood(f)
}

func (d *decoder) validateAdmin(a *Admin) {
	if a.Listen == "" {
		if a.TokenFile != "" {
			d.errAt(a.KeyPos("token_file"), "token_file is set but admin.listen is empty")
		}
		return
	}
	if path, ok := strings.CutPrefix(a.Listen, "unix:"); ok {
		if !strings.HasPrefix(path, "/") && !strings.HasPrefix(path, ".") {
			d.errAt(a.KeyPos("listen"), "listen: unix socket path %q must be absolute or start with ./", path)
		}
	} else {
		if _, err := parseListen(a.Listen); err != nil {
			d.errAt(a.KeyPos("listen"), "listen: %v", err)
		}
		if a.TokenFile == "" {
			d.errAt(a.KeyPos("listen"), "token_file is required when the admin API listens on TCP")
		}
	}
	if a.TokenFile != "" {
		if tok, err := ReadToken(a.TokenFile); err != nil {
			d.errAt(a.KeyPos("token_file"), "token_file: %v", err)
		} else if len(tok) < 16 {
			d.errAt(a.KeyPos("token_file"), "token_file: token is shorter than 16 characters")
		}
	}
}

// ReadToken reads an admin token file: its contents with surrounding space trimmed.
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading token: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("token file %s is empty", path)
	}
	return t, nil
}

// listenAddr is a parsed listen address; an invalid IP means all addresses.
type listenAddr struct {
	ip   netip.Addr // invalid: every address (IPv4 and IPv6)
	port uint16
	pos  Pos
	fe   string
}

// parseListen parses "host:port" where host is empty, an IP literal, or a bracketed IPv6 literal.
func parseListen(s string) (listenAddr, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return listenAddr{}, fmt.Errorf("%q is not host:port", s)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return listenAddr{}, fmt.Errorf("%q: port must be 1..65535", s)
	}
	la := listenAddr{port: uint16(p)}
	if host != "" && host != "::" {
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return listenAddr{}, fmt.Errorf("%q: host must be an IP address (or empty for all)", s)
		}
		la.ip = ip.Unmap()
	}
	return la, nil
}

func (a listenAddr) overlaps(b listenAddr) bool {
	if a.port != b.port {
		return false
	}
	if !a.ip.IsValid() || !b.ip.IsValid() {
		return true
	}
	v4any := netip.IPv4Unspecified()
	if (a.ip == v4any && b.ip.Is4()) || (b.ip == v4any && a.ip.Is4()) {
		return true
	}
	return a.ip == b.ip
}

func (d *decoder) validateFrontend(fe *Frontend, backends map[string]*Backend, seen []listenAddr) []listenAddr {
	if fe.Listen != nil && len(fe.Listen) == 0 {
		d.errAt(fe.KeyPos("listen"), "frontend %q: listen needs at least one address", fe.Name)
	}
	for i, s := range fe.Listen {
		la, err := parseListen(s)
		if err != nil {
			d.errAt(fe.ItemPos("listen", i), "listen: %v", err)
			continue
		}
		la.pos, la.fe = fe.ItemPos("listen", i), fe.Name
		for _, o := range seen {
			if la.overlaps(o) {
				d.errAt(la.pos, "listen %q overlaps a listener of frontend %q at line %d", s, o.fe, o.pos.Line)
				break
			}
		}
		seen = append(seen, la)
	}
	ref := func(name string, p Pos) {
		b, ok := backends[name]
		if !ok {
			d.errAt(p, "backend %q is not defined", name)
			return
		}
		if fe.Mode == "tcp" {
			if b.Balance == "uri_hash" {
				d.errAt(p, "backend %q balances by uri_hash, which needs mode http", name)
			}
			if b.Cookie != "" {
				d.errAt(p, "backend %q uses cookie stickiness, which needs mode http", name)
			}
		}
	}
	if fe.DefaultBackend != "" {
		ref(fe.DefaultBackend, fe.KeyPos("default_backend"))
	}
	if fe.Mode == "tcp" {
		for _, k := range []string{"routes", "tls", "http"} {
			if fe.Has(k) {
				d.errAt(fe.KeyPos(k), "%s is for mode http only (frontend %q is mode tcp)", k, fe.Name)
			}
		}
		if fe.DefaultBackend == "" {
			d.errAt(fe.Pos(), "frontend %q: mode tcp needs default_backend", fe.Name)
		}
	} else {
		if fe.DefaultBackend == "" && len(fe.Routes) == 0 {
			d.errAt(fe.Pos(), "frontend %q: needs default_backend or routes", fe.Name)
		}
		for i := range fe.Routes {
			r := &fe.Routes[i]
			switch {
			case r.Backend != "" && r.Redirect != nil:
				d.errAt(r.Pos(), "route: set backend or redirect, not both")
			case r.Backend == "" && r.Redirect == nil:
				d.errAt(r.Pos(), "route: needs backend or redirect")
			case r.Backend != "":
				ref(r.Backend, r.KeyPos("backend"))
			}
			if r.Host != "" && !validHostPattern(r.Host) {
				d.errAt(r.KeyPos("host"), "route: host %q is not a host name or *.suffix pattern", r.Host)
			}
			for _, p := range []string{r.PathPrefix, r.Path} {
				if p != "" && !strings.HasPrefix(p, "/") {
					d.errAt(r.Pos(), "route: path %q must start with /", p)
				}
			}
			for j, m := range r.Methods {
				if !isToken(m) || strings.ToUpper(m) != m {
					d.errAt(r.ItemPos("methods", j), "route: %q is not an upper-case HTTP method", m)
				}
			}
		}
		for _, hr := range []*HeaderRules{&fe.HTTP.RequestHeaders, &fe.HTTP.ResponseHeaders} {
			for k := range hr.Set {
				if !isToken(k) {
					d.errAt(hr.KeyPos("set"), "header name %q is not valid", k)
				}
			}
			for k := range hr.Add {
				if !isToken(k) {
					d.errAt(hr.KeyPos("add"), "header name %q is not valid", k)
				}
			}
			for i, k := range hr.Remove {
				if !isToken(k) {
					d.errAt(hr.ItemPos("remove", i), "header name %q is not valid", k)
				}
			}
		}
		if fe.TLS != nil {
			d.validateTLS(fe.TLS)
		}
	}
	return seen
}

func (d *decoder) validateTLS(t *TLS) {
	pairs := t.Certs
	if t.Cert != "" || t.Key != "" {
		if t.Cert == "" || t.Key == "" {
			d.errAt(t.Pos(), "tls: cert and key go together")
			return
		}
		pairs = append([]CertPair{{At: t.At, Cert: t.Cert, Key: t.Key}}, pairs...)
	}
	if len(pairs) == 0 {
		d.errAt(t.Pos(), "tls: needs cert and key, or certs")
	}
	for _, p := range pairs {
		if _, err := tls.LoadX509KeyPair(p.Cert, p.Key); err != nil {
			d.errAt(p.Pos(), "tls: loading %s with %s: %v", p.Cert, p.Key, err)
		}
	}
}

func (d *decoder) validateBackend(b *Backend) {
	if len(b.Servers) == 0 {
		d.errAt(b.KeyPos("servers"), "backend %q needs at least one server", b.Name)
	}
	names := map[string]Pos{}
	for i := range b.Servers {
		s := &b.Servers[i]
		if p, ok := names[s.Name]; ok {
			d.errAt(s.KeyPos("name"), "duplicate server name %q in backend %q (first at line %d)", s.Name, b.Name, p.Line)
		}
		names[s.Name] = s.KeyPos("name")
		if strings.ContainsAny(s.Name, "/ \t") {
			d.errAt(s.KeyPos("name"), "server name %q must not contain '/' or spaces", s.Name)
		}
		host, port, err := net.SplitHostPort(s.Address)
		if err != nil {
			d.errAt(s.KeyPos("address"), "address %q is not host:port", s.Address)
			continue
		}
		if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
			d.errAt(s.KeyPos("address"), "address %q: port must be 1..65535", s.Address)
		}
		if host == "" {
			d.errAt(s.KeyPos("address"), "address %q: host is empty", s.Address)
		} else if _, err := netip.ParseAddr(host); err != nil && !validHostName(host) {
			d.errAt(s.KeyPos("address"), "address %q: %q is neither an IP address nor a host name", s.Address, host)
		}
	}
	d.validateHealth(&b.Health)
}

func (d *decoder) validateHealth(h *Health) {
	if h.Timeout > h.Interval && h.Type != "none" {
		d.errAt(h.KeyPos("timeout"), "timeout %s is longer than interval %s", h.Timeout, h.Interval)
	}
	if h.Passive.MaxFails > 0 && h.Type == "none" {
		d.errAt(h.Passive.KeyPos("max_fails"), "passive checks need an active check to bring servers back (type is none)")
	}
	err := healthcheck.ValidateSpec(h.Spec())
	var fe *healthcheck.FieldError
	for _, e := range unjoin(err) {
		if errors.As(e, &fe) {
			d.errAt(h.fieldPos(fe.Field), "%s: %s", fe.Field, fe.Msg)
		} else {
			d.errAt(h.Pos(), "health: %v", e)
		}
	}
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// fieldPos finds the position of a checker field name such as "expect_status",
// "tls.ca", "agent.port" or "steps[1].expect_regex".
func (h *Health) fieldPos(field string) Pos {
	head, rest, _ := strings.Cut(field, ".")
	if name, idx, ok := strings.Cut(head, "["); ok && name == "steps" {
		i, _ := strconv.Atoi(strings.TrimSuffix(idx, "]"))
		if i < len(h.Steps) {
			if rest != "" {
				return h.Steps[i].KeyPos(rest)
			}
			return h.Steps[i].Pos()
		}
	}
	switch head {
	case "tls":
		return h.TLS.KeyPos(rest)
	case "passive":
		return h.Passive.KeyPos(rest)
	case "agent":
		if h.Agent != nil {
			return h.Agent.KeyPos(rest)
		}
	}
	return h.KeyPos(head)
}

// Spec maps the health block onto the checker's spec.
func (h *Health) Spec() healthcheck.Spec {
	s := healthcheck.Spec{
		Type: healthcheck.Type(h.Type), Interval: h.Interval.D(), Timeout: h.Timeout.D(),
		Rise: h.Rise, Fall: h.Fall, FastInter: h.Fastinter.D(), DownInter: h.Downinter.D(),
		Port: h.Port, Path: h.Path, Method: h.Method, Host: h.Host,
		ExpectStatus: h.ExpectStatus, ExpectBody: h.ExpectBody,
		TLS:     healthcheck.TLSSpec{SNI: h.TLS.SNI, Verify: h.TLS.Verify, CA: h.TLS.CA},
		Passive: healthcheck.PassiveSpec{MaxFails: h.Passive.MaxFails, Window: h.Passive.Window.D()},
	}
	for _, st := range h.Steps {
		s.Steps = append(s.Steps, healthcheck.Step{Send: st.Send, Expect: st.Expect, ExpectRegex: st.ExpectRegex})
	}
	if a := h.Agent; a != nil {
		s.Agent = &healthcheck.AgentSpec{Port: a.Port, Interval: a.Interval.D(), Send: a.Send}
	}
	return s
}

func (d *decoder) validateVRRP(v *VRRP, frontends map[string]*Frontend) {
	before := len(d.errs)
	defer func() {
		if len(d.errs) == before && len(v.Instances) > 0 {
			if err := vip.ValidateAll(v.InstanceConfigs()); err != nil {
				d.errAt(v.KeyPos("instances"), "vrrp: %v", err)
			}
		}
	}()
	names := map[string]bool{}
	vrids := map[string]int{}
	for i := range v.Instances {
		in := &v.Instances[i]
		if names[in.Name] {
			d.errAt(in.KeyPos("name"), "duplicate vrrp instance name %q", in.Name)
		}
		names[in.Name] = true
		key := fmt.Sprintf("%s/%d", in.Interface, in.VirtualRouterID)
		if line, ok := vrids[key]; ok {
			d.errAt(in.KeyPos("virtual_router_id"), "virtual_router_id %d is already used on %s (line %d)", in.VirtualRouterID, in.Interface, line)
		}
		vrids[key] = in.KeyPos("virtual_router_id").Line
		if in.AdvertInterval.D()%(10*time.Millisecond) != 0 {
			d.errAt(in.KeyPos("advert_interval"), "advert_interval %s is not a multiple of 10ms", in.AdvertInterval)
		}
		if len(in.VIPs) == 0 {
			d.errAt(in.KeyPos("vips"), "vrrp instance %q needs at least one VIP", in.Name)
		}
		for j, p := range in.VIPs {
			if !p.Addr().Is4() {
				d.errAt(in.ItemPos("vips", j), "VIP %s: only IPv4 is supported (VRRPv3 for IPv4)", p)
			}
		}
		for j, p := range in.UnicastPeers {
			if !p.Is4() {
				d.errAt(in.ItemPos("unicast_peers", j), "unicast peer %s must be IPv4", p)
			}
		}
		for j := range in.Track {
			t := &in.Track[j]
			switch {
			case (t.Frontend == "") == (t.Interface == ""):
				d.errAt(t.Pos(), "track: set exactly one of frontend, interface")
			case t.Frontend != "" && frontends[t.Frontend] == nil:
				d.errAt(t.KeyPos("frontend"), "track: frontend %q is not defined", t.Frontend)
			}
		}
	}
}

func (d *decoder) validateSynflood(f *File) {
	s := &f.Synflood
	if s.Enabled && s.Interface == "" {
		d.errAt(s.KeyPos("enabled"), "synflood: interface is required when enabled")
	}
	if s.Enabled && s.PerSource.SynRate.IsZero() {
		d.errAt(s.PerSource.Pos(), "synflood: per_source.syn_rate must be set")
	}
	if s.Enabled {
		if err := f.FilterConfig().Validate(); err != nil {
			d.errAt(s.Pos(), "synflood: %v", err)
		}
	}
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

func validHostName(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func validHostPattern(h string) bool {
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		return validHostName(rest)
	}
	return validHostName(h)
}
