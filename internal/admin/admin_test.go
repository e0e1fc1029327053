package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/palisade-lb/palisade/internal/api"
	"github.com/palisade-lb/palisade/internal/config"
)

func decode[T any](t *testing.T, r resp) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.body), &v); err != nil {
		t.Fatalf("decoding %q: %v", r.body, err)
	}
	return v
}

func wantError(t *testing.T, r resp, code int, contains string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("status %d, want %d (body %q)", r.code, code, r.body)
	}
	if ct := r.hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q", ct)
	}
	e := decode[api.Error](t, r)
	if e.Error == "" || !strings.Contains(e.Error, contains) {
		t.Errorf("error %q does not contain %q", e.Error, contains)
	}
}

func TestAuth(t *testing.T) {
	h := startTCP(t, false)
	protected := []struct{ method, path, body string }{
		{"GET", "/api/v1/status", ""},
		{"GET", "/api/v1/frontends", ""},
		{"GET", "/api/v1/backends", ""},
		{"GET", "/api/v1/backends/app", ""},
		{"PUT", "/api/v1/backends/app/servers/web1", `{"state":"drain"}`},
		{"POST", "/api/v1/reload", ""},
		{"GET", "/api/v1/vrrp", ""},
		{"POST", "/api/v1/vrrp/VI_1/resign", ""},
		{"GET", "/metrics", ""},
		{"GET", "/api/v1/nope", ""},
		{"DELETE", "/api/v1/status", ""},
	}
	for _, p := range protected {
		r := h.do(p.method, p.path, "-", p.body)
		wantError(t, r, http.StatusUnauthorized, "missing bearer token")
		if got := r.hdr.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
			t.Errorf("%s %s: WWW-Authenticate %q", p.method, p.path, got)
		}
		r = h.do(p.method, p.path, "wrong-token-0123456789", p.body)
		wantError(t, r, http.StatusForbidden, "wrong token")
		// a token that is a prefix of the right one is wrong too
		wantError(t, h.do(p.method, p.path, testToken[:10], p.body), http.StatusForbidden, "wrong token")
	}
	// other schemes count as missing
	req, _ := http.NewRequest("GET", h.base+"/api/v1/status", nil)
	req.Header.Set("Authorization", "Basic "+testToken)
	r, err := h.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusUnauthorized {
		t.Errorf("Basic auth: %d", r.StatusCode)
	}
	// nothing was changed by the refused requests
	if reloads, callers := h.fd.calls(); reloads != 0 || len(callers) != 0 || h.fd.VRRP()[0].State != "MASTER" {
		t.Fatalf("refused requests reached the daemon: reloads=%d callers=%v", reloads, callers)
	}
	if !strings.Contains(h.logs.String(), "wrong token") {
		t.Error("wrong tokens are not logged")
	}

	// the right token, with the scheme in any case
	if r := h.do("GET", "/api/v1/status", testToken, ""); r.code != http.StatusOK {
		t.Fatalf("right token: %d %s", r.code, r.body)
	}
	req, _ = http.NewRequest("GET", h.base+"/api/v1/status", nil)
	req.Header.Set("Authorization", "bearer "+testToken)
	if r, err = h.hc.Do(req); err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK {
		t.Errorf("lower-case scheme: %d", r.StatusCode)
	}

	// open: healthz and the dashboard page (no data in it)
	for _, p := range []string{"/healthz", "/", "/static/dashboard.js"} {
		if r := h.do("GET", p, "-", ""); r.code != http.StatusOK {
			t.Errorf("GET %s without token: %d", p, r.code)
		}
	}
	if r := h.do("GET", "/healthz", "-", ""); r.body != "ok\n" {
		t.Errorf("healthz body %q", r.body)
	}
}

