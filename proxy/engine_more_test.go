package proxy

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/palisade-lb/palisade/internal/testutil"
	"github.com/palisade-lb/palisade/proxy/proxyproto"
)

// TestEngineBulkStartLeavesFull: a large reply sent at once leaves the
// proxy in full-sized segments from its first byte. The bytes of the first
// (buffered) read go with MSG_MORE, and the spliced rest fills their
// segment. Sent as a short segment of its own, that start would be the one
// segment of the reply with a new timestamp echo, too short for a Linux
// client's receive-RTT sample, and the client's receive window would not
// grow past ~94 KiB (see l7's TestEngineHeadLeavesWithBody).
func TestEngineBulkStartLeavesFull(t *testing.T) {
	t.Parallel()
	const reply = 200 << 10
	big := make([]byte, reply)
	p := heldProxy(t, FrontendConfig{}, func(c *net.TCPConn) {
		c.SetWriteBuffer(4 << 20) // takes the whole reply at once
		before := testutil.Acked(c)
		if _, err := c.Write(big); err != nil {
			return
		}
		// 64 KiB in the proxy's receive queue: 16 KiB for its buffer, and
		// more for the pipe
		testutil.AckedWait(c, before, 64<<10, 5*time.Second)
	})
	c := testutil.DialWideWindow(t, p.addr)
	cap := testutil.CaptureTo(t, c)
	io.WriteString(c, "go\n")
	if _, err := io.ReadFull(c, make([]byte, reply)); err != nil {
		t.Fatal(err)
	}
	seg := cap.Next(t, 5*time.Second)
	if first := seg.Len; first <= 40<<10 {
		t.Fatalf("the reply's first segment carried %d bytes: its start left without the spliced rest (want more than 40 KiB)", first)
	}
}

// TestEngineFINRidesOnLastBytes: a server that answers and closes, its FIN
// arriving with the answer, has both passed on in one segment (data + FIN),
// not the answer and then a FIN of its own (and its ACK): two packets fewer
// per connection where a request per connection is the rule.
func TestEngineFINRidesOnLastBytes(t *testing.T) {
	t.Parallel()
	const reply = "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello"
	cap := answerThenFIN(t, reply)
	seg := cap.Next(t, 5*time.Second)
	if seg.Len != len(reply) || !seg.FIN {
		t.Fatalf("the first segment to the client carried %d bytes, FIN %v; want the %d-byte reply with the FIN", seg.Len, seg.FIN, len(reply))
	}
}

// TestEngineFINRidesOnLastSplicedBytes: the same for an answer large enough
// to be spliced (over the 16 KiB buffer): the FIN found behind it goes out
// with its last segment, not as a segment of its own.
func TestEngineFINRidesOnLastSplicedBytes(t *testing.T) {
	t.Parallel()
	reply := strings.Repeat("0123456789abcdef", 40<<10/16) // 40 KiB: within the first receive window
	segs, n := answerThenFIN(t, reply).ToFIN(t, 5*time.Second)
	if segs[len(segs)-1].Len == 0 {
		t.Fatalf("segments to the client %v: the FIN came on its own after the reply", segs)
	}
	if n != len(reply) {
		t.Fatalf("segments to the client %v carried %d bytes up to the FIN, want %d", segs, n, len(reply))
	}
}

// answerThenFIN sends a request through a proxy whose server answers reply
// and shuts its side down while the proxy's loops are held, so that the
// proxy finds both there when it next reads; it returns the capture of what
// the client received, after checking the client read reply and EOF.
func answerThenFIN(t *testing.T, reply string) *testutil.Capture {
	t.Helper()
	p := heldProxy(t, FrontendConfig{}, replyThenFIN(reply))
	// a window that never holds the proxy's last bytes back: they would
	// wait in its socket for the FIN to join them, and hide a FIN of its own
	c := testutil.DialWideWindow(t, p.addr)
	cap := testutil.CaptureTo(t, c)
	io.WriteString(c, "GET / HTTP/1.0\n")
	got, err := io.ReadAll(c)
	if err != nil || string(got) != reply {
		t.Fatalf("read %d bytes, %v; want the %d-byte reply, then EOF", len(got), err, len(reply))
	}
	return cap
}

// replyThenFIN is a heldProxy server's answer: reply, then its FIN, both in
// the proxy's socket before the proxy reads.
func replyThenFIN(reply string) func(c *net.TCPConn) {
	return func(c *net.TCPConn) {
		c.Write([]byte(reply))
		c.CloseWrite()
		testutil.AckWait(c, 5*time.Second)
	}
}

