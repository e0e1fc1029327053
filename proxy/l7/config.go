package l7

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/palisade-lb/palisade/proxy/l7/http1"
)

// Config is one HTTP frontend; it mirrors the frontend keys of the config
// schema (routes, default_backend, http, timeouts, access_log, tls).
type Config struct {
	// Frontend is the frontend name (metrics label, logs).
	Frontend string
	// Routes are tried in order; the first match wins.
	Routes []Route
	// DefaultBackend serves requests no route matched; "" answers 503.
	DefaultBackend string

	RequestHeaders  HeaderRules
	ResponseHeaders HeaderRules
	// Forwarded adds X-Forwarded-For/-Proto/-Host and Forwarded.
	Forwarded bool
	// RequestID adds X-Request-ID when the request has none.
	RequestID bool
	// MaxHeaderBytes bounds the request head (request line + fields); default 65536.
	MaxHeaderBytes int

	Timeouts  Timeouts
	AccessLog bool
	// TLS enables TLS termination (ALPN h2 and http/1.1); nil for plain HTTP.
	// Build it with LoadCertificates.
	TLS *tls.Config
}

// Timeouts; zero values take the defaults in brackets.
type Timeouts struct {
	Client      time.Duration // [60s] client inactivity while a request is in flight
	Server      time.Duration // [60s] server inactivity (response wait, body)
	Connect     time.Duration // [3s] connect to a server
	HTTPRequest time.Duration // [10s] complete request head, from its first byte (slowloris)
	Idle        time.Duration // [60s] keep-alive wait for the next request
}

func (t *Timeouts) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.Client, 60*time.Second)
	def(&t.Server, 60*time.Second)
	def(&t.Connect, 3*time.Second)
	def(&t.HTTPRequest, 10*time.Second)
	def(&t.Idle, 60*time.Second)
}

// Route is one routing rule. All set conditions must match. A route has either
// Backend or Redirect.
type Route struct {
	// Host matches the request host (port ignored, case-insensitive):
	// "api.example.com" exactly, or "*.example.com" for any name ending in
	// ".example.com" (any depth, not example.com itself).
	Host string
	// PathPrefix and Path (exact) match the raw path, without the query.
	PathPrefix string
	Path       string
	// Methods, when set, lists the accepted methods (case-sensitive tokens).
	Methods []string
	// Headers must all be present with exactly these values (names case-insensitive).
	Headers  map[string]string
	Backend  string
	Redirect *Redirect
}

// Redirect answers with a redirect built from the request: each set field
// replaces that part of the request URL; the query is kept unless Path is set
// with its own query.
type Redirect struct {
	Scheme string // "https"
	Host   string
	Port   int
	Path   string
	Code   int // 301, 302 (default), 303, 307, 308
}

// HeaderRules rewrite header fields: Remove first, then Set (replaces every
// field of that name), then Add (appends a field).
type HeaderRules struct {
	Set    map[string]string
	Add    map[string]string
	Remove []string
}

type kv struct{ name, value string }

type compiledRules struct {
	drop []string // names removed from the forwarded message (Remove + Set)
	set  []kv
	add  []kv
}

func compileRules(r HeaderRules, what string) (compiledRules, error) {
	var c compiledRules
	for _, n := range r.Remove {
		if !http1.ValidToken(n) {
			return c, fmt.Errorf("%s remove: invalid header name %q", what, n)
		}
		c.drop = append(c.drop, n)
	}
	for _, m := range []struct {
		src map[string]string
		dst *[]kv
	}{{r.Set, &c.set}, {r.Add, &c.add}} {
		for k, v := range m.src {
			if !http1.ValidToken(k) {
				return c, fmt.Errorf("%s: invalid header name %q", what, k)
			}
			if !http1.ValidFieldValue(v) {
				return c, fmt.Errorf("%s: invalid value for header %q", what, k)
			}
			if isFramingHeader(k) {
				return c, fmt.Errorf("%s: header %q is managed by the proxy", what, k)
			}
			*m.dst = append(*m.dst, kv{http.CanonicalHeaderKey(k), v})
		}
		sort.Slice(*m.dst, func(i, j int) bool { return (*m.dst)[i].name < (*m.dst)[j].name })
	}
	for _, s := range c.set {
		c.drop = append(c.drop, s.name)
	}
	return c, nil
}

func isFramingHeader(k string) bool {
	switch strings.ToLower(k) {
	case "content-length", "transfer-encoding", "connection", "upgrade", "keep-alive", "te", "trailer", "proxy-connection":
		return true
	}
	return false
}

func (c *compiledRules) drops(name []byte) bool {
	for _, d := range c.drop {
		if len(d) == len(name) && bytes.EqualFold(name, []byte(d)) {
			return true
		}
	}
	return false
}

type backendRef struct {
	name      string
	b         Backend
	st        *stats
	sendProxy int // PROXY protocol version sent to servers (0 = off), see ProxySender
}

// ProxySender is implemented by backends that send a PROXY protocol header
// (version 1 or 2) on every server connection. Such connections carry one
// client's address, so they are private to one request: dialled fresh and
// closed after the response, never pooled.
type ProxySender interface{ SendProxy() int }

type route struct {
	hostExact  string
	hostSuffix string // ".example.com"
	pathPrefix string
	path       string
	methods    []string
	headers    []kv
	backend    *backendRef
	redirect   *Redirect
}

