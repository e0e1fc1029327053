// Package e2e runs the palisade binary as users do: commands, signals,
// and the kernel's view of its data path.
package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-lb/palisade/internal/testutil"
)

var bin string

func TestMain(m *testing.M) {
	if name := os.Getenv("PALISADE_E2E_BANNER"); name != "" {
		runBanner(name, os.Getenv("PALISADE_E2E_LISTEN"))
		return
	}
	dir, err := os.MkdirTemp("", "palisade-e2e-")
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "palisade")
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/palisade").CombinedOutput()
	if err != nil {
		fmt.Printf("building palisade: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runBanner is a server process (run inside a namespace) that greets every
// connection with its name: the client of a VIP sees which node answered.
func runBanner(name, listen string) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		_, _ = io.WriteString(c, name+"\n")
		_ = c.Close()
	}
}

func freeAddr(t *testing.T) string { return testutil.FreeAddr(t) }

// echoServer answers "name\n" then echoes; it closes at test end.
func echoServer(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.WriteString(c, name+"\n")
				_, _ = io.Copy(c, c)
				_ = c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return ln.Addr().String()
}

func hello(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	s, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(s), err
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type proc struct {
	cmd  *exec.Cmd
	out  *bytes.Buffer
	mu   *sync.Mutex
	done chan struct{} // closed when the process has exited; err is then set
	err  error
}

func (p *proc) start(t *testing.T) {
	t.Helper()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.done = make(chan struct{})
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
}

func (p *proc) output() string { p.mu.Lock(); defer p.mu.Unlock(); return p.out.String() }

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(b)
}

func startPalisade(t *testing.T, cfg string, args ...string) *proc {
	t.Helper()
	p := &proc{out: &bytes.Buffer{}, mu: &sync.Mutex{}}
	p.cmd = exec.Command(bin, append([]string{"run", "-c", cfg}, args...)...)
	w := lockedWriter{p.mu, p.out}
	p.cmd.Stdout, p.cmd.Stderr = w, w
	p.start(t)
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
		if t.Failed() {
			t.Logf("palisade output:\n%s", p.output())
		}
	})
	return p
}

func (p *proc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		t.Fatalf("palisade did not exit within %v", d)
		return nil
	}
}

func config(listen, server string) string {
	return fmt.Sprintf(`global: {grace: 3s, log: {level: info, format: json}}
frontends:
  - {name: fe, listen: [%q], default_backend: be}
backends:
  - name: be
    health: {type: tcp, interval: 100ms, timeout: 80ms, rise: 1, fall: 1}
    servers: [{name: s, address: %q}]
`, listen, server)
}

func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte(config("127.0.0.1:1234", "127.0.0.1:1")), 0o644)
	os.WriteFile(bad, []byte("frontends:\n  - name: x\n    listen: [\":80\"]\n    default_backend: nope\n    bogus: 1\n"), 0o644)
	out, err := exec.Command(bin, "check", "-c", good).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("check good: %v %s", err, out)
	}
	out, err = exec.Command(bin, "check", "-c", bad).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("check bad: exit %v, want 1", err)
	}
	want := bad + ":4:22: backend \"nope\" is not defined\n" + bad + ":5:5: unknown key \"bogus\" in frontend"
	if !strings.HasPrefix(string(out), want) {
		t.Fatalf("check bad printed:\n%s\nwant prefix:\n%s", out, want)
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !regexp.MustCompile(`^palisade \S+ \(commit \S+, go1\.\d+`).Match(out) {
		t.Fatalf("version: %v %q", err, out)
	}
}

// TestSignals: SIGHUP reloads (a valid file switches backends; an invalid
// one is refused and the old config serves on), SIGTERM drains and exits 0.
func TestSignals(t *testing.T) {
	a, b := echoServer(t, "a"), echoServer(t, "b")
	listen := freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(cfg, []byte(config(listen, a)), 0o644)
	p := startPalisade(t, cfg)
	waitFor(t, "serving a", 10*time.Second, func() bool { s, _ := hello(listen); return s == "a" })

	os.WriteFile(cfg, []byte(config(listen, b)), 0o644)
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "serving b after SIGHUP", 10*time.Second, func() bool { s, _ := hello(listen); return s == "b" })

	os.WriteFile(cfg, []byte("frontends: [oops"), 0o644)
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "reload failure logged", 10*time.Second, func() bool {
		return strings.Contains(p.output(), "reload failed; still running the previous config")
	})
	if !strings.Contains(p.output(), "p.yaml:1:1: invalid YAML") {
		t.Errorf("error without position in log")
	}
	if s, err := hello(listen); s != "b" {
		t.Fatalf("after invalid reload: %q %v", s, err)
	}

	// an open connection holds the stop until it closes
	c, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	waitFor(t, "listener closed", 5*time.Second, func() bool { _, err := hello(listen); return err != nil })
	select {
	case <-p.done:
		t.Fatalf("exited (%v) with a connection open", p.err)
	default:
	}
	c.Close()
	if err := p.wait(t, 5*time.Second); err != nil {
		t.Fatalf("exit status: %v", err)
	}
}

// TestSplicePath proves bytes move through splice(2): under strace, a
// 64 MiB transfer through palisade makes splice calls and almost no
// read/write calls.
func TestSplicePath(t *testing.T) {
	if _, err := exec.LookPath("strace"); err != nil {
		t.Skip("strace not installed (make test installs it as root)")
	}
	const size = 64 << 20
	srv, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		c, err := srv.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 1<<20)
		for sent := 0; sent < size; sent += len(buf) {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	listen := freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(cfg, []byte(strings.Replace(config(listen, srv.Addr().String()), "type: tcp,", "type: none,", 1)), 0o644)
	stats := filepath.Join(t.TempDir(), "strace.txt")
	p := &proc{out: &bytes.Buffer{}, mu: &sync.Mutex{}}
	p.cmd = exec.Command("strace", "-f", "-c", "-o", stats, "-e", "trace=splice,read,write,recvfrom,sendto,recvmsg,sendmsg", bin, "run", "-c", cfg)
	p.cmd.Stdout, p.cmd.Stderr = lockedWriter{p.mu, p.out}, lockedWriter{p.mu, p.out}
	p.start(t)
	child := func() int { // palisade, traced by strace
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p.cmd.Process.Pid, p.cmd.Process.Pid))
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return pid
	}
	t.Cleanup(func() {
		if pid := child(); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	var c net.Conn
	waitFor(t, "palisade listening", 20*time.Second, func() bool {
		c, err = net.DialTimeout("tcp", listen, time.Second)
		return err == nil
	})
	n, err := io.Copy(io.Discard, c)
	c.Close()
	if err != nil || n != size {
		t.Fatalf("received %d bytes (%v)", n, err)
	}
	pid := child()
	if pid <= 0 {
		t.Fatal("palisade process not found under strace")
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if err := p.wait(t, 20*time.Second); err != nil {
		t.Logf("exit: %v", err)
	}
	b, err := os.ReadFile(stats)
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 {
			if n, err := strconv.Atoi(f[3]); err == nil {
				calls[f[len(f)-1]] = n
			}
		}
	}
	t.Logf("syscalls for a 64 MiB transfer: %v", calls)
	if calls["splice"] < 2 {
		t.Fatalf("no splice calls: %v\n%s", calls, b)
	}
	// copying 64 MiB through user space would take thousands of reads and writes
	if rw := calls["read"] + calls["write"] + calls["recvfrom"] + calls["sendto"]; rw > 200 {
		t.Fatalf("%d read/write calls: bytes went through user space (%v)", rw, calls)
	}
}
