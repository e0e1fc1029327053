package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

type toolPaths struct{ haproxy, nginx, wrk, strace, perf string }

// findTools locates haproxy, nginx and wrk (also in sbin dirs that a
// non-root PATH lacks); strace and perf are optional (-profile only).
func findTools() (toolPaths, error) {
	look := func(name string) string {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		for _, d := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
			p := filepath.Join(d, name)
			if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
				return p
			}
		}
		return ""
	}
	t := toolPaths{haproxy: look("haproxy"), nginx: look("nginx"), wrk: look("wrk"), strace: look("strace"), perf: look("perf")}
	var missing []string
	for n, p := range map[string]string{"haproxy": t.haproxy, "nginx": t.nginx, "wrk": t.wrk} {
		if p == "" {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return t, fmt.Errorf("missing %s: run `sudo bash test/install-deps.sh bench` (installs haproxy, nginx-light, wrk)",
			strings.Join(missing, ", "))
	}
	return t, nil
}

// target is one thing the load generators talk to.
type target struct {
	key   string // palisade, baseline, haproxy, haproxy-splice, direct
	label string
	addr  string   // wrk and single-address bulk
	addrs []string // bulk connections spread over these
	p     *proc    // the proxy; nil for direct
}

// bench is one set-up benchmark: backends, proxies and the idle holder.
type bench struct {
	o          options
	tools      toolPaths
	logf       func(string, ...any)
	env        *env
	nginx      *proc
	hold       *holder
	backend    []string // the two backend addresses
	pal        *target
	base       *target // -baseline; nil without it
	hap        *target
	hapSp      *target
	direct     *target
	palIdle    string // proxy addresses whose backend is the holder
	hapIdle    string
	nofile     uint64
	hapMaxconn int
	info       map[string]string
	noDefer    map[string]bool // palisade builds (by target key) from before defer_accept, run without it
}

func (b *bench) close(keep bool, logf func(string, ...any)) {
	if b.env != nil {
		if keep {
			logf("bench-tcp: work dir kept: %s", b.env.dir)
		}
		b.env.close(keep)
	}
}

