package proxy

import (
	"bufio"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/palisade-lb/palisade/internal/testutil"
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
	var pp atomic.Pointer[testProxy]
	srv := startServer(t, func(c *net.TCPConn) {
		c.SetWriteBuffer(4 << 20) // takes the whole reply at once
		br := bufio.NewReader(c)
		big := make([]byte, reply)
		for {
			if _, err := br.ReadString('\n'); err != nil {
				return
			}
			// the proxy reads only once the reply is there (as much of it
			// as its receive window takes)
			release, ok := pp.Load().hold(t)
			if !ok {
				return
			}
			before := testutil.Acked(c)
			if _, err := c.Write(big); err != nil {
				return
			}
			// 64 KiB in the proxy's receive queue: 16 KiB for its
			// buffer, and more for the pipe
			testutil.AckedWait(c, before, 64<<10, 5*time.Second)
			release()
		}
	})
	p := startProxy(t, FrontendConfig{}, BackendConfig{}, newServer("s1", srv.addr))
	pp.Store(p)
	c := testutil.DialWideWindow(t, p.addr)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	cap := testutil.CaptureTCP(t, netip.MustParseAddrPort(p.addr).Port(), uint16(c.LocalAddr().(*net.TCPAddr).Port))
	io.WriteString(c, "go\n")
	if _, err := io.ReadFull(c, make([]byte, reply)); err != nil {
		t.Fatal(err)
	}
	first, err := cap.NextPayload(time.Now().Add(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if first <= 40<<10 {
		t.Fatalf("the reply's first segment carried %d bytes: its start left without the spliced rest (want more than 40 KiB)", first)
	}
	t.Logf("first segment: %d bytes", first)
}
