package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
)

const netnsChildEnv = "PALISADE_BENCH_NETNS_CHILD" // the congestion control the child sets

// netnsChild runs in a child of TestNetnsCongestionControl, in a new network
// namespace: it sets the congestion control and checks it, and that loopback
// carries a connection.
func netnsChild(cc string) int {
	if err := setupNetns(cc); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		fmt.Fprintf(os.Stderr, "loopback in the new namespace: %v\n", err)
		return 1
	}
	defer c.Close()
	fmt.Printf("%s\n", congestionControl())
	return 0
}

// TestNetnsCongestionControl: -cc's namespace gets the congestion control
// asked for, and the host's stays as it was.
func TestNetnsCongestionControl(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("-cc needs root (a new network namespace); CI runs as root")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("no unshare (util-linux)")
	}
	host := congestionControl()
	avail, err := os.ReadFile("/proc/sys/net/ipv4/tcp_available_congestion_control")
	if err != nil {
		t.Fatal(err)
	}
	want := ""
	for _, cc := range strings.Fields(string(avail)) {
		if cc != host {
			want = cc
			break
		}
	}
	if want == "" {
		t.Skipf("only %q is available: nothing to change to", host)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "--net", "--", exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), netnsChildEnv+"="+want)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != want {
		t.Errorf("child's congestion control %q, want %q", got, want)
	}
	if now := congestionControl(); now != host {
		t.Errorf("host's congestion control changed from %q to %q", host, now)
	}
}