// TestEngineServerResetAfterLastBytes: a server that answers and resets,
// the reset arriving with the answer, has the answer passed on and the
// session logged as server_reset: the read that finds the reset (looking
// for a FIN to send with the bytes) keeps it until they are out, rather
// than lose it and take the next read's EOF for a clean end.
func TestEngineServerResetAfterLastBytes(t *testing.T) {
	t.Parallel()
	const reply = "partial answer"
	p := heldProxy(t, FrontendConfig{AccessLog: true}, func(c *net.TCPConn) {
		c.Write([]byte(reply))
		testutil.AckWait(c, 5*time.Second) // the bytes are in, then the reset
		c.SetLinger(0)
		c.Close()
	})
	c := dial(t, p.addr)
	io.WriteString(c, "go\n")
	if got, _ := io.ReadAll(c); string(got) != reply {
		t.Fatalf("read %q; want the reply", got)
	}
	if term := waitConnection(t, p)["termination"]; term != "server_reset" {
		t.Errorf("termination %q, want server_reset", term)
	}
}

// heldProxy is a proxy in front of a server that reads one line as the
// request and answers it while the proxy's loops are held (testProxy.hold):
// the proxy finds the whole answer (what answer waits for) already there
// when it next reads.
func heldProxy(t *testing.T, fc FrontendConfig, answer func(c *net.TCPConn)) *testProxy {
	t.Helper()
	var pp atomic.Pointer[testProxy]
	srv := startServer(t, func(c *net.TCPConn) {
		br := bufio.NewReader(c)
		for {
			if _, err := br.ReadString('\n'); err != nil {
				return
			}
			release, ok := pp.Load().hold(t)
			if !ok {
				return
			}
			answer(c)
			release()
		}
	})
	p := startProxy(t, fc, BackendConfig{}, newServer("s1", srv.addr))
	pp.Store(p)
	return p
}

// TestEngineProxyHeaderJoinsFirstBytes: with send_proxy, the PROXY header
// and the client's first bytes (there when the server connection opens) go
// in one write, so the server receives them in one segment.
func TestEngineProxyHeaderJoinsFirstBytes(t *testing.T) {
	t.Parallel()
	const hello = "hello\n"
	segs := make(chan uint32, 1)
	srv := startServer(t, func(c *net.TCPConn) {
		br := bufio.NewReader(c)
		if _, err := proxyproto.ReadFrom(br); err != nil {
			t.Errorf("server: PROXY header: %v", err)
			return
		}
		if line, err := br.ReadString('\n'); err != nil || line != hello {
			t.Errorf("server: read %q, %v; want %q", line, err, hello)
			return
		}
		ti, err := testutil.TCPInfo(c)
		if err != nil {
			t.Errorf("server: TCP_INFO: %v", err)
			return
		}
		segs <- ti.Data_segs_in
	})
	p := startProxy(t, FrontendConfig{}, BackendConfig{SendProxy: 2}, newServer("s1", srv.addr))
	// the client's bytes are in before the proxy accepts (and connects)
	release, ok := p.hold(t)
	if !ok {
		t.Fatal("the proxy's loops have ended")
	}
	c := dial(t, p.addr)
	before := testutil.Acked(c)
	io.WriteString(c, hello)
	if !testutil.AckedWait(c, before, uint64(len(hello)), 5*time.Second) {
		t.Fatal("the client's bytes were not acknowledged")
	}
	release()
	select {
	case n := <-segs:
		if n != 1 {
			t.Fatalf("the server received the header and the client's bytes in %d data segments, want 1", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server got nothing")
	}
}

// TestEngineHalfClosedSessionKeepsNoPipe: once a spliced direction has
// passed its EOF on, its pipe goes back to the pool even while the other
// direction stays open (a half-closed session holds no pipe for the way
// that ended).
func TestEngineHalfClosedSessionKeepsNoPipe(t *testing.T) {
	t.Parallel()
	reply := strings.Repeat("0123456789abcdef", 40<<10/16) // spliced, and found with the FIN
	p := heldProxy(t, FrontendConfig{}, replyThenFIN(reply))
	c := dial(t, p.addr)
	io.WriteString(c, "GET / HTTP/1.0\n")
	got, err := io.ReadAll(c) // the client's own side stays open
	if err != nil || string(got) != reply {
		t.Fatalf("read %d bytes, %v; want the %d-byte reply, then EOF", len(got), err, len(reply))
	}
	var finished, piped int
	for _, s := range p.sessions(t) {
		if s.s.finished {
			finished++
			if s.s.p != nil {
				piped++
			}
		}
	}
	if finished != 1 || piped != 0 {
		t.Fatalf("%d sessions with the server's way finished, %d of them holding its pipe; want 1 and 0", finished, piped)
	}
}
