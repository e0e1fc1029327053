package admin

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/palisade-lb/palisade/internal/api"
	"github.com/palisade-lb/palisade/internal/config"
	"github.com/palisade-lb/palisade/internal/daemon"
	"github.com/palisade-lb/palisade/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var started = time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)

// fakeDaemon is an in-memory Daemon with the real one's error contract.
type fakeDaemon struct {
	mu        sync.Mutex
	backends  []api.Backend
	frontends []api.Frontend
	vrrp      []api.VRRP
	reloadErr error
	reloads   int
	callers   []string
	status    api.Status
}

func newFakeDaemon() *fakeDaemon {
	return &fakeDaemon{
		status: api.Status{Version: "1.4.2", Commit: "0123456789abcdef0123", GoVersion: "go1.26.8",
			StartedAt: started, UptimeSeconds: 93784, ConfigFile: "/etc/palisade/palisade.yaml",
			ConfigSHA256: "5f1c0d1e2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5",
			LastReload:   api.Reload{OK: true, At: started.Add(time.Hour), SHA256: "5f1c0d1e2a3b"},
			Synflood: api.Synflood{Enabled: true, Attached: true, Interface: "eth0", Mode: "native",
				Counters: map[string]uint64{"pass": 912345, "drop_rate": 5120, "drop_deny": 17}}},
		frontends: []api.Frontend{
			{Name: "web", Mode: "http", Listen: []string{":80", ":443"}, DefaultBackend: "app", Healthy: true,
				Current: 42, Total: 1234567, BytesIn: 987654321, BytesOut: 12345678901,
				Rejected: map[string]uint64{"acl": 3, "rate_limit": 120, "max_conns": 0}, MaxConns: 20000},
			{Name: "db", Mode: "tcp", Listen: []string{"0.0.0.0:6379"}, DefaultBackend: "redis", Healthy: false,
				Rejected: map[string]uint64{}},
		},
		backends: []api.Backend{
			{Name: "app", Balance: "roundrobin", Up: true, ActiveServers: 2, Servers: []api.Server{
				{Name: "web1", Address: "10.0.0.11:8080", Resolved: "10.0.0.11:8080", State: "ready", OperatorState: "ready",
					Health: "up", Available: true, Weight: 100, ConfigWeight: 100, Current: 17, Total: 512000,
					BytesIn: 1 << 30, BytesOut: 5 << 30, LastCheck: "http check passed: 200 OK in 3ms"},
				{Name: "web2", Address: "web2.internal:8080", Resolved: "10.0.0.12:8080", State: "ready", OperatorState: "ready",
					Health: "up", Available: true, Weight: 50, ConfigWeight: 100, Current: 9, Total: 498000,
					LastCheck: "http check passed: 200 OK in 4ms"},
				{Name: "web3", Address: "10.0.0.13:8080", Resolved: "10.0.0.13:8080", State: "ready", OperatorState: "ready",
					Health: "down", Weight: 100, ConfigWeight: 100, ConnectFails: 31,
					LastCheck: "http check failed: connect: connection refused after 1ms (3 of 3)"},
				{Name: "spare", Address: "10.0.0.19:8080", Resolved: "10.0.0.19:8080", Backup: true, State: "maint",
					OperatorState: "maint", Health: "unknown", Weight: 100, ConfigWeight: 100},
			}},
			{Name: "redis", Balance: "first", Up: false, Servers: []api.Server{
				{Name: "r1", Address: "10.0.1.1:6379", Resolved: "10.0.1.1:6379", State: "drain", OperatorState: "drain",
					Health: "down", Weight: 1, ConfigWeight: 1, LastCheck: "redis_master: role:slave"},
			}},
		},
		vrrp: []api.VRRP{{Name: "VI_1", Interface: "eth0", VirtualRouterID: 51, State: "MASTER", Priority: 150,
			EffectivePriority: 150, Master: "198.18.0.2", Since: started.Add(2 * time.Hour), VIPs: []string{"198.18.0.10/24"}}},
	}
}

func (f *fakeDaemon) Status() api.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.status
	st.VRRP = append([]api.VRRP(nil), f.vrrp...)
	return st
}

func (f *fakeDaemon) Frontends() []api.Frontend {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]api.Frontend(nil), f.frontends...)
}

func (f *fakeDaemon) Backends() []api.Backend {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]api.Backend, len(f.backends))
	for i, b := range f.backends {
		b.Servers = append([]api.Server(nil), b.Servers...)
		out[i] = b
	}
	return out
}

func (f *fakeDaemon) Backend(name string) (api.Backend, error) {
	for _, b := range f.Backends() {
		if b.Name == name {
			return b, nil
		}
	}
	return api.Backend{}, fmt.Errorf("backend %q: %w", name, daemon.ErrNotFound)
}

