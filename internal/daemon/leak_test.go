package daemon

import (
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// TestNoFileOutlivesTheDaemon: after traffic, reloads and a stop, the
// process has the same open files as before (goroutines are checked for the
// whole package by goleak in TestMain).
func TestNoFileOutlivesTheDaemon(t *testing.T) {
	b := startBackend(t, "a")
	listen := freeAddr(t)
	path := tempConfig(t)
	writeConfig(t, path, tcpConfig(listen, map[string]string{"a": b.addr}, "", ""))
	before := openFDs(t)
	r := startDaemon(t, path)
	waitFor(t, "server up", 5*time.Second, func() bool { v, _ := r.d.Backend("be"); return v.ActiveServers == 1 })
	for i := 0; i < 50; i++ {
		if _, err := exchange(listen, "x"); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			if err := r.d.Reload(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	// splice pipes are pooled by the runtime and closed when a GC empties the pool
	waitFor(t, "files closed", 5*time.Second, func() bool { runtime.GC(); return openFDs(t) <= before })
}

func TestThreadsSetting(t *testing.T) {
	if os.Getenv("GOMAXPROCS") != "" {
		t.Skip("GOMAXPROCS set in the environment")
	}
	b := startBackend(t, "a")
	listen := freeAddr(t)
	path := tempConfig(t)
	cfg := tcpConfig(listen, map[string]string{"a": b.addr}, "", "")
	writeConfig(t, path, strings.Replace(cfg, "global: {", "global: {threads: 1, ", 1))
	before := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(before)
	r := startDaemon(t, path)
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Fatalf("threads: 1 gave GOMAXPROCS %d", got)
	}
	writeConfig(t, path, cfg)
	if err := r.d.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Fatalf("threads: 0 after reload gave GOMAXPROCS %d, want the default %d", got, before)
	}
}
