package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/palisade-lb/palisade/internal/api"
	"github.com/palisade-lb/palisade/internal/config"
	"github.com/palisade-lb/palisade/internal/daemon"
)

// maxBody bounds request bodies; larger ones are answered 400.
const maxBody = 64 << 10

// access says who may call a route.
type access int

const (
	open    access = iota // anyone
	metrics               // anyone when metrics_public, else like token
	token                 // bearer token (or a unix socket without token_file)
)

// methods maps HTTP methods to handlers; GET also answers HEAD.
type methods map[string]http.HandlerFunc

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, a access, m methods) {
		mux.Handle(pattern, s.guard(a, dispatch(m)))
	}
	handle("/healthz", open, methods{http.MethodGet: func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, "ok\n")
	}})
	handle("/{$}", open, methods{http.MethodGet: serveDashboard})
	handle("/static/", open, methods{http.MethodGet: serveStatic})
	handle("/metrics", metrics, methods{http.MethodGet: promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      promLogger{s.log},
	}).ServeHTTP})

	handle("/api/v1/status", token, methods{http.MethodGet: func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.d.Status())
	}})
	handle("/api/v1/frontends", token, methods{http.MethodGet: func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.d.Frontends())
	}})
	handle("/api/v1/backends", token, methods{http.MethodGet: func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.d.Backends())
	}})
	handle("/api/v1/backends/{b}", token, methods{http.MethodGet: s.getBackend})
	handle("/api/v1/backends/{b}/servers/{s}", token, methods{http.MethodPut: s.putServer})
	handle("/api/v1/reload", token, methods{http.MethodPost: s.reload})
	handle("/api/v1/vrrp", token, methods{http.MethodGet: func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.d.VRRP())
	}})
	handle("/api/v1/vrrp/{instance}/resign", token, methods{http.MethodPost: s.resign})

	notFound := func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s", r.URL.Path))
	}
	mux.Handle("/", s.guard(token, http.HandlerFunc(notFound)))
	return s.track(securityHeaders(mux))
}

// track counts h's running requests for Close.
func (s *Server) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.handlers.Add(1)
		defer s.handlers.Done()
		h.ServeHTTP(w, r)
	})
}

