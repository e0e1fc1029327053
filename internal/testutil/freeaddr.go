// Package testutil holds helpers shared by the tests of several packages.
package testutil

import (
	"net"
	"sync"
	"testing"
)

var (
	freeMu    sync.Mutex
	handedOut = map[string]bool{}
)

// FreeAddr returns a loopback address nobody listened on a moment ago, never
// one it returned before in this process: the kernel may hand a port just
// closed out again at once, and two listeners of one test would then
// collide.
func FreeAddr(t testing.TB) string {
	t.Helper()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		freeMu.Lock()
		seen := handedOut[addr]
		handedOut[addr] = true
		freeMu.Unlock()
		if !seen {
			return addr
		}
	}
	t.Fatal("no fresh loopback port in 100 tries")
	return ""
}
