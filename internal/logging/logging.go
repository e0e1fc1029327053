// Package logging sets up the process log: log/slog with a level that can
// change on reload and an output file that is reopened on SIGUSR1.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
)

// Output is an io.Writer over stderr or a file that can be reopened (after logrotate).
type Output struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

// Open returns an Output writing to path, or to stderr when path is "".
func Open(path string) (*Output, error) {
	o := &Output{path: path}
	if err := o.Reopen(); err != nil {
		return nil, err
	}
	return o, nil
}

// Reopen closes and reopens the file (no-op for stderr).
func (o *Output) Reopen() error {
	if o.path == "" {
		return nil
	}
	f, err := os.OpenFile(o.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("opening log file: %w", err)
	}
	o.mu.Lock()
	old := o.f
	o.f = f
	o.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
	return nil
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.f == nil {
		return os.Stderr.Write(p)
	}
	return o.f.Write(p)
}

// ParseLevel parses debug|info|warn|error.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(strings.ToUpper(s)))
	return l, err
}

// New builds a logger writing format ("json" or "text") to w at level.
func New(w io.Writer, format string, level *slog.LevelVar) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
