package admin

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/palisade-lb/palisade/internal/config"
	"github.com/palisade-lb/palisade/internal/daemon"
)

// TestCtlAgainstRunningDaemon runs a real daemon with the admin API wired the
// way `palisade run` wires it, and drives it with `palisade ctl`.
func TestCtlAgainstRunningDaemon(t *testing.T) {
	clearCtlEnv(t)
	// a backend that accepts and closes: enough for tcp health checks
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var bwg sync.WaitGroup
	bwg.Add(1)
	go func() {
		defer bwg.Done()
		for {
			c, err := bln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { bln.Close(); bwg.Wait() })

	dir := t.TempDir()
	tokFile := writeToken(t, dir, testToken)
	path := filepath.Join(dir, "palisade.yaml")
	adminAddr, feAddr := freeAddr(t), freeAddr(t)
	good := fmt.Sprintf(`global:
  grace: 1s
  log: {level: warn}
  admin:
    listen: %q
    token_file: %q
frontends:
  - name: fe
    listen: [%q]
    default_backend: be
backends:
  - name: be
    health: {type: tcp, interval: 50ms, timeout: 40ms, rise: 1, fall: 1}
    servers:
      - {name: s1, address: %q}
      - {name: s2, address: %q, weight: 10}
`, adminAddr, tokFile, feAddr, bln.Addr().String(), bln.Addr().String())
	if err := os.WriteFile(path, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}

	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	reg := prometheus.NewRegistry()
	var srv *Server
	d, err := daemon.New(daemon.Options{ConfigPath: path, Log: log, Registry: reg, Version: "9.9.9", Commit: "abc",
		OnConfig: func(c *config.Config) error { return srv.Apply(c.Global.Admin) }})
	if err != nil {
		t.Fatal(err)
	}
	srv = New(d, reg, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		srv.Close()
	})
	waitFor(t, "servers up", 10*time.Second, func() bool {
		b, err := d.Backend("be")
		return err == nil && b.ActiveServers == 2
	})
	if got := srv.Addr(); got == nil || got.String() != adminAddr {
		t.Fatalf("admin API on %v, want %s", got, adminAddr)
	}
	flags := []string{"--admin", "http://" + adminAddr, "--token-file", tokFile}
	ctl := func(args ...string) ctlResult { return runCtl(append(flags, args...)...) }

	r := ctl("status")
	if r.code != 0 || !strings.Contains(r.stdout, "palisade     9.9.9 (commit abc") ||
		!strings.Contains(r.stdout, "config       "+path) || !strings.Contains(r.stdout, "last reload  ok at") ||
		!regexp.MustCompile(`\nfe +tcp +`+regexp.QuoteMeta(feAddr)+` +open `).MatchString(r.stdout) ||
		!regexp.MustCompile(`\nbe +up +roundrobin +2/2 available`).MatchString(r.stdout) {
		t.Errorf("status: %+v", r)
	}
	r = ctl("backends")
	if r.code != 0 || !regexp.MustCompile(`\nbe +s1 +ready +up +\d+ `).MatchString(r.stdout) ||
		!regexp.MustCompile(`\nbe +s2 +ready +up +10 `).MatchString(r.stdout) {
		t.Errorf("backends: %+v", r)
	}

	r = ctl("drain", "be/s1")
	if r.code != 0 || !regexp.MustCompile(`\nbe +s1 +drain `).MatchString(r.stdout) {
		t.Fatalf("drain: %+v", r)
	}
	waitFor(t, "one server available", 5*time.Second, func() bool { b, _ := d.Backend("be"); return b.ActiveServers == 1 })
	if r := ctl("weight", "be/s2", "3"); r.code != 0 || !regexp.MustCompile(`\nbe +s2 +ready +up +3 `).MatchString(r.stdout) {
		t.Errorf("weight: %+v", r)
	}
	if r := ctl("ready", "be/s1"); r.code != 0 || !regexp.MustCompile(`\nbe +s1 +ready `).MatchString(r.stdout) {
		t.Errorf("ready: %+v", r)
	}
	if r := ctl("maint", "be/nope"); r.code != 1 || !strings.Contains(r.stderr, `404 Not Found: server "nope" in backend "be"`) {
		t.Errorf("unknown server: %+v", r)
	}
	if !strings.Contains(logs.String(), "admin API: server changed") {
		t.Error("mutations not logged")
	}

	if r := ctl("reload"); r.code != 0 || r.stdout != "ok\n" {
		t.Errorf("reload: %+v", r)
	}
	// an invalid file: 422 with the line-numbered errors, the old config keeps running
	bad := strings.Replace(good, "default_backend: be", "default_backend: nope", 1)
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	r = ctl("reload")
	if r.code != 1 || !regexp.MustCompile(`(?m)^  `+regexp.QuoteMeta(path)+`:\d+:\d+: .*"nope"`).MatchString(r.stderr) {
		t.Errorf("invalid reload: %+v", r)
	}
	if r := ctl("status"); !strings.Contains(r.stdout, "last reload  FAILED") {
		t.Errorf("status after a failed reload: %+v", r)
	}

	// a reload that moves the admin API and rotates the token
	newAddr := freeAddr(t)
	newTok := filepath.Join(dir, "new.token")
	if err := os.WriteFile(newTok, []byte("another-token-0123456789abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	moved := strings.Replace(strings.Replace(good, adminAddr, newAddr, 1), tokFile, newTok, 1)
	if err := os.WriteFile(path, []byte(moved), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := ctl("reload"); r.code != 0 || r.stdout != "ok\n" {
		t.Fatalf("reload moving the API: %+v", r)
	}
	if r := runCtl("--admin", newAddr, "--token-file", newTok, "backends"); r.code != 0 {
		t.Errorf("API at the new address: %+v", r)
	}
	if r := runCtl("--admin", newAddr, "--token-file", tokFile, "backends"); r.code != 1 || !strings.Contains(r.stderr, "403") {
		t.Errorf("old token at the new address: %+v", r)
	}
}
