package healthcheck

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"time"
)

// maxExpectBuf bounds the data buffered while waiting for one expect step.
const maxExpectBuf = 16 << 10

// SendExpectChecker runs send / expect steps in order over one TCP
// connection. Each expect step waits, until the check timeout, for its
// substring or regular expression to appear in the data received since the
// previous expect step matched; the matched data and everything before it is
// then consumed. At most 16 KiB are buffered per step.
type SendExpectChecker struct {
	addr  func() string
	steps []compiledStep
}

type compiledStep struct {
	send   []byte
	expect []byte
	re     *regexp.Regexp
	label  string // for reasons: `expect "+PONG"`, `expect_regex "^220 "`
}

// NewSendExpectChecker compiles steps; see [Step].
func NewSendExpectChecker(steps []Step, addr func() string) (*SendExpectChecker, error) {
	return newSendExpectChecker(steps, addr)
}

func newSendExpectChecker(steps []Step, addr func() string) (*SendExpectChecker, error) {
	if len(steps) == 0 {
		return nil, fmt.Errorf("send_expect: no steps")
	}
	c := &SendExpectChecker{addr: addr}
	for i, st := range steps {
		var cs compiledStep
		switch {
		case st.Send != "" && st.Expect == "" && st.ExpectRegex == "":
			cs.send = []byte(st.Send)
			cs.label = fmt.Sprintf("send %q", st.Send)
		case st.Expect != "" && st.Send == "" && st.ExpectRegex == "":
			cs.expect = []byte(st.Expect)
			cs.label = fmt.Sprintf("expect %q", st.Expect)
		case st.ExpectRegex != "" && st.Send == "" && st.Expect == "":
			re, err := regexp.Compile(st.ExpectRegex)
			if err != nil {
				return nil, fmt.Errorf("steps[%d].expect_regex: %w", i, err)
			}
			cs.re = re
			cs.label = fmt.Sprintf("expect_regex %q", st.ExpectRegex)
		default:
			return nil, fmt.Errorf("steps[%d]: exactly one of send, expect, expect_regex must be set", i)
		}
		c.steps = append(c.steps, cs)
	}
	return c, nil
}

func (s *compiledStep) match(b []byte) (end int, ok bool) {
	if s.re != nil {
		loc := s.re.FindIndex(b)
		if loc == nil {
			return 0, false
		}
		return loc[1], true
	}
	i := bytes.Index(b, s.expect)
	if i < 0 {
		return 0, false
	}
	return i + len(s.expect), true
}

// Check runs the steps. Reasons name the failing step (1-based) and what was
// received: `step 2 expect "+PONG": got "-NOAUTH ...\r\n" (connection closed by server)`.
func (c *SendExpectChecker) Check(ctx context.Context) Result {
	start := time.Now()
	conn, stop, err := dial(ctx, c.addr())
	if err != nil {
		return fail(ctx, start, "connect", err)
	}
	defer func() { stop(); _ = conn.Close() }()
	buf := make([]byte, 0, 1024)
	var chunk [2048]byte
	for i := range c.steps {
		st := &c.steps[i]
		if st.send != nil {
			if _, err := conn.Write(st.send); err != nil {
				return fail(ctx, start, fmt.Sprintf("step %d %s", i+1, st.label), err)
			}
			continue
		}
		for {
			if end, ok := st.match(buf); ok {
				buf = buf[:copy(buf, buf[end:])]
				break
			}
			if len(buf) >= maxExpectBuf {
				return Result{
					Reason:   fmt.Sprintf("step %d %s: no match in %d bytes: got %s", i+1, st.label, len(buf), quote(buf, 64)),
					Duration: time.Since(start),
				}
			}
			n, err := conn.Read(chunk[:min(len(chunk), maxExpectBuf-len(buf))])
			buf = append(buf, chunk[:n]...)
			if err != nil {
				if _, ok := st.match(buf); ok {
					continue
				}
				return Result{
					Reason:   fmt.Sprintf("step %d %s: got %s (%s)", i+1, st.label, quote(buf, 64), errText(ctx, err)),
					Duration: time.Since(start),
				}
			}
		}
	}
	return Result{OK: true, Reason: fmt.Sprintf("%d steps passed", len(c.steps)), Duration: time.Since(start)}
}
