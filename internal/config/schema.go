package config

// The schema. Struct tags drive decoding, defaults, range checks and the
// generated reference in the README:
//
//	yaml:"key"        the key
//	default:"v"       value when the key is absent (decoded like a YAML scalar)
//	enum:"a|b|c"      allowed values
//	min:"x" max:"y"   inclusive range (numbers and durations)
//	required:"true"   the key must be present
//	doc:"..."         one line for the reference
//
// Keys under `defaults:` are inherited by every frontend and backend that does
// not set them itself.

// File is a whole configuration file.
type File struct {
	At
	Global    Global     `yaml:"global" doc:"process-wide settings"`
	Defaults  Defaults   `yaml:"defaults" doc:"inherited by every frontend and backend unless overridden"`
	Frontends []Frontend `yaml:"frontends" doc:"listeners and how they route"`
	Backends  []Backend  `yaml:"backends" doc:"server pools"`
	VRRP      VRRP       `yaml:"vrrp" doc:"floating virtual IPs (VRRPv3)"`
	Synflood  Synflood   `yaml:"synflood" doc:"XDP SYN-flood filter"`
}

// Global holds process-wide settings.
type Global struct {
	At
	Grace   Duration `yaml:"grace" default:"10s" doc:"how long open connections may drain on stop, or when their frontend is removed by a reload"`
	Threads int      `yaml:"threads" default:"0" min:"0" max:"1024" doc:"OS threads running Go code at once, like HAProxy's nbthread, and the number of tcp event loops (0 = one per CPU; GOMAXPROCS in the environment wins; the event loops keep the count they started with until restart)"`
	Log     Log      `yaml:"log"`
	Admin   Admin    `yaml:"admin"`
}

// Log configures the process log.
type Log struct {
	At
	Level  string `yaml:"level" default:"info" enum:"debug|info|warn|error" doc:"minimum level logged"`
	Format string `yaml:"format" default:"json" enum:"json|text" doc:"log line format on stderr"`
	File   string `yaml:"file" doc:"log to this file instead of stderr (reopened on SIGUSR1)"`
}

// Admin configures the admin API.
type Admin struct {
	At
	Listen        string `yaml:"listen" doc:"host:port or unix:/path; empty disables the admin API"`
	TokenFile     string `yaml:"token_file" doc:"file holding the bearer token; required when listen is TCP"`
	MetricsPublic bool   `yaml:"metrics_public" default:"false" doc:"serve /metrics without a token"`
}

// Defaults are inherited by frontends and backends.
type Defaults struct {
	At
	Timeouts Timeouts `yaml:"timeouts"`
	Retries  int      `yaml:"retries" default:"2" min:"0" max:"10" doc:"connect retries, each to a different server when possible"`
	Health   Health   `yaml:"health"`
}

// Timeouts bound each phase of a connection.
type Timeouts struct {
	At
	Connect     Duration `yaml:"connect" default:"3s" min:"1ms" doc:"connecting to a server"`
	Client      Duration `yaml:"client" default:"60s" min:"1ms" doc:"client inactivity (no bytes either way) on an established connection"`
	Server      Duration `yaml:"server" default:"60s" min:"1ms" doc:"server inactivity; in http mode, waiting for the response"`
	HTTPRequest Duration `yaml:"http_request" default:"10s" min:"1ms" doc:"http mode: receiving a complete request head (slowloris guard)"`
	Idle        Duration `yaml:"idle" default:"60s" min:"1ms" doc:"http mode: keep-alive idle time between requests"`
}

