package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/palisade-lb/palisade/vip"
	"golang.org/x/sys/unix"
)

// nodeEnv carries a NodeSpec (JSON) to a re-executed binary.
const nodeEnv = "PALISADE_VRRP_TEST_NODE"

// NodeSpec is what a node process runs: a palisade VRRP instance (unless
// ServeOnly) and a TCP server on the VIP answering Name.
type NodeSpec struct {
	Name      string
	ServeOnly bool
	// Instances run under one vip.Manager; the test server listens on
	// every VIP (and on VIP when there are none).
	Instances []vip.InstanceConfig
}

// MaybeRunNode runs a node and exits if this process was started as one.
// Call it first in TestMain or main.
func MaybeRunNode() {
	js := os.Getenv(nodeEnv)
	if js == "" {
		return
	}
	var spec NodeSpec
	if err := json.Unmarshal([]byte(js), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "node spec:", err)
		os.Exit(2)
	}
	if err := runNode(spec); err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runNode(spec NodeSpec) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))

	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_FREEBIND, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	addrs := []netip.Addr{VIP.Addr()}
	if len(spec.Instances) > 0 {
		addrs = nil
		for _, c := range spec.Instances {
			for _, p := range c.VIPs {
				addrs = append(addrs, p.Addr())
			}
		}
	}
	for _, a := range addrs {
		ln, err := lc.Listen(ctx, "tcp4", netip.AddrPortFrom(a, ServicePort).String())
		if err != nil {
			return err
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte(spec.Name + "\n"))
				c.Close()
			}
		}()
	}
	fmt.Println("READY")
	if spec.ServeOnly {
		<-ctx.Done()
		return nil
	}
	var mu sync.Mutex
	m := vip.NewManager(vip.ManagerOptions{
		Logger: log.With("node", spec.Name),
		OnStateChange: func(s vip.InstanceStatus) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Printf("STATE %s %s %d\n", s.Name, s.State, s.EffectivePriority)
		},
	})
	if err := m.Apply(ctx, spec.Instances); err != nil {
		return err
	}
	// SIGUSR1/SIGUSR2 play the daemon reporting frontend "web" down/up.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	for {
		select {
		case s := <-sigs:
			m.SetFrontendHealth("web", s == syscall.SIGUSR2)
		case <-ctx.Done():
			stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return m.Stop(stopCtx)
		}
	}
}

// SetFrontend reports the palisade node's frontend "web" healthy or not.
func (n *Node) SetFrontend(ok bool) error {
	sig := syscall.SIGUSR1
	if ok {
		sig = syscall.SIGUSR2
	}
	return n.procs[0].Process.Signal(sig)
}

// WaitState waits up to d for a palisade node to report state.
func (n *Node) WaitState(state string, d time.Duration) bool {
	return WaitFor(d, func() bool { return n.State() == state })
}

// Node is a process running in a node namespace: a palisade node or a
// keepalived plus its test server.
type Node struct {
	Name  string
	Index int
	Kind  string // "palisade" or "keepalived"

	procs []*exec.Cmd
	logs  []string

	mu     sync.Mutex
	state  string
	states []string
	at     []time.Time
	byInst map[string]string
	ready  chan struct{}
}

// Palisade starts a palisade node in node i's namespace with inst (its
// Interface is set to eth0).
func (t *Topology) Palisade(i int, name string, inst vip.InstanceConfig) (*Node, error) {
	return t.PalisadeMulti(i, name, []vip.InstanceConfig{inst})
}

// PalisadeMulti starts a palisade node running several instances (their
// Interface is set to eth0).
func (t *Topology) PalisadeMulti(i int, name string, insts []vip.InstanceConfig) (*Node, error) {
	insts = slices.Clone(insts)
	for j := range insts {
		insts[j].Interface = "eth0"
		if len(insts[j].VIPs) == 0 {
			insts[j].VIPs = []netip.Prefix{VIP}
		}
	}
	n := &Node{Name: name, Index: i, Kind: "palisade", ready: make(chan struct{}), byInst: map[string]string{}}
	if err := t.startSelf(n, NodeSpec{Name: name, Instances: insts}); err != nil {
		return nil, err
	}
	return n, nil
}

// KeepalivedSpec is the subset of keepalived settings the tests vary.
type KeepalivedSpec struct {
	VRID           uint8
	Priority       uint8
	AdvertInterval time.Duration
	Preempt        bool
}

