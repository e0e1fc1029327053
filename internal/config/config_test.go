package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const minimal = `
frontends:
  - name: db
    listen: ["127.0.0.1:6379"]
    default_backend: redis
backends:
  - name: redis
    servers:
      - {name: r1, address: "127.0.0.1:6380"}
`

func TestDefaultsAndInheritance(t *testing.T) {
	src := `
defaults:
  timeouts: {connect: 1s}
  retries: 4
  health: {interval: 5s, rise: 7}
frontends:
  - name: db
    listen: ["127.0.0.1:6379"]
    default_backend: redis
    timeouts: {client: 9s}
backends:
  - name: redis
    health: {fall: 9}
    timeouts: {server: 2s}
    servers:
      - {name: r1, address: "127.0.0.1:6380"}
  - name: other
    retries: 0
    servers:
      - {name: o1, address: "db.internal:6380", backup: true}
`
	c, err := Parse("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if c.Global.Grace.D() != 10*time.Second || c.Global.Log.Format != "json" {
		t.Errorf("global defaults: %+v", c.Global)
	}
	fe := c.Frontends[0]
	if fe.Mode != "tcp" || fe.Timeouts.Client.D() != 9*time.Second || fe.Timeouts.Connect.D() != time.Second || fe.Timeouts.Server.D() != 60*time.Second {
		t.Errorf("frontend: %+v", fe.Timeouts)
	}
	b := c.Backends[0]
	if b.Retries != 4 || b.Balance != "roundrobin" || b.Timeouts.Connect.D() != time.Second || b.Timeouts.Server.D() != 2*time.Second {
		t.Errorf("backend: retries %d timeouts %+v", b.Retries, b.Timeouts)
	}
	if b.Health.Interval.D() != 5*time.Second || b.Health.Rise != 7 || b.Health.Fall != 9 || b.Health.Type != "tcp" {
		t.Errorf("health: %+v", b.Health)
	}
	if b.Health.Fastinter != b.Health.Interval || b.Health.Downinter != b.Health.Interval {
		t.Errorf("fastinter/downinter default to interval: %+v", b.Health)
	}
	if b.Servers[0].Weight != 100 {
		t.Errorf("weight default: %d", b.Servers[0].Weight)
	}
	if c.Backends[1].Retries != 0 || c.Backends[1].Health.Fall != 3 || !c.Backends[1].Servers[0].Backup {
		t.Errorf("second backend: %+v", c.Backends[1])
	}
	if c.Synflood.PerSource.SynRate.PerSecond != 100 || c.Synflood.PerSource.Burst != 200 || c.Synflood.PerPort.Burst != 40000 {
		t.Errorf("synflood defaults: %+v", c.Synflood)
	}
	if c.Defaults.Health.Interval.D() != 5*time.Second {
		t.Errorf("defaults changed by a backend: %+v", c.Defaults.Health)
	}
}