// Frontend is a set of listeners with one mode and one routing table.
type Frontend struct {
	At
	Name           string        `yaml:"name" required:"true" doc:"unique name (metrics label)"`
	Mode           string        `yaml:"mode" default:"tcp" enum:"tcp|http" doc:"tcp proxies bytes; http parses requests"`
	Listen         []string      `yaml:"listen" required:"true" doc:"addresses: \":8080\" (all, IPv4+IPv6), \"0.0.0.0:80\", \"[::1]:443\""`
	TLS            *TLS          `yaml:"tls" doc:"http mode: terminate TLS"`
	MaxConns       int           `yaml:"max_conns" default:"0" min:"0" doc:"concurrent connections; further ones are closed at once (0 = no limit)"`
	Allow          []Prefix      `yaml:"allow" doc:"client CIDRs allowed (empty = all)"`
	Deny           []Prefix      `yaml:"deny" doc:"client CIDRs refused; wins over allow"`
	RateLimit      *RateLimit    `yaml:"rate_limit" doc:"new connections per client IP"`
	ProxyProtocol  ProxyProtocol `yaml:"proxy_protocol"`
	AccessLog      bool          `yaml:"access_log" default:"false" doc:"one log line per connection (tcp) or request (http)"`
	DeferAccept    bool          `yaml:"defer_accept" doc:"accept a connection only once the client has sent data (TCP_DEFER_ACCEPT, HAProxy's defer-accept); a silent client is accepted after about 1 s. Default: on in http mode and with proxy_protocol.accept, else off; turn it on in tcp mode only where the client speaks first (HTTP, TLS, redis), never for SMTP, MySQL or FTP"`
	Timeouts       Timeouts      `yaml:"timeouts" doc:"inherits defaults.timeouts"`
	Routes         []Route       `yaml:"routes" doc:"http mode: first match wins"`
	DefaultBackend string        `yaml:"default_backend" doc:"backend when no route matches"`
	HTTP           HTTPOptions   `yaml:"http" doc:"http mode options"`
}

// TLS is a frontend's certificates.
type TLS struct {
	At
	Cert       string     `yaml:"cert" doc:"PEM certificate chain"`
	Key        string     `yaml:"key" doc:"PEM private key"`
	Certs      []CertPair `yaml:"certs" doc:"several certificates, chosen by SNI"`
	MinVersion string     `yaml:"min_version" default:"1.2" enum:"1.2|1.3" doc:"lowest TLS version offered"`
}

// CertPair is one certificate and its key.
type CertPair struct {
	At
	Cert string `yaml:"cert" required:"true"`
	Key  string `yaml:"key" required:"true"`
}

// RateLimit limits new connections per client IP.
type RateLimit struct {
	At
	PerSource Rate `yaml:"per_source" required:"true" doc:"sustained rate, N/s or N/m"`
	Burst     int  `yaml:"burst" min:"1" doc:"bucket size (default: 2 seconds' worth, at least 1)"`
}

// ProxyProtocol controls PROXY protocol from clients.
type ProxyProtocol struct {
	At
	Accept  bool     `yaml:"accept" default:"false" doc:"require a PROXY v1/v2 header from every client"`
	Timeout Duration `yaml:"timeout" default:"3s" min:"1ms" doc:"time to receive the header"`
}

// Route is one http routing rule. Every condition given must match.
type Route struct {
	At
	Host       string            `yaml:"host" doc:"exact host or *.suffix wildcard"`
	PathPrefix string            `yaml:"path_prefix"`
	Path       string            `yaml:"path" doc:"exact path"`
	Methods    []string          `yaml:"methods"`
	Headers    map[string]string `yaml:"headers" doc:"header name: exact value"`
	Backend    string            `yaml:"backend"`
	Redirect   *Redirect         `yaml:"redirect"`
}

// Redirect answers with a redirect instead of proxying.
type Redirect struct {
	At
	Scheme string `yaml:"scheme" enum:"|http|https"`
	Host   string `yaml:"host"`
	Port   int    `yaml:"port" min:"0" max:"65535"`
	Path   string `yaml:"path"`
	Code   int    `yaml:"code" default:"301" enum:"301|302|303|307|308"`
}

// HTTPOptions are http-mode frontend options.
type HTTPOptions struct {
	At
	RequestHeaders  HeaderRules `yaml:"request_headers"`
	ResponseHeaders HeaderRules `yaml:"response_headers"`
	Forwarded       bool        `yaml:"forwarded" default:"true" doc:"add X-Forwarded-For/-Proto/-Host and Forwarded"`
	RequestID       bool        `yaml:"request_id" default:"true" doc:"add X-Request-ID when absent"`
	MaxHeaderBytes  int         `yaml:"max_header_bytes" default:"65536" min:"1024" max:"1048576" doc:"request line + headers; larger is answered 431"`
}

