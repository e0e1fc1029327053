package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/palisade-lb/palisade/internal/testutil"
)

// proc is one process the bench started, in its own process group so that
// stopping it also stops the children it forked (nginx workers).
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after 5s.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	pg := p.pid()
	_ = syscall.Kill(-pg, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pg, syscall.SIGKILL)
		<-p.done
	}
	// the group may outlive its leader (nginx workers): make sure it is gone
	_ = syscall.Kill(-pg, syscall.SIGKILL)
}

// logTail is the end of the process's output, for error messages.
func (p *proc) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// env owns the work directory and every process of one bench run.
type env struct {
	dir   string
	mu    sync.Mutex
	procs []*proc
}

func newEnv() (*env, error) {
	dir, err := os.MkdirTemp("", "palisade-tcpbench-")
	if err != nil {
		return nil, fmt.Errorf("creating work dir: %w", err)
	}
	// nginx workers run as an unprivileged user and must read the files
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("chmod work dir: %w", err)
	}
	return &env{dir: dir}, nil
}

// start runs name with args on cpus (all CPUs when empty), output to a log
// file in the work dir.
func (e *env) start(name string, cpus []int, bin string, args []string, extraEnv []string) (*proc, error) {
	logPath := filepath.Join(e.dir, name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating log: %w", err)
	}
	defer lf.Close()
	path, argv := command(cpus, bin, args)
	cmd := exec.Command(path, argv...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = append(os.Environ(), extraEnv...)
	// Pdeathsig: if the bench dies without cleaning up, the leader still goes
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	return p, nil
}

// close stops every process (newest first) and removes the work dir.
func (e *env) close(keep bool) {
	e.mu.Lock()
	ps := e.procs
	e.procs = nil
	e.mu.Unlock()
	for i := len(ps) - 1; i >= 0; i-- {
		ps[i].stop()
	}
	if !keep {
		_ = os.RemoveAll(e.dir)
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func freePorts(n int) ([]int, error) {
	seen := map[int]bool{}
	var out []int
	for len(out) < n {
		p, err := freePort()
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

// httpGet does one GET with Connection: close and returns the status line.
func httpGet(addr, path string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n", path); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

// waitHTTP polls GET path on addr until n answers in a row are 200, the
// process dies, or the deadline passes.
func waitHTTP(ctx context.Context, p *proc, addr, path string, n int, deadline time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	ok := 0
	var last string
	for {
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited: %v\n%s", p.name, p.err, p.logTail())
		}
		st, err := httpGet(addr, path)
		if err == nil && strings.Contains(st, " 200") {
			ok++
			if ok >= n {
				return nil
			}
		} else {
			ok = 0
			last = fmt.Sprint(st, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not answering 200 on %s%s within %v (last: %s)", nameOf(p), addr, path, deadline, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitListen polls a TCP connect until it succeeds.
func waitListen(ctx context.Context, p *proc, addr string, deadline time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	for {
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited: %v\n%s", p.name, p.err, p.logTail())
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not listening on %s within %v", nameOf(p), addr, deadline)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func nameOf(p *proc) string {
	if p == nil {
		return "server"
	}
	return p.name
}

// clockTick is USER_HZ, the unit of utime/stime in /proc (100 on every
// Linux architecture Go supports).
const clockTick = 100

// cpuTime is the CPU (user+system) a process has used so far, all threads,
// from /proc/PID/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc/PID/stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// after the command: state(3) ... utime(14) stime(15)
	if len(f) < 13 {
		return 0, errors.New("short /proc/PID/stat")
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed utime/stime")
	}
	return time.Duration(u+s) * time.Second / clockTick, nil
}

// machineCPU is the CPU time the whole machine has spent busy and idle
// (idle + iowait) so far, summed over its CPUs, from /proc/stat.
func machineCPU() (busy, idle time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	// user nice system idle iowait irq softirq steal
	var v [8]uint64
	for i := range v {
		v[i], _ = strconv.ParseUint(f[i+1], 10, 64)
	}
	tick := func(n uint64) time.Duration { return time.Duration(n) * time.Second / clockTick }
	return tick(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]), tick(v[3] + v[4])
}

// tcpOutSegs is the machine's count of TCP segments sent (Tcp OutSegs in
// /proc/net/snmp), 0 if unreadable.
func tcpOutSegs() int64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0
	}
	return int64(testutil.ProcNetCounters(string(b), "Tcp")["OutSegs"])
}

// ctxSwitches sums voluntary and involuntary context switches over the
// threads a process has now.
func ctxSwitches(pid int) int64 {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range ents {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, e.Name()))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "voluntary_ctxt_switches:"); ok {
				x, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += x
			} else if v, ok := strings.CutPrefix(l, "nonvoluntary_ctxt_switches:"); ok {
				x, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += x
			}
		}
	}
	return n
}

// statusKB reads one "Key: N kB" line of /proc/PID/status.
func statusKB(pid int, key string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("%s not in /proc/%d/status", key, pid)
}

// meminfoKB reads one "Key: N kB" line of /proc/meminfo.
func meminfoKB(key string) (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("%s not in /proc/meminfo", key)
}

// slabInUse is the kernel's slab memory in objects in use, in bytes per
// cache: active objects times object size, from /proc/slabinfo. Unlike
// meminfo's Slab it leaves out freed objects that the caches keep, which a
// later run reuses: with Slab, whichever proxy is measured first looks more
// costly. Reading slabinfo needs root.
func slabInUse() (map[string]int64, error) {
	b, err := os.ReadFile("/proc/slabinfo")
	if err != nil {
		return nil, err
	}
	m := map[string]int64{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 4 || strings.HasPrefix(f[0], "#") || f[0] == "slabinfo" {
			continue
		}
		active, err1 := strconv.ParseInt(f[1], 10, 64)
		size, err2 := strconv.ParseInt(f[3], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("/proc/slabinfo line %q", l)
		}
		m[f[0]] += active * size
	}
	return m, nil
}

// tcpAlloc is the kernel's count of allocated TCP sockets (/proc/net/sockstat).
func tcpAlloc() (int64, error) {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(l, "TCP:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		for i := 0; i+1 < len(f); i += 2 {
			if f[i] == "alloc" {
				return strconv.ParseInt(f[i+1], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no TCP alloc in /proc/net/sockstat")
}

// waitSocketsSettle waits, up to d, until the count of allocated TCP sockets
// has not moved for half a second: the sockets of a run just ended are freed
// before the next run's kernel memory is read.
func waitSocketsSettle(ctx context.Context, d time.Duration) {
	prev, err := tcpAlloc()
	if err != nil {
		return
	}
	deadline := time.Now().Add(d)
	for still := 0; still < 5 && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
		n, err := tcpAlloc()
		if err != nil {
			return
		}
		if n == prev {
			still++
		} else {
			still, prev = 0, n
		}
	}
}

// slabGrowth is what grew between two slabInUse readings, in bytes, by cache.
func slabGrowth(before, after map[string]int64) map[string]int64 {
	g := map[string]int64{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			g[k] = d
		}
	}
	for k, v := range before {
		if _, ok := after[k]; !ok {
			g[k] = -v
		}
	}
	return g
}

// fdCount is the number of open file descriptors of a process.
func fdCount(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// threadCount is the number of threads of a process.
func threadCount(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// nofileLimit reads the "Max open files" soft limit from /proc/PID/limits.
func nofileLimit(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Max open files") {
			f := strings.Fields(l)
			if len(f) >= 5 {
				return f[3] + "/" + f[4]
			}
		}
	}
	return "?"
}

// nofileSoft is the soft RLIMIT_NOFILE of a process (0 if unknown).
func nofileSoft(pid int) int {
	s, _, _ := strings.Cut(nofileLimit(pid), "/")
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0
	}
	return n
}

// raiseNofile raises this process's RLIMIT_NOFILE (soft and hard) to want,
// or as far as allowed; processes started afterwards inherit it.
func raiseNofile(want uint64) (uint64, error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, err
	}
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && want > n {
			want = n
		}
	}
	if r.Max < want {
		nr := syscall.Rlimit{Cur: want, Max: want}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &nr); err == nil {
			return want, nil
		}
	}
	// not allowed to raise the hard limit: raise the soft one to it
	r.Cur = min(r.Max, want)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, err
	}
	return r.Cur, nil
}
