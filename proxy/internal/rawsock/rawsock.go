// Package rawsock holds the event loops' system calls. Every descriptor they
// touch is non-blocking, so they return at once and are made without telling
// the Go scheduler (RawSyscall): a loop's thread never blocks in them.
package rawsock

import (
	"net"
	"net/netip"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Read reads from fd.
func Read(fd int, b []byte) (int, unix.Errno) {
	r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(r), e
}

// Write sends on a socket (never raising SIGPIPE).
func Write(fd int, b []byte) (int, unix.Errno) {
	r, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), unix.MSG_NOSIGNAL, 0, 0)
	return int(r), e
}

func Splice(in, out, n int) (int, unix.Errno) {
	r, _, e := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n),
		unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
	return int(r), e
}

// AckNow sends at once the ACK the kernel may be holding back for data
// already read from fd (TCP_QUICKACK), and leaves its delayed-ACK
// "interactive" mode until the next write. For a reader that has drained a
// socket mid-message and will send nothing back before more arrives: the
// ACK has nothing to ride on, and a sender waiting for it (a full send
// buffer or window, a corked last segment) would otherwise wait for the
// delayed-ACK timer, 40 ms or more on Linux.
func AckNow(fd int) { SetInt(fd, unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1) }

// Cork holds fd's last partial segment back (TCP_CORK) until a shutdown or
// close sends it with the FIN. Unlike MSG_MORE, which holds it only until
// the next push, it also holds it when an ACK for earlier segments comes in
// first and the kernel pushes what is queued.
func Cork(fd int) { SetInt(fd, unix.IPPROTO_TCP, unix.TCP_CORK, 1) }

func Close(fd int) { unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0) }

func ShutdownWrite(fd int) unix.Errno {
	_, _, e := unix.RawSyscall(unix.SYS_SHUTDOWN, uintptr(fd), unix.SHUT_WR, 0)
	return e
}

func SetInt(fd, level, opt, v int) unix.Errno {
	v32 := int32(v)
	_, _, e := unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&v32)), 4, 0)
	return e
}

// ResetClose closes fd with a reset (SO_LINGER 0), as rejections do.
func ResetClose(fd int) {
	l := unix.Linger{Onoff: 1, Linger: 0}
	unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_LINGER,
		uintptr(unsafe.Pointer(&l)), unsafe.Sizeof(l), 0)
	Close(fd)
}

// Accept accepts one connection, non-blocking and close-on-exec, and
// writes the peer address into sa.
func Accept(lfd int, sa *unix.RawSockaddrAny) (int, unix.Errno) {
	n := uint32(unsafe.Sizeof(*sa))
	r, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(lfd), uintptr(unsafe.Pointer(sa)),
		uintptr(unsafe.Pointer(&n)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	return int(r), e
}

// Connect opens a non-blocking TCP socket with TCP_NODELAY and starts
// connecting it to ap. It returns the socket and 0 (connected),
// EINPROGRESS (in progress) or the error (the socket is then closed, -1).
func Connect(ap netip.AddrPort) (int, unix.Errno) {
	var sa unix.RawSockaddrAny
	n, family := SockaddrOf(ap, &sa)
	if n == 0 {
		return -1, unix.EAFNOSUPPORT
	}
	r, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(family), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if e != 0 {
		return -1, e
	}
	fd := int(r)
	SetInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	_, _, e = unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), n)
	if e != 0 && e != unix.EINPROGRESS {
		Close(fd)
		return -1, e
	}
	return fd, e
}

// SockName returns the local address of fd.
func SockName(fd int) netip.AddrPort {
	var sa unix.RawSockaddrAny
	n := uint32(unsafe.Sizeof(sa))
	_, _, e := unix.RawSyscall(unix.SYS_GETSOCKNAME, uintptr(fd), uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&n)))
	if e != 0 {
		return netip.AddrPort{}
	}
	return AddrPortOf(&sa)
}

// SockError reads and clears fd's pending error (SO_ERROR).
func SockError(fd int) unix.Errno {
	var v int32
	n := uint32(4)
	unix.RawSyscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_ERROR,
		uintptr(unsafe.Pointer(&v)), uintptr(unsafe.Pointer(&n)), 0)
	return unix.Errno(v)
}

// AddrPortOf decodes an IPv4 or IPv6 socket address (IPv4-mapped IPv6
// unmapped); other families give the zero value.
func AddrPortOf(sa *unix.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case unix.AF_INET:
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(p.Addr), ntohs(p.Port))
	case unix.AF_INET6:
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom16(p.Addr).Unmap(), ntohs(p.Port))
	}
	return netip.AddrPort{}
}

// SockaddrOf encodes ap into sa and returns its length and family (0, 0 for
// an invalid address).
func SockaddrOf(ap netip.AddrPort, sa *unix.RawSockaddrAny) (uintptr, int) {
	a := ap.Addr()
	switch {
	case a.Is4():
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*p = unix.RawSockaddrInet4{Family: unix.AF_INET, Port: htons(ap.Port()), Addr: a.As4()}
		return unsafe.Sizeof(*p), unix.AF_INET
	case a.Is6():
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		*p = unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: htons(ap.Port()), Addr: a.As16()}
		if z := a.Zone(); z != "" { // link-local: the zone names the interface
			p.Scope_id = zoneIndex(z)
		}
		return unsafe.Sizeof(*p), unix.AF_INET6
	}
	return 0, 0
}

// zoneIndex is the interface index of an IPv6 zone (a name or a number);
// 0 if there is no such interface.
func zoneIndex(zone string) uint32 {
	if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(n)
	}
	if ifi, err := net.InterfaceByName(zone); err == nil {
		return uint32(ifi.Index)
	}
	return 0
}

// ntohs and htons convert the port field, which holds network byte order
// in a host-order uint16.
func ntohs(v uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&v))
	return uint16(b[0])<<8 | uint16(b[1])
}

func htons(v uint16) uint16 {
	var out uint16
	b := (*[2]byte)(unsafe.Pointer(&out))
	b[0], b[1] = byte(v>>8), byte(v)
	return out
}

// Send writes a, then b if it is not empty, with one sendmsg(2) (EPIPE, no
// SIGPIPE, as Write); a must not be empty. With more (MSG_MORE) the kernel
// holds back a last partial segment until the next write, which must follow
// at once: it then leaves with those bytes, not as a small segment of its own.
func Send(fd int, a, b []byte, more bool) (int, unix.Errno) {
	iov := [2]unix.Iovec{{Base: &a[0]}, {}}
	iov[0].SetLen(len(a))
	m := unix.Msghdr{Iov: &iov[0]}
	m.SetIovlen(1)
	if len(b) > 0 {
		iov[1].Base = &b[0]
		iov[1].SetLen(len(b))
		m.SetIovlen(2)
	}
	flags := uintptr(unix.MSG_NOSIGNAL)
	if more {
		flags |= unix.MSG_MORE
	}
	r, _, e := unix.RawSyscall(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(&m)), flags)
	return int(r), e
}
