package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2")
	}
}

func ipCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// twoHosts makes two namespaces joined by a veth pair, named with a random
// prefix and deleted at cleanup: host a is 198.18.200.1/24 on link la, host b
// 198.18.200.2/24 on link lb.
func twoHosts(t *testing.T) (prefix string) {
	t.Helper()
	var r [3]byte
	_, _ = rand.Read(r[:])
	prefix = "pe" + hex.EncodeToString(r[:])
	a, b := prefix+"a", prefix+"b"
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", a).Run()
		_ = exec.Command("ip", "netns", "del", b).Run()
	})
	ipCmd(t, "netns", "add", a)
	ipCmd(t, "netns", "add", b)
	ipCmd(t, "link", "add", prefix+"la", "netns", a, "type", "veth", "peer", "name", prefix+"lb", "netns", b)
	ipCmd(t, "-n", a, "addr", "add", "198.18.200.1/24", "dev", prefix+"la")
	ipCmd(t, "-n", b, "addr", "add", "198.18.200.2/24", "dev", prefix+"lb")
	for _, ns := range []string{a, b} {
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	}
	ipCmd(t, "-n", a, "link", "set", prefix+"la", "up")
	ipCmd(t, "-n", b, "link", "set", prefix+"lb", "up")
	return prefix
}

func unixClient(sock string) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}}
}

type synStatus struct {
	Synflood struct {
		Enabled   bool   `json:"enabled"`
		Attached  bool   `json:"attached"`
		Interface string `json:"interface"`
		Mode      string `json:"mode"`
		Error     string `json:"error"`
	} `json:"synflood"`
}

func status(t *testing.T, c *http.Client) (synStatus, error) {
	var st synStatus
	resp, err := c.Get("http://admin/api/v1/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return st, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return st, json.Unmarshal(b, &st)
}

// TestSynfloodLifecycle runs palisade in a namespace with the XDP filter on
// its link: attached at start, detached when a reload disables it, attached
// again, detached at stop; a missing interface is one clear error unless
// synflood.required.
func TestSynfloodLifecycle(t *testing.T) {
	needRoot(t)
	prefix := twoHosts(t)
	dir := t.TempDir()
	sock := dir + "/admin.sock"
	cfgPath := dir + "/p.yaml"
	cfg := func(enabled bool, iface string, required bool) string {
		return fmt.Sprintf(`global:
  log: {level: info}
  admin: {listen: "unix:%s"}
frontends: [{name: fe, listen: ["198.18.200.1:8080"], default_backend: be}]
backends: [{name: be, health: {type: none}, servers: [{name: s, address: "198.18.200.1:9"}]}]
synflood: {enabled: %v, required: %v, interface: %s, xdp_mode: auto, per_source: {syn_rate: 50/s, burst: 100}}
`, sock, enabled, required, iface)
	}
	xdpOn := func() bool {
		return strings.Contains(ipCmd(t, "-n", prefix+"a", "link", "show", prefix+"la"), "xdp")
	}
	os.WriteFile(cfgPath, []byte(cfg(true, prefix+"la", true)), 0o644)
	p := startIn(t, prefix+"a", cfgPath)
	c := unixClient(sock)
	var st synStatus
	waitFor(t, "filter attached", 20*time.Second, func() bool {
		var err error
		st, err = status(t, c)
		return err == nil && st.Synflood.Attached
	})
	if st.Synflood.Interface != prefix+"la" || (st.Synflood.Mode != "native" && st.Synflood.Mode != "generic") || !xdpOn() {
		t.Fatalf("status %+v, xdp on link: %v", st.Synflood, xdpOn())
	}
	t.Logf("attached in %s mode", st.Synflood.Mode)

	os.WriteFile(cfgPath, []byte(cfg(false, prefix+"la", false)), 0o644)
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "filter detached by reload", 10*time.Second, func() bool {
		st, err := status(t, c)
		return err == nil && !st.Synflood.Attached && !st.Synflood.Enabled && !xdpOn()
	})
	os.WriteFile(cfgPath, []byte(cfg(true, prefix+"la", false)), 0o644)
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "filter attached again", 10*time.Second, func() bool {
		st, err := status(t, c)
		return err == nil && st.Synflood.Attached && xdpOn()
	})
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(t, 15*time.Second); err != nil {
		t.Fatalf("exit: %v", err)
	}
	if xdpOn() {
		t.Fatal("XDP program left attached after stop")
	}

	// not required: a missing interface is logged once, palisade runs on
	os.WriteFile(cfgPath, []byte(cfg(true, "nosuchif0", false)), 0o644)
	p = startIn(t, prefix+"a", cfgPath)
	waitFor(t, "running without the filter", 20*time.Second, func() bool {
		st, err := status(t, c)
		return err == nil && st.Synflood.Enabled && !st.Synflood.Attached && st.Synflood.Error != ""
	})
	if n := strings.Count(p.output(), "synflood filter disabled"); n != 1 {
		t.Fatalf("%d error lines about the filter:\n%s", n, p.output())
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(t, 15*time.Second); err != nil {
		t.Fatalf("exit: %v", err)
	}
	// required: refuses to start
	os.WriteFile(cfgPath, []byte(cfg(true, "nosuchif0", true)), 0o644)
	p = startIn(t, prefix+"a", cfgPath)
	err := p.wait(t, 20*time.Second)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(p.output(), "synflood.required is set") {
		t.Fatalf("required filter on a missing interface: %v\n%s", err, p.output())
	}
}

// startIn runs palisade inside namespace ns.
func startIn(t *testing.T, ns, cfg string) *proc {
	t.Helper()
	p := &proc{out: &bytes.Buffer{}, mu: &sync.Mutex{}}
	p.cmd = exec.Command("ip", "netns", "exec", ns, bin, "run", "-c", cfg)
	w := lockedWriter{p.mu, p.out}
	p.cmd.Stdout, p.cmd.Stderr = w, w
	p.start(t)
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("palisade output:\n%s", p.output())
		}
	})
	return p
}
