package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDrainOverAPI: `palisade ctl drain` stops new connections to a server
// while its open connection finishes; `ctl ready` brings it back.
func TestDrainOverAPI(t *testing.T) {
	a, b := echoServer(t, "a"), echoServer(t, "b")
	listen, adminAddr := freeAddr(t), freeAddr(t)
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("e2e-token-0123456789abcdef\n"), 0o600)
	cfg := filepath.Join(dir, "p.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  log: {level: info}
  admin: {listen: %q, token_file: %q}
frontends: [{name: fe, listen: [%q], default_backend: be}]
backends:
  - name: be
    health: {type: tcp, interval: 100ms, timeout: 80ms, rise: 1, fall: 1}
    servers: [{name: a, address: %q}, {name: b, address: %q}]
`, adminAddr, token, listen, a, b)), 0o644)
	startPalisade(t, cfg)
	ctl := func(args ...string) (string, error) {
		out, err := exec.Command(bin, append([]string{"ctl", "--admin", "http://" + adminAddr, "--token-file", token}, args...)...).CombinedOutput()
		return string(out), err
	}
	waitFor(t, "both servers up", 10*time.Second, func() bool {
		out, err := ctl("backends")
		return err == nil && strings.Count(out, " up ") == 2
	})
	// an open connection on a
	var open net.Conn
	var openR *bufio.Reader
	for i := 0; i < 4 && open == nil; i++ {
		c, err := net.Dial("tcp", listen)
		if err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(c)
		if name, _ := r.ReadString('\n'); name == "a\n" {
			open, openR = c, r
		} else {
			c.Close()
		}
	}
	if open == nil {
		t.Fatal("no connection landed on a")
	}
	defer open.Close()
	if out, err := ctl("drain", "be/a"); err != nil || !strings.Contains(out, "drain") {
		t.Fatalf("ctl drain: %v %s", err, out)
	}
	for i := 0; i < 20; i++ {
		if s, err := hello(listen); err != nil || s != "b" {
			t.Fatalf("new connection %d with a drained: %q %v", i, s, err)
		}
	}
	if _, err := io.WriteString(open, "still"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(openR, buf); err != nil || string(buf) != "still" {
		t.Fatalf("drained server's open connection: %q %v", buf, err)
	}
	// the API says so too
	req, _ := http.NewRequest("GET", "http://"+adminAddr+"/api/v1/backends/be", nil)
	req.Header.Set("Authorization", "Bearer e2e-token-0123456789abcdef")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"name":"a"`) || !strings.Contains(string(body), `"state":"drain"`) {
		t.Fatalf("backend view: %s", body)
	}
	if out, err := ctl("ready", "be/a"); err != nil {
		t.Fatalf("ctl ready: %v %s", err, out)
	}
	seen := map[string]bool{}
	for i := 0; i < 10; i++ {
		s, _ := hello(listen)
		seen[s] = true
	}
	if !seen["a"] || !seen["b"] {
		t.Fatalf("after ready: %v", seen)
	}
	// metrics through the API
	req, _ = http.NewRequest("GET", "http://"+adminAddr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer e2e-token-0123456789abcdef")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{`palisade_server_state{backend="be",server="a",state="ready"} 1`, `palisade_server_up{backend="be",server="b"} 1`,
		`palisade_frontend_connections_total{frontend="fe"}`, `palisade_build_info{`, `palisade_config_last_reload_successful 1`,
		`palisade_server_check_duration_seconds_bucket{backend="be",server="a"`, `palisade_backend_active_servers{backend="be"} 2`} {
		if !strings.Contains(string(body), m) {
			t.Errorf("metrics lack %s", m)
		}
	}
}