func TestMetrics(t *testing.T) {
	h := startTCP(t, false)
	wantError(t, h.do("GET", "/metrics", "-", ""), http.StatusUnauthorized, "missing")
	r := h.do("GET", "/metrics", testToken, "")
	if r.code != http.StatusOK || !strings.Contains(r.body, "palisade_config_last_reload_successful 1") {
		t.Fatalf("metrics with token: %d %q", r.code, r.body)
	}

	pub := startTCP(t, true)
	r = pub.do("GET", "/metrics", "-", "")
	if r.code != http.StatusOK || !strings.Contains(r.body, "palisade_config_last_reload_successful 1") {
		t.Fatalf("public metrics: %d %q", r.code, r.body)
	}
	if !strings.HasPrefix(r.hdr.Get("Content-Type"), "text/plain") {
		t.Errorf("metrics Content-Type %q", r.hdr.Get("Content-Type"))
	}
	// metrics_public opens /metrics only
	wantError(t, pub.do("GET", "/api/v1/status", "-", ""), http.StatusUnauthorized, "missing")
	// and a reload can close it again
	pub.cfg.MetricsPublic = false
	if err := pub.srv.Apply(pub.cfg); err != nil {
		t.Fatal(err)
	}
	wantError(t, pub.do("GET", "/metrics", "-", ""), http.StatusUnauthorized, "missing")
}

func TestReadEndpoints(t *testing.T) {
	h := startTCP(t, false)

	r := h.do("GET", "/api/v1/status", testToken, "")
	if r.code != 200 || r.hdr.Get("Content-Type") != "application/json" || r.hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("status: %d %v", r.code, r.hdr)
	}
	st := decode[api.Status](t, r)
	if st.Version != "1.4.2" || !st.LastReload.OK || len(st.VRRP) != 1 || st.Synflood.Counters["drop_rate"] != 5120 ||
		!st.StartedAt.Equal(started) {
		t.Errorf("status: %+v", st)
	}

	fes := decode[[]api.Frontend](t, h.do("GET", "/api/v1/frontends", testToken, ""))
	if len(fes) != 2 || fes[0].Name != "web" || fes[0].Rejected["rate_limit"] != 120 || fes[1].Healthy {
		t.Errorf("frontends: %+v", fes)
	}

	bes := decode[[]api.Backend](t, h.do("GET", "/api/v1/backends", testToken, ""))
	if len(bes) != 2 || bes[0].Name != "app" || len(bes[0].Servers) != 4 || bes[1].Up {
		t.Errorf("backends: %+v", bes)
	}

	b := decode[api.Backend](t, h.do("GET", "/api/v1/backends/redis", testToken, ""))
	if b.Name != "redis" || len(b.Servers) != 1 || b.Servers[0].State != "drain" {
		t.Errorf("backend redis: %+v", b)
	}
	wantError(t, h.do("GET", "/api/v1/backends/nope", testToken, ""), http.StatusNotFound, `backend "nope": not found`)

	vs := decode[[]api.VRRP](t, h.do("GET", "/api/v1/vrrp", testToken, ""))
	if len(vs) != 1 || vs[0].Name != "VI_1" || vs[0].State != "MASTER" {
		t.Errorf("vrrp: %+v", vs)
	}

	// HEAD answers like GET without a body
	if r := h.do("HEAD", "/api/v1/status", testToken, ""); r.code != 200 || r.body != "" {
		t.Errorf("HEAD status: %d %q", r.code, r.body)
	}
}

