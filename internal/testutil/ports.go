// Package testutil holds helpers shared by the tests of several packages.
package testutil

import (
	"net"
	"net/netip"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
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

// BoundSocket returns a TCP socket bound to a loopback port that it keeps
// from anyone else, not listening (connections to it are refused), and
// that address. It is closed when the test ends.
func BoundSocket(t testing.TB) (int, netip.AddrPort) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fd, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port))
}

// RefusingAddr is a loopback address that refuses connections for the
// whole test (see BoundSocket). A listener closed to free its port would
// not do: the kernel may hand that port to the next listener.
func RefusingAddr(t testing.TB) netip.AddrPort {
	t.Helper()
	_, ap := BoundSocket(t)
	return ap
}
