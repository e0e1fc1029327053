package config

import (
	"os"
	"strings"
	"testing"
)

// FuzzParse: no input makes the parser panic or hang, every error carries a
// position inside the file, and an accepted file parses the same way twice.
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("../../configs/demo.yaml"); err == nil {
		f.Add(string(b))
	}
	f.Add(minimal)
	f.Add("frontends: [{name: a, listen: [':1'], default_backend: b, routes: [{host: x}]}]\nbackends: [{name: b, servers: [{name: s, address: 'h:1'}]}]")
	f.Add("global: &g {grace: 1s}\ndefaults: *g\n")
	f.Add("vrrp: {instances: [{name: e, interface: eth0, virtual_router_id: 1, vips: [192.0.2.1/24]}]}")
	f.Fuzz(func(t *testing.T, src string) {
		if strings.Contains(src, "token_file") || strings.Contains(src, "cert") || strings.Contains(src, "ca:") {
			t.Skip("reads files")
		}
		// YAML breaks lines at \r, \n, \r\n, NEL, LS and PS (an upper bound:
		// \r\n counts twice)
		lines := 1
		for _, br := range []string{"\n", "\r", "\u0085", "\u2028", "\u2029"} {
			lines += strings.Count(src, br)
		}
		c, err := Parse("f.yaml", []byte(src))
		if err != nil {
			es := AsErrors(err)
			if len(es) == 0 {
				t.Fatalf("error without positions: %v", err)
			}
			for _, e := range es {
				if e.Line < 1 || e.Line > lines+1 || e.Col < 1 || e.Msg == "" {
					t.Fatalf("bad position or message: %+v (file has %d lines)", e, lines)
				}
			}
			return
		}
		c2, err := Parse("f.yaml", []byte(src))
		if err != nil || c2.SHA256 != c.SHA256 || len(c2.Frontends) != len(c.Frontends) {
			t.Fatalf("second parse differs: %v", err)
		}
	})
}