func TestPutServer(t *testing.T) {
	h := startTCP(t, false)
	r := h.do("PUT", "/api/v1/backends/app/servers/web1", testToken, `{"state":"drain"}`)
	if r.code != 200 {
		t.Fatalf("drain: %d %s", r.code, r.body)
	}
	s := decode[api.Server](t, r)
	if s.Name != "web1" || s.State != "drain" || s.Weight != 100 {
		t.Errorf("drained server: %+v", s)
	}
	r = h.do("PUT", "/api/v1/backends/app/servers/web1", testToken, `{"state":"ready","weight":7}`)
	if s = decode[api.Server](t, r); r.code != 200 || s.State != "ready" || s.Weight != 7 {
		t.Errorf("ready+weight: %d %+v", r.code, s)
	}
	r = h.do("PUT", "/api/v1/backends/app/servers/web2", testToken, ` {"weight": 0} `+"\n")
	if s = decode[api.Server](t, r); r.code != 200 || s.Weight != 0 {
		t.Errorf("weight 0: %d %+v", r.code, s)
	}
	if b, _ := h.fd.Backend("app"); b.Servers[0].State != "ready" || b.Servers[0].Weight != 7 {
		t.Errorf("daemon not changed: %+v", b.Servers[0])
	}
	// the caller is the client's address, and the change is logged with it
	_, callers := h.fd.calls()
	if len(callers) != 3 || !strings.HasPrefix(callers[0], "127.0.0.1:") {
		t.Errorf("callers %v", callers)
	}
	logs := h.logs.String()
	for _, want := range []string{"admin API: server changed", "by=" + callers[0], "backend=app", "server=web1",
		`asked="state=ready weight=7"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

func TestBadInput(t *testing.T) {
	h := startTCP(t, false)
	const p = "/api/v1/backends/app/servers/web1"
	big := `{"state":"drain","x":"` + strings.Repeat("a", 70<<10) + `"}`
	cases := []struct {
		name, path, body string
		code             int
		contains         string
	}{
		{"empty", p, "", 400, "empty request body"},
		{"not json", p, "state=drain", 400, "invalid JSON"},
		{"truncated", p, `{"state":"dr`, 400, "unexpected end"},
		{"unknown field", p, `{"state":"drain","color":"red"}`, 400, `unknown field "color"`},
		{"wrong type weight", p, `{"weight":"10"}`, 400, `field "weight"`},
		{"fraction weight", p, `{"weight":1.5}`, 400, `field "weight"`},
		{"wrong type state", p, `{"state":1}`, 400, `field "state"`},
		{"array", p, `[{"state":"drain"}]`, 400, "want a JSON object"},
		{"trailing object", p, `{"state":"drain"}{"state":"maint"}`, 400, "trailing data"},
		{"trailing garbage", p, `{"state":"drain"} x`, 400, "invalid JSON"},
		{"too big", p, big, 400, "larger than 65536 bytes"},
		{"nothing to change", p, `{}`, 400, "give state and/or weight"},
		{"null", p, `null`, 400, "give state and/or weight"},
		{"bad state", p, `{"state":"sleep"}`, 400, `state "sleep"`},
		{"weight range", p, `{"weight":1000}`, 400, "out of range"},
		{"negative weight", p, `{"weight":-1}`, 400, "out of range"},
		{"unknown server", "/api/v1/backends/app/servers/nope", `{"state":"drain"}`, 404, `server "nope"`},
		{"unknown backend", "/api/v1/backends/nope/servers/web1", `{"state":"drain"}`, 404, `backend "nope"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantError(t, h.do("PUT", c.path, testToken, c.body), c.code, c.contains)
		})
	}
	if b, _ := h.fd.Backend("app"); b.Servers[0].State != "ready" || b.Servers[0].Weight != 100 {
		t.Errorf("bad input changed the server: %+v", b.Servers[0])
	}
	if !strings.Contains(h.logs.String(), "admin API: server change rejected") {
		t.Error("rejected changes are not logged")
	}
}

func TestMethodsAndUnknownPaths(t *testing.T) {
	h := startTCP(t, false)
	cases := []struct{ method, path, allow string }{
		{"POST", "/api/v1/status", "GET, HEAD"},
		{"DELETE", "/api/v1/backends/app", "GET, HEAD"},
		{"GET", "/api/v1/backends/app/servers/web1", "PUT"},
		{"POST", "/api/v1/backends/app/servers/web1", "PUT"},
		{"GET", "/api/v1/reload", "POST"},
		{"GET", "/api/v1/vrrp/VI_1/resign", "POST"},
		{"PUT", "/healthz", "GET, HEAD"},
		{"POST", "/metrics", "GET, HEAD"},
	}
	for _, c := range cases {
		r := h.do(c.method, c.path, testToken, "")
		wantError(t, r, http.StatusMethodNotAllowed, "not allowed")
		if got := r.hdr.Get("Allow"); got != c.allow {
			t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, got, c.allow)
		}
	}
	for _, p := range []string{"/api/v1/nope", "/api/v2/status", "/api/", "/api/v1/backends/app/servers", "/nope"} {
		wantError(t, h.do("GET", p, testToken, ""), http.StatusNotFound, "no such endpoint")
	}
	wantError(t, h.do("GET", "/static/nope.js", "-", ""), http.StatusNotFound, "no such file")
}

func TestReload(t *testing.T) {
	h := startTCP(t, false)
	r := h.do("POST", "/api/v1/reload", testToken, "")
	if r.code != 200 || strings.TrimSpace(r.body) != `{"ok":true}` {
		t.Fatalf("good reload: %d %q", r.code, r.body)
	}

	h.fd.setReloadErr(fmt.Errorf("loading: %w", config.Errors{
		{File: "/etc/palisade/palisade.yaml", Pos: config.Pos{Line: 5, Col: 22}, Msg: `backend "nope" is not defined`},
		{File: "/etc/palisade/palisade.yaml", Pos: config.Pos{Line: 6, Col: 16}, Msg: "max_conns: -5 is out of range"},
	}))
	r = h.do("POST", "/api/v1/reload", testToken, "")
	if r.code != http.StatusUnprocessableEntity {
		t.Fatalf("invalid reload: %d %q", r.code, r.body)
	}
	rr := decode[api.ReloadResponse](t, r)
	want := []string{`/etc/palisade/palisade.yaml:5:22: backend "nope" is not defined`,
		"/etc/palisade/palisade.yaml:6:16: max_conns: -5 is out of range"}
	if rr.OK || len(rr.Errors) != 2 || rr.Errors[0] != want[0] || rr.Errors[1] != want[1] {
		t.Errorf("invalid reload body: %+v", rr)
	}
	if !strings.Contains(r.body, `"ok":false`) {
		t.Errorf("ok:false missing from %q", r.body)
	}

	h.fd.setReloadErr(errors.New("listen tcp 127.0.0.1:80: bind: address already in use"))
	rr = decode[api.ReloadResponse](t, h.do("POST", "/api/v1/reload", testToken, ""))
	if rr.OK || len(rr.Errors) != 1 || !strings.Contains(rr.Errors[0], "address already in use") {
		t.Errorf("bind failure body: %+v", rr)
	}
	if reloads, _ := h.fd.calls(); reloads != 3 {
		t.Errorf("reloads %d", reloads)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "admin API: reload requested") || !strings.Contains(logs, "admin API: reload failed") {
		t.Errorf("reloads not logged:\n%s", logs)
	}
}

func TestResign(t *testing.T) {
	h := startTCP(t, false)
	r := h.do("POST", "/api/v1/vrrp/VI_1/resign", testToken, "")
	if r.code != 200 || strings.TrimSpace(r.body) != `{"ok":true}` {
		t.Fatalf("resign: %d %q", r.code, r.body)
	}
	if v := h.fd.VRRP(); v[0].State != "BACKUP" {
		t.Errorf("state after resign %q", v[0].State)
	}
	wantError(t, h.do("POST", "/api/v1/vrrp/VI_1/resign", testToken, ""), http.StatusConflict, "BACKUP")
	wantError(t, h.do("POST", "/api/v1/vrrp/VI_9/resign", testToken, ""), http.StatusNotFound, `"VI_9"`)
	if !strings.Contains(h.logs.String(), "instance=VI_1") {
		t.Error("resign not logged")
	}
}

func TestUnixSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "admin.sock")
	// a stale socket file from a dead process is replaced
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}

	h := newHarness(t)
	if err := h.srv.Apply(config.Admin{Listen: "unix:" + sock}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want socket 0600", fi.Mode())
	}
	if got := h.srv.Addr().String(); got != sock {
		t.Errorf("Addr %q, want %q", got, sock)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want the socket only", len(entries))
	}

	uc := unixClient(sock)
	defer uc.CloseIdleConnections()
	// no token needed on a unix socket without token_file
	r := doWith(t, uc, "http://palisade", "GET", "/api/v1/status", "-", "")
	if r.code != 200 {
		t.Fatalf("status over the socket: %d %s", r.code, r.body)
	}
	r = doWith(t, uc, "http://palisade", "PUT", "/api/v1/backends/app/servers/web1", "-", `{"state":"maint"}`)
	if r.code != 200 {
		t.Fatalf("maint over the socket: %d %s", r.code, r.body)
	}
	_, callers := h.fd.calls()
	caller := callers[0]
	if want := fmt.Sprintf("unix uid=%d pid=%d", os.Getuid(), os.Getpid()); caller != want {
		t.Errorf("caller %q, want %q", caller, want)
	}

	// a second server cannot take over a live socket
	other := newHarness(t)
	if err := other.srv.Apply(config.Admin{Listen: "unix:" + sock}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("binding a live socket: %v", err)
	}
	// a path that is not a socket is never removed
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := other.srv.Apply(config.Admin{Listen: "unix:" + plain}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("binding over a file: %v", err)
	}

	// with a token file the socket needs the token too
	tok := writeToken(t, dir, testToken)
	if err := h.srv.Apply(config.Admin{Listen: "unix:" + sock, TokenFile: tok}); err != nil {
		t.Fatal(err)
	}
	wantError(t, doWith(t, uc, "http://palisade", "GET", "/api/v1/status", "-", ""), 401, "missing")
	if r := doWith(t, uc, "http://palisade", "GET", "/api/v1/status", testToken, ""); r.code != 200 {
		t.Errorf("token over the socket: %d", r.code)
	}

	uc.CloseIdleConnections()
	if err := h.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after Close: %v", err)
	}
}

func TestApplyRebindAndTokenRotation(t *testing.T) {
	h := startTCP(t, false)
	first := h.base
	if r := h.do("GET", "/api/v1/status", testToken, ""); r.code != 200 {
		t.Fatal(r.code)
	}

	// token rotation without a new address: the old token stops working at once
	const newToken = "rotated-token-abcdefghijklmnop"
	if err := os.WriteFile(h.cfg.TokenFile, []byte(newToken), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Apply(h.cfg); err != nil {
		t.Fatal(err)
	}
	if h.base != "http://"+h.srv.Addr().String() {
		t.Fatal("same listen rebound")
	}
	wantError(t, h.do("GET", "/api/v1/status", testToken, ""), 403, "wrong token")
	if r := h.do("GET", "/api/v1/status", newToken, ""); r.code != 200 {
		t.Fatalf("new token: %d", r.code)
	}

	// a new address: the new one serves, the old one stops accepting
	next := freeAddr(t)
	cfg := h.cfg
	cfg.Listen = next
	if err := h.srv.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if got := h.srv.Addr().String(); got != next {
		t.Fatalf("Addr %s after rebind, want %s", got, next)
	}
	h.hc.CloseIdleConnections()
	h.base = "http://" + next
	if r := h.do("GET", "/api/v1/status", newToken, ""); r.code != 200 {
		t.Fatalf("new address: %d", r.code)
	}
	waitFor(t, "old listener closed", 10*time.Second, func() bool {
		c, err := net.Dial("tcp", strings.TrimPrefix(first, "http://"))
		if err == nil {
			c.Close()
		}
		return err != nil
	})

	// failures change nothing: busy address, unreadable token, TCP without token
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	bad := []config.Admin{
		{Listen: busy.Addr().String(), TokenFile: h.cfg.TokenFile},
		{Listen: next, TokenFile: filepath.Join(t.TempDir(), "missing")},
		{Listen: "127.0.0.1:0"},
		{Listen: "unix:"},
	}
	for _, c := range bad {
		if err := h.srv.Apply(c); err == nil {
			t.Errorf("Apply(%+v) succeeded", c)
		}
		if got := h.srv.Addr().String(); got != next {
			t.Fatalf("Addr %s after a failed Apply", got)
		}
		if r := h.do("GET", "/api/v1/status", newToken, ""); r.code != 200 {
			t.Fatalf("after failed Apply(%+v): %d", c, r.code)
		}
	}

	// empty listen turns the API off
	if err := h.srv.Apply(config.Admin{}); err != nil {
		t.Fatal(err)
	}
	if h.srv.Addr() != nil {
		t.Error("Addr not nil with the API off")
	}
	h.hc.CloseIdleConnections()
	waitFor(t, "listener closed", 10*time.Second, func() bool {
		c, err := net.Dial("tcp", next)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
}

// TestReloadRebindsFromInsideRequest: a reload asked for over the API that
// moves the API elsewhere must not deadlock on its own request.
func TestReloadRebindsFromInsideRequest(t *testing.T) {
	h := newHarness(t)
	h.cfg = config.Admin{Listen: "127.0.0.1:0", TokenFile: writeToken(t, t.TempDir(), testToken)}
	rebind := &rebindingDaemon{fakeDaemon: h.fd, srv: h.srv, cfg: h.cfg}
	h.srv.d = rebind // before Apply: no goroutine reads it yet
	if err := h.srv.Apply(h.cfg); err != nil {
		t.Fatal(err)
	}
	h.base = "http://" + h.srv.Addr().String()
	rebind.cfg.Listen = freeAddr(t)
	done := make(chan resp, 1)
	go func() { done <- h.do("POST", "/api/v1/reload", testToken, "") }()
	select {
	case r := <-done:
		if r.code != 200 {
			t.Fatalf("reload: %d %s", r.code, r.body)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("reload over the API deadlocked on rebinding the API")
	}
	if got := "http://" + h.srv.Addr().String(); got == h.base {
		t.Error("not rebound")
	}
}

type rebindingDaemon struct {
	*fakeDaemon
	srv *Server
	cfg config.Admin
}

func (r *rebindingDaemon) Reload() error { return r.srv.Apply(r.cfg) }

func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := goleak.IgnoreCurrent()
	h := newHarness(t)
	dir := t.TempDir()
	tok := writeToken(t, dir, testToken)
	if err := h.srv.Apply(config.Admin{Listen: "127.0.0.1:0", TokenFile: tok}); err != nil {
		t.Fatal(err)
	}
	h.base = "http://" + h.srv.Addr().String()
	h.do("GET", "/api/v1/status", testToken, "")
	// rebind to a unix socket, keep a client connection open on it
	sock := filepath.Join(dir, "a.sock")
	if err := h.srv.Apply(config.Admin{Listen: "unix:" + sock, TokenFile: tok}); err != nil {
		t.Fatal(err)
	}
	uc := unixClient(sock)
	doWith(t, uc, "http://palisade", "GET", "/api/v1/backends", testToken, "")
	if err := h.srv.Close(); err != nil {
		t.Fatal(err)
	}
	uc.CloseIdleConnections()
	h.hc.CloseIdleConnections()
	if err := h.srv.Apply(config.Admin{Listen: "127.0.0.1:0", TokenFile: tok}); err == nil {
		t.Error("Apply after Close succeeded")
	}
	goleak.VerifyNone(t, before)
}

// TestApplyHandsOverOverlappingAddress: a new listen address that overlaps
// the old one (here another spelling of it) takes the port over; when the
// new bind fails, the old address serves again.
func TestApplyHandsOverOverlappingAddress(t *testing.T) {
	h := startTCP(t, false)
	port := h.srv.Addr().(*net.TCPAddr).Port
	cfg := h.cfg
	cfg.Listen = fmt.Sprintf("localhost:%d", port)
	if err := h.srv.Apply(cfg); err != nil {
		t.Fatalf("hand-over to %s: %v", cfg.Listen, err)
	}
	if got := h.srv.Addr().(*net.TCPAddr).Port; got != port {
		t.Fatalf("port %d after hand-over, want %d", got, port)
	}
	h.hc.CloseIdleConnections()
	if r := h.do("GET", "/api/v1/status", testToken, ""); r.code != 200 {
		t.Fatalf("after hand-over: %d", r.code)
	}

	// the new bind fails after the old listener let go: the old address comes back
	refused := errors.New("injected bind failure")
	var mu sync.Mutex
	binds := 0
	h.srv.mu.Lock()
	h.srv.listenTCP = func(network, addr string) (net.Listener, error) {
		mu.Lock()
		defer mu.Unlock()
		binds++
		if addr == "127.0.0.1:"+fmt.Sprint(port) && binds == 2 {
			return nil, refused
		}
		return net.Listen(network, addr)
	}
	h.srv.mu.Unlock()
	cfg.Listen = fmt.Sprintf("127.0.0.1:%d", port)
	if err := h.srv.Apply(cfg); !errors.Is(err, refused) {
		t.Fatalf("Apply with a failing bind: %v", err)
	}
	if got := h.srv.Addr().String(); got != fmt.Sprintf("127.0.0.1:%d", port) {
		t.Fatalf("Addr %s after a failed hand-over", got)
	}
	h.hc.CloseIdleConnections()
	if r := h.do("GET", "/api/v1/status", testToken, ""); r.code != 200 {
		t.Fatalf("old address after a failed hand-over: %d", r.code)
	}
	if strings.Contains(h.logs.String(), "stopped serving") {
		t.Errorf("a hand-over was logged as an error:\n%s", h.logs.String())
	}
}

type blockingDaemon struct {
	*fakeDaemon
	entered chan struct{}
	release chan struct{}
}

func (b *blockingDaemon) Reload() error {
	close(b.entered)
	<-b.release
	return nil
}

// TestCloseWaitsForRunningHandlers: when in-flight requests outlast the
// shutdown timeout their connections are closed, but Close still returns
// only after their handlers have.
func TestCloseWaitsForRunningHandlers(t *testing.T) {
	before := goleak.IgnoreCurrent()
	h := newHarness(t)
	bd := &blockingDaemon{fakeDaemon: h.fd, entered: make(chan struct{}), release: make(chan struct{})}
	h.srv.d = bd // before Apply: nothing serves yet
	h.srv.shutdownTimeout = 20 * time.Millisecond
	if err := h.srv.Apply(config.Admin{Listen: "127.0.0.1:0", TokenFile: writeToken(t, t.TempDir(), testToken)}); err != nil {
		t.Fatal(err)
	}
	h.base = "http://" + h.srv.Addr().String()
	reqDone := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("POST", h.base+"/api/v1/reload", nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		r, err := h.hc.Do(req)
		if err == nil {
			r.Body.Close()
		}
		reqDone <- err
	}()
	<-bd.entered
	closed := make(chan struct{})
	go func() { h.srv.Close(); close(closed) }()
	waitFor(t, "forced close", 10*time.Second, func() bool {
		return strings.Contains(h.logs.String(), "closed with requests in flight")
	})
	if err := <-reqDone; err == nil {
		t.Error("the request survived the forced close")
	}
	select {
	case <-closed:
		t.Fatal("Close returned while a handler was running")
	default:
	}
	close(bd.release)
	<-closed
	h.hc.CloseIdleConnections()
	goleak.VerifyNone(t, before)
}
