package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/palisade-lb/palisade/internal/api"
	"github.com/palisade-lb/palisade/internal/config"
)

// DefaultAdminURL is where `palisade ctl` looks for the admin API when
// neither --admin nor PALISADE_ADMIN says otherwise.
const DefaultAdminURL = "http://127.0.0.1:9000"

// ctlTimeout bounds one ctl request; a reload runs inside its request.
const ctlTimeout = 2 * time.Minute

const ctlUsage = `usage: palisade ctl [--admin URL] [--token-file F] COMMAND

commands:
  status              process, config and reload state, frontends, VRRP, SYN-flood filter
  backends [B]        servers of every backend (or of backend B) as a table
  ready B/S           let server S of backend B take traffic again
  drain B/S           no new connections to B/S; open ones finish
  maint B/S           no traffic and no health checks for B/S
  weight B/S N        set the weight of B/S (0..256)
  reload              reload the config file; print every error when it is invalid

options:
  --admin URL         admin API: http(s)://host:port or unix:/path (env PALISADE_ADMIN,
                      default ` + DefaultAdminURL + `)
  --token-file F      file holding the bearer token (env PALISADE_TOKEN_FILE)
`

// Ctl runs `palisade ctl` with args (after "ctl") and returns the exit code:
// 0 success, 1 failure (HTTP error, unreachable API, failed reload), 2 usage.
func Ctl(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("palisade ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	adminURL := fs.String("admin", "", "admin API URL")
	tokenFile := fs.String("token-file", "", "bearer token file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, ctlUsage)
			return 0
		}
		fmt.Fprint(stderr, ctlUsage)
		return 2
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, ctlUsage)
		return 2
	}
	if rest[0] == "help" {
		fmt.Fprint(stdout, ctlUsage)
		return 0
	}
	if *adminURL == "" {
		*adminURL = os.Getenv("PALISADE_ADMIN")
	}
	if *adminURL == "" {
		*adminURL = DefaultAdminURL
	}
	if *tokenFile == "" {
		*tokenFile = os.Getenv("PALISADE_TOKEN_FILE")
	}

	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "palisade ctl: "+format+"\n", a...)
		return 1
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "palisade ctl: "+format+"\n", a...)
		fmt.Fprintln(stderr, "run 'palisade ctl --help' for usage")
		return 2
	}

	cmd, params := rest[0], rest[1:]
	want := map[string]int{"status": 0, "reload": 0, "drain": 1, "ready": 1, "maint": 1, "weight": 2}
	n, known := want[cmd]
	switch {
	case cmd == "backends":
		if len(params) > 1 {
			return usage("backends takes at most one backend name")
		}
	case !known:
		return usage("unknown command %q", cmd)
	case len(params) != n:
		return usage("%s takes %d argument(s), got %d", cmd, n, len(params))
	}

	c, err := newClient(*adminURL, *tokenFile)
	if err != nil {
		return fail("%v", err)
	}
	defer c.http.CloseIdleConnections()

	switch cmd {
	case "status":
		err = c.status(stdout)
	case "backends":
		err = c.backends(stdout, params)
	case "drain", "ready", "maint":
		var b, s string
		if b, s, err = splitServer(params[0]); err != nil {
			return usage("%v", err)
		}
		st := cmd
		err = c.setServer(stdout, b, s, api.ServerUpdate{State: &st})
	case "weight":
		var b, s string
		if b, s, err = splitServer(params[0]); err != nil {
			return usage("%v", err)
		}
		w, perr := strconv.Atoi(params[1])
		if perr != nil {
			return usage("weight %q is not a whole number", params[1])
		}
		err = c.setServer(stdout, b, s, api.ServerUpdate{Weight: &w})
	case "reload":
		var errs []string
		errs, err = c.reload()
		if err == nil && errs != nil {
			fmt.Fprintln(stderr, "reload failed; the previous config is still running:")
			for _, e := range errs {
				fmt.Fprintln(stderr, "  "+e)
			}
			return 1
		}
		if err == nil {
			fmt.Fprintln(stdout, "ok")
		}
	}
	if err != nil {
		return fail("%v", err)
	}
	return 0
}

func splitServer(arg string) (string, string, error) {
	b, s, ok := strings.Cut(arg, "/")
	if !ok || b == "" || s == "" || strings.Contains(s, "/") {
		return "", "", fmt.Errorf("want BACKEND/SERVER, got %q", arg)
	}
	return b, s, nil
}

// client talks to one admin API.
type client struct {
	base  string // http://host:port, without a trailing slash
	where string // for messages
	token string
	http  *http.Client
}

