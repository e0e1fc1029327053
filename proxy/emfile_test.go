package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const emfileChildEnv = "PALISADE_TEST_EMFILE_BACKEND"

// TestAcceptPausesWhenOutOfDescriptors runs the engine in a child process
// whose descriptor limit leaves room for three proxied connections and the
// client side of a fourth. The fourth client is kept while its server
// connection waits for a descriptor (the server is not blamed); further
// clients wait in the backlog while each loop pauses its listener (instead
// of spinning on EMFILE). All are served once descriptors are free again.
func TestAcceptPausesWhenOutOfDescriptors(t *testing.T) {
	if backend := os.Getenv(emfileChildEnv); backend != "" {
		emfileChild(t, backend)
		return
	}
	t.Parallel()
	srv := startServer(t, echo)
	cmd := exec.Command(os.Args[0], "-test.run=^TestAcceptPausesWhenOutOfDescriptors$", "-test.count=1")
	cmd.Env = append(os.Environ(), emfileChildEnv+"="+srv.addr)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	out := bufio.NewReader(stdout)
	addr := strings.TrimPrefix(readLine(t, out), "addr ")

	const clients = 6
	type echoed struct {
		i   int
		err error
	}
	results := make(chan echoed, clients)
	conns := make([]net.Conn, clients)
	start := time.Now()
	for i := range clients {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		defer c.Close()
		conns[i] = c
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := fmt.Fprintf(c, "hello %d\n", i); err != nil {
			t.Fatal(err)
		}
		go func() {
			got, err := bufio.NewReader(c).ReadString('\n')
			if err == nil && got != fmt.Sprintf("hello %d\n", i) {
				err = fmt.Errorf("echo %q", got)
			}
			results <- echoed{i, err}
		}()
	}
	// the child says when a loop has paused: descriptors have run out
	if line := readLine(t, out); line != "paused" {
		t.Fatalf("child: %q, want paused", line)
	}
	// whichever clients got a server are answered; closing them frees
	// descriptors for those still waiting (for a server socket, or in the
	// backlog); none may be reset
	for range clients {
		r := <-results
		if r.err != nil {
			t.Fatalf("client %d: %v", r.i, r.err)
		}
		_ = conns[r.i].Close()
	}
	elapsed := time.Since(start)
	_ = stdin.Close()
	var pauses, fails, total int
	if _, err := fmt.Sscanf(readLine(t, out), "pauses %d fails %d total %d", &pauses, &fails, &total); err != nil {
		t.Fatal(err)
	}
	if fails != 0 {
		t.Errorf("the server was blamed for %d connect failures: descriptors ran out here, not there", fails)
	}
	if total != clients {
		t.Errorf("the server counted %d connections, want %d: a connect postponed for lack of descriptors is one connection", total, clients)
	}
	// one pause per loop per acceptPause at most (a spinning loop would
	// count thousands); slack for the pause in progress when it started
	limit := (int(elapsed/acceptPause) + 2) * runtime.GOMAXPROCS(0) * 2
	t.Logf("%d accept pauses in %v (limit %d)", pauses, elapsed.Round(time.Millisecond), limit)
	if pauses < 1 || pauses > limit {
		t.Fatalf("%d accept pauses, want 1..%d", pauses, limit)
	}
}

func readLine(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	done := make(chan struct{})
	var line string
	var err error
	go func() { defer close(done); line, err = r.ReadString('\n') }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("child process said nothing for 30 s")
	}
	if err != nil {
		t.Fatalf("reading from the child: %v", err)
	}
	return strings.TrimSpace(line)
}

// emfileChild serves the parent's connections with a descriptor limit just
// above what the proxy holds when idle.
func emfileChild(t *testing.T, backend string) {
	srv := newServer("s1", backend)
	p := startProxy(t, FrontendConfig{}, BackendConfig{ConnectTimeout: 20 * time.Second}, srv)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	orig := lim
	// stdin, stdout, stderr, listener, loops, runtime poller...: all open
	// now. Fill the holes below the highest descriptor (new ones take the
	// lowest free number) and leave room for three connections of two each
	// and one more client.
	top := maxFD(t)
	for {
		fd, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = unix.Close(fd) })
		if fd > top {
			top = fd
			break
		}
	}
	lim.Cur = uint64(top) + 1 + 3*2 + 1
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("addr %s\n", p.addr)
	paused := func() bool {
		for _, l := range p.ls.engine.loops {
			if l.pauses.Load() > 0 {
				return true
			}
		}
		return false
	}
	waitFor(t, "an accept pause", 20*time.Second, paused)
	fmt.Println("paused")
	_, _ = io.Copy(io.Discard, os.Stdin)
	var n int64
	for _, l := range p.ls.engine.loops {
		n += l.pauses.Load()
	}
	_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &orig)
	c := srv.Counters()
	fmt.Printf("pauses %d fails %d total %d\n", n, c.ConnectFails, c.Total)
}

// maxFD is the highest open descriptor (new ones take the lowest free number).
func maxFD(t *testing.T) int {
	m := 0
	for fd := range openFDs(t) {
		m = max(m, fd)
	}
	return m
}
