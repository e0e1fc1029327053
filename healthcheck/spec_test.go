package healthcheck

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestValidateSpec(t *testing.T) {
	badCA := filepath.Join(t.TempDir(), "notpem")
	if err := os.WriteFile(badCA, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		spec  Spec
		field string // "" = valid
		msg   string
	}{
		{"zero spec is tcp", Spec{}, "", ""},
		{"none", Spec{Type: TypeNone}, "", ""},
		{"http defaults", Spec{Type: TypeHTTP}, "", ""},
		{"http full", Spec{Type: TypeHTTP, Method: "POST", Path: "/h?x=1", Host: "a.example:80", ExpectStatus: "200,204,300-399", ExpectBody: "ok"}, "", ""},
		{"send_expect", Spec{Type: TypeSendExpect, Steps: []Step{{Send: "PING\r\n"}, {Expect: "+PONG"}, {ExpectRegex: "^220 "}}}, "", ""},
		{"agent", Spec{Agent: &AgentSpec{Port: 7777}}, "", ""},
		{"unknown type", Spec{Type: "icmp"}, "type", "unknown check type"},
		{"bad status word", Spec{Type: TypeHTTP, ExpectStatus: "ok"}, "expect_status", "not an HTTP status code"},
		{"status 600", Spec{Type: TypeHTTPS, ExpectStatus: "200-600"}, "expect_status", "not an HTTP status code"},
		{"reversed range", Spec{Type: TypeHTTP, ExpectStatus: "399-200"}, "expect_status", "reversed"},
		{"trailing comma", Spec{Type: TypeHTTP, ExpectStatus: "200,"}, "expect_status", "empty status code"},
		{"bad method", Spec{Type: TypeHTTP, Method: "GE T"}, "method", "not a valid HTTP method"},
		{"relative path", Spec{Type: TypeHTTP, Path: "healthz"}, "path", "must start with /"},
		{"bad host", Spec{Type: TypeHTTP, Host: "a b"}, "host", "not a valid Host"},
		{"bad sni", Spec{Type: TypeHTTPS, TLS: TLSSpec{SNI: "x/y"}}, "tls.sni", "not a valid server name"},
		{"missing CA", Spec{Type: TypeHTTPS, TLS: TLSSpec{Verify: true, CA: "/nonexistent/ca.pem"}}, "tls.ca", "reading CA bundle"},
		{"CA not PEM", Spec{Type: TypeHTTPS, TLS: TLSSpec{Verify: true, CA: badCA}}, "tls.ca", "no PEM certificates"},
		{"no steps", Spec{Type: TypeSendExpect}, "steps", "at least one step"},
		{"two keys in a step", Spec{Type: TypeSendExpect, Steps: []Step{{Send: "a", Expect: "b"}}}, "steps[0]", "exactly one"},
		{"empty step", Spec{Type: TypeSendExpect, Steps: []Step{{Send: "a"}, {}}}, "steps[1]", "exactly one"},
		{"bad regex", Spec{Type: TypeSendExpect, Steps: []Step{{ExpectRegex: "^220 ("}}}, "steps[0].expect_regex", "missing closing )"},
		{"negative interval", Spec{Interval: -time.Second}, "interval", "negative"},
		{"negative rise", Spec{Rise: -1}, "rise", "at least 1"},
		{"port range", Spec{Port: 70000}, "port", "0..65535"},
		{"agent port", Spec{Agent: &AgentSpec{}}, "agent.port", "1..65535"},
		{"passive", Spec{Passive: PassiveSpec{MaxFails: -1}}, "passive.max_fails", "negative"},
	}
	for _, tc := range cases {
		err := ValidateSpec(tc.spec)
		if tc.field == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(fe.Msg, tc.msg) {
			t.Errorf("%s: got %v, want %s: ...%s...", tc.name, err, tc.field, tc.msg)
		}
		if _, nerr := New(tc.spec, static("127.0.0.1:1")); nerr == nil {
			t.Errorf("%s: New accepted an invalid spec", tc.name)
		}
	}
	// Every problem is reported, not just the first.
	err := ValidateSpec(Spec{Type: TypeHTTP, ExpectStatus: "x", Method: " ", Rise: -1})
	if n := strings.Count(err.Error(), "\n") + 1; n != 3 {
		t.Errorf("%d errors reported, want 3: %v", n, err)
	}
}

func TestNewTypes(t *testing.T) {
	addr := static("127.0.0.1:1")
	for typ, want := range map[Type]string{
		"":              "*healthcheck.TCPChecker",
		TypeTCP:         "*healthcheck.TCPChecker",
		TypeHTTP:        "*healthcheck.HTTPChecker",
		TypeHTTPS:       "*healthcheck.HTTPChecker",
		TypeRedisMaster: "*healthcheck.RedisMasterChecker",
		TypeSendExpect:  "*healthcheck.SendExpectChecker",
	} {
		spec := Spec{Type: typ}
		if typ == TypeSendExpect {
			spec.Steps = []Step{{Send: "x"}}
		}
		c, err := New(spec, addr)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if got := typeName(c); got != want {
			t.Errorf("New(%q) = %s, want %s", typ, got, want)
		}
	}
	c, err := New(Spec{Type: TypeNone}, addr)
	if c != nil || err != nil {
		t.Errorf("New(none) = %v, %v; want nil, nil", c, err)
	}
	if _, err := New(Spec{}, nil); err == nil {
		t.Error("nil address function accepted")
	}
}

func typeName(v any) string { return fmt.Sprintf("%T", v) }

func TestWithDefaults(t *testing.T) {
	s := Spec{Interval: 5 * time.Second, Agent: &AgentSpec{Port: 1}}.WithDefaults()
	if s.Type != TypeTCP || s.Timeout != time.Second || s.Rise != 2 || s.Fall != 3 ||
		s.FastInter != 5*time.Second || s.DownInter != 5*time.Second || s.Path != "/" ||
		s.Method != "GET" || s.ExpectStatus != "200-399" || s.Passive.Window != 10*time.Second ||
		s.Agent.Interval != 2*time.Second {
		t.Errorf("defaults: %+v", s)
	}
}

func TestStatusSet(t *testing.T) {
	set, err := parseStatusSet(" 200 , 204,300 - 302")
	if err != nil {
		t.Fatal(err)
	}
	for code, want := range map[int]bool{200: true, 201: false, 204: true, 299: false, 300: true, 302: true, 303: false} {
		if set.contains(code) != want {
			t.Errorf("contains(%d) = %v", code, !want)
		}
	}
	for _, bad := range []string{"", "20", "2000", "099", "abc", "200-", "-200", "200-300-400", "+20"} {
		if _, err := parseStatusSet(bad); err == nil {
			t.Errorf("parseStatusSet(%q) accepted", bad)
		}
	}
}

// FuzzParseStatusSet: expect_status comes from config; the parser never
// panics and only yields valid, ordered ranges.
func FuzzParseStatusSet(f *testing.F) {
	for _, s := range []string{"200", "200-399", "200,204,300-399", " 200 , 204", "399-200", "600", "200,", "2OO"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		set, err := parseStatusSet(s)
		if err != nil {
			return
		}
		if len(set) == 0 {
			t.Fatalf("%q: empty set accepted", s)
		}
		for _, r := range set {
			if r.lo < 100 || r.hi > 599 || r.lo > r.hi {
				t.Fatalf("%q: bad range %+v", s, r)
			}
			if !set.contains(r.lo) || !set.contains(r.hi) {
				t.Fatalf("%q: range ends not contained", s)
			}
		}
	})
}
