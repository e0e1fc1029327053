package healthcheck

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseAgentReply(t *testing.T) {
	none := AgentReply{WeightPercent: -1, MaxConn: -1}
	with := func(f func(*AgentReply)) AgentReply { r := none; f(&r); return r }
	cases := []struct {
		in   string
		want AgentReply
		err  string
	}{
		{"up\n", with(func(r *AgentReply) { r.State = AgentUp }), ""},
		{"UP\r\n", with(func(r *AgentReply) { r.State = AgentUp }), ""},
		{"down", with(func(r *AgentReply) { r.State = AgentDown }), ""},
		{"drain", with(func(r *AgentReply) { r.Admin = AgentDrain }), ""},
		{"maint", with(func(r *AgentReply) { r.Admin = AgentMaint }), ""},
		{"ready", with(func(r *AgentReply) { r.Admin = AgentReady }), ""},
		{"stopped", with(func(r *AgentReply) { r.State = AgentStopped }), ""},
		{"fail#disk full", with(func(r *AgentReply) { r.State = AgentFail; r.Message = "disk full" }), ""},
		{"down # backend db unreachable \n", with(func(r *AgentReply) { r.State = AgentDown; r.Message = "backend db unreachable" }), ""},
		{"75%", with(func(r *AgentReply) { r.WeightPercent = 75 }), ""},
		{"0%", with(func(r *AgentReply) { r.WeightPercent = 0 }), ""},
		{"50", with(func(r *AgentReply) { r.WeightPercent = 50 }), ""},
		{"up, ready, 100%", with(func(r *AgentReply) { r.State = AgentUp; r.Admin = AgentReady; r.WeightPercent = 100 }), ""},
		{"ready\tup 25% maxconn:30", with(func(r *AgentReply) { r.State = AgentUp; r.Admin = AgentReady; r.WeightPercent = 25; r.MaxConn = 30 }), ""},
		{"up up", with(func(r *AgentReply) { r.State = AgentUp }), ""},
		{"drain 10% #going away", with(func(r *AgentReply) { r.Admin = AgentDrain; r.WeightPercent = 10; r.Message = "going away" }), ""},
		{"#just a note", with(func(r *AgentReply) { r.Message = "just a note" }), ""},
		{"25600%", with(func(r *AgentReply) { r.WeightPercent = 25600 }), ""},
		{"", none, "empty"},
		{"  ,, \r\n", none, "empty"},
		{"#", none, "empty"},
		{"up down", none, `conflicting states "up" and "down"`},
		{"drain maint", none, `conflicting states "drain" and "maint"`},
		{"sleepy", none, `unknown word "sleepy"`},
		{"75%%", none, "weight"},
		{"-5%", none, `unknown word "-5%"`},
		{"25601%", none, "above 25600"},
		{"99999999999%", none, "not a number"},
		{"maxconn:", none, "maxconn"},
		{"maxconn:x", none, "maxconn"},
		{"up\x00", none, "control character"},
		{"up\ndown", none, "control character"},
	}
	for _, tc := range cases {
		got, err := ParseAgentReply(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrAgentReply) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%q: got %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestAgentReplyString(t *testing.T) {
	r := AgentReply{State: AgentUp, Admin: AgentDrain, WeightPercent: 40, MaxConn: 7, Message: "x # y"}
	if got := r.String(); got != "up drain 40% maxconn:7 #x # y" {
		t.Errorf("String() = %q", got)
	}
	if AgentState(99).String() != "AgentState(99)" || AgentMaint.String() != "maint" {
		t.Error("AgentState.String")
	}
}

// FuzzParseAgentReply: never panics; accepted replies are in range and
// round-trip through String.
func FuzzParseAgentReply(f *testing.F) {
	for _, s := range []string{"up", "down#x", "drain 50%", "up, ready, 100%\r\n", "maxconn:10 fail # db", "75", "", "#", "up down"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		r, err := ParseAgentReply(line)
		if err != nil {
			if !errors.Is(err, ErrAgentReply) {
				t.Fatalf("error %v does not wrap ErrAgentReply", err)
			}
			return
		}
		if r.WeightPercent < -1 || r.WeightPercent > MaxAgentWeightPercent || r.MaxConn < -1 {
			t.Fatalf("out of range: %+v", r)
		}
		if r.State > AgentFail || (r.Admin != AgentNoState && (r.Admin < AgentReady || r.Admin > AgentMaint)) {
			t.Fatalf("bad state: %+v", r)
		}
		again, err := ParseAgentReply(r.String())
		if err != nil || again != r {
			t.Fatalf("round trip of %q via %q: %+v, %v", line, r.String(), again, err)
		}
	})
}

// fakeAgent answers every connection with reply; when expectSend is set it
// first reads that many bytes and records them.
func fakeAgent(t *testing.T, reply string, expectSend int, got *sync.Map) string {
	return serveTCP(t, func(c net.Conn) {
		if expectSend > 0 {
			buf := make([]byte, expectSend)
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			got.Store("send", string(buf))
		}
		_, _ = io.WriteString(c, reply)
	})
}

func agentFor(t *testing.T, spec AgentSpec, agentAddr string) *AgentChecker {
	t.Helper()
	_, port, _ := net.SplitHostPort(agentAddr)
	for _, c := range port {
		spec.Port = spec.Port*10 + int(c-'0')
	}
	// The server's own port differs: the agent port replaces it.
	a, err := NewAgentChecker(spec, static("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAgentChecker(t *testing.T) {
	var got sync.Map
	a := agentFor(t, AgentSpec{Send: "status web\n"}, fakeAgent(t, "drain 50%\nignored\n", len("status web\n"), &got))
	r, err := a.Check(checkCtx(t, time.Second))
	if err != nil || r.Admin != AgentDrain || r.WeightPercent != 50 {
		t.Errorf("drain 50%%: %+v, %v", r, err)
	}
	if s, _ := got.Load("send"); s != "status web\n" {
		t.Errorf("agent received %q", s)
	}

	// An agent that closes after the reply without a newline.
	a = agentFor(t, AgentSpec{}, fakeAgent(t, "down#maintenance window", 0, nil))
	if r, err := a.Check(checkCtx(t, time.Second)); err != nil || r.State != AgentDown || r.Message != "maintenance window" {
		t.Errorf("down: %+v, %v", r, err)
	}

	var ae *AgentError
	a = agentFor(t, AgentSpec{}, fakeAgent(t, "bogus\n", 0, nil))
	if _, err := a.Check(checkCtx(t, time.Second)); !errors.As(err, &ae) || ae.Stage != "parse" || !errors.Is(err, ErrAgentReply) {
		t.Errorf("bogus reply: %v", err)
	}
	a = agentFor(t, AgentSpec{}, fakeAgent(t, "", 0, nil))
	if _, err := a.Check(checkCtx(t, time.Second)); !errors.As(err, &ae) || ae.Stage != "read" || err.Error() != "agent read: connection closed by server" {
		t.Errorf("silent agent: %v", err)
	}
	a = agentFor(t, AgentSpec{}, fakeAgent(t, strings.Repeat("u", 2000), 0, nil))
	if _, err := a.Check(checkCtx(t, time.Second)); !errors.As(err, &ae) || ae.Stage != "read" || !strings.Contains(err.Error(), "longer than 1024") {
		t.Errorf("long line: %v", err)
	}
	a = agentFor(t, AgentSpec{}, deadAddr(t))
	if _, err := a.Check(checkCtx(t, time.Second)); !errors.As(err, &ae) || ae.Stage != "connect" || err.Error() != "agent connect: connection refused" {
		t.Errorf("no agent: %v", err)
	}
	if _, err := NewAgentChecker(AgentSpec{Port: 0}, static("127.0.0.1:1")); err == nil {
		t.Error("port 0 accepted")
	}
}

func TestAgentRunner(t *testing.T) {
	clk := newFakeClock()
	var mu sync.Mutex
	var events []AgentEvent
	var at []time.Time
	agentAddr := serveTCP(t, func(c net.Conn) {
		_, _ = io.WriteString(c, "up 80%\n")
		_, _ = bufio.NewReader(c).ReadByte()
	})
	a := agentFor(t, AgentSpec{}, agentAddr)
	r := NewAgentRunner(a, 3*time.Second, time.Second, Options{Clock: clk, Rand: half}, func(e AgentEvent) {
		mu.Lock()
		events = append(events, e)
		at = append(at, clk.Now())
		mu.Unlock()
	})
	runScheduler(t, r.Run)
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(events) }
	for i := 1; i <= 3; i++ {
		clk.fireNext(t)
		waitFor(t, "agent event", func() bool { return count() == i })
	}
	mu.Lock()
	defer mu.Unlock()
	for i, want := range []time.Duration{1500 * time.Millisecond, 4500 * time.Millisecond, 7500 * time.Millisecond} {
		if at[i].Sub(t0) != want {
			t.Errorf("query %d at t0+%s, want t0+%s", i, at[i].Sub(t0), want)
		}
		if e := events[i]; e.Err != nil || e.Reply.State != AgentUp || e.Reply.WeightPercent != 80 {
			t.Errorf("event %d: %+v", i, e)
		}
	}
}