func newClient(admin, tokenFile string) (*client, error) {
	c := &client{where: admin}
	tr := &http.Transport{
		Proxy:                 nil, // the admin API is local; never route it through HTTP_PROXY
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: ctlTimeout,
		MaxIdleConns:          2,
	}
	if path, ok := strings.CutPrefix(admin, "unix:"); ok {
		if path == "" {
			return nil, errors.New("--admin unix: needs a socket path")
		}
		var d net.Dialer
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		}
		c.base = "http://palisade"
	} else {
		if !strings.Contains(admin, "://") {
			admin = "http://" + admin
		}
		u, err := url.Parse(admin)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("--admin %q: want http://host:port, https://host:port or unix:/path", c.where)
		}
		c.base = strings.TrimSuffix(u.Scheme+"://"+u.Host+u.Path, "/")
		tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second}).DialContext
	}
	if tokenFile != "" {
		tok, err := config.ReadToken(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("token file: %w", err)
		}
		c.token = tok
	}
	c.http = &http.Client{Transport: tr, Timeout: ctlTimeout}
	return c, nil
}

// httpError is a non-2xx answer.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string {
	s := fmt.Sprintf("%d %s", e.status, http.StatusText(e.status))
	if e.msg != "" {
		s += ": " + e.msg
	}
	switch e.status {
	case http.StatusUnauthorized:
		s += " (give the token with --token-file or PALISADE_TOKEN_FILE)"
	case http.StatusForbidden:
		s += " (check --token-file against global.admin.token_file)"
	}
	return s
}

// do sends a request and decodes a 2xx JSON answer into out. For other
// statuses it returns *httpError, after decoding the body into out when
// decodeAlways is set (reload's 422 carries a body worth reading).
func (c *client) do(method, path string, in, out any, decodeAlways bool) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "palisade-ctl")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the admin API at %s: %w", c.where, unwrapURLError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading the answer from %s: %w", c.where, err)
	}
	if resp.StatusCode/100 != 2 {
		if decodeAlways && out != nil && json.Unmarshal(data, out) == nil {
			return &httpError{status: resp.StatusCode}
		}
		var e api.Error
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
			if len(e.Error) > 200 {
				e.Error = e.Error[:200] + "…"
			}
		}
		return &httpError{status: resp.StatusCode, msg: e.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: unexpected answer: %w", method, path, err)
	}
	return nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func (c *client) status(w io.Writer) error {
	var st api.Status
	if err := c.do(http.MethodGet, "/api/v1/status", nil, &st, false); err != nil {
		return err
	}
	var fes []api.Frontend
	if err := c.do(http.MethodGet, "/api/v1/frontends", nil, &fes, false); err != nil {
		return err
	}
	var bes []api.Backend
	if err := c.do(http.MethodGet, "/api/v1/backends", nil, &bes, false); err != nil {
		return err
	}
	writeStatus(w, st, fes, bes)
	return nil
}

func (c *client) backends(w io.Writer, params []string) error {
	var bes []api.Backend
	if len(params) == 1 {
		var b api.Backend
		if err := c.do(http.MethodGet, "/api/v1/backends/"+url.PathEscape(params[0]), nil, &b, false); err != nil {
			return err
		}
		bes = []api.Backend{b}
	} else if err := c.do(http.MethodGet, "/api/v1/backends", nil, &bes, false); err != nil {
		return err
	}
	tw := newTable(w)
	serverHeader(tw)
	for _, b := range bes {
		if len(b.Servers) == 0 {
			fmt.Fprintf(tw, "%s\t-\t\t\t\t\t\t(no servers)\n", b.Name)
		}
		for _, s := range b.Servers {
			serverRow(tw, b.Name, s)
		}
	}
	return tw.Flush()
}

func (c *client) setServer(w io.Writer, backend, server string, u api.ServerUpdate) error {
	var s api.Server
	path := "/api/v1/backends/" + url.PathEscape(backend) + "/servers/" + url.PathEscape(server)
	if err := c.do(http.MethodPut, path, u, &s, false); err != nil {
		return err
	}
	tw := newTable(w)
	serverHeader(tw)
	serverRow(tw, backend, s)
	return tw.Flush()
}

// reload returns the config errors of a refused reload (nil when it worked).
func (c *client) reload() ([]string, error) {
	var r api.ReloadResponse
	err := c.do(http.MethodPost, "/api/v1/reload", nil, &r, true)
	var he *httpError
	if errors.As(err, &he) && he.status == http.StatusUnprocessableEntity && !r.OK {
		if len(r.Errors) == 0 {
			return []string{"reload refused without a reason"}, nil
		}
		return r.Errors, nil
	}
	if err != nil {
		return nil, err
	}
	if !r.OK {
		return append([]string{"reload refused"}, r.Errors...), nil
	}
	return nil, nil
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

func serverHeader(tw io.Writer) {
	fmt.Fprintln(tw, "BACKEND\tSERVER\tSTATE\tHEALTH\tWEIGHT\tCONNS\tTOTAL\tLAST CHECK")
}

func serverRow(tw io.Writer, backend string, s api.Server) {
	name := s.Name
	if s.Backup {
		name += " (backup)"
	}
	state := s.State
	if s.OperatorState != "" && s.OperatorState != s.State {
		state += " (agent)"
	}
	weight := strconv.Itoa(s.Weight)
	if s.Weight != s.ConfigWeight {
		weight = fmt.Sprintf("%d/%d", s.Weight, s.ConfigWeight)
	}
	check := s.LastCheck
	if check == "" {
		check = "-"
	}
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", backend, name, state, s.Health, weight, s.Current, s.Total,
		oneLine(check))
}

