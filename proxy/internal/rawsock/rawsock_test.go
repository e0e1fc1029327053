package rawsock

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/palisade-lb/palisade/internal/testutil"
)

func TestSockaddrRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		in     string
		want   string
		family int
		size   uintptr
	}{
		{"ipv4 loopback", "127.0.0.1:8080", "127.0.0.1:8080", unix.AF_INET, unix.SizeofSockaddrInet4},
		{"ipv4 port 0", "10.1.2.3:0", "10.1.2.3:0", unix.AF_INET, unix.SizeofSockaddrInet4},
		{"ipv4 max port", "198.18.255.254:65535", "198.18.255.254:65535", unix.AF_INET, unix.SizeofSockaddrInet4},
		{"ipv4 any", "0.0.0.0:1", "0.0.0.0:1", unix.AF_INET, unix.SizeofSockaddrInet4},
		{"ipv6 loopback", "[::1]:443", "[::1]:443", unix.AF_INET6, unix.SizeofSockaddrInet6},
		{"ipv6 full", "[2001:db8:1:2:3:4:5:6]:65534", "[2001:db8:1:2:3:4:5:6]:65534", unix.AF_INET6, unix.SizeofSockaddrInet6},
		{"ipv6 any", "[::]:256", "[::]:256", unix.AF_INET6, unix.SizeofSockaddrInet6},
		{"ipv4-mapped ipv6 unmapped", "[::ffff:192.0.2.7]:53", "192.0.2.7:53", unix.AF_INET6, unix.SizeofSockaddrInet6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := netip.MustParseAddrPort(tt.in)
			var sa unix.RawSockaddrAny
			n, family := SockaddrOf(in, &sa)
			if n != tt.size || family != tt.family {
				t.Fatalf("SockaddrOf(%v) = %d, %d; want %d, %d", in, n, family, tt.size, tt.family)
			}
			if int(sa.Addr.Family) != tt.family {
				t.Fatalf("family field %d, want %d", sa.Addr.Family, tt.family)
			}
			// the port field holds network byte order whatever the host's
			var port [2]byte
			if family == unix.AF_INET {
				p := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa))
				port = *(*[2]byte)(unsafe.Pointer(&p.Port))
				if netip.AddrFrom4(p.Addr) != in.Addr() {
					t.Errorf("address field %v, want %v", netip.AddrFrom4(p.Addr), in.Addr())
				}
			} else {
				p := (*unix.RawSockaddrInet6)(unsafe.Pointer(&sa))
				port = *(*[2]byte)(unsafe.Pointer(&p.Port))
				if netip.AddrFrom16(p.Addr) != in.Addr() {
					t.Errorf("address field %v, want %v", netip.AddrFrom16(p.Addr), in.Addr())
				}
			}
			if got := binary.BigEndian.Uint16(port[:]); got != in.Port() {
				t.Errorf("port bytes %x decode to %d, want %d", port, got, in.Port())
			}
			if got, want := AddrPortOf(&sa), netip.MustParseAddrPort(tt.want); got != want {
				t.Errorf("AddrPortOf = %v, want %v", got, want)
			}
		})
	}
	t.Run("ipv6 zone", func(t *testing.T) {
		lo, err := net.InterfaceByName("lo")
		if err != nil {
			t.Skip("no lo interface")
		}
		for zone, want := range map[string]uint32{"lo": uint32(lo.Index), "7": 7, "no-such-if0": 0} {
			var sa unix.RawSockaddrAny
			p := (*unix.RawSockaddrInet6)(unsafe.Pointer(&sa))
			p.Flowinfo, p.Scope_id = 0xdead, 0xbeef // a reused buffer's stale fields are overwritten
			in := netip.AddrPortFrom(netip.MustParseAddr("fe80::1").WithZone(zone), 80)
			if n, _ := SockaddrOf(in, &sa); n != unix.SizeofSockaddrInet6 {
				t.Fatalf("SockaddrOf(%v) length %d", in, n)
			}
			if p.Scope_id != want || p.Flowinfo != 0 {
				t.Errorf("%v: scope %d flowinfo %d, want scope %d flowinfo 0", in, p.Scope_id, p.Flowinfo, want)
			}
		}
	})
	t.Run("invalid", func(t *testing.T) {
		var sa unix.RawSockaddrAny
		if n, family := SockaddrOf(netip.AddrPort{}, &sa); n != 0 || family != 0 {
			t.Errorf("SockaddrOf(invalid) = %d, %d; want 0, 0", n, family)
		}
		if got := AddrPortOf(&sa); got.IsValid() {
			t.Errorf("AddrPortOf(unset) = %v, want the zero value", got)
		}
		sa.Addr.Family = unix.AF_UNIX
		if got := AddrPortOf(&sa); got.IsValid() {
			t.Errorf("AddrPortOf(AF_UNIX) = %v, want the zero value", got)
		}
	})
}

