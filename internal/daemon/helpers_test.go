package daemon

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/palisade-lb/palisade/internal/testutil"
)

func TestMain(m *testing.M) {
	if os.Getenv("PALISADE_TEST_BACKEND") != "" {
		runBackendProcess()
		return
	}
	if name := os.Getenv("PALISADE_TEST_HTTP_BACKEND"); name != "" {
		runHTTPBackendProcess(name)
		return
	}
	goleak.VerifyTestMain(m)
}

// runBackendProcess is the body of a backend started as a separate process
// (so a test can kill -9 it): it prints its address and serves echoBackend.
func runBackendProcess() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().String())
	serveEcho(ln, os.Getenv("PALISADE_TEST_BACKEND"), nil)
}

// runHTTPBackendProcess serves HTTP, answering its name, as a separate process.
func runHTTPBackendProcess(name string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().String())
	_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, name)
	}))
}

// startProcessBackend runs a backend in a child process (so a test can
// SIGSTOP or kill -9 it); env selects the kind. It is killed at cleanup.
func startProcessBackend(t *testing.T, env string) (*exec.Cmd, string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), env)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return cmd, strings.TrimSpace(line)
}

// serveEcho accepts until ln closes: each connection gets "name\n", then an
// echo of everything it sends; at the client's EOF the echo side closes too.
func serveEcho(ln net.Listener, name string, wg *sync.WaitGroup) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if wg != nil {
			wg.Add(1)
		}
		go func() {
			if wg != nil {
				defer wg.Done()
			}
			defer c.Close()
			if _, err := io.WriteString(c, name+"\n"); err != nil {
				return
			}
			_, _ = io.Copy(c, c)
			_ = c.(*net.TCPConn).CloseWrite()
			_, _ = io.Copy(io.Discard, c)
		}()
	}
}

type backend struct {
	name string
	addr string
	ln   net.Listener
	wg   sync.WaitGroup
}

// startBackend starts an in-process echo backend, stopped at test cleanup.
func startBackend(t *testing.T, name string) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, addr: ln.Addr().String(), ln: ln}
	b.wg.Add(1)
	go func() { defer b.wg.Done(); serveEcho(ln, name, &b.wg) }()
	t.Cleanup(func() { b.stop() })
	return b
}

func (b *backend) stop() {
	_ = b.ln.Close()
	b.wg.Wait()
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string { return testutil.FreeAddr(t) }

func writeConfig(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

type running struct {
	d    *Daemon
	reg  *prometheus.Registry
	path string
	stop func() error
}

// startDaemon runs a daemon on the config at path until the test ends.
func startDaemon(t *testing.T, path string) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ready := make(chan struct{})
	d, err := New(Options{ConfigPath: path, Log: log, Registry: reg, Version: "test",
		Notify: func(s string) {
			if s == "READY=1" {
				select {
				case <-ready:
				default:
					close(ready)
				}
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("daemon did not start: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("daemon not ready after 10s")
	}
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return &running{d: d, reg: reg, path: path, stop: stop}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// exchange connects to addr, reads the backend's name, sends msg, reads
// the echo and closes. It returns the backend name.
func exchange(addr, msg string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	name, err := r.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("reading name: %w", err)
	}
	if _, err := io.WriteString(c, msg); err != nil {
		return "", fmt.Errorf("writing: %w", err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	echo, err := io.ReadAll(r)
	if err != nil {
		return "", fmt.Errorf("reading echo: %w", err)
	}
	if string(echo) != msg {
		return "", fmt.Errorf("echo %q, want %q", echo, msg)
	}
	return strings.TrimSpace(name), nil
}

// waitFor polls cond every few milliseconds until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// metric returns the value of the series name{labels} from the registry (-1 if absent).
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return -1
}

func tempConfig(t *testing.T) string {
	return filepath.Join(t.TempDir(), "palisade.yaml")
}

// load runs fn from several workers, each at most max times, until stop.
// It records every attempt with its start and end time.
type load struct {
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	results []attemptResult
}

type attemptResult struct {
	start, end time.Time
	err        error
}

func startLoad(workers, max int, fn func() error) *load {
	l := &load{stop: make(chan struct{})}
	for w := 0; w < workers; w++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; i < max; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				s := time.Now()
				err := fn()
				l.mu.Lock()
				l.results = append(l.results, attemptResult{s, time.Now(), err})
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// ok counts the successful attempts so far.
func (l *load) ok() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.results {
		if r.err == nil {
			n++
		}
	}
	return n
}

// waitMore waits until n more attempts than now have succeeded.
func (l *load) waitMore(t *testing.T, what string, n int) {
	t.Helper()
	base := l.ok()
	waitFor(t, what, 10*time.Second, func() bool { return l.ok() >= base+n })
}

// finish stops the workers and returns every attempt and the failures.
func (l *load) finish() (all []attemptResult, failed []error) {
	close(l.stop)
	l.wg.Wait()
	for _, r := range l.results {
		if r.err != nil {
			failed = append(failed, r.err)
		}
	}
	return l.results, failed
}

// sortedKeys returns the keys of m in order.
func sortedKeys[M ~map[string]V, V any](m M) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// getOK is a load step: one GET of url, which must answer 200 (the body is
// read to the end).
func getOK(client *http.Client, url string) func() error {
	return func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
}
