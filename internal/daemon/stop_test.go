package daemon

import (
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"
)

// TestStoppedBackendUnderLoad: under a steady stream of new connections
// (one GET each), a backend is frozen with SIGSTOP and later killed with
// SIGKILL. No client request may fail: requests caught by the frozen server
// are retried elsewhere after the server timeout, passive checks take it
// out after max_fails, and the active check marks it down within
// interval × fall (plus one check timeout). The server timeout (1 s) leaves
// the healthy server room to answer when the machine is loaded: at 300 ms it
// sometimes timed out too under two CPU hogs and -race, and passive checks
// took it out as well.
func TestStoppedBackendUnderLoad(t *testing.T) {
	victim, vaddr := startProcessBackend(t, "PALISADE_TEST_HTTP_BACKEND=victim")
	_, oaddr := startProcessBackend(t, "PALISADE_TEST_HTTP_BACKEND=other")
	listen := freeAddr(t)
	path := tempConfig(t)
	const interval, fall = 200 * time.Millisecond, 2
	writeConfig(t, path, fmt.Sprintf(`
global: {log: {level: warn}}
frontends:
  - {name: web, mode: http, listen: [%q], default_backend: app, timeouts: {server: 1s}}
backends:
  - name: app
    retries: 2
    health: {type: http, path: /, interval: %s, timeout: 150ms, rise: 2, fall: %d, passive: {max_fails: 2, window: 5s}}
    servers: [{name: victim, address: %q}, {name: other, address: %q}]
`, listen, interval, fall, vaddr, oaddr))
	r := startDaemon(t, path)
	waitFor(t, "both up", 5*time.Second, func() bool { v, _ := r.d.Backend("app"); return v.ActiveServers == 2 })

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	ld := startLoad(4, 5000, getOK(client, "http://"+listen+"/"))
	ld.waitMore(t, "load running", 100)
	if err := victim.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	var downAfter time.Duration
	waitFor(t, "victim marked down", 5*time.Second, func() bool {
		v, _ := r.d.Backend("app")
		if v.Servers[0].Health == "down" {
			downAfter = time.Since(stopped)
			return true
		}
		return false
	})
	ld.waitMore(t, "load while frozen", 200)
	_ = victim.Process.Signal(syscall.SIGKILL)
	ld.waitMore(t, "load after kill", 200)
	all, failed := ld.finish()
	// + one check timeout + scheduling slack (the suite also runs on 2 busy cores)
	limit := interval*fall + 150*time.Millisecond + 500*time.Millisecond
	t.Logf("%d requests, %d failed; victim marked down %v after SIGSTOP (interval × fall = %v)", len(all), len(failed), downAfter, interval*fall)
	if len(failed) > 0 {
		t.Fatalf("%d client requests failed; first: %v", len(failed), failed[0])
	}
	if downAfter > limit {
		t.Fatalf("marked down after %v, later than interval × fall + timeout (%v)", downAfter, limit)
	}
}
