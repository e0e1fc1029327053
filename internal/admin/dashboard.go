package admin

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

// ui holds the stats dashboard: one page and its assets, all served from the
// binary. The page holds no data; its script fetches the JSON API with the
// token the user gives it (URL fragment #token=... or a prompt), so the page
// and assets are served without a token.
//
//go:embed ui
var ui embed.FS

// dashboardCSP allows nothing but this origin: no inline script, no
// external resources, no framing.
const dashboardCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// uiTypes are the content types of the embedded files, independent of the
// host's MIME tables.
var uiTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
}

func serveDashboard(w http.ResponseWriter, r *http.Request) {
	serveUIFile(w, r, "index.html")
}

func serveStatic(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/static/")
	if name == "" || name == "index.html" || strings.Contains(name, "/") || !fs.ValidPath(name) {
		writeError(w, http.StatusNotFound, "no such file: "+r.URL.Path)
		return
	}
	serveUIFile(w, r, name)
}

func serveUIFile(w http.ResponseWriter, r *http.Request, name string) {
	b, err := ui.ReadFile(path.Join("ui", name))
	if err != nil {
		writeError(w, http.StatusNotFound, "no such file: "+r.URL.Path)
		return
	}
	ct, ok := uiTypes[path.Ext(name)]
	if !ok {
		ct = "application/octet-stream"
	}
	h := w.Header()
	h.Set("Content-Type", ct)
	h.Set("Content-Security-Policy", dashboardCSP)
	// The assets change only with the binary; revalidation is cheap and
	// keeps an upgraded daemon from serving a stale script.
	h.Set("Cache-Control", "no-cache")
	w.Write(b)
}
