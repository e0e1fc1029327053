package healthcheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// AgentState is a state word of an agent reply.
type AgentState uint8

// Agent state words. Up, Down, Stopped and Fail are operational states
// (AgentReply.State); Ready, Drain and Maint are administrative states
// (AgentReply.Admin).
const (
	AgentNoState AgentState = iota
	AgentUp
	AgentDown
	AgentStopped
	AgentFail
	AgentReady
	AgentDrain
	AgentMaint
)

var agentStateNames = [...]string{"", "up", "down", "stopped", "fail", "ready", "drain", "maint"}

func (s AgentState) String() string {
	if int(s) < len(agentStateNames) {
		return agentStateNames[s]
	}
	return "AgentState(" + strconv.Itoa(int(s)) + ")"
}

// MaxAgentWeightPercent bounds an agent's weight percentage: 256 (the largest
// weight) at 100 times the smallest non-zero weight.
const MaxAgentWeightPercent = 25600

// AgentReply is one parsed agent-check reply line.
type AgentReply struct {
	// State is the operational state the agent asked for (up, down,
	// stopped, fail), or AgentNoState.
	State AgentState
	// Admin is the administrative state asked for (ready, drain, maint), or
	// AgentNoState. HAProxy allows both kinds in one reply: "up ready".
	Admin AgentState
	// WeightPercent is the weight relative to the configured one ("75%";
	// a plain "75" means the same), or -1 when absent.
	WeightPercent int
	// MaxConn is "maxconn:N", or -1 when absent.
	MaxConn int
	// Message is the text after '#', trimmed ("down#disk full").
	Message string
}

// String formats r as a reply line that parses back to r.
func (r AgentReply) String() string {
	var words []string
	if r.State != AgentNoState {
		words = append(words, r.State.String())
	}
	if r.Admin != AgentNoState {
		words = append(words, r.Admin.String())
	}
	if r.WeightPercent >= 0 {
		words = append(words, strconv.Itoa(r.WeightPercent)+"%")
	}
	if r.MaxConn >= 0 {
		words = append(words, "maxconn:"+strconv.Itoa(r.MaxConn))
	}
	s := strings.Join(words, " ")
	if r.Message != "" {
		s += " #" + r.Message
	}
	return s
}

// ErrAgentReply wraps every ParseAgentReply error.
var ErrAgentReply = errors.New("bad agent reply")

// ParseAgentReply parses one line of HAProxy's agent-check protocol: words
// separated by spaces, tabs or commas, case-insensitive: up, down, stopped,
// fail, ready, drain, maint, "N%" (or a plain N) for the weight, "maxconn:N";
// everything after '#' is a message. A trailing CR/LF is ignored. Unknown
// words, conflicting states, control characters and empty replies are errors
// wrapping ErrAgentReply.
func ParseAgentReply(line string) (AgentReply, error) {
	r := AgentReply{WeightPercent: -1, MaxConn: -1}
	line = strings.TrimRight(line, "\r\n")
	for i := 0; i < len(line); i++ {
		if c := line[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return r, fmt.Errorf("%w: control character at byte %d", ErrAgentReply, i)
		}
	}
	words, msg, hasMsg := strings.Cut(line, "#")
	if hasMsg {
		r.Message = strings.TrimSpace(msg)
	}
	fields := strings.FieldsFunc(words, func(c rune) bool { return c == ' ' || c == '\t' || c == ',' })
	if len(fields) == 0 && r.Message == "" {
		return r, fmt.Errorf("%w: empty", ErrAgentReply)
	}
	for _, w := range fields {
		lw := strings.ToLower(w)
		switch lw {
		case "up", "down", "stopped", "fail":
			st := agentWord(lw)
			if r.State != AgentNoState && r.State != st {
				return r, fmt.Errorf("%w: conflicting states %q and %q", ErrAgentReply, r.State, lw)
			}
			r.State = st
			continue
		case "ready", "drain", "maint":
			st := agentWord(lw)
			if r.Admin != AgentNoState && r.Admin != st {
				return r, fmt.Errorf("%w: conflicting states %q and %q", ErrAgentReply, r.Admin, lw)
			}
			r.Admin = st
			continue
		}
		if v, ok := strings.CutPrefix(lw, "maxconn:"); ok {
			n, err := parseAgentNumber(v, 1<<30)
			if err != nil {
				return r, fmt.Errorf("%w: maxconn %q: %v", ErrAgentReply, v, err)
			}
			r.MaxConn = n
			continue
		}
		if w[0] >= '0' && w[0] <= '9' {
			n, err := parseAgentNumber(strings.TrimSuffix(w, "%"), MaxAgentWeightPercent)
			if err != nil {
				return r, fmt.Errorf("%w: weight %q: %v", ErrAgentReply, w, err)
			}
			r.WeightPercent = n
			continue
		}
		return r, fmt.Errorf("%w: unknown word %q", ErrAgentReply, w)
	}
	return r, nil
}

