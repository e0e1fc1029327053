package l7

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/palisade-lb/palisade/internal/testutil"
)

// A large Content-Length response leaves in full-sized segments: the head
// goes out with MSG_MORE and the start of the spliced body fills its
// segment. Sent on its own (the head and the part of the body read with it,
// under 33 KiB), it would be the one segment of the response with a new
// timestamp echo, too short for the client's receive-RTT sample, and a
// Linux client's receive window would never grow.
func TestEngineHeadLeavesWithBody(t *testing.T) {
	const bodyLen = 200 << 10
	reply := append([]byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", bodyLen)), bytes.Repeat([]byte("x"), bodyLen)...)
	var pp atomic.Pointer[proxy]
	srv := startRaw(t, func(c net.Conn) {
		tc := c.(*net.TCPConn)
		tc.SetWriteBuffer(4 << 20) // takes the whole response at once
		br := bufio.NewReader(c)
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			// the proxy reads only once the response is there (as much of
			// it as its receive window takes): more than its buffer's worth
			// of body waits behind the head
			release, ok := pp.Load().hold(t)
			if !ok {
				return
			}
			before := testutil.Acked(tc)
			tc.Write(reply)
			// 64 KiB in the proxy's receive queue: the head and 32 KiB
			// for its buffer, and more for the pipe
			testutil.AckedWait(tc, before, 64<<10, 5*time.Second)
			release()
		}
	})
	p, _ := proxyTo(t, Config{}, srv)
	pp.Store(p)
	if p.loop == nil {
		t.Skip("event-loop path only (L7_GOROUTINE is set)")
	}
	c := testutil.DialWideWindow(t, p.addr)
	cap := testutil.CaptureTo(t, c)
	br := bufio.NewReader(c)
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	if n != bodyLen {
		t.Fatalf("got %d body bytes, want %d", n, bodyLen)
	}
	seg := cap.Next(t, 5*time.Second)
	if first := seg.Len; first <= 40<<10 {
		t.Fatalf("the response's first segment carried %d bytes: the head left without the spliced body (want more than 40 KiB)", first)
	}
}

// A server that closes right after the part of a large body the proxy read
// with the head: nothing has reached the client yet, so it gets a 502, not
// a head and a cut body.
func TestEngineBodyEndsBeforeHeadSent(t *testing.T) {
	var h *[]byte
	ubufLen := len(ubufs.take(&h))
	ubufs.drop(&h)
	var pp atomic.Pointer[proxy]
	srv := startRaw(t, func(c net.Conn) {
		tc := c.(*net.TCPConn)
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		// the head and just enough body to fill the proxy's buffer, then
		// the FIN, all there before the proxy reads
		release, ok := pp.Load().hold(t)
		if !ok {
			return
		}
		head := []byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", 4*spliceMin))
		tc.Write(append(head, bytes.Repeat([]byte("x"), ubufLen-len(head))...))
		tc.CloseWrite()
		testutil.AckWait(tc, 5*time.Second)
		release()
		io.Copy(io.Discard, c)
	})
	p, _ := proxyTo(t, Config{}, srv)
	pp.Store(p)
	if p.loop == nil {
		t.Skip("event-loop path only (L7_GOROUTINE is set)")
	}
	c, br := dialWithin(t, p.addr, 10*time.Second)
	io.WriteString(c, "GET /cut HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 502 {
		t.Fatalf("status %d, want 502 (the server's body ended before anything was sent)", resp.StatusCode)
	}
}

// The last response on a connection the proxy closes (Connection: close)
// leaves with the FIN in one segment, not a FIN (and its ACK) of its own.
func TestEngineFINRidesOnLastResponse(t *testing.T) {
	got, cap := lastResponse(t, helloProxy(t), "hello")
	seg := cap.Next(t, 5*time.Second)
	if seg.Len != len(got) || !seg.FIN {
		t.Fatalf("the first segment to the client carried %d bytes, FIN %v; want the %d-byte response with the FIN", seg.Len, seg.FIN, len(got))
	}
}

// TestEngineFINRidesOnLastSplicedResponse: the same for a response whose
// body is large enough to be spliced (over spliceMin).
func TestEngineFINRidesOnLastSplicedResponse(t *testing.T) {
	body := strings.Repeat("0123456789abcdef", 100<<10/16) // spliced: over spliceMin
	s := scripted(t, map[string]string{"/": fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)})
	p := startProxy(t, Config{DefaultBackend: "app"}, fakeBackends{"app": {name: "app", servers: []*fakeServer{s}}})
	got, cap := lastResponse(t, p, body)
	segs, n := cap.ToFIN(t, 5*time.Second)
	if segs[len(segs)-1].Len == 0 || n != len(got) {
		t.Fatalf("segments to the client %v (%d bytes up to the FIN, of %d): want the FIN on the last bytes", segs, n, len(got))
	}
}

// lastResponse sends one GET with Connection: close through p's event-loop
// path (the test is skipped on the goroutine path) and reads the response,
// which must end with body, and the EOF; it returns the response and the
// capture of what the client received.
func lastResponse(t *testing.T, p *proxy, body string) ([]byte, *testutil.Capture) {
	t.Helper()
	if p.loop == nil {
		t.Skip("event-loop path only (L7_GOROUTINE is set)")
	}
	// a window that never holds the proxy's last bytes back: they would
	// wait in its socket for the FIN to join them, and hide a FIN of its own
	c := testutil.DialWideWindow(t, p.addr)
	cap := testutil.CaptureTo(t, c)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	got, err := io.ReadAll(c)
	if err != nil || !bytes.HasSuffix(got, []byte("\r\n\r\n"+body)) {
		t.Fatalf("read %d bytes, %v; want the response, then EOF", len(got), err)
	}
	return got, cap
}

// The last response, held back for the FIN (MSG_MORE), still reaches a
// client that sent more than palisade read: closing over unread bytes
// resets the connection and drops what is queued to send, so the shutdown
// that sends the response and the FIN comes first.
func TestEngineLastResponseSurvivesUnreadBytes(t *testing.T) {
	p := helloProxy(t)
	c, br := dialWithin(t, p.addr, 10*time.Second)
	// more than palisade's read buffer after the request: bytes it never reads
	extra := bytes.Repeat([]byte("x"), 256<<10)
	go c.Write(append([]byte("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"), extra...))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "hello" {
		t.Fatalf("body %q, %v; want hello", body, err)
	}
}

// helloProxy is a proxy in front of a server that answers every request
// with "hello" (Content-Length, keep-alive).
func helloProxy(t *testing.T) *proxy {
	t.Helper()
	s := scripted(t, map[string]string{"/": "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"})
	return startProxy(t, Config{DefaultBackend: "app"}, fakeBackends{"app": {name: "app", servers: []*fakeServer{s}}})
}