// dispatch answers 405 with an Allow header for methods m does not have.
func dispatch(m methods) http.HandlerFunc {
	allowed := make([]string, 0, len(m)+1)
	for k := range m {
		allowed = append(allowed, k)
	}
	if _, ok := m[http.MethodGet]; ok {
		if _, ok := m[http.MethodHead]; !ok {
			allowed = append(allowed, http.MethodHead)
		}
	}
	slices.Sort(allowed)
	allow := strings.Join(allowed, ", ")
	return func(w http.ResponseWriter, r *http.Request) {
		h, ok := m[r.Method]
		if !ok && r.Method == http.MethodHead {
			h, ok = m[http.MethodGet]
		}
		if !ok {
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed; allowed: %s", r.Method, allow))
			return
		}
		h(w, r)
	}
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

// guard enforces access a before h runs.
func (s *Server) guard(a access, h http.Handler) http.Handler {
	if a == open {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := s.policy.Load()
		if a == metrics && p.metricsPublic {
			h.ServeHTTP(w, r)
			return
		}
		ci := requestConn(r)
		if !p.hasToken {
			if ci.unix {
				h.ServeHTTP(w, r)
				return
			}
			// Only reachable while a retired TCP listener drains or when
			// Handler is mounted elsewhere: without a token, TCP is closed.
			writeError(w, http.StatusForbidden, "the admin API has no token configured for TCP access")
			return
		}
		got, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="palisade"`)
			writeError(w, http.StatusUnauthorized, "missing bearer token")
			return
		}
		sum := sha256.Sum256([]byte(got))
		if subtle.ConstantTimeCompare(sum[:], p.token[:]) != 1 {
			s.log.Warn("admin API request with a wrong token", "by", ci.caller, "method", r.Method, "path", r.URL.Path)
			writeError(w, http.StatusForbidden, "wrong token")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// bearer extracts the token of an "Authorization: Bearer <token>" header.
func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

func (s *Server) getBackend(w http.ResponseWriter, r *http.Request) {
	b, err := s.d.Backend(r.PathValue("b"))
	if err != nil {
		writeError(w, errStatus(err, http.StatusBadRequest), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, b)
}

func (s *Server) putServer(w http.ResponseWriter, r *http.Request) {
	backend, server := r.PathValue("b"), r.PathValue("s")
	by := requestConn(r).caller
	var u api.ServerUpdate
	if err := decodeStrict(w, r, &u); err != nil {
		s.log.Info("admin API: server change rejected", "by", by, "backend", backend, "server", server, "error", err)
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	asked := describeUpdate(u)
	srv, err := s.d.SetServer(backend, server, u, by)
	if err != nil {
		s.log.Info("admin API: server change rejected", "by", by, "backend", backend, "server", server,
			"asked", asked, "error", err)
		writeError(w, errStatus(err, http.StatusBadRequest), err.Error())
		return
	}
	s.log.Info("admin API: server changed", "by", by, "backend", backend, "server", server, "asked", asked,
		"state", srv.State, "operator_state", srv.OperatorState, "weight", srv.Weight, "config_weight", srv.ConfigWeight)
	writeJSON(w, http.StatusOK, srv)
}

func describeUpdate(u api.ServerUpdate) string {
	var parts []string
	if u.State != nil {
		parts = append(parts, "state="+*u.State)
	}
	if u.Weight != nil {
		parts = append(parts, fmt.Sprintf("weight=%d", *u.Weight))
	}
	return strings.Join(parts, " ")
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	by := requestConn(r).caller
	s.log.Info("admin API: reload requested", "by", by)
	err := s.d.Reload()
	if err == nil {
		s.log.Info("admin API: reload done", "by", by)
		writeJSON(w, http.StatusOK, api.ReloadResponse{OK: true})
		return
	}
	msgs := config.Messages(err)
	s.log.Warn("admin API: reload failed", "by", by, "errors", len(msgs), "first", msgs[0])
	writeJSON(w, http.StatusUnprocessableEntity, api.ReloadResponse{OK: false, Errors: msgs})
}

func (s *Server) resign(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("instance")
	by := requestConn(r).caller
	if err := s.d.ResignVRRP(name); err != nil {
		s.log.Info("admin API: vrrp resign rejected", "by", by, "instance", name, "error", err)
		writeError(w, errStatus(err, http.StatusConflict), err.Error())
		return
	}
	s.log.Info("admin API: vrrp instance resigned mastership", "by", by, "instance", name)
	writeJSON(w, http.StatusOK, okResponse{OK: true})
}

type okResponse struct {
	OK bool `json:"ok"`
}

// errStatus maps a daemon error to a status: 404 for ErrNotFound, invalid
// for ErrInvalid, 500 for anything else (a fault, not bad input).
func errStatus(err error, invalid int) int {
	switch {
	case errors.Is(err, daemon.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, daemon.ErrInvalid):
		return invalid
	}
	return http.StatusInternalServerError
}

// decodeStrict decodes exactly one JSON value from r's body into v: unknown
// fields, wrong types, trailing data and bodies over maxBody are errors.
func decodeStrict(w http.ResponseWriter, r *http.Request, v any) error {
	body := http.MaxBytesReader(w, r.Body, maxBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return jsonError(err)
		}
		return errors.New("invalid JSON body: trailing data after the object")
	}
	return nil
}

func jsonError(err error) error {
	var tooBig *http.MaxBytesError
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &tooBig):
		return fmt.Errorf("request body is larger than %d bytes", tooBig.Limit)
	case errors.Is(err, io.EOF):
		return errors.New("empty request body; want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("invalid JSON body: unexpected end")
	case errors.As(err, &typeErr):
		if typeErr.Field != "" {
			return fmt.Errorf("invalid JSON body: field %q must be a %s, not %s", typeErr.Field, typeErr.Type, typeErr.Value)
		}
		return fmt.Errorf("invalid JSON body: want a JSON object, not %s", typeErr.Value)
	case errors.As(err, &syntaxErr):
		return fmt.Errorf("invalid JSON body at byte %d: %v", syntaxErr.Offset, syntaxErr)
	}
	return fmt.Errorf("invalid JSON body: %v", strings.TrimPrefix(err.Error(), "json: "))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		b, _ = json.Marshal(api.Error{Error: "encoding response: " + err.Error()})
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, api.Error{Error: msg})
}

// promLogger sends promhttp's collection errors to the log.
type promLogger struct {
	log interface{ Error(string, ...any) }
}

func (l promLogger) Println(v ...any) { l.log.Error("collecting metrics", "error", fmt.Sprint(v...)) }