func (f *fakeDaemon) SetServer(backend, server string, u api.ServerUpdate, caller string) (api.Server, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for bi := range f.backends {
		b := &f.backends[bi]
		if b.Name != backend {
			continue
		}
		for si := range b.Servers {
			s := &b.Servers[si]
			if s.Name != server {
				continue
			}
			if u.State == nil && u.Weight == nil {
				return api.Server{}, fmt.Errorf("%w: give state and/or weight", daemon.ErrInvalid)
			}
			if u.State != nil && *u.State != "ready" && *u.State != "drain" && *u.State != "maint" {
				return api.Server{}, fmt.Errorf("%w: state %q is not ready, drain or maint", daemon.ErrInvalid, *u.State)
			}
			if u.Weight != nil && (*u.Weight < 0 || *u.Weight > 256) {
				return api.Server{}, fmt.Errorf("%w: weight %d is out of range 0..256", daemon.ErrInvalid, *u.Weight)
			}
			if u.State != nil {
				s.State, s.OperatorState = *u.State, *u.State
			}
			if u.Weight != nil {
				s.Weight, s.ConfigWeight = *u.Weight, *u.Weight
			}
			f.callers = append(f.callers, caller)
			return *s, nil
		}
		return api.Server{}, fmt.Errorf("server %q in backend %q: %w", server, backend, daemon.ErrNotFound)
	}
	return api.Server{}, fmt.Errorf("backend %q: %w", backend, daemon.ErrNotFound)
}

func (f *fakeDaemon) Reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reloads++
	return f.reloadErr
}

// calls returns the number of reloads and the callers of SetServer so far.
func (f *fakeDaemon) calls() (int, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reloads, append([]string(nil), f.callers...)
}

func (f *fakeDaemon) setReloadErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reloadErr = err
}

func (f *fakeDaemon) VRRP() []api.VRRP {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]api.VRRP(nil), f.vrrp...)
}

func (f *fakeDaemon) ResignVRRP(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.vrrp {
		if f.vrrp[i].Name == name {
			if f.vrrp[i].State != "MASTER" {
				return fmt.Errorf("vrrp instance %q is %s: %w", name, f.vrrp[i].State, daemon.ErrInvalid)
			}
			f.vrrp[i].State = "BACKUP"
			return nil
		}
	}
	return fmt.Errorf("vrrp instance %q: %w", name, daemon.ErrNotFound)
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const testToken = "s3cret-token-0123456789abcdef"

type harness struct {
	t     *testing.T
	fd    *fakeDaemon
	srv   *Server
	logs  *syncBuffer
	reg   *prometheus.Registry
	base  string // http://addr
	token string
	cfg   config.Admin
	hc    *http.Client
}

// writeToken writes tok into a fresh file in dir.
func writeToken(t testing.TB, dir, tok string) string {
	t.Helper()
	p := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startTCP serves a fake daemon on 127.0.0.1:0 with testToken.
func startTCP(t *testing.T, metricsPublic bool) *harness {
	t.Helper()
	h := newHarness(t)
	h.cfg = config.Admin{Listen: "127.0.0.1:0", TokenFile: writeToken(t, t.TempDir(), testToken), MetricsPublic: metricsPublic}
	if err := h.srv.Apply(h.cfg); err != nil {
		t.Fatal(err)
	}
	h.base = "http://" + h.srv.Addr().String()
	h.token = testToken
	return h
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, fd: newFakeDaemon(), logs: &syncBuffer{}, reg: prometheus.NewRegistry()}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "palisade_config_last_reload_successful", Help: "test"})
	g.Set(1)
	h.reg.MustRegister(g)
	h.srv = New(h.fd, h.reg, slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	h.hc = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	t.Cleanup(func() {
		h.hc.CloseIdleConnections()
		if err := h.srv.Close(); err != nil {
			t.Error(err)
		}
	})
	return h
}

// unixClient is an HTTP client that dials the socket at path.
func unixClient(path string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Proxy: nil,
		Dial:  func(string, string) (net.Conn, error) { return net.Dial("unix", path) },
	}}
}

type resp struct {
	code int
	hdr  http.Header
	body string
}

// do sends a request with the harness token (tok == "-" sends none).
func (h *harness) do(method, path, tok, body string) resp {
	h.t.Helper()
	return doWith(h.t, h.hc, h.base, method, path, tok, body)
}

func doWith(t *testing.T, hc *http.Client, base, method, path, tok, body string) resp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "-" && tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	r, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp{code: r.StatusCode, hdr: r.Header, body: string(b)}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string { return testutil.FreeAddr(t) }
