package healthcheck

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// redisProc is a redis-server started by a test.
type redisProc struct {
	addr string
	port int
	log  string
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startRedis starts redis-server on a free loopback port with no
// persistence in its own directory, waits until it answers PING and kills it
// at cleanup. A port lost to a race is retried.
func startRedis(t *testing.T, bin string, extra ...string) *redisProc {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port := freePort(t)
		dir := t.TempDir()
		p := &redisProc{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), port: port, log: filepath.Join(dir, "redis.log")}
		args := append([]string{
			"--bind", "127.0.0.1", "--port", strconv.Itoa(port),
			"--save", "", "--appendonly", "no", "--dir", dir,
			"--daemonize", "no", "--logfile", p.log,
		}, extra...)
		cmd := exec.Command(bin, args...)
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting redis-server: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
		})
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-exited:
				logText, _ := os.ReadFile(p.log)
				lastErr = fmt.Errorf("redis-server on port %d exited: %s", port, logText)
			default:
			}
			if lastErr != nil {
				break
			}
			if reply, err := redisCommand(p.addr, "PING"); err == nil && reply == "+PONG" {
				return p
			}
			time.Sleep(5 * time.Millisecond)
		}
		if lastErr == nil {
			t.Fatalf("redis-server on port %d did not answer PING within 10s", port)
		}
	}
	t.Fatalf("starting redis-server: %v", lastErr)
	return nil
}

// redisCommand sends one command and returns the first reply line.
func redisCommand(addr string, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

func mustRedisCommand(t *testing.T, addr string, want string, args ...string) {
	t.Helper()
	got, err := redisCommand(addr, args...)
	if err != nil || !strings.HasPrefix(got, want) {
		t.Fatalf("redis %s %v: got %q, %v; want %q", addr, args, got, err, want)
	}
}

// TestRedisMasterRealFailover runs redis_master checks and schedulers
// against a real primary and replica, then swaps their roles.
func TestRedisMasterRealFailover(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed (bash test/install-deps.sh installs it as root): ", err)
	}
	primary := startRedis(t, bin)
	replica := startRedis(t, bin, "--replicaof", "127.0.0.1", strconv.Itoa(primary.port))

	cp := mustNew(t, Spec{Type: TypeRedisMaster}, primary.addr)
	cr := mustNew(t, Spec{Type: TypeRedisMaster}, replica.addr)
	if r := cp.Check(checkCtx(t, time.Second)); !r.OK || r.Reason != "role:master" {
		t.Fatalf("primary: %+v", r)
	}
	if r := cr.Check(checkCtx(t, time.Second)); r.OK || r.Reason != "role:slave" {
		t.Fatalf("replica: %+v", r)
	}
	// The data path relies on this: a replica refuses writes.
	mustRedisCommand(t, replica.addr, "-READONLY", "SET", "k", "v")
	mustRedisCommand(t, primary.addr, "+OK", "SET", "k", "v")

	// Schedulers on the real clock, as the daemon runs them.
	type server struct {
		name string
		mu   sync.Mutex
		evs  []Event
		s    *Scheduler
	}
	timing := Timing{Interval: 50 * time.Millisecond, Timeout: time.Second, Rise: 2, Fall: 2}
	servers := map[string]*server{"primary": {name: "primary"}, "replica": {name: "replica"}}
	for name, chk := range map[string]Checker{"primary": cp, "replica": cr} {
		srv := servers[name]
		srv.s = NewScheduler(chk, timing, Options{Immediate: true}, func(e Event) {
			srv.mu.Lock()
			srv.evs = append(srv.evs, e)
			srv.mu.Unlock()
			if e.Changed {
				t.Logf("%s: up=%v: %s", srv.name, e.Up, e.Reason)
			}
		})
		runScheduler(t, srv.s.Run)
	}
	waitFor(t, "primary up, replica down", func() bool {
		return servers["primary"].s.State() == StateUp && servers["replica"].s.State() == StateDown
	})

	// Fail over: promote the replica, demote the old primary.
	start := time.Now()
	mustRedisCommand(t, replica.addr, "+OK", "REPLICAOF", "NO", "ONE")
	mustRedisCommand(t, primary.addr, "+OK", "REPLICAOF", "127.0.0.1", strconv.Itoa(replica.port))
	waitFor(t, "roles to flip in the schedulers", func() bool {
		return servers["primary"].s.State() == StateDown && servers["replica"].s.State() == StateUp
	})
	t.Logf("failover seen by the checks after %s (interval %s, rise %d, fall %d)", time.Since(start).Round(time.Millisecond), timing.Interval, timing.Rise, timing.Fall)

	if r := cr.Check(checkCtx(t, time.Second)); !r.OK || r.Reason != "role:master" {
		t.Errorf("promoted replica: %+v", r)
	}
	if r := cp.Check(checkCtx(t, time.Second)); r.OK || r.Reason != "role:slave" {
		t.Errorf("demoted primary: %+v", r)
	}
	mustRedisCommand(t, replica.addr, "+OK", "SET", "k2", "v")
	mustRedisCommand(t, primary.addr, "-READONLY", "SET", "k3", "v")

	for _, srv := range servers {
		srv.mu.Lock()
		var last Event
		for _, e := range srv.evs {
			if e.Changed {
				last = e
			}
		}
		srv.mu.Unlock()
		want := map[string]string{"primary": "2 consecutive failures, last: role:slave", "replica": "2 consecutive successes, last: role:master"}[srv.name]
		if !strings.HasPrefix(last.Reason, want) {
			t.Errorf("%s: last change %q, want prefix %q", srv.name, last.Reason, want)
		}
	}
}