func TestByteOrder(t *testing.T) {
	t.Parallel()
	for _, v := range []uint16{0, 1, 0x00ff, 0xff00, 0x1234, 8080, 0xfffe, 0xffff} {
		var mem [2]byte
		binary.NativeEndian.PutUint16(mem[:], htons(v))
		if got := binary.BigEndian.Uint16(mem[:]); got != v {
			t.Errorf("htons(%#x) lays out as %x, want big-endian %#x", v, mem, v)
		}
		binary.BigEndian.PutUint16(mem[:], v)
		if got := ntohs(binary.NativeEndian.Uint16(mem[:])); got != v {
			t.Errorf("ntohs of big-endian %x = %#x, want %#x", mem, got, v)
		}
	}
	for v := range 1 << 16 {
		if got := ntohs(htons(uint16(v))); got != uint16(v) {
			t.Fatalf("ntohs(htons(%#x)) = %#x", v, got)
		}
		if htons(uint16(v)) != ntohs(uint16(v)) {
			t.Fatalf("htons(%#x) != ntohs(%#x)", v, v)
		}
	}
}

// TestRawConnectLoopback checks the encoding against the kernel: Connect
// reaches a listener at the encoded address, and SockName decodes the
// address the listener sees as the peer.
func TestRawConnectLoopback(t *testing.T) {
	t.Parallel()
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			host := "127.0.0.1:0"
			if network == "tcp6" {
				host = "[::1]:0"
			}
			ln, err := net.Listen(network, host)
			if err != nil {
				t.Skipf("no %s loopback: %v", network, err)
			}
			defer ln.Close()
			ap := ln.Addr().(*net.TCPAddr).AddrPort()
			fd, e := Connect(ap)
			if fd < 0 {
				t.Fatalf("Connect(%v): %v", ap, e)
			}
			defer unix.Close(fd)
			if e != 0 && e != unix.EINPROGRESS {
				t.Fatalf("Connect(%v) = %d, %v", ap, fd, e)
			}
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			peer := c.RemoteAddr().(*net.TCPAddr).AddrPort()
			if got := SockName(fd); got != peer {
				t.Errorf("SockName = %v, the listener sees %v", got, peer)
			}
			if e := SockError(fd); e != 0 {
				t.Errorf("SO_ERROR after connecting: %v", e)
			}
		})
	}
	t.Run("refused", func(t *testing.T) {
		ap := testutil.RefusingAddr(t)
		fd, e := Connect(ap)
		if fd < 0 {
			if e != unix.ECONNREFUSED {
				t.Fatalf("Connect to a closed port: %v, want ECONNREFUSED", e)
			}
			return
		}
		defer unix.Close(fd)
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		if _, err := unix.Poll(pfd, 5000); err != nil && !errors.Is(err, unix.EINTR) {
			t.Fatal(err)
		}
		if pfd[0].Revents == 0 {
			t.Fatal("connect to a closed port not finished after 5s")
		}
		if e := SockError(fd); e != unix.ECONNREFUSED {
			t.Errorf("SO_ERROR = %v, want ECONNREFUSED", e)
		}
		if e := SockError(fd); e != 0 {
			t.Errorf("SO_ERROR not cleared by reading it: %v", e)
		}
	})
	t.Run("invalid", func(t *testing.T) {
		if fd, e := Connect(netip.AddrPort{}); fd != -1 || e != unix.EAFNOSUPPORT {
			t.Errorf("Connect(invalid) = %d, %v; want -1, EAFNOSUPPORT", fd, e)
		}
	})
}

func TestSend(t *testing.T) {
	t.Parallel()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	if n, e := Send(fds[0], []byte("head "), []byte("and body"), true); e != 0 || n != 13 {
		t.Fatalf("Send = %d, %v; want 13, 0", n, e)
	}
	if n, e := Send(fds[0], []byte("; tail"), nil, false); e != 0 || n != 6 {
		t.Fatalf("Send = %d, %v; want 6, 0", n, e)
	}
	buf := make([]byte, 64)
	got := ""
	for len(got) < 19 {
		n, err := unix.Read(fds[1], buf)
		if err != nil {
			t.Fatal(err)
		}
		got += string(buf[:n])
	}
	if got != "head and body; tail" {
		t.Fatalf("read %q; want the pieces in order", got)
	}
}