// oneLine keeps a check reason from breaking the table.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func writeStatus(w io.Writer, st api.Status, fes []api.Frontend, bes []api.Backend) {
	tw := newTable(w)
	commit := st.Commit
	if len(commit) > 12 {
		commit = commit[:12]
	}
	fmt.Fprintf(tw, "palisade\t%s (commit %s, %s)\n", st.Version, commit, st.GoVersion)
	fmt.Fprintf(tw, "uptime\t%s (since %s)\n", formatUptime(st.UptimeSeconds), st.StartedAt.Format(time.RFC3339))
	sha := st.ConfigSHA256
	if len(sha) > 12 {
		sha = sha[:12]
	}
	fmt.Fprintf(tw, "config\t%s (sha256 %s)\n", st.ConfigFile, sha)
	if st.LastReload.OK {
		fmt.Fprintf(tw, "last reload\tok at %s\n", st.LastReload.At.Format(time.RFC3339))
	} else {
		fmt.Fprintf(tw, "last reload\tFAILED at %s, still running the previous config:\n", st.LastReload.At.Format(time.RFC3339))
		for _, e := range st.LastReload.Errors {
			fmt.Fprintf(tw, "\t  %s\n", e)
		}
	}
	sf := st.Synflood
	switch {
	case !sf.Enabled:
		fmt.Fprintf(tw, "synflood\tdisabled\n")
	case sf.Attached:
		fmt.Fprintf(tw, "synflood\tattached to %s (%s)%s\n", sf.Interface, sf.Mode, formatCounters(sf.Counters))
	default:
		fmt.Fprintf(tw, "synflood\tNOT attached to %s: %s\n", sf.Interface, sf.Error)
	}
	if len(st.VRRP) == 0 {
		fmt.Fprintf(tw, "vrrp\tnone\n")
	}
	for i, v := range st.VRRP {
		label := ""
		if i == 0 {
			label = "vrrp"
		}
		prio := strconv.Itoa(v.Priority)
		if v.EffectivePriority != v.Priority {
			prio = fmt.Sprintf("%d (configured %d)", v.EffectivePriority, v.Priority)
		}
		fmt.Fprintf(tw, "%s\t%s %s on %s vrid %d, priority %s, vips %s\n", label, v.Name, v.State, v.Interface,
			v.VirtualRouterID, prio, strings.Join(v.VIPs, " "))
	}
	tw.Flush()

	fmt.Fprintln(w)
	tw = newTable(w)
	fmt.Fprintln(tw, "FRONTEND\tMODE\tLISTEN\tSTATUS\tCONNS\tTOTAL\tIN\tOUT\tREJECTED")
	for _, f := range fes {
		status := "open"
		if !f.Healthy {
			status = "NO SERVER"
		}
		var rejected uint64
		for _, n := range f.Rejected {
			rejected += n
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%d\n", f.Name, f.Mode, strings.Join(f.Listen, ","), status,
			f.Current, f.Total, formatBytes(f.BytesIn), formatBytes(f.BytesOut), rejected)
	}
	tw.Flush()

	fmt.Fprintln(w)
	tw = newTable(w)
	fmt.Fprintln(tw, "BACKEND\tSTATUS\tBALANCE\tSERVERS")
	for _, b := range bes {
		status := "up"
		if !b.Up {
			status = "DOWN"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d available\n", b.Name, status, b.Balance, b.ActiveServers, len(b.Servers))
	}
	tw.Flush()
}

func formatCounters(m map[string]uint64) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return ", packets: " + strings.Join(parts, ", ")
}

// formatUptime renders seconds as "3d 4h 5m 6s", leaving out leading zero units.
func formatUptime(sec float64) string {
	n := int64(sec)
	parts := []struct {
		v    int64
		unit string
	}{{n / 86400, "d"}, {n % 86400 / 3600, "h"}, {n % 3600 / 60, "m"}, {n % 60, "s"}}
	var out []string
	for i, p := range parts {
		if p.v > 0 || len(out) > 0 || i == len(parts)-1 {
			out = append(out, fmt.Sprintf("%d%s", p.v, p.unit))
		}
	}
	return strings.Join(out, " ")
}

func formatBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTP"[exp])
}
