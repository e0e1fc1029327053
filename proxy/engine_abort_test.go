package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestEngineClientAbortReachesServer: a client that resets its connection
// has aborted, and the server gets a reset too (as from a direct client, and
// as HAProxy passes it on), so it can tell the abort from a finished request;
// a client that closes cleanly gives the server a clean EOF.
func TestEngineClientAbortReachesServer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		reset   bool
		wantErr error // of the server's read after the client's end
		term    string
	}{
		{name: "reset", reset: true, wantErr: syscall.ECONNRESET, term: "client_reset"},
		{name: "close", reset: false, wantErr: nil, term: "closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := make(chan string, 1)
			ended := make(chan error, 1)
			srv := startServer(t, func(c *net.TCPConn) {
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				line, err := br.ReadString('\n')
				if err != nil {
					ended <- err
					return
				}
				got <- line
				_, err = io.ReadAll(br)
				if err == nil && !tc.reset {
					c.Close() // the other way ends too: the session is over
				}
				ended <- err
			})
			p := startProxy(t, FrontendConfig{AccessLog: true}, BackendConfig{}, newServer("s1", srv.addr))
			c := dial(t, p.addr)
			if _, err := io.WriteString(c, "request\n"); err != nil {
				t.Fatal(err)
			}
			select {
			case <-got:
			case err := <-ended:
				t.Fatalf("server ended before the request: %v", err)
			case <-time.After(5 * time.Second):
				t.Fatal("the request did not reach the server")
			}
			if tc.reset {
				_ = c.SetLinger(0)
			}
			c.Close()
			var err error
			select {
			case err = <-ended:
			case <-time.After(5 * time.Second):
				t.Fatal("the server saw no end of the client's connection")
			}
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("server's read ended with %v, want %v", err, tc.wantErr)
			}
			if term := waitConnection(t, p)["termination"]; term != tc.term {
				t.Errorf("termination %q, want %q", term, tc.term)
			}
		})
	}
}