// setup writes the configs and starts nginx, palisade and two HAProxies,
// waiting until each serves through to the backends.
func setup(ctx context.Context, o options, tools toolPaths, logf func(string, ...any)) (*bench, error) {
	b := &bench{o: o, tools: tools, logf: logf, info: map[string]string{}, noDefer: map[string]bool{}}
	// 10k idle connections: palisade needs 2 fds per session plus splice
	// pipes; the bench itself holds both ends. Children inherit the limit.
	nofile, err := raiseNofile(1 << 18)
	if err != nil {
		return b, fmt.Errorf("raising RLIMIT_NOFILE: %w", err)
	}
	b.nofile = nofile
	// HAProxy refuses to start when maxconn (plus maxpipes = maxconn/4 for
	// splicing) needs more fds than it may open
	b.hapMaxconn = int(min(60000, (nofile-500)*2/5))
	if b.env, err = newEnv(); err != nil {
		return b, err
	}
	if b.hold, err = b.env.startHolder(ctx); err != nil {
		return b, fmt.Errorf("holder: %w", err)
	}
	ports, err := freePorts(9)
	if err != nil {
		return b, err
	}
	n1, n2, pp, pi, hp, hi, hs, bp, bi := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], ports[6], ports[7], ports[8]
	b.backend = []string{fmt.Sprintf("127.0.0.1:%d", n1), fmt.Sprintf("127.0.0.1:%d", n2)}
	holdAddrs := b.hold.addrs

	// backends: one nginx, one worker, two ports = two servers
	dir := b.env.dir
	www := filepath.Join(dir, "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		return b, err
	}
	for _, d := range []string{"tmp", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return b, err
		}
	}
	if err := os.WriteFile(filepath.Join(www, "small"), []byte("hello, world\n"), 0o644); err != nil {
		return b, err
	}
	if err := writeBig(filepath.Join(www, "big"), int64(o.bigMiB)<<20); err != nil {
		return b, err
	}
	ngConf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(ngConf, []byte(nginxConf(dir, www, n1, n2)), 0o644); err != nil {
		return b, err
	}
	if b.nginx, err = b.env.start("nginx", o.pin.load, tools.nginx, []string{"-p", dir, "-e", filepath.Join(dir, "logs", "error.log"), "-c", ngConf}, nil); err != nil {
		return b, err
	}
	for _, a := range b.backend {
		if err := waitHTTP(ctx, b.nginx, a, "/small", 1, 10*time.Second); err != nil {
			return b, err
		}
	}

	// palisade
	startPalisade := func(name, bin string, port, idlePort int) (*proc, error) {
		cfg := filepath.Join(dir, name+".yaml")
		deferAcc := o.deferAcc
		for {
			if err := os.WriteFile(cfg, []byte(palisadeConf(port, idlePort, b.backend, holdAddrs, deferAcc)), 0o644); err != nil {
				return nil, err
			}
			out, err := exec.CommandContext(ctx, bin, "check", "-c", cfg).CombinedOutput()
			if err == nil {
				break
			}
			if deferAcc && bytes.Contains(out, []byte(`unknown key "defer_accept"`)) {
				// a baseline built before the key: the same config without it
				logf("%s has no defer_accept; it runs without", name)
				b.noDefer[name] = true
				deferAcc = false
				continue
			}
			return nil, fmt.Errorf("%s check -c %s: %v\n%s", bin, cfg, err, out)
		}
		return b.env.start(name, o.pin.proxy, bin, []string{"run", "-c", cfg}, nil)
	}
	palProc, err := startPalisade("palisade", o.palisade, pp, pi)
	if err != nil {
		return b, err
	}
	b.pal = &target{key: "palisade", label: "palisade", addr: fmt.Sprintf("127.0.0.1:%d", pp), p: palProc}
	b.palIdle = fmt.Sprintf("127.0.0.1:%d", pi)
	if o.baseline != "" {
		baseProc, err := startPalisade("baseline", o.baseline, bp, bi)
		if err != nil {
			return b, err
		}
		b.base = &target{key: "baseline", label: "palisade baseline", addr: fmt.Sprintf("127.0.0.1:%d", bp), p: baseProc}
	}

	// HAProxy: splice-auto (the usual config) and explicit splice both ways
	startHAProxy := func(name, splice string, port, idlePort int) (*proc, error) {
		cfg := filepath.Join(dir, name+".cfg")
		if err := os.WriteFile(cfg, []byte(haproxyConf(o.nbthread, b.hapMaxconn, splice, port, idlePort, b.backend, holdAddrs, o.deferAcc)), 0o644); err != nil {
			return nil, err
		}
		if out, err := exec.CommandContext(ctx, tools.haproxy, "-c", "-f", cfg).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("haproxy -c -f %s: %v\n%s", cfg, err, out)
		}
		return b.env.start(name, o.pin.proxy, tools.haproxy, []string{"-f", cfg, "-db"}, nil)
	}
	hapProc, err := startHAProxy("haproxy", "option splice-auto", hp, hi)
	if err != nil {
		return b, err
	}
	b.hap = &target{key: "haproxy", label: "HAProxy (splice-auto)", addr: fmt.Sprintf("127.0.0.1:%d", hp), p: hapProc}
	b.hapIdle = fmt.Sprintf("127.0.0.1:%d", hi)
	hsProc, err := startHAProxy("haproxy-splice", "option splice-request\n  option splice-response", hs, 0)
	if err != nil {
		return b, err
	}
	b.hapSp = &target{key: "haproxy-splice", label: "HAProxy (splice-request/response)", addr: fmt.Sprintf("127.0.0.1:%d", hs), p: hsProc}
	b.direct = &target{key: "direct", label: "direct to nginx", addr: b.backend[0], addrs: b.backend}
	idle := map[string]string{"palisade": b.palIdle, "haproxy": b.hapIdle} // the idle test's frontends
	for _, t := range b.proxies() {
		t.addrs = []string{t.addr}
		// 4 in a row, so both servers of the round robin answer
		if err := waitHTTP(ctx, t.p, t.addr, "/small", 4, 20*time.Second); err != nil {
			return b, err
		}
		if addr, ok := idle[t.key]; ok {
			if err := waitListen(ctx, t.p, addr, 10*time.Second); err != nil {
				return b, err
			}
		}
	}
	b.collectInfo(ctx)
	return b, nil
}

func writeBig(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	chunk := bytes.Repeat([]byte("palisade tcp bench 0123456789abcdefghijklmnopqrstuvwxyz\n"), 1<<14)
	for size > 0 {
		n := min(int64(len(chunk)), size)
		if _, err := f.Write(chunk[:n]); err != nil {
			f.Close()
			return err
		}
		size -= n
	}
	return f.Close()
}

func nginxConf(dir, www string, p1, p2 int) string {
	return fmt.Sprintf(`worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 20000; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000000;
  keepalive_timeout 120s;
  default_type application/octet-stream;
  client_body_temp_path %[1]s/tmp/body;
  proxy_temp_path %[1]s/tmp/proxy;
  fastcgi_temp_path %[1]s/tmp/fastcgi;
  uwsgi_temp_path %[1]s/tmp/uwsgi;
  scgi_temp_path %[1]s/tmp/scgi;
  server {
    listen 127.0.0.1:%[3]d;
    listen 127.0.0.1:%[4]d;
    root %[2]s;
    location / { }
  }
}
`, dir, www, p1, p2)
}

