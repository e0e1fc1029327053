package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// netnsEnv marks the bench process re-executed by -cc inside its own network
// namespace.
const netnsEnv = "PALISADE_BENCH_NETNS"

// inPrivateNetns reports whether this process is the one -cc re-executed.
func inPrivateNetns() bool { return os.Getenv(netnsEnv) == "1" }

// reexecInNetns runs this bench again, with the same arguments, in a new
// network namespace (unshare --net) where -cc then sets the TCP congestion
// control: the host's own setting, a per-namespace sysctl, is left alone, and
// every connection of the bench stays on that namespace's loopback. It
// returns the child's exit code.
func reexecInNetns() int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench-tcp: -cc: %v\n", err)
		return 2
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench-tcp: -cc needs unshare (util-linux): %v\n", err)
		return 2
	}
	cmd := exec.Command(unshare, append([]string{"--net", "--", self}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "bench-tcp: -cc: running in a new network namespace (needs root): %v\n", err)
		return 2
	}
	return 0
}

const ccSysctl = "/proc/sys/net/ipv4/tcp_congestion_control"

// setupNetns brings up the new namespace's loopback and sets its TCP
// congestion control to cc.
func setupNetns(cc string) error {
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		return fmt.Errorf("ip link set lo up: %v: %s", err, out)
	}
	if err := os.WriteFile(ccSysctl, []byte(cc), 0o644); err != nil {
		avail, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_available_congestion_control")
		return fmt.Errorf("setting TCP congestion control %q (available: %s): %w", cc, strings.TrimSpace(string(avail)), err)
	}
	if got := congestionControl(); got != cc {
		return fmt.Errorf("TCP congestion control is %q after setting %q", got, cc)
	}
	return nil
}

// congestionControl is the TCP congestion control new sockets get here.
func congestionControl() string {
	b, err := os.ReadFile(ccSysctl)
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}
