package admin

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/palisade-lb/palisade/internal/config"
)

type ctlResult struct {
	code           int
	stdout, stderr string
}

func runCtl(args ...string) ctlResult {
	var o, e bytes.Buffer
	code := Ctl(args, &o, &e)
	return ctlResult{code, o.String(), e.String()}
}

// clearCtlEnv keeps the caller's environment out of the test.
func clearCtlEnv(t *testing.T) {
	t.Setenv("PALISADE_ADMIN", "")
	t.Setenv("PALISADE_TOKEN_FILE", "")
}

// columnsAligned checks that every line of a table starts each header
// column's value at the header's offset.
func columnsAligned(t *testing.T, table string, cols ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	for _, c := range cols {
		at := strings.Index(lines[0], c)
		if at < 0 {
			t.Fatalf("header %q lacks %q", lines[0], c)
		}
		for _, l := range lines[1:] {
			if len(l) <= at || l[at] == ' ' || (at > 0 && l[at-1] != ' ') {
				t.Errorf("column %s not aligned at %d in %q", c, at, l)
			}
		}
	}
}

func TestCtlCommands(t *testing.T) {
	clearCtlEnv(t)
	h := startTCP(t, false)
	flags := []string{"--admin", h.base, "--token-file", h.cfg.TokenFile}
	ctl := func(args ...string) ctlResult { return runCtl(append(flags, args...)...) }

	r := ctl("status")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("status: %+v", r)
	}
	for _, want := range []string{
		"palisade     1.4.2 (commit 0123456789ab, go1.26.8)\n",
		"uptime       1d 2h 3m 4s (since 2026-11-25T08:00:00Z)\n",
		"config       /etc/palisade/palisade.yaml (sha256 5f1c0d1e2a3b)\n",
		"last reload  ok at 2026-11-25T09:00:00Z\n",
		"synflood     attached to eth0 (native), packets: drop_deny 17, drop_rate 5120, pass 912345\n",
		"vrrp         VI_1 MASTER on eth0 vrid 51, priority 150, vips 198.18.0.10/24\n",
		"web       http  :80,:443      open       42     1234567  941.9MiB  11.5GiB  123\n",
		"db        tcp   0.0.0.0:6379  NO SERVER  0",
		"app      up      roundrobin  2/4 available\n",
		"redis    DOWN    first       0/1 available\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.stdout)
		}
	}

	r = ctl("backends")
	if r.code != 0 {
		t.Fatalf("backends: %+v", r)
	}
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) != 6 || !regexp.MustCompile(`^BACKEND +SERVER +STATE +HEALTH +WEIGHT +CONNS +TOTAL +LAST CHECK$`).MatchString(lines[0]) {
		t.Fatalf("backends table:\n%s", r.stdout)
	}
	columnsAligned(t, r.stdout, "SERVER", "STATE", "HEALTH", "WEIGHT", "CONNS", "TOTAL", "LAST CHECK")
	for i, want := range []string{
		`^app +web1 +ready +up +100 +17 +512000 +http check passed: 200 OK in 3ms$`,
		`^app +web2 +ready +up +50/100 +9 +498000 +http check passed`,
		`^app +web3 +ready +down +100 +0 +0 +http check failed: connect: connection refused after 1ms \(3 of 3\)$`,
		`^app +spare \(backup\) +maint +unknown +100 +0 +0 +-$`,
		`^redis +r1 +drain +down +1 +0 +0 +redis_master: role:slave$`,
	} {
		if !regexp.MustCompile(want).MatchString(lines[i+1]) {
			t.Errorf("row %d %q does not match %s", i+1, lines[i+1], want)
		}
	}
	r = ctl("backends", "redis")
	if r.code != 0 || strings.Count(r.stdout, "\n") != 2 || !strings.Contains(r.stdout, "redis    r1") {
		t.Errorf("backends redis: %+v", r)
	}

	// mutations print the server's new line
	for _, c := range []struct {
		args []string
		row  string
	}{
		{[]string{"drain", "app/web1"}, `^app +web1 +drain +up +100 `},
		{[]string{"maint", "app/web1"}, `^app +web1 +maint +up +100 `},
		{[]string{"ready", "app/web1"}, `^app +web1 +ready +up +100 `},
		{[]string{"weight", "app/web2", "20"}, `^app +web2 +ready +up +20 +9 `},
	} {
		r := ctl(c.args...)
		lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
		if r.code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "BACKEND") || !regexp.MustCompile(c.row).MatchString(lines[1]) {
			t.Errorf("%v: %+v", c.args, r)
		}
	}
	if b, _ := h.fd.Backend("app"); b.Servers[0].State != "ready" || b.Servers[1].Weight != 20 {
		t.Errorf("daemon state after ctl: %+v %+v", b.Servers[0], b.Servers[1])
	}

	r = ctl("reload")
	if r.code != 0 || r.stdout != "ok\n" || r.stderr != "" {
		t.Errorf("reload: %+v", r)
	}
	h.fd.setReloadErr(config.Errors{
		{File: "/etc/palisade/palisade.yaml", Pos: config.Pos{Line: 5, Col: 22}, Msg: `backend "nope" is not defined`},
		{File: "/etc/palisade/palisade.yaml", Pos: config.Pos{Line: 9, Col: 3}, Msg: `unknown key "colour"`},
	})
	r = ctl("reload")
	want := "reload failed; the previous config is still running:\n" +
		"  /etc/palisade/palisade.yaml:5:22: backend \"nope\" is not defined\n" +
		"  /etc/palisade/palisade.yaml:9:3: unknown key \"colour\"\n"
	if r.code != 1 || r.stdout != "" || r.stderr != want {
		t.Errorf("invalid reload: %+v", r)
	}
}

