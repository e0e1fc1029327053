package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-lb/palisade/test/vrrp/harness"
)

// vrrpNode is the real palisade binary on one host of the VRRP topology:
// a tcp frontend on the VIP (bound before the node holds it) in front of a
// banner server on the node, a VRRP instance tracking that frontend.
type vrrpNode struct {
	i      int
	p      *proc
	banner *exec.Cmd
	sock   string
	ns     string
}

func startBannerIn(t *testing.T, ns, name string) *exec.Cmd {
	t.Helper()
	exe, _ := os.Executable()
	cmd := exec.Command("ip", "netns", "exec", ns, exe)
	cmd.Env = append(os.Environ(), "PALISADE_E2E_BANNER="+name, "PALISADE_E2E_LISTEN=127.0.0.1:9000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

func startVRRPNode(t *testing.T, topo *harness.Topology, i, priority int) *vrrpNode {
	t.Helper()
	n := &vrrpNode{i: i, ns: topo.NodeNS(i)}
	n.banner = startBannerIn(t, n.ns, fmt.Sprintf("node-%d", i))
	dir := t.TempDir()
	n.sock = filepath.Join(dir, "admin.sock")
	cfg := filepath.Join(dir, "p.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  grace: 1s
  log: {level: info}
  admin: {listen: "unix:%s"}
frontends: [{name: fe, listen: ["%s:%d"], default_backend: local}]
backends:
  - name: local
    health: {type: tcp, interval: 100ms, timeout: 80ms, rise: 1, fall: 1}
    servers: [{name: banner, address: "127.0.0.1:9000"}]
vrrp:
  instances:
    - name: edge
      interface: eth0
      virtual_router_id: 51
      priority: %d
      advert_interval: 100ms
      vips: [%s]
      track: [{frontend: fe, weight: -150}]
      garp: {repeat: 2, interval: 20ms}
`, n.sock, harness.VIP.Addr(), harness.ServicePort, priority, harness.VIP)), 0o644)
	n.p = startIn(t, n.ns, cfg)
	return n
}

func (n *vrrpNode) state(t *testing.T) string {
	resp, err := unixClient(n.sock).Get("http://admin/api/v1/vrrp")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var v []struct{ State string }
	if json.NewDecoder(resp.Body).Decode(&v) != nil || len(v) != 1 {
		return ""
	}
	return v[0].State
}

// TestVRRPWithTheBinary: two palisade processes share a VIP. The master
// serves through it; when its frontend loses its only server, tracking
// moves the VIP; when it recovers it preempts back; kill -9 of the master
// hands the VIP to the backup, and a graceful stop releases it at once.
func TestVRRPWithTheBinary(t *testing.T) {
	if why := harness.NeedRoot(); why != "" {
		t.Skip(why)
	}
	topo, err := harness.New(2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(topo.Close)
	d, err := topo.ClientDialer()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ask := func() string { s, _ := d.Ask(200 * time.Millisecond); return s }

	n1 := startVRRPNode(t, topo, 1, 200)
	n2 := startVRRPNode(t, topo, 2, 100)
	waitFor(t, "node 1 MASTER, node 2 BACKUP", 15*time.Second, func() bool {
		return n1.state(t) == "MASTER" && n2.state(t) == "BACKUP"
	})
	waitFor(t, "client reaches node 1 through the VIP", 10*time.Second, func() bool { return ask() == "node-1" })

	// tracking: node 1's frontend loses its server -> priority 50 -> node 2 preempts
	_ = n1.banner.Process.Kill()
	_ = n1.banner.Wait()
	waitFor(t, "VIP moved by frontend tracking", 10*time.Second, func() bool { return ask() == "node-2" })
	// node 1 steps down when node 2's first advert as master reaches it,
	// which can be just after the client already reached node 2
	waitFor(t, "node 1 BACKUP after its frontend failed", 2*time.Second, func() bool { return n1.state(t) == "BACKUP" })
	n1.banner = startBannerIn(t, n1.ns, "node-1")
	waitFor(t, "VIP back on node 1 (preempt)", 10*time.Second, func() bool { return ask() == "node-1" })

	// kill -9 of the master
	killed := time.Now()
	_ = n1.p.cmd.Process.Signal(syscall.SIGKILL)
	waitFor(t, "backup serves after kill -9", 10*time.Second, func() bool { return ask() == "node-2" })
	t.Logf("kill -9: client served by the backup after %v", time.Since(killed))
	if topo.HasVIP(1) {
		t.Log("note: the killed node's namespace still lists the VIP (nobody removed it)")
	}

	// graceful stop of the new master: priority-0 advert, node 1 restarted takes over
	n1 = startVRRPNode(t, topo, 1, 200)
	waitFor(t, "node 1 back as MASTER", 15*time.Second, func() bool { return n1.state(t) == "MASTER" && ask() == "node-1" })
	stopAt := time.Now()
	_ = n1.p.cmd.Process.Signal(syscall.SIGTERM)
	waitFor(t, "backup serves after graceful stop", 10*time.Second, func() bool { return ask() == "node-2" })
	took := time.Since(stopAt)
	if err := n1.p.wait(t, 10*time.Second); err != nil {
		t.Fatalf("graceful stop exit: %v", err)
	}
	if topo.HasVIP(1) {
		t.Fatal("stopped node still holds the VIP")
	}
	t.Logf("graceful stop: client served by the backup after %v", took)
}