// palisadeConf is the config of the palisade under test: the bench frontend
// (deferring accept when deferAcc) and the idle test's, whose clients stay
// silent.
func palisadeConf(port, idlePort int, backends, hold []string, deferAcc bool) string {
	deferLine := "" // tcp mode's default, and what a build from before the key understands
	if deferAcc {
		deferLine = "    defer_accept: true\n"
	}
	return fmt.Sprintf(`# generated by test/bench/tcp
global:
  grace: 1s
  log: {level: warn, format: text}
defaults:
  timeouts: {connect: 3s, client: 60s, server: 60s}
  retries: 2
  health: {interval: 2s, timeout: 1s, rise: 2, fall: 3}
frontends:
  - name: bench
    mode: tcp
    listen: ["127.0.0.1:%d"]
    access_log: false
%s    default_backend: web
  - name: idle
    mode: tcp
    listen: ["127.0.0.1:%d"]
    access_log: false
    default_backend: hold
backends:
  - name: web
    balance: roundrobin
    health: {type: tcp}
    servers:
      - {name: s1, address: "%s"}
      - {name: s2, address: "%s"}
  - name: hold
    balance: roundrobin
    health: {type: none}
    servers:
      - {name: h1, address: "%s"}
      - {name: h2, address: "%s"}
`, port, deferLine, idlePort, backends[0], backends[1], hold[0], hold[1])
}

// haproxyConf is the HAProxy equivalent of palisadeConf; idlePort 0 leaves
// out the idle frontend.
func haproxyConf(nbthread, maxconn int, splice string, port, idlePort int, backends, hold []string, deferAcc bool) string {
	bindOpt := ""
	if deferAcc {
		bindOpt = " defer-accept"
	}
	s := fmt.Sprintf(`# generated by test/bench/tcp
global
  nbthread %d
  maxconn %d

defaults
  mode tcp
  maxconn %[2]d
  timeout connect 3s
  timeout client 60s
  timeout server 60s
  retries 2
  option redispatch
  %s

frontend bench
  bind 127.0.0.1:%d%s
  default_backend web

backend web
  balance roundrobin
  default-server check inter 2s rise 2 fall 3
  server s1 %s
  server s2 %s
`, nbthread, maxconn, splice, port, bindOpt, backends[0], backends[1])
	if idlePort != 0 {
		s += fmt.Sprintf(`
frontend idle
  bind 127.0.0.1:%d
  default_backend hold

backend hold
  balance roundrobin
  server h1 %s
  server h2 %s
`, idlePort, hold[0], hold[1])
	}
	return s
}

// collectInfo records versions and the machine for the report.
func (b *bench) collectInfo(ctx context.Context) {
	first := func(bin string, args ...string) string {
		out, _ := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		l, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return l
	}
	b.info["haproxy"] = strings.TrimSuffix(strings.Fields(first(b.tools.haproxy, "-v") + " ? ? ?")[2], " ")
	b.info["nginx"] = strings.TrimPrefix(first(b.tools.nginx, "-v"), "nginx version: ")
	b.info["wrk"] = strings.Fields(first(b.tools.wrk, "-v") + " ?")[1]
	b.info["palisade"] = first(b.o.palisade, "version")
	where := " (the host's)"
	if b.o.cc != "" {
		where = " (`-cc`: a network namespace of the bench's own)"
	}
	b.info["cc"] = congestionControl() + where
	if b.base != nil {
		b.info["baseline"] = first(b.o.baseline, "version")
	}
	if k, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		b.info["kernel"] = strings.TrimSpace(string(k))
	}
	if c, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(c), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				b.info["cpu"] = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	b.info["palisade_nofile"] = nofileLimit(b.pal.p.pid())
	b.info["haproxy_nofile"] = nofileLimit(b.hap.p.pid())
}

// proxies is every proxy under test: palisade, the baseline build if any,
// and both HAProxies.
func (b *bench) proxies() []*target { return b.withBase(b.pal, b.hap, b.hapSp) }

// withBase puts the baseline build, if any, right after palisade in ts.
func (b *bench) withBase(ts ...*target) []*target {
	if b.base == nil {
		return ts
	}
	out := []*target{}
	for _, t := range ts {
		out = append(out, t)
		if t == b.pal {
			out = append(out, b.base)
		}
	}
	return out
}

var errProxyDied = errors.New("proxy exited")