func TestCtlErrors(t *testing.T) {
	clearCtlEnv(t)
	h := startTCP(t, false)
	wrong := writeToken(t, t.TempDir(), "wrong-token-0123456789")
	cases := []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"unknown server", []string{"--admin", h.base, "--token-file", h.cfg.TokenFile, "drain", "app/nope"}, 1,
			`palisade ctl: 404 Not Found: server "nope" in backend "app": not found` + "\n"},
		{"unknown backend", []string{"--admin", h.base, "--token-file", h.cfg.TokenFile, "backends", "nope"}, 1,
			`404 Not Found: backend "nope": not found`},
		{"weight out of range", []string{"--admin", h.base, "--token-file", h.cfg.TokenFile, "weight", "app/web1", "999"}, 1,
			"400 Bad Request: invalid request: weight 999 is out of range 0..256"},
		{"no token", []string{"--admin", h.base, "status"}, 1,
			"401 Unauthorized: missing bearer token (give the token with --token-file or PALISADE_TOKEN_FILE)"},
		{"wrong token", []string{"--admin", h.base, "--token-file", wrong, "status"}, 1, "403 Forbidden: wrong token"},
		{"missing token file", []string{"--admin", h.base, "--token-file", "/nonexistent/token", "status"}, 1, "token file:"},
		{"refused", []string{"--admin", "http://" + freeAddr(t), "status"}, 1, "cannot reach the admin API at http://127.0.0.1:"},
		{"refused unix", []string{"--admin", "unix:" + filepath.Join(t.TempDir(), "none.sock"), "reload"}, 1, "cannot reach the admin API at unix:"},
		{"bad url", []string{"--admin", "ftp://x", "status"}, 1, `--admin "ftp://x": want http://host:port`},
		{"no command", []string{"--admin", h.base}, 2, "usage: palisade ctl"},
		{"unknown command", []string{"--admin", h.base, "restart"}, 2, `unknown command "restart"`},
		{"missing argument", []string{"drain"}, 2, "drain takes 1 argument(s), got 0"},
		{"not B/S", []string{"maint", "app"}, 2, `want BACKEND/SERVER, got "app"`},
		{"empty server", []string{"ready", "app/"}, 2, `want BACKEND/SERVER, got "app/"`},
		{"weight not a number", []string{"weight", "app/web1", "ten"}, 2, `weight "ten" is not a whole number`},
		{"unknown flag", []string{"--colour", "status"}, 2, "flag provided but not defined"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runCtl(c.args...)
			if r.code != c.code || !strings.Contains(r.stderr, c.err) || r.stdout != "" {
				t.Errorf("got %+v, want exit %d and %q", r, c.code, c.err)
			}
		})
	}
	if b, _ := h.fd.Backend("app"); b.Servers[0].Weight != 100 {
		t.Error("a failed command changed the daemon")
	}
	if r := runCtl("--help"); r.code != 0 || !strings.Contains(r.stdout, "weight B/S N") {
		t.Errorf("--help: %+v", r)
	}
}

func TestCtlEnvAndUnixSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "admin.sock")
	h := newHarness(t)
	if err := h.srv.Apply(config.Admin{Listen: "unix:" + sock}); err != nil {
		t.Fatal(err)
	}
	// the socket needs no token; PALISADE_ADMIN names it
	t.Setenv("PALISADE_ADMIN", "unix:"+sock)
	t.Setenv("PALISADE_TOKEN_FILE", "")
	r := runCtl("drain", "redis/r1")
	if r.code != 0 || !regexp.MustCompile(`\nredis +r1 +drain `).MatchString(r.stdout) {
		t.Fatalf("drain over the socket: %+v", r)
	}
	if _, callers := h.fd.calls(); len(callers) != 1 || callers[0] != fmt.Sprintf("unix uid=%d pid=%d", os.Getuid(), os.Getpid()) {
		t.Errorf("callers %v", callers)
	}
	if !strings.Contains(h.logs.String(), fmt.Sprintf(`by="unix uid=%d pid=%d"`, os.Getuid(), os.Getpid())) {
		t.Errorf("the change is not logged with the peer:\n%s", h.logs.String())
	}

	// TCP with the token file from the environment; --admin wins over the environment
	tcp := startTCP(t, false)
	t.Setenv("PALISADE_TOKEN_FILE", tcp.cfg.TokenFile)
	if r := runCtl("--admin", tcp.base, "reload"); r.code != 0 || r.stdout != "ok\n" {
		t.Errorf("reload with the env token: %+v", r)
	}
	t.Setenv("PALISADE_ADMIN", tcp.base)
	if r := runCtl("backends"); r.code != 0 || !strings.Contains(r.stdout, "web1") {
		t.Errorf("backends with env admin and token: %+v", r)
	}
	// a bare host:port is taken as http
	if r := runCtl("--admin", strings.TrimPrefix(tcp.base, "http://"), "status"); r.code != 0 {
		t.Errorf("bare host:port: %+v", r)
	}
}