// HeaderRules edit headers.
type HeaderRules struct {
	At
	Set    map[string]string `yaml:"set"`
	Add    map[string]string `yaml:"add"`
	Remove []string          `yaml:"remove"`
}

// Backend is a pool of servers.
type Backend struct {
	At
	Name            string   `yaml:"name" required:"true" doc:"unique name (metrics label)"`
	Balance         string   `yaml:"balance" default:"roundrobin" enum:"roundrobin|leastconn|random2|source|uri_hash|first" doc:"balancing policy"`
	SendProxy       string   `yaml:"send_proxy" default:"off" enum:"off|v1|v2" doc:"send a PROXY header on every server connection (in http mode such connections are not reused)"`
	Retries         int      `yaml:"retries" min:"0" max:"10" doc:"inherits defaults.retries"`
	Timeouts        Timeouts `yaml:"timeouts" doc:"inherits defaults.timeouts"`
	Health          Health   `yaml:"health" doc:"inherits defaults.health"`
	Slowstart       Duration `yaml:"slowstart" default:"0s" doc:"ramp a recovered server's weight up over this time"`
	Cookie          string   `yaml:"cookie" doc:"http mode: stickiness cookie name"`
	ResolveInterval Duration `yaml:"resolve_interval" default:"30s" min:"1s" doc:"re-resolve server host names this often; a failed lookup keeps the last address"`
	Servers         []Server `yaml:"servers" doc:"at least one"`
}

// Server is one upstream server.
type Server struct {
	At
	Name     string `yaml:"name" required:"true" doc:"unique within the backend"`
	Address  string `yaml:"address" required:"true" doc:"host:port; host may be a name"`
	Weight   int    `yaml:"weight" default:"100" min:"0" max:"256" doc:"relative share of new connections (0 = none)"`
	MaxConns int    `yaml:"max_conns" default:"0" min:"0" doc:"concurrent connections (0 = no limit)"`
	Backup   bool   `yaml:"backup" default:"false" doc:"used only when no primary server is available"`
}

// Health configures active and passive checks.
type Health struct {
	At
	Type         string     `yaml:"type" default:"tcp" enum:"tcp|http|https|send_expect|redis_master|none" doc:"active check"`
	Interval     Duration   `yaml:"interval" default:"2s" min:"10ms" doc:"between checks"`
	Timeout      Duration   `yaml:"timeout" default:"1s" min:"1ms" doc:"one check"`
	Rise         int        `yaml:"rise" default:"2" min:"1" max:"1000" doc:"consecutive successes to mark up"`
	Fall         int        `yaml:"fall" default:"3" min:"1" max:"1000" doc:"consecutive failures to mark down"`
	Fastinter    Duration   `yaml:"fastinter" min:"10ms" doc:"interval while a server changes state (default: interval)"`
	Downinter    Duration   `yaml:"downinter" min:"10ms" doc:"interval while a server is down (default: interval)"`
	Port         int        `yaml:"port" default:"0" min:"0" max:"65535" doc:"check this port instead of the server's"`
	Path         string     `yaml:"path" default:"/" doc:"http(s)"`
	Method       string     `yaml:"method" default:"GET" doc:"http(s)"`
	Host         string     `yaml:"host" doc:"http(s) Host header (default: the server's host)"`
	ExpectStatus string     `yaml:"expect_status" default:"200-399" doc:"http(s): codes or ranges, e.g. 200,204,300-399"`
	ExpectBody   string     `yaml:"expect_body" doc:"http(s): substring the body must contain"`
	TLS          CheckTLS   `yaml:"tls" doc:"https"`
	Steps        []Step     `yaml:"steps" doc:"send_expect: send and expect steps in order"`
	Passive      Passive    `yaml:"passive"`
	Agent        *AgentSpec `yaml:"agent" doc:"HAProxy-style agent check beside the active check"`
}

