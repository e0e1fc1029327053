package daemon

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

type redisProc struct {
	addr string
	cmd  *exec.Cmd
}

func startRedis(t *testing.T, args ...string) *redisProc {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed (make test installs it as root)")
	}
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	cmd := exec.Command(bin, append([]string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--daemonize", "no", "--loglevel", "warning"}, args...)...)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitFor(t, "redis up", 10*time.Second, func() bool { _, err := redisDo(addr, "PING"); return err == nil })
	return &redisProc{addr: addr, cmd: cmd}
}

// redisDo sends inline commands on one connection and returns the replies
// (bulk strings as their contents, errors with their "-" prefix).
func redisDo(addr string, cmds ...string) ([]string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, strings.Join(cmds, "\r\n")+"\r\n"); err != nil {
		return nil, err
	}
	r := bufio.NewReader(c)
	var out []string
	for range cmds {
		line, err := r.ReadString('\n')
		if err != nil {
			return out, err
		}
		line = strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(line, "$") {
			n, _ := strconv.Atoi(line[1:])
			buf := make([]byte, n+2)
			if _, err := io.ReadFull(r, buf); err != nil {
				return out, err
			}
			line = string(buf[:n])
		}
		out = append(out, line)
	}
	return out, nil
}

// TestRedisMasterFailover: writes through a redis_master backend go to the
// primary; after promoting the replica and demoting the old primary, new
// connections reach the new primary within interval*rise + interval, and no
// write is ever acknowledged by a replica.
func TestRedisMasterFailover(t *testing.T) {
	a := startRedis(t)
	b := startRedis(t, "--replicaof", strings.Replace(a.addr, ":", " ", 1))
	listen := freeAddr(t)
	path := tempConfig(t)
	const interval, rise = 200 * time.Millisecond, 2
	writeConfig(t, path, fmt.Sprintf(`
global: {log: {level: warn}}
frontends: [{name: redis, listen: [%q], default_backend: redis}]
backends:
  - name: redis
    balance: first
    health: {type: redis_master, interval: %s, timeout: 150ms, rise: %d, fall: 1}
    servers: [{name: a, address: %q}, {name: b, address: %q}]
`, listen, interval, rise, a.addr, b.addr))
	r := startDaemon(t, path)
	waitFor(t, "a up, b down", 5*time.Second, func() bool {
		v, _ := r.d.Backend("redis")
		return v.Servers[0].Health == "up" && v.Servers[1].Health == "down"
	})
	// writes reach the primary
	for i := 0; i < 20; i++ {
		rep, err := redisDo(listen, "SET k"+strconv.Itoa(i)+" v", "INFO replication")
		if err != nil || rep[0] != "+OK" || !strings.Contains(rep[1], "role:master") {
			t.Fatalf("write %d: %q %v", i, rep, err)
		}
	}
	// writers run through the failover; every acknowledged write must have
	// been answered by a master
	var acked, refused, violations atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 100000; i++ { // bounded
			select {
			case <-stop:
				return
			default:
			}
			rep, err := redisDo(listen, "INFO replication", "SET w"+strconv.Itoa(i)+" v", "INFO replication")
			if err != nil || len(rep) != 3 {
				refused.Add(1)
				continue
			}
			if rep[1] == "+OK" {
				acked.Add(1)
				if !strings.Contains(rep[0], "role:master") || !strings.Contains(rep[2], "role:master") {
					violations.Add(1)
				}
			} else {
				refused.Add(1)
			}
		}
	}()
	waitFor(t, "writes flowing", 5*time.Second, func() bool { return acked.Load() > 10 })

	_, bport, _ := net.SplitHostPort(b.addr)
	if rep, err := redisDo(b.addr, "REPLICAOF NO ONE"); err != nil || rep[0] != "+OK" {
		t.Fatalf("promote: %q %v", rep, err)
	}
	if rep, err := redisDo(a.addr, "REPLICAOF 127.0.0.1 "+bport); err != nil || rep[0] != "+OK" {
		t.Fatalf("demote: %q %v", rep, err)
	}
	switched := time.Now()
	var took time.Duration
	waitFor(t, "new connections reach the new primary", 5*time.Second, func() bool {
		rep, err := redisDo(listen, "INFO replication", "SET after v")
		if err == nil && len(rep) == 2 && strings.Contains(rep[0], "role:master") && rep[1] == "+OK" {
			v, _ := r.d.Backend("redis")
			if v.Servers[1].Health == "up" {
				took = time.Since(switched)
				return true
			}
		}
		return false
	})
	close(stop)
	<-done
	limit := interval*rise + interval + 200*time.Millisecond // + one check's timeout and scheduling slack
	t.Logf("failover seen after %v (limit %v); %d writes acknowledged, %d refused, %d acknowledged by a replica",
		took, limit, acked.Load(), refused.Load(), violations.Load())
	if violations.Load() > 0 {
		t.Fatalf("%d writes acknowledged while talking to a replica", violations.Load())
	}
	if took > limit {
		t.Fatalf("failover took %v, more than interval*rise + interval (%v)", took, limit)
	}
}
