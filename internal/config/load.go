package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"

	"gopkg.in/yaml.v3"
)

// Config is a parsed, defaulted and validated file.
type Config struct {
	File
	// Path is the file it was read from; SHA256 the hex digest of its bytes.
	Path   string
	SHA256 string
}

// Load reads and parses path. All problems are returned together as Errors.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Parse(path, b)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// Parse parses a config from b; name is used in error positions and to
// resolve nothing else (relative file paths are relative to the working directory).
func Parse(name string, b []byte) (*Config, error) {
	d := &decoder{file: name}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil && err != io.EOF {
		msg := err.Error()
		line := 1
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		d.errAt(Pos{Line: line, Col: 1}, "invalid YAML: %s", msg)
		return nil, d.errs
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		d.errAt(Pos{Line: extra.Line, Col: extra.Column}, "only one YAML document is allowed")
	}
	cfg := &Config{Path: name}
	sum := sha256.Sum256(b)
	cfg.SHA256 = hex.EncodeToString(sum[:])
	applyDefaults(reflectValue(&cfg.File))
	d.root = &cfg.File
	if len(doc.Content) > 0 {
		d.value(doc.Content[0], reflectValue(&cfg.File), "")
	} else {
		cfg.File.pos = Pos{1, 1}
	}
	finish(&cfg.File)
	d.validate(&cfg.File)
	if len(d.errs) > 0 {
		sortErrors(d.errs)
		return nil, d.errs
	}
	return cfg, nil
}

// finish fills values whose default depends on other values.
func finish(f *File) {
	for i := range f.Backends {
		h := &f.Backends[i].Health
		if h.Fastinter == 0 {
			h.Fastinter = h.Interval
		}
		if h.Downinter == 0 {
			h.Downinter = h.Interval
		}
	}
	for i := range f.Frontends {
		fe := &f.Frontends[i]
		if rl := fe.RateLimit; rl != nil && rl.Burst == 0 {
			rl.Burst = max(1, int(2*rl.PerSource.PerSecond))
		}
		if !fe.Has("defer_accept") && (fe.Mode == "http" || fe.ProxyProtocol.Accept) {
			// the client always speaks first: a request, or the PROXY header
			// nothing can be done without
			fe.DeferAccept = true
		}
	}
	for _, s := range []*SynRate{&f.Synflood.PerSource, &f.Synflood.PerPort} {
		if s.Burst == 0 {
			s.Burst = max(1, int(2*s.SynRate.PerSecond))
		}
	}
}
