package bpf

import (
	"bytes"
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
		returned := false
		defer func() {
			if !returned { // fn called t.FailNow: this thread stays locked and dies
				errc <- errors.New("function did not return")
			}
		}()
		fn()
		returned = true
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
	if os.Getenv("SYNFLOOD_CHILD_EXPECT") == "permission" {
		_, err := Load(Config{Ports: []uint16{80}})
		switch {
		case err == nil:
			t.Fatal("Load succeeded without privileges")
		case !errors.Is(err, ErrPermission):
			t.Fatalf("error does not wrap ErrPermission: %v", err)
		}
		t.Logf("child: unprivileged Load: %v", err)
		return
	}
	needRoot(t)
	cmd := nobodyCmd(t, "TestLoadWithoutPrivileges", "permission")
	err := cmd.Run()
	checkChild(t, cmd.Stdout.(*bytes.Buffer).Bytes(), err)
}

func checkChild(t *testing.T, out []byte, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("child as nobody: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "child: ") {
		t.Fatalf("child did not run the check:\n%s", out)
	}
	t.Logf("%s", out)
}

// TestLoadWithCapabilities: as nobody with CAP_BPF, CAP_NET_ADMIN and
// CAP_PERFMON (the BPF part of what the systemd unit grants) the program
// loads, attaches and runs; without CAP_PERFMON Load fails with
// ErrPermission (the verifier forbids variable packet offsets).
func TestLoadWithCapabilities(t *testing.T) {
	if os.Getenv("SYNFLOOD_CHILD_EXPECT") == "permission-no-perfmon" {
		_, err := Load(Config{Ports: []uint16{80}})
		if !errors.Is(err, ErrPermission) {
			t.Fatalf("Load without CAP_PERFMON: want ErrPermission, got %v", err)
		}
		t.Logf("child: without CAP_PERFMON: %v", err)
		return
	}
	if strings.HasPrefix(os.Getenv("SYNFLOOD_CHILD_EXPECT"), "ok:") {
		f, err := Load(Config{Mode: FilterSyncookie, PerSource: Limit{Rate: frozen, Burst: 1}, Ports: []uint16{80}})
		if err != nil {
			t.Fatalf("Load with CAP_BPF+CAP_NET_ADMIN+CAP_PERFMON: %v", err)
		}
		defer f.Close()
		expect(t, f, syn("198.18.1.1", 80), xdpPass, "stamp SYN")
		expect(t, f, syn("198.18.1.1", 80), xdpDrop, "over the limit")
		// The parent started this process inside the test namespace.
		if err = f.Attach("v0", XDPNative); err != nil {
			t.Fatalf("Attach with CAP_BPF+CAP_NET_ADMIN+CAP_PERFMON: %v", err)
		}
		t.Logf("child: loaded and attached (%s) with CAP_BPF+CAP_NET_ADMIN+CAP_PERFMON", f.Mode())
		return
	}
	ns := testNetns(t)
	// Started from a thread inside ns, the child inherits it and needs no
	// CAP_SYS_ADMIN for setns (which would imply CAP_BPF and CAP_PERFMON).
	var cmd *exec.Cmd
	var out []byte
	var err error
	inNetns(t, ns, func() {
		cmd = nobodyCmd(t, "TestLoadWithCapabilities", "ok:"+ns, 39 /* CAP_BPF */, 12 /* CAP_NET_ADMIN */, 38 /* CAP_PERFMON */)
		err = cmd.Start()
	})
	if err == nil {
		err = cmd.Wait()
	}
	out = cmd.Stdout.(*bytes.Buffer).Bytes()
	checkChild(t, out, err)

	cmd = nobodyCmd(t, "TestLoadWithCapabilities", "permission-no-perfmon", 39, 12)
	err = cmd.Run()
	checkChild(t, cmd.Stdout.(*bytes.Buffer).Bytes(), err)
}

// nobodyCmd prepares a re-execution of the test binary as uid 65534 with
// the given ambient capabilities, running only test name, which sees
// expect in SYNFLOOD_CHILD_EXPECT. Output goes to a *bytes.Buffer.
func nobodyCmd(t *testing.T, name, expect string, caps ...uintptr) *exec.Cmd {
	t.Helper()
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
	cmd := exec.Command(bin, "-test.run=^"+name+"$", "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SYNFLOOD_CHILD_EXPECT="+expect, "GOCOVERDIR="+dir)
	cmd.SysProcAttr = unprivileged(caps...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	return cmd
}