func TestRateLimitBurstDefault(t *testing.T) {
	src := strings.Replace(minimal, "    default_backend: redis\n", "    default_backend: redis\n    rate_limit: {per_source: 30/m}\n", 1)
	c, err := Parse("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	rl := c.Frontends[0].RateLimit
	if rl.PerSource.PerSecond != 0.5 || rl.Burst != 1 {
		t.Fatalf("got %+v", rl)
	}
}

func TestDeferAcceptDefaultByMode(t *testing.T) {
	for _, tc := range []struct {
		name, extra string
		want        bool
	}{
		{"tcp", "", false},
		{"tcp, on", "    defer_accept: true\n", true},
		{"http", "    mode: http\n", true},
		{"http, off", "    mode: http\n    defer_accept: false\n", false},
		{"tcp, PROXY header", "    proxy_protocol: {accept: true}\n", true},
		{"tcp, PROXY header, off", "    proxy_protocol: {accept: true}\n    defer_accept: false\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(minimal, "    default_backend: redis\n", "    default_backend: redis\n"+tc.extra, 1)
			c, err := Parse("t.yaml", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Frontends[0].DeferAccept; got != tc.want {
				t.Fatalf("defer_accept %v, want %v", got, tc.want)
			}
		})
	}
}

// TestErrors checks that each bad file yields exactly the listed errors, with positions.
func TestErrors(t *testing.T) {
	cases := []struct {
		name string
		src  string
		want []string
	}{
		{"unknown key", minimal + "bogus: 1\n", []string{
			`t.yaml:10:1: unknown key "bogus" (known keys: global, defaults, frontends, backends, vrrp, synflood)`}},
		{"unknown nested key", `
frontends:
  - name: db
    listen: ["127.0.0.1:1"]
    default_backend: b
    maxconn: 5
backends:
  - {name: b, servers: [{name: s, address: "127.0.0.1:2"}]}
`, []string{`t.yaml:6:5: unknown key "maxconn" in frontend (known keys: name, mode, listen, tls, max_conns, allow, deny, rate_limit, proxy_protocol, access_log, defer_accept, timeouts, routes, default_backend, http)`}},
		{"types", `
global:
  grace: soon
frontends:
  - name: db
    listen: "127.0.0.1:1"
    default_backend: b
    max_conns: many
    access_log: yes
backends:
  - {name: b, servers: [{name: s, address: "127.0.0.1:2", weight: 1.5}]}
`, []string{
			`t.yaml:3:10: grace: invalid duration "soon" (use Go syntax such as 500ms, 2s, 1m30s)`,
			`t.yaml:6:13: listen: expected a list, got "127.0.0.1:1"`,
			`t.yaml:8:16: max_conns: expected an integer, got "many"`,
			`t.yaml:9:17: access_log: expected true or false, got "yes"`,
			`t.yaml:11:67: weight: expected an integer, got a number`,
		}},
		{"ranges and enums", `
defaults:
  retries: 11
  health: {rise: 0}
frontends:
  - name: db
    mode: udp
    listen: ["127.0.0.1:1"]
    default_backend: b
backends:
  - name: b
    balance: fastest
    servers: [{name: s, address: "127.0.0.1:2", weight: 257}]
`, []string{
			`t.yaml:3:12: retries: 11 is out of range (0..10)`,
			`t.yaml:4:18: rise: 0 is out of range (1..1000)`,
			`t.yaml:7:11: mode: "udp" is not one of tcp, http`,
			`t.yaml:12:14: balance: "fastest" is not one of roundrobin, leastconn, random2, source, uri_hash, first`,
			`t.yaml:13:57: weight: 257 is out of range (0..256)`,
		}},
		{"duplicates and dangling references", `
frontends:
  - name: db
    listen: ["127.0.0.1:1"]
    default_backend: b
  - name: db
    listen: ["127.0.0.1:2"]
    default_backend: nope
backends:
  - name: b
    servers:
      - {name: s, address: "127.0.0.1:2"}
      - {name: s, address: "127.0.0.1:3"}
  - name: b
    servers: [{name: x, address: "127.0.0.1:2"}]
`, []string{
			`t.yaml:6:11: duplicate frontend name "db" (first defined at line 3)`,
			`t.yaml:8:22: backend "nope" is not defined`,
			`t.yaml:13:16: duplicate server name "s" in backend "b" (first at line 12)`,
			`t.yaml:14:11: duplicate backend name "b" (first defined at line 10)`,
		}},
		{"overlapping listeners", `
frontends:
  - name: a
    listen: [":8080", "127.0.0.1:9090"]
    default_backend: b
  - name: c
    listen: ["0.0.0.0:9090", "[::1]:8080"]
    default_backend: b
  - name: d
    listen: ["127.0.0.2:7070", "127.0.0.2:7070"]
    default_backend: b
backends:
  - {name: b, servers: [{name: s, address: "127.0.0.1:2"}]}
`, []string{
			`t.yaml:7:14: listen "0.0.0.0:9090" overlaps a listener of frontend "a" at line 4`,
			`t.yaml:7:30: listen "[::1]:8080" overlaps a listener of frontend "a" at line 4`,
			`t.yaml:10:32: listen "127.0.0.2:7070" overlaps a listener of frontend "d" at line 10`,
		}},
		{"addresses", `
frontends:
  - name: a
    listen: ["localhost:80", "1.2.3.4", "127.0.0.1:0"]
    default_backend: b
    allow: [10.0.0.0/33]
backends:
  - name: b
    servers:
      - {name: s, address: "127.0.0.1"}
      - {name: "s/2", address: "bad_host!:80"}
`, []string{
			`t.yaml:4:14: listen: "localhost:80": host must be an IP address (or empty for all)`,
			`t.yaml:4:30: listen: "1.2.3.4" is not host:port`,
			`t.yaml:4:41: listen: "127.0.0.1:0": port must be 1..65535`,
			`t.yaml:6:13: allow: invalid CIDR "10.0.0.0/33"`,
			`t.yaml:10:28: address "127.0.0.1" is not host:port`,
			`t.yaml:11:16: server name "s/2" must not contain '/' or spaces`,
			`t.yaml:11:32: address "bad_host!:80": "bad_host!" is neither an IP address nor a host name`,
		}},
		{"mode specific", `
frontends:
  - name: a
    listen: ["127.0.0.1:1"]
    routes: [{backend: b}]
  - name: h
    mode: http
    listen: ["127.0.0.1:2"]
    default_backend: b
backends:
  - {name: b, send_proxy: v2, servers: [{name: s, address: "127.0.0.1:2"}]}
`, []string{
			`t.yaml:3:5: frontend "a": mode tcp needs default_backend`,
			`t.yaml:5:13: routes is for mode http only (frontend "a" is mode tcp)`,
		}},
		{"missing required", `
frontends:
  - listen: ["127.0.0.1:1"]
    default_backend: b
backends:
  - {name: b, servers: [{address: "127.0.0.1:2"}]}
`, []string{
			`t.yaml:3:5: missing required key "name" in frontend`,
			`t.yaml:6:25: missing required key "name" in server`,
		}},
		{"yaml syntax", "frontends:\n  - name: [a\n", []string{
			`t.yaml:1:1: invalid YAML: did not find expected ',' or ']'`}},
		{"duplicate key", "global:\n  grace: 1s\n  grace: 2s\n", []string{`t.yaml:3:3: duplicate key "grace"`}},
		{"admin needs token", "global:\n  admin: {listen: \"127.0.0.1:9000\"}\n", []string{
			`t.yaml:2:19: token_file is required when the admin API listens on TCP`}},
		{"vrrp", `
vrrp:
  instances:
    - name: e
      interface: eth0
      virtual_router_id: 300
      advert_interval: 15ms
      vips: [2001:db8::1/64]
      track: [{frontend: nope, weight: -10}]
`, []string{
			`t.yaml:6:26: virtual_router_id: 300 is out of range (1..255)`,
			`t.yaml:7:24: advert_interval 15ms is not a multiple of 10ms`,
			`t.yaml:8:14: VIP 2001:db8::1/64: only IPv4 is supported (VRRPv3 for IPv4)`,
			`t.yaml:9:26: track: frontend "nope" is not defined`,
		}},
		{"health", `
backends:
  - name: b
    health: {type: send_expect, expect_status: "200-999", interval: 1s, timeout: 2s, steps: [{send: x, expect: y}, {expect_regex: "("}]}
    servers: [{name: s, address: "127.0.0.1:2"}]
`, []string{
			`t.yaml:4:82: timeout 2s is longer than interval 1s`,
			`t.yaml:4:94: steps[0]: exactly one of send, expect, expect_regex must be set`,
			`t.yaml:4:131: steps[1].expect_regex: error parsing regexp: missing closing ): ` + "`(`",
		}},
		{"http health", `
backends:
  - name: b
    health: {type: http, expect_status: "200-999", method: "GE T", passive: {max_fails: 2}}
    servers: [{name: s, address: "127.0.0.1:2"}]
  - name: c
    health: {type: none, passive: {max_fails: 2}}
    servers: [{name: s, address: "127.0.0.1:2"}]
`, []string{
			`t.yaml:4:41: expect_status: "200-999": "999" is not an HTTP status code (100-599)`,
			`t.yaml:4:60: method: "GE T" is not a valid HTTP method`,
			`t.yaml:7:47: passive checks need an active check to bring servers back (type is none)`,
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tc.src))
			es := AsErrors(err)
			var got []string
			for _, e := range es {
				got = append(got, e.Error())
			}
			sortStrings := func(s []string) string { return strings.Join(s, "\n") }
			if sortStrings(sortedCopy(got)) != sortStrings(sortedCopy(tc.want)) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestErrorsAreInFileOrder(t *testing.T) {
	_, err := Parse("t.yaml", []byte("global:\n  grace: x\nbogus: 1\ndefaults:\n  retries: -1\n"))
	es := AsErrors(err)
	if len(es) != 3 {
		t.Fatalf("got %v", es)
	}
	for i := 1; i < len(es); i++ {
		if es[i].Line < es[i-1].Line {
			t.Fatalf("not sorted: %v", es)
		}
	}
}

func TestTokenAndTLSFiles(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Parse("t.yaml", []byte("global:\n  admin: {listen: \"127.0.0.1:9000\", token_file: "+tok+"}\n"))
	if es := AsErrors(err); len(es) != 1 || !strings.Contains(es[0].Msg, "shorter than 16") {
		t.Fatalf("got %v", err)
	}
	_, err = Parse("t.yaml", []byte("global:\n  admin: {listen: \"unix:/run/x.sock\", token_file: "+filepath.Join(dir, "missing")+"}\n"))
	if es := AsErrors(err); len(es) != 1 || !strings.Contains(es[0].Msg, "no such file") {
		t.Fatalf("got %v", err)
	}
}

func TestExampleConfigsAreValid(t *testing.T) {
	files, _ := filepath.Glob("../../configs/*.yaml")
	if len(files) == 0 {
		t.Fatal("no example configs found")
	}
	wd, _ := os.Getwd()
	if err := os.Chdir("../.."); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	for _, f := range files {
		if _, err := Load(strings.TrimPrefix(f, "../../")); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestReadmeReferenceIsCurrent(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	want, err := SpliceReference(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if want != string(b) {
		t.Fatal("README.md config reference is out of date: run `make docs`")
	}
}

func TestRateAndDuration(t *testing.T) {
	var r Rate
	for in, want := range map[string]float64{"200/s": 200, "30/m": 0.5, "1.5/s": 1.5} {
		if err := r.decodeScalar(in); err != nil || r.PerSecond != want {
			t.Errorf("%s: %v %v", in, r.PerSecond, err)
		}
	}
	for _, bad := range []string{"200", "0/s", "-1/s", "5/h", "x/s", "NaN/s", "Inf/s"} {
		if err := r.decodeScalar(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	var d Duration
	if err := d.decodeScalar("-1s"); err == nil {
		t.Error("negative duration accepted")
	}
}
