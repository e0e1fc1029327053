package admin

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/palisade-lb/palisade/internal/api"
)

// countingDaemon counts every call that could change something.
type countingDaemon struct {
	*fakeDaemon
	mutations atomic.Int64
}

func (c *countingDaemon) SetServer(b, s string, u api.ServerUpdate, caller string) (api.Server, error) {
	c.mutations.Add(1)
	return c.fakeDaemon.SetServer(b, s, u, caller)
}

func (c *countingDaemon) Reload() error {
	c.mutations.Add(1)
	return nil
}

func (c *countingDaemon) ResignVRRP(name string) error {
	c.mutations.Add(1)
	return c.fakeDaemon.ResignVRRP(name)
}

// FuzzRequest: no request, however malformed, gets a 5xx or panics, every
// answer is JSON except the open page, metrics and healthz, and nothing
// reaches a mutation without the right token.
func FuzzRequest(f *testing.F) {
	f.Add("PUT", "/api/v1/backends/app/servers/web1", "Bearer "+testToken, `{"state":"drain","weight":5}`)
	f.Add("PUT", "/api/v1/backends/app/servers/web1", "Bearer "+testToken, `{"weight":1e400}`)
	f.Add("PUT", "/api/v1/backends/app/servers/web1", "Bearer "+testToken, "{\"state\":\"\xff\"}")
	f.Add("PUT", "/api/v1/backends/a%2Fb/servers/%00", "Bearer "+testToken, `{"state":null}`)
	f.Add("POST", "/api/v1/reload", "Bearer", "")
	f.Add("POST", "/api/v1/vrrp/VI_1/resign", "bearer  "+testToken+" ", "")
	f.Add("GET", "/api/v1/backends/app", "Basic x", "")
	f.Add("OPTIONS", "/", "", "")
	f.Add("GET", "/static/../admin.go", "", "")
	fd := &countingDaemon{fakeDaemon: newFakeDaemon()}
	s := New(fd, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	tok := writeToken(f, f.TempDir(), testToken)
	p, err := readPolicy(tok)
	if err != nil {
		f.Fatal(err)
	}
	s.policy.Store(p)
	tcp := context.WithValue(context.Background(), connKey{}, connInfo{caller: "198.18.0.9:4242"})

	f.Fuzz(func(t *testing.T, method, path, auth, body string) {
		if !validMethod(method) || !strings.HasPrefix(path, "/") {
			return
		}
		u, err := url.ParseRequestURI(path)
		if err != nil {
			return
		}
		req := httptest.NewRequestWithContext(tcp, method, "http://admin.test/", strings.NewReader(body))
		req.URL = u
		req.RequestURI = u.RequestURI()
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		before := fd.mutations.Load()
		rec := httptest.NewRecorder()
		s.handler.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %q: %d %s", method, path, rec.Code, rec.Body)
		}
		ct := rec.Header().Get("Content-Type")
		if rec.Code >= 400 && ct != "application/json" && rec.Code != http.StatusMovedPermanently {
			t.Fatalf("%s %q: %d with Content-Type %q", method, path, rec.Code, ct)
		}
		if got, ok := bearer(auth); (!ok || got != testToken) && fd.mutations.Load() != before {
			t.Fatalf("%s %q with Authorization %q reached a mutation", method, path, auth)
		}
	})
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}