// CheckTLS configures https checks.
type CheckTLS struct {
	At
	SNI    string `yaml:"sni"`
	Verify bool   `yaml:"verify" default:"false" doc:"verify the server certificate"`
	CA     string `yaml:"ca" doc:"PEM CA bundle for verify (default: system roots)"`
}

// Step is one send_expect step: exactly one of the keys.
type Step struct {
	At
	Send        string `yaml:"send"`
	Expect      string `yaml:"expect" doc:"substring"`
	ExpectRegex string `yaml:"expect_regex"`
}

// Passive marks servers down from real traffic failures.
type Passive struct {
	At
	MaxFails int      `yaml:"max_fails" default:"0" min:"0" doc:"failures within window that mark a server down (0 = off)"`
	Window   Duration `yaml:"window" default:"10s" min:"1ms"`
}

// AgentSpec is an HAProxy agent check.
type AgentSpec struct {
	At
	Port     int      `yaml:"port" required:"true" min:"1" max:"65535"`
	Interval Duration `yaml:"interval" default:"2s" min:"10ms"`
	Send     string   `yaml:"send" doc:"string sent after connecting"`
}

// VRRP holds the VRRP instances.
type VRRP struct {
	At
	Instances []VRRPInstance `yaml:"instances"`
}

// VRRPInstance is one virtual router.
type VRRPInstance struct {
	At
	Name            string      `yaml:"name" required:"true"`
	Interface       string      `yaml:"interface" required:"true"`
	VirtualRouterID int         `yaml:"virtual_router_id" required:"true" min:"1" max:"255"`
	Priority        int         `yaml:"priority" default:"100" min:"1" max:"255" doc:"255 = address owner"`
	AdvertInterval  Duration    `yaml:"advert_interval" default:"1s" min:"10ms" max:"40.95s" doc:"multiple of 10ms"`
	Preempt         bool        `yaml:"preempt" default:"true"`
	PreemptDelay    Duration    `yaml:"preempt_delay" default:"0s" max:"1h"`
	VIPs            []Prefix    `yaml:"vips" required:"true" doc:"addresses with prefix length, e.g. 192.0.2.10/24"`
	UnicastPeers    []Addr      `yaml:"unicast_peers" doc:"empty = multicast 224.0.0.18"`
	Track           []TrackSpec `yaml:"track"`
	GARP            GARP        `yaml:"garp"`
	Notify          string      `yaml:"notify" doc:"script called with INSTANCE STATE PRIORITY"`
}

// TrackSpec lowers priority when a frontend or interface fails.
type TrackSpec struct {
	At
	Frontend  string `yaml:"frontend"`
	Interface string `yaml:"interface"`
	Weight    int    `yaml:"weight" default:"0" min:"-254" max:"254" doc:"added to priority while failed; 0 = FAULT"`
}

// GARP configures gratuitous ARP.
type GARP struct {
	At
	Repeat   int      `yaml:"repeat" default:"5" min:"1" max:"100"`
	Interval Duration `yaml:"interval" default:"100ms" min:"1ms"`
	Refresh  Duration `yaml:"refresh" default:"60s" doc:"0 = no periodic refresh"`
}

// Synflood configures the XDP SYN-flood filter.
type Synflood struct {
	At
	Enabled   bool     `yaml:"enabled" default:"false"`
	Required  bool     `yaml:"required" default:"false" doc:"refuse to start when XDP cannot be attached"`
	Interface string   `yaml:"interface"`
	XDPMode   string   `yaml:"xdp_mode" default:"auto" enum:"auto|native|generic"`
	Mode      string   `yaml:"mode" default:"ratelimit" enum:"ratelimit|syncookie"`
	PerSource SynRate  `yaml:"per_source" default:"{syn_rate: 100/s, burst: 200}"`
	PerPort   SynRate  `yaml:"per_port" default:"{syn_rate: 20000/s, burst: 40000}"`
	Allow     []Prefix `yaml:"allow" doc:"never limited"`
	Deny      []Prefix `yaml:"deny" doc:"always dropped"`
}

// SynRate is a SYN token bucket.
type SynRate struct {
	At
	SynRate Rate `yaml:"syn_rate"`
	Burst   int  `yaml:"burst" min:"1"`
}