type router struct {
	routes []route
	def    *backendRef
}

// hostOnly strips the port from a Host value ("[v6]:port" aware).
func hostOnly(h []byte) []byte {
	if len(h) > 0 && h[0] == '[' {
		if i := bytes.IndexByte(h, ']'); i > 0 {
			return h[:i+1]
		}
		return h
	}
	if i := bytes.LastIndexByte(h, ':'); i >= 0 {
		return h[:i]
	}
	return h
}

func (rt *route) match(req *http1.Request, host, path []byte) bool {
	if rt.hostExact != "" && !bytes.EqualFold(host, []byte(rt.hostExact)) {
		return false
	}
	if rt.hostSuffix != "" {
		if len(host) <= len(rt.hostSuffix) || !bytes.EqualFold(host[len(host)-len(rt.hostSuffix):], []byte(rt.hostSuffix)) {
			return false
		}
	}
	if rt.path != "" && string(path) != rt.path {
		return false
	}
	if rt.pathPrefix != "" && !bytes.HasPrefix(path, []byte(rt.pathPrefix)) {
		return false
	}
	if len(rt.methods) > 0 {
		ok := false
		for _, m := range rt.methods {
			if string(req.Method) == m {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, hm := range rt.headers {
		ok := false
		for k := range req.Headers {
			h := &req.Headers[k]
			if bytes.EqualFold(h.Name, []byte(hm.name)) && string(h.Value) == hm.value {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// match returns the first matching route, or nil (default backend).
func (r *router) match(req *http1.Request, host, path []byte) *route {
	for i := range r.routes {
		if r.routes[i].match(req, host, path) {
			return &r.routes[i]
		}
	}
	return nil
}

var errNoBackends = errors.New("no Backends given")

func compileRouter(cfg *Config, bs Backends, refs map[string]*backendRef, m *Metrics) (*router, error) {
	ref := func(name string) (*backendRef, error) {
		if r, ok := refs[name]; ok {
			return r, nil
		}
		if bs == nil {
			return nil, errNoBackends
		}
		b := bs.Backend(name)
		if b == nil {
			return nil, fmt.Errorf("unknown backend %q", name)
		}
		r := &backendRef{name: name, b: b, st: m.stats(cfg.Frontend, name)}
		if ps, ok := b.(ProxySender); ok {
			r.sendProxy = ps.SendProxy()
		}
		refs[name] = r
		return r, nil
	}
	rt := &router{}
	for i, r := range cfg.Routes {
		c := route{pathPrefix: r.PathPrefix, path: r.Path, methods: r.Methods}
		where := "route " + strconv.Itoa(i+1)
		switch {
		case strings.HasPrefix(r.Host, "*."):
			c.hostSuffix = strings.ToLower(r.Host[1:])
		case strings.Contains(r.Host, "*"):
			return nil, fmt.Errorf("%s: host %q: only a leading \"*.\" wildcard is supported", where, r.Host)
		default:
			c.hostExact = strings.ToLower(r.Host)
		}
		if r.Path != "" && !strings.HasPrefix(r.Path, "/") || r.PathPrefix != "" && !strings.HasPrefix(r.PathPrefix, "/") {
			return nil, fmt.Errorf("%s: path and path_prefix must start with /", where)
		}
		for _, m := range r.Methods {
			if !http1.ValidToken(m) {
				return nil, fmt.Errorf("%s: invalid method %q", where, m)
			}
		}
		for k, v := range r.Headers {
			if !http1.ValidToken(k) {
				return nil, fmt.Errorf("%s: invalid header name %q", where, k)
			}
			c.headers = append(c.headers, kv{k, v})
		}
		sort.Slice(c.headers, func(a, b int) bool { return c.headers[a].name < c.headers[b].name })
		switch {
		case r.Backend != "" && r.Redirect != nil:
			return nil, fmt.Errorf("%s: has both backend and redirect", where)
		case r.Backend != "":
			b, err := ref(r.Backend)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			c.backend = b
		case r.Redirect != nil:
			rd := *r.Redirect
			if rd.Code == 0 {
				rd.Code = 302
			}
			switch rd.Code {
			case 301, 302, 303, 307, 308:
			default:
				return nil, fmt.Errorf("%s: redirect code %d not one of 301, 302, 303, 307, 308", where, rd.Code)
			}
			if rd.Scheme != "" && rd.Scheme != "http" && rd.Scheme != "https" {
				return nil, fmt.Errorf("%s: redirect scheme %q not http or https", where, rd.Scheme)
			}
			if rd.Port < 0 || rd.Port > 65535 {
				return nil, fmt.Errorf("%s: redirect port %d out of range", where, rd.Port)
			}
			if rd.Path != "" && !strings.HasPrefix(rd.Path, "/") || !http1.ValidFieldValue(rd.Host+rd.Path) || strings.ContainsAny(rd.Host+rd.Path, " \t") {
				return nil, fmt.Errorf("%s: invalid redirect host or path", where)
			}
			c.redirect = &rd
		default:
			return nil, fmt.Errorf("%s: needs a backend or a redirect", where)
		}
		rt.routes = append(rt.routes, c)
	}
	if cfg.DefaultBackend != "" {
		b, err := ref(cfg.DefaultBackend)
		if err != nil {
			return nil, fmt.Errorf("default_backend: %w", err)
		}
		rt.def = b
	}
	return rt, nil
}
