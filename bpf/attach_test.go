package bpf

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

// testNetns creates a network namespace with a random name holding an up
// veth pair v0/v1, deleted on cleanup.
func testNetns(t *testing.T) string {
	t.Helper()
	needRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("iproute2 (ip) not installed")
	}
	b := make([]byte, 4)
	rand.Read(b)
	name := "plsf" + hex.EncodeToString(b)
	ipCmd(t, "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	ipCmd(t, "-n", name, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
	ipCmd(t, "-n", name, "link", "set", "v0", "up")
	ipCmd(t, "-n", name, "link", "set", "v1", "up")
	return name
}

func ipCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// inNetns runs fn on an OS thread switched into namespace name. The thread
// is discarded if it cannot be switched back.
func inNetns(t *testing.T, name string, fn func()) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(name)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- err
			return
		}
		fn()
		if err := netns.Set(orig); err != nil {
			errc <- err // thread stays locked and dies with the goroutine
			return
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatalf("netns %s: %v", name, err)
	}
}

// xdpMode returns the XDP mode iproute2 reports on dev: 0 none, 1 native,
// 2 generic.
func xdpMode(t *testing.T, ns, dev string) int {
	t.Helper()
	var links []struct {
		XDP *struct {
			Mode int `json:"mode"`
		} `json:"xdp"`
	}
	if err := json.Unmarshal([]byte(ipCmd(t, "-n", ns, "-d", "-j", "link", "show", "dev", dev)), &links); err != nil || len(links) != 1 {
		t.Fatalf("parsing ip -j link show: %v", err)
	}
	if links[0].XDP == nil {
		return 0
	}
	return links[0].XDP.Mode
}

func TestAttachModes(t *testing.T) {
	ns := testNetns(t)
	f := loadTest(t, Config{Ports: []uint16{80}})
	var err error
	inNetns(t, ns, func() { err = f.Attach("v0", XDPAuto) })
	if err != nil {
		t.Fatalf("Attach auto: %v", err)
	}
	if f.Mode() != XDPNative || xdpMode(t, ns, "v0") != 1 {
		t.Fatalf("auto on veth: Mode() = %q, kernel mode %d; want native", f.Mode(), xdpMode(t, ns, "v0"))
	}
	inNetns(t, ns, func() { err = f.Attach("v0", XDPGeneric) })
	if err != nil {
		t.Fatalf("re-Attach generic: %v", err)
	}
	if st := f.Status(); st != (Status{Attached: true, Interface: "v0", Mode: XDPGeneric}) || xdpMode(t, ns, "v0") != 2 {
		t.Fatalf("generic: status %+v, kernel mode %d", st, xdpMode(t, ns, "v0"))
	}
	// Moving to another interface attaches there before leaving v0.
	inNetns(t, ns, func() { err = f.Attach("v1", XDPNative) })
	if err != nil {
		t.Fatalf("move to v1: %v", err)
	}
	if xdpMode(t, ns, "v0") != 0 || xdpMode(t, ns, "v1") != 1 {
		t.Fatalf("after move: v0 mode %d, v1 mode %d", xdpMode(t, ns, "v0"), xdpMode(t, ns, "v1"))
	}
	if err := f.Detach(); err != nil {
		t.Fatal(err)
	}
	if f.Mode() != "" || xdpMode(t, ns, "v1") != 0 {
		t.Fatalf("after Detach: Mode() = %q, kernel mode %d", f.Mode(), xdpMode(t, ns, "v1"))
	}

	inNetns(t, ns, func() { err = f.Attach("nope0", XDPAuto) })
	if err == nil || errors.Is(err, ErrUnsupported) || errors.Is(err, ErrPermission) {
		t.Fatalf("missing interface: err = %v", err)
	}
	if err := f.Attach("v0", "turbo"); err == nil {
		t.Fatal("accepted xdp mode turbo")
	}

	inNetns(t, ns, func() { err = f.Attach("v0", "") })
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if xdpMode(t, ns, "v0") != 0 {
		t.Fatal("program still attached after Close")
	}
	if _, err := f.Counters(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Counters after Close: %v", err)
	}
	if err := f.Update(Config{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Update after Close: %v", err)
	}
}

// TestLoadWithoutPrivileges re-executes the test binary as nobody: Load
// must fail with an error that wraps ErrPermission.
func TestLoadWithoutPrivileges(t *testing.T) {
	if os.Getenv("SYNFLOOD_UNPRIVILEGED_CHILD") == "1" {
		_, err := Load(Config{Ports: []uint16{80}})
		switch {
		case err == nil:
			t.Fatal("Load succeeded without privileges")
		case !errors.Is(err, ErrPermission):
			t.Fatalf("error does not wrap ErrPermission: %v", err)
		}
		t.Logf("unprivileged Load: %v", err)
		return
	}
	needRoot(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "synflood-unpriv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "bpf.test")
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestLoadWithoutPrivileges$", "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SYNFLOOD_UNPRIVILEGED_CHILD=1", "GOCOVERDIR="+dir)
	cmd.SysProcAttr = unprivileged()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child as nobody: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "unprivileged Load:") {
		t.Fatalf("child did not run the check:\n%s", out)
	}
	t.Logf("%s", out)
}
