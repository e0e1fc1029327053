package healthcheck

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// fakeRedisPing answers PING with reply, line by line.
func fakeRedisPing(t *testing.T, reply string) string {
	return serveTCP(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "PING\r\n" {
				_, _ = io.WriteString(c, reply)
				if strings.HasPrefix(reply, "-") {
					return // close, so the failing check ends without waiting for its timeout
				}
			} else {
				_, _ = io.WriteString(c, "-ERR unknown command\r\n")
			}
		}
	})
}

// fakeSMTP sends banner, then answers QUIT; with a banner other than 220
// it closes at once, as a refusing server does.
func fakeSMTP(t *testing.T, banner string) string {
	return serveTCP(t, func(c net.Conn) {
		_, _ = io.WriteString(c, banner)
		if !strings.HasPrefix(banner, "220 ") {
			return
		}
		br := bufio.NewReader(c)
		line, err := br.ReadString('\n')
		if err == nil && strings.EqualFold(strings.TrimSpace(line), "QUIT") {
			_, _ = io.WriteString(c, "221 2.0.0 Bye\r\n")
		}
	})
}

func TestSendExpectRedisPing(t *testing.T) {
	steps := []Step{{Send: "PING\r\n"}, {Expect: "+PONG"}}
	c := mustNew(t, Spec{Type: TypeSendExpect, Steps: steps}, fakeRedisPing(t, "+PONG\r\n"))
	if r := c.Check(checkCtx(t, time.Second)); !r.OK || r.Reason != "2 steps passed" {
		t.Errorf("PONG: %+v", r)
	}
	// Two round trips on one connection: the first PONG is consumed by the
	// first expect, so the second expect needs the second reply.
	steps2 := []Step{{Send: "PING\r\n"}, {Expect: "+PONG"}, {Send: "PING\r\n"}, {Expect: "+PONG\r\n"}}
	c = mustNew(t, Spec{Type: TypeSendExpect, Steps: steps2}, fakeRedisPing(t, "+PONG\r\n"))
	if r := c.Check(checkCtx(t, time.Second)); !r.OK {
		t.Errorf("two PINGs: %+v", r)
	}

	c = mustNew(t, Spec{Type: TypeSendExpect, Steps: steps}, fakeRedisPing(t, "-NOAUTH Authentication required.\r\n"))
	r := c.Check(checkCtx(t, 5*time.Second))
	want := `step 2 expect "+PONG": got "-NOAUTH Authentication required.\r\n" (connection closed by server)`
	if r.OK || r.Reason != want {
		t.Errorf("NOAUTH: got %q, want %q", r.Reason, want)
	}
}

func TestSendExpectSMTPBanner(t *testing.T) {
	steps := []Step{{ExpectRegex: `^220 `}, {Send: "QUIT\r\n"}, {ExpectRegex: `(?m)^221 `}}
	c := mustNew(t, Spec{Type: TypeSendExpect, Steps: steps}, fakeSMTP(t, "220 mail.example.org ESMTP Postfix\r\n"))
	if r := c.Check(checkCtx(t, time.Second)); !r.OK || r.Reason != "3 steps passed" {
		t.Errorf("banner: %+v", r)
	}
	c = mustNew(t, Spec{Type: TypeSendExpect, Steps: steps[:1]}, fakeSMTP(t, "554 5.3.2 go away\r\n"))
	r := c.Check(checkCtx(t, time.Second))
	if r.OK || !strings.HasPrefix(r.Reason, `step 1 expect_regex "^220 ": got "554 5.3.2 go away\r\n" (connection closed by server)`) {
		t.Errorf("554 banner: %+v", r)
	}
}

func TestSendExpectClosedAndRefused(t *testing.T) {
	steps := []Step{{Expect: "hello"}}
	addr := serveTCP(t, func(c net.Conn) { _, _ = io.WriteString(c, "bye") })
	c := mustNew(t, Spec{Type: TypeSendExpect, Steps: steps}, addr)
	if r := c.Check(checkCtx(t, time.Second)); r.OK || r.Reason != `step 1 expect "hello": got "bye" (connection closed by server)` {
		t.Errorf("closed: %+v", r)
	}
	// A match in the last data before the close still passes.
	addr = serveTCP(t, func(c net.Conn) { _, _ = io.WriteString(c, "well hello") })
	c = mustNew(t, Spec{Type: TypeSendExpect, Steps: steps}, addr)
	if r := c.Check(checkCtx(t, time.Second)); !r.OK {
		t.Errorf("match before close: %+v", r)
	}
	// A silent server: the check ends at its timeout.
	addr = serveTCP(t, func(c net.Conn) { _, _ = c.Read(make([]byte, 1)) })
	c = mustNew(t, Spec{Type: TypeSendExpect, Steps: steps}, addr)
	if r := c.Check(checkCtx(t, 200*time.Millisecond)); r.OK || r.Reason != `step 1 expect "hello": got "" (timeout)` {
		t.Errorf("silent: %+v", r)
	}
	c = mustNew(t, Spec{Type: TypeSendExpect, Steps: steps}, deadAddr(t))
	if r := c.Check(checkCtx(t, time.Second)); r.OK || r.Reason != "connect: connection refused" {
		t.Errorf("refused: %+v", r)
	}
}

func TestSendExpectBoundedBuffer(t *testing.T) {
	// The server streams far more than the buffer without the expected text.
	addr := serveTCP(t, func(c net.Conn) {
		junk := []byte(strings.Repeat("z", 4096))
		for i := 0; i < 64; i++ {
			if _, err := c.Write(junk); err != nil {
				return
			}
		}
	})
	c := mustNew(t, Spec{Type: TypeSendExpect, Steps: []Step{{Expect: "READY"}}}, addr)
	r := c.Check(checkCtx(t, 2*time.Second))
	if r.OK || !strings.HasPrefix(r.Reason, `step 1 expect "READY": no match in 16384 bytes: got "zzzz`) {
		t.Errorf("bounded buffer: %+v", r)
	}
}

func TestSendExpectPartialReads(t *testing.T) {
	// The expected text arrives in several writes (separate segments with
	// TCP_NODELAY, usually read separately).
	addr := serveTCP(t, func(c net.Conn) {
		for _, part := range []string{"+PO", "NG", "\r\n"} {
			if _, err := io.WriteString(c, part); err != nil {
				return
			}
		}
		_, _ = c.Read(make([]byte, 1))
	})
	c := mustNew(t, Spec{Type: TypeSendExpect, Steps: []Step{{Expect: "+PONG\r\n"}}}, addr)
	if r := c.Check(checkCtx(t, 2*time.Second)); !r.OK {
		t.Errorf("split reply: %+v", r)
	}
}
