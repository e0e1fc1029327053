package admin

import (
	"io/fs"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

func TestDashboardServesOnlyEmbeddedAssets(t *testing.T) {
	h := startTCP(t, false)
	r := h.do("GET", "/", "-", "")
	if r.code != http.StatusOK || !strings.HasPrefix(r.hdr.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %q", r.code, r.hdr.Get("Content-Type"))
	}
	if csp := r.hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") ||
		!strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "connect-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
	for _, want := range []string{"Frontends", "Backends", "VRRP", "SYN-flood"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// no inline script or style: the CSP would block them
	if regexp.MustCompile(`<script[^>]*>[^<]+</script>|<style|\sstyle=|\son[a-z]+=`).MatchString(r.body) {
		t.Error("page has inline script or style")
	}

	refs := regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(r.body, -1)
	if len(refs) < 3 {
		t.Fatalf("found only %d references", len(refs))
	}
	embedded := map[string]bool{}
	fs.WalkDir(ui, "ui", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			embedded[strings.TrimPrefix(p, "ui/")] = true
		}
		return nil
	})
	wantTypes := map[string]string{".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
	var assets []string
	for _, m := range refs {
		ref := m[1]
		name, ok := strings.CutPrefix(ref, "static/")
		if !ok || !embedded[name] {
			t.Errorf("page references %q, which is not an embedded asset", ref)
			continue
		}
		a := h.do("GET", "/"+ref, "-", "")
		ext := ref[strings.LastIndex(ref, "."):]
		if a.code != http.StatusOK || !strings.HasPrefix(a.hdr.Get("Content-Type"), wantTypes[ext]) || a.body == "" {
			t.Errorf("GET /%s: %d %q", ref, a.code, a.hdr.Get("Content-Type"))
		}
		assets = append(assets, a.body)
	}

	// nothing in any file loads from elsewhere (the SVG namespace is a name, not a fetch)
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|@import|url\(`)
	for name := range embedded {
		b, _ := ui.ReadFile("ui/" + name)
		s := strings.ReplaceAll(string(b), `xmlns="http://www.w3.org/2000/svg"`, "")
		if loc := external.FindStringIndex(s); loc != nil {
			t.Errorf("%s refers to an external resource: %q", name, s[loc[0]:min(len(s), loc[1]+30)])
		}
	}

	// every API path the script reads exists and answers with the token
	var script string
	for _, a := range assets {
		if strings.Contains(a, "api/v1/") {
			script = a
		}
	}
	paths := regexp.MustCompile(`'(api/v1/[a-z/]+)'`).FindAllStringSubmatch(script, -1)
	if len(paths) < 3 {
		t.Fatalf("script reads %d API paths", len(paths))
	}
	for _, p := range paths {
		if r := h.do("GET", "/"+p[1], testToken, ""); r.code != http.StatusOK {
			t.Errorf("script reads /%s: %d", p[1], r.code)
		}
	}
	// the script never builds HTML from API data
	if strings.Contains(script, "innerHTML") || strings.Contains(script, "insertAdjacentHTML") {
		t.Error("script uses innerHTML")
	}
}
