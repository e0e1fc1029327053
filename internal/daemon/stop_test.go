package daemon

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestStoppedBackendUnderLoad: under a steady stream of new connections
// (one GET each), a backend is frozen with SIGSTOP and later killed with
// SIGKILL. No client request may fail: requests caught by the frozen server
// are retried elsewhere after the server timeout, passive checks take it
// out after max_fails, and the active check marks it down within
// interval × fall (plus one check timeout).
func TestStoppedBackendUnderLoad(t *testing.T) {
	victim, vaddr := startProcessBackend(t, "PALISADE_TEST_HTTP_BACKEND=victim")
	_, oaddr := startProcessBackend(t, "PALISADE_TEST_HTTP_BACKEND=other")
	listen := freeAddr(t)
	path := tempConfig(t)
	const interval, fall = 200 * time.Millisecond, 2
	writeConfig(t, path, fmt.Sprintf(`
global: {log: {level: warn}}
frontends:
  - {name: web, mode: http, listen: [%q], default_backend: app, timeouts: {server: 300ms}}
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
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5000; i++ { // bounded
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get("http://" + listen + "/")
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	waitFor(t, "load running", 5*time.Second, func() bool { return ok.Load() > 100 })
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
	n := ok.Load()
	waitFor(t, "load while frozen", 10*time.Second, func() bool { return ok.Load() > n+200 })
	_ = victim.Process.Signal(syscall.SIGKILL)
	n = ok.Load()
	waitFor(t, "load after kill", 10*time.Second, func() bool { return ok.Load() > n+200 })
	close(stop)
	wg.Wait()
	limit := interval*fall + 150*time.Millisecond + 100*time.Millisecond // + one check timeout + scheduling slack
	t.Logf("%d requests, %d failed; victim marked down %v after SIGSTOP (interval × fall = %v)", ok.Load(), failed.Load(), downAfter, interval*fall)
	if failed.Load() > 0 {
		t.Fatalf("%d client requests failed; first: %v", failed.Load(), firstErr.Load())
	}
	if downAfter > limit {
		t.Fatalf("marked down after %v, later than interval × fall + timeout (%v)", downAfter, limit)
	}
}
