// Command idlemem measures the RSS an idle HTTP keep-alive client connection
// costs in palisade and in HAProxy (mode http), side by side: each proxy
// serves N clients one request each (from one Go backend), the clients stay
// connected, and the growth of the proxy's VmRSS is divided by N.
//
//	go run ./test/bench/http/idlemem -palisade bin/palisade -n 4000
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func main() {
	bin := flag.String("palisade", "bin/palisade", "palisade binary")
	n := flag.Int("n", 4000, "idle client connections per proxy (each also holds a client fd here)")
	flag.Parse()
	be, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	go http.Serve(be, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	dir, err := os.MkdirTemp("", "palisade-idlemem-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)

	results := map[string]float64{}
	for _, who := range []string{"palisade", "haproxy"} {
		addr := freeAddr()
		var cmd *exec.Cmd
		if who == "palisade" {
			conf := filepath.Join(dir, "p.yaml")
			os.WriteFile(conf, []byte(fmt.Sprintf("global: {log: {level: warn}}\nfrontends:\n  - {name: web, mode: http, listen: [%q], default_backend: app}\nbackends:\n  - name: app\n    health: {type: none}\n    servers: [{name: s1, address: %q}]\n", addr, be.Addr())), 0o644)
			cmd = exec.Command(*bin, "run", "-c", conf)
		} else {
			hp, err := exec.LookPath("haproxy")
			if err != nil {
				hp = "/usr/sbin/haproxy"
			}
			conf := filepath.Join(dir, "h.cfg")
			os.WriteFile(conf, []byte(fmt.Sprintf("global\n  maxconn %d\ndefaults\n  mode http\n  timeout connect 3s\n  timeout client 60s\n  timeout server 60s\n  timeout http-keep-alive 60s\nfrontend web\n  bind %s\n  default_backend app\nbackend app\n  server s1 %s\n", *n+100, addr, be.Addr())), 0o644)
			cmd = exec.Command(hp, "-f", conf, "-db")
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			fail(err)
		}
		per, err := measure(cmd.Process.Pid, addr, *n)
		cmd.Process.Kill()
		cmd.Wait()
		if err != nil {
			fail(fmt.Errorf("%s: %w", who, err))
		}
		results[who] = per
	}
	fmt.Printf("| %d idle HTTP keep-alive connections | palisade | HAProxy | palisade / HAProxy |\n|---|---:|---:|---:|\n", *n)
	fmt.Printf("| RSS growth per connection | %.1f KiB | %.1f KiB | %.2f |\n", results["palisade"], results["haproxy"], results["palisade"]/results["haproxy"])
}

// measure opens n keep-alive connections through the proxy at addr, one
// request each, and returns the proxy's RSS growth per connection in KiB.
func measure(pid int, addr string, n int) (float64, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("proxy not listening on %s: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	one := func() (net.Conn, error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return nil, err
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			c.Close()
			return nil, err
		}
		io.ReadAll(resp.Body)
		return c, nil
	}
	// warm up: pools, the first server connection
	if c, err := one(); err == nil {
		c.Close()
	} else {
		return 0, err
	}
	before := rss(pid)
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := one()
		if err != nil {
			return 0, err
		}
		conns = append(conns, c)
	}
	return float64(rss(pid)-before) / float64(n), nil
}

func rss(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "VmRSS:" {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	return 0
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "idlemem:", err)
	os.Exit(1)
}
