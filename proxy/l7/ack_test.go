package l7

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/palisade-lb/palisade/internal/testutil"
)

// A server that has sent part of a response body and waits for its data to
// be acknowledged (a full send buffer, or a corked last segment, as nginx's
// tcp_nopush does) must not wait for the proxy's delayed-ACK timer (40 ms
// on Linux): mid-body nothing goes back to the server for the ACK to ride
// on. Seen as a bimodal p99 with nginx behind the proxy (test/bench/http).
//
// The server writes the head and a first part of the body, then measures
// how long the proxy takes to acknowledge it (testutil.AckWait), then
// writes the rest. The median over several exchanges is compared with
// the delayed-ACK timer: it is a mechanism test, not a speed target (with
// the ACK held back every sample is >= 40 ms; sent at once, well under 1).
func TestServerDataAckedMidBody(t *testing.T) {
	for _, tc := range []struct {
		name string
		body int // first part: 16 KiB
	}{
		{"copied", 48 << 10},   // remainder under spliceMin: through the buffer
		{"spliced", 256 << 10}, // remainder moved with splice(2)
	} {
		t.Run(tc.name, func(t *testing.T) {
			const first, rounds = 16 << 10, 7
			waits := make(chan time.Duration, rounds+1)
			srv := startRaw(t, func(c net.Conn) {
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", tc.body, strings.Repeat("a", first))
					waits <- testutil.AckWait(c.(*net.TCPConn), 5*time.Second)
					c.Write([]byte(strings.Repeat("b", tc.body-first)))
				}
			})
			p, _ := proxyTo(t, Config{}, srv)
			c, br := dialWithin(t, p.addr, 30*time.Second)
			var got []time.Duration
			for i := range rounds {
				io.WriteString(c, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("exchange %d: %v", i, err)
				}
				n, err := io.Copy(io.Discard, resp.Body)
				if err != nil || n != int64(tc.body) {
					t.Fatalf("exchange %d: body %d of %d bytes: %v", i, n, tc.body, err)
				}
				got = append(got, <-waits)
			}
			slices.Sort(got)
			if med := got[len(got)/2]; med >= 20*time.Millisecond {
				t.Fatalf("the server waited %v (median) for the ACK of a partly sent body; all: %v", med, got)
			}
		})
	}
}