// Keepalived starts keepalived (vrrp_version 3) in node i's namespace plus
// a test server answering name on the VIP.
func (t *Topology) Keepalived(i int, name string, k KeepalivedSpec) (*Node, error) {
	bin, err := exec.LookPath("keepalived")
	if err != nil {
		return nil, fmt.Errorf("keepalived not installed: %w", err)
	}
	n := &Node{Name: name, Index: i, Kind: "keepalived", ready: make(chan struct{})}
	if err := t.startSelf(n, NodeSpec{Name: name, ServeOnly: true}); err != nil {
		return nil, err
	}
	dir := filepath.Join(t.Dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	preempt := ""
	if !k.Preempt {
		preempt = "  nopreempt\n"
	}
	conf := fmt.Sprintf(`global_defs {
  vrrp_version 3
  router_id %s
  vrrp_garp_master_refresh 60
}
vrrp_instance %s {
  state BACKUP
  interface eth0
  virtual_router_id %d
  priority %d
  advert_int %s
%s  virtual_ipaddress {
    %s dev eth0
  }
}
`, name, name, k.VRID, k.Priority, strconv.FormatFloat(k.AdvertInterval.Seconds(), 'f', -1, 64), preempt, VIP)
	cf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	logf := filepath.Join(dir, "keepalived.log")
	lf, err := os.Create(logf)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	cmd := exec.Command("ip", "netns", "exec", t.NodeNS(i), bin, "-n", "-l", "-D", "-P",
		"-f", cf, "-p", filepath.Join(dir, "keepalived.pid"), "-r", filepath.Join(dir, "vrrp.pid"))
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n.procs = append(n.procs, cmd)
	n.logs = append(n.logs, logf)
	vrrpPid := filepath.Join(dir, "vrrp.pid")
	t.onClose(func() { n.killKeepalivedChild(vrrpPid) })
	t.onClose(func() { n.Kill() })
	go cmd.Wait()
	return n, nil
}

// startSelf re-executes this binary as a node in node n's namespace.
func (t *Topology) startSelf(n *Node, spec NodeSpec) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	js, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	logf := filepath.Join(t.Dir, fmt.Sprintf("%s-%d.log", spec.Name, time.Now().UnixNano()))
	lf, err := os.Create(logf)
	if err != nil {
		return err
	}
	defer lf.Close()
	cmd := exec.Command("ip", "netns", "exec", t.NodeNS(n.Index), self, "-test.run=^$")
	cmd.Env = append(os.Environ(), nodeEnv+"="+string(js))
	cmd.Stderr = lf
	// Killing the harness (even with SIGKILL) must not leave nodes behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	n.procs = append(n.procs, cmd)
	n.logs = append(n.logs, logf)
	t.onClose(func() { n.Kill() })
	go n.readStates(out)
	go cmd.Wait()
	select {
	case <-n.ready:
		return nil
	case <-time.After(10 * time.Second):
		n.Kill()
		return fmt.Errorf("node %s did not start; log:\n%s", spec.Name, n.Logs())
	}
}

func (n *Node) readStates(r io.Reader) {
	sc := bufio.NewScanner(r)
	readyOnce := sync.OnceFunc(func() { close(n.ready) })
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 1 && f[0] == "READY":
			readyOnce()
		case len(f) >= 3 && f[0] == "STATE":
			n.mu.Lock()
			n.byInst[f[1]] = f[2]
			n.state = f[2]
			n.states = append(n.states, f[2])
			n.at = append(n.at, time.Now())
			n.mu.Unlock()
		}
	}
}

// State is the last state a palisade node reported, of any instance ("" before any).
func (n *Node) State() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state
}

// StateOf is the last state instance reported ("" before any).
func (n *Node) StateOf(instance string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.byInst[instance]
}

// States is every state a palisade node reported, in order.
func (n *Node) States() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.states...)
}

// StateSince returns when the node last reported state (zero if never).
func (n *Node) StateSince(state string) time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := len(n.states) - 1; i >= 0; i-- {
		if n.states[i] == state {
			return n.at[i]
		}
	}
	return time.Time{}
}

// Kill sends SIGKILL to every process of the node (keepalived: the VRRP
// child first, so that no process of it can send a priority-0 advert).
func (n *Node) Kill() {
	for _, p := range n.procs {
		if p.Process != nil {
			// ip netns exec execs the target, so the pid is the node itself.
			_ = p.Process.Signal(syscall.SIGKILL)
		}
	}
}

func (n *Node) killKeepalivedChild(pidFile string) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// Crash kills the node with SIGKILL the way a crash would: keepalived's
// VRRP child, then every process.
func (n *Node) Crash(t *Topology) {
	if n.Kind == "keepalived" {
		n.killKeepalivedChild(filepath.Join(t.Dir, n.Name, "vrrp.pid"))
	}
	n.Kill()
}

// Stop stops the node gracefully (SIGTERM) and waits up to d for its
// processes to exit.
func (n *Node) Stop(d time.Duration) error {
	for _, p := range n.procs {
		if p.Process != nil {
			_ = p.Process.Signal(syscall.SIGTERM)
		}
	}
	ok := WaitFor(d, func() bool {
		for _, p := range n.procs {
			if p.Process != nil && syscall.Kill(p.Process.Pid, 0) == nil && !isZombie(p.Process.Pid) {
				return false
			}
		}
		return true
	})
	if !ok {
		return fmt.Errorf("node %s did not stop within %v", n.Name, d)
	}
	return nil
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z'
	}
	return false
}

// Logs returns the node's log files' contents (last 8 KiB each).
func (n *Node) Logs() string {
	var b strings.Builder
	for _, f := range n.logs {
		data, _ := os.ReadFile(f)
		if len(data) > 8192 {
			data = data[len(data)-8192:]
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", filepath.Base(f), data)
	}
	return b.String()
}