func agentWord(w string) AgentState {
	for i, name := range agentStateNames {
		if i > 0 && name == w {
			return AgentState(i)
		}
	}
	return AgentNoState
}

func parseAgentNumber(s string, limit int) (int, error) {
	if s == "" || len(s) > 10 {
		return 0, errors.New("not a number")
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, errors.New("not a number")
		}
		n = n*10 + int(c-'0')
	}
	if n > limit {
		return 0, fmt.Errorf("above %d", limit)
	}
	return n, nil
}

// maxAgentLine bounds the agent reply line.
const maxAgentLine = 1024

// AgentChecker queries an HAProxy-style agent on the server's host.
type AgentChecker struct {
	addr func() string
	send []byte
}

// NewAgentChecker returns an agent check against the host of addr() at
// spec.Port.
func NewAgentChecker(spec AgentSpec, addr func() string) (*AgentChecker, error) {
	if spec.Port < 1 || spec.Port > 65535 {
		return nil, fmt.Errorf("agent port must be 1..65535, got %d", spec.Port)
	}
	if addr == nil {
		return nil, errors.New("healthcheck: nil address function")
	}
	c := &AgentChecker{addr: withPort(addr, spec.Port)}
	if spec.Send != "" {
		c.send = []byte(spec.Send)
	}
	return c, nil
}

// AgentError is a failed agent query. Stage is "connect", "write", "read"
// or "parse".
type AgentError struct {
	Stage string
	Err   error
	text  string
}

func (e *AgentError) Error() string { return "agent " + e.Stage + ": " + e.text }
func (e *AgentError) Unwrap() error { return e.Err }

// Check connects, sends the optional string, reads one line (up to 1 KiB,
// ended by a newline or by the agent closing) and parses it. A failed query
// is an *AgentError; as in HAProxy it says nothing about the server's health.
func (c *AgentChecker) Check(ctx context.Context) (AgentReply, error) {
	noReply := AgentReply{WeightPercent: -1, MaxConn: -1}
	agentErr := func(stage string, err error) error {
		return &AgentError{Stage: stage, Err: err, text: errText(ctx, err)}
	}
	conn, stop, err := dial(ctx, c.addr())
	if err != nil {
		return noReply, agentErr("connect", err)
	}
	defer func() { stop(); _ = conn.Close() }()
	if c.send != nil {
		if _, err := conn.Write(c.send); err != nil {
			return noReply, agentErr("write", err)
		}
	}
	line, err := readAgentLine(conn)
	if err != nil {
		return noReply, agentErr("read", err)
	}
	reply, err := ParseAgentReply(line)
	if err != nil {
		return noReply, &AgentError{Stage: "parse", Err: err, text: err.Error()}
	}
	return reply, nil
}

func readAgentLine(conn net.Conn) (string, error) {
	buf := make([]byte, 0, 128)
	var chunk [256]byte
	for {
		n, err := conn.Read(chunk[:min(len(chunk), maxAgentLine-len(buf))])
		if i := bytes.IndexByte(chunk[:n], '\n'); i >= 0 {
			return string(append(buf, chunk[:i]...)), nil
		}
		buf = append(buf, chunk[:n]...)
		if errors.Is(err, io.EOF) && len(buf) > 0 {
			return string(buf), nil
		}
		if err != nil {
			return "", err
		}
		if len(buf) >= maxAgentLine {
			return "", fmt.Errorf("%w: line longer than %d bytes", ErrAgentReply, maxAgentLine)
		}
	}
}

// AgentEvent is the outcome of one agent query.
type AgentEvent struct {
	Reply    AgentReply // valid when Err is nil
	Err      error      // *AgentError
	Duration time.Duration
}
