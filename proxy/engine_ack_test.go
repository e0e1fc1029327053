package proxy

import (
	"bufio"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/palisade-lb/palisade/internal/testutil"
)

// TestEngineAcksDrainedBulk: once a direction moves bulk (splice mode) and
// drains its source, the bytes read are acknowledged at once, not at the
// delayed-ACK timer (40 ms on Linux). A sender waiting for that ACK (a full
// send buffer or window, a corked last segment, as nginx's tcp_nopush)
// would otherwise stall for it at the end of every burst.
//
// The server sends a bulk reply, measures how long the proxy takes to
// acknowledge all of it (testutil.AckWait), then sends a short tail. The median over several exchanges is compared with the timer: a
// mechanism test, not a speed target (held back, every wait is >= 40 ms).
func TestEngineAcksDrainedBulk(t *testing.T) {
	t.Parallel()
	const bulk, tail, rounds = 40 << 10, 16, 7 // bulk: over the 16 KiB read buffer, so splice mode
	waits := make(chan time.Duration, rounds+1)
	srv := startServer(t, func(c *net.TCPConn) {
		br := bufio.NewReader(c)
		big, end := make([]byte, bulk), make([]byte, tail)
		for {
			if _, err := br.ReadString('\n'); err != nil {
				return
			}
			if _, err := c.Write(big); err != nil {
				return
			}
			waits <- testutil.AckWait(c, 5*time.Second)
			if _, err := c.Write(end); err != nil {
				return
			}
		}
	})
	p := startProxy(t, FrontendConfig{}, BackendConfig{}, newServer("s1", srv.addr))
	c := dial(t, p.addr)
	buf := make([]byte, bulk+tail)
	var got []time.Duration
	for i := range rounds {
		if _, err := io.WriteString(c, "go\n"); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("exchange %d: %v", i, err)
		}
		got = append(got, <-waits)
	}
	slices.Sort(got)
	if med := got[len(got)/2]; med >= 20*time.Millisecond {
		t.Fatalf("the server waited %v (median) for the ACK of a bulk reply; all: %v", med, got)
	}
}
