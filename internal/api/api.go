// Package api holds the JSON shapes of the admin API, shared by the daemon
// that fills them, the HTTP handlers that serve them and `palisade ctl`.
package api

import "time"

// Status is GET /api/v1/status.
type Status struct {
	Version       string    `json:"version"`
	Commit        string    `json:"commit"`
	GoVersion     string    `json:"go_version"`
	StartedAt     time.Time `json:"started_at"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	ConfigFile    string    `json:"config_file"`
	ConfigSHA256  string    `json:"config_sha256"`
	LastReload    Reload    `json:"last_reload"`
	VRRP          []VRRP    `json:"vrrp"`
	Synflood      Synflood  `json:"synflood"`
}

// Reload is the outcome of the last config load.
type Reload struct {
	OK     bool      `json:"ok"`
	At     time.Time `json:"at"`
	SHA256 string    `json:"sha256,omitempty"`
	Errors []string  `json:"errors,omitempty"`
}

// Frontend is one entry of GET /api/v1/frontends.
type Frontend struct {
	Name           string            `json:"name"`
	Mode           string            `json:"mode"`
	Listen         []string          `json:"listen"`
	DefaultBackend string            `json:"default_backend,omitempty"`
	Healthy        bool              `json:"healthy"` // listening and its default backend has an available server
	Current        int64             `json:"current_connections"`
	Total          uint64            `json:"connections_total"`
	BytesIn        uint64            `json:"bytes_in"`
	BytesOut       uint64            `json:"bytes_out"`
	Rejected       map[string]uint64 `json:"rejected"`
	MaxConns       int               `json:"max_conns"`
}

// Backend is GET /api/v1/backends/{b}.
type Backend struct {
	Name          string   `json:"name"`
	Balance       string   `json:"balance"`
	Up            bool     `json:"up"`
	ActiveServers int      `json:"active_servers"`
	Servers       []Server `json:"servers"`
}

// Server is one server of a backend.
type Server struct {
	Name          string `json:"name"`
	Address       string `json:"address"`  // as configured
	Resolved      string `json:"resolved"` // ip:port in use
	Backup        bool   `json:"backup"`
	State         string `json:"state"`  // ready | drain | maint (effective, incl. the agent's)
	Health        string `json:"health"` // up | down | unknown
	Available     bool   `json:"available"`
	Weight        int    `json:"weight"`        // effective now
	ConfigWeight  int    `json:"config_weight"` // configured, or the API override
	MaxConns      int    `json:"max_conns"`
	Current       int64  `json:"current_connections"`
	Total         uint64 `json:"connections_total"`
	ConnectFails  uint64 `json:"connect_failures_total"`
	BytesIn       uint64 `json:"bytes_in"`
	BytesOut      uint64 `json:"bytes_out"`
	LastCheck     string `json:"last_check,omitempty"`
	AgentDown     bool   `json:"agent_down,omitempty"`
	OperatorState string `json:"operator_state"` // ready | drain | maint as set through the API
}

// ServerUpdate is the body of PUT /api/v1/backends/{b}/servers/{s}; absent fields are unchanged.
type ServerUpdate struct {
	State  *string `json:"state,omitempty"`
	Weight *int    `json:"weight,omitempty"`
}

// VRRP is one VRRP instance.
type VRRP struct {
	Name              string    `json:"name"`
	Interface         string    `json:"interface"`
	VirtualRouterID   int       `json:"virtual_router_id"`
	State             string    `json:"state"`
	Priority          int       `json:"priority"`
	EffectivePriority int       `json:"effective_priority"`
	Master            string    `json:"master,omitempty"`
	Since             time.Time `json:"since"`
	VIPs              []string  `json:"vips"`
}

// Synflood is the XDP filter's state.
type Synflood struct {
	Enabled   bool              `json:"enabled"`
	Attached  bool              `json:"attached"`
	Interface string            `json:"interface,omitempty"`
	Mode      string            `json:"mode,omitempty"`     // native | generic
	Error     string            `json:"error,omitempty"`    // why it is not attached
	Counters  map[string]uint64 `json:"counters,omitempty"` // verdict → packets
}

// Error is every error response.
type Error struct {
	Error string `json:"error"`
}

// ReloadResponse is POST /api/v1/reload.
type ReloadResponse struct {
	OK     bool     `json:"ok"`
	Errors []string `json:"errors,omitempty"`
}
