package testutil

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Capture reads, from a packet socket on the loopback interface, the IPv4
// TCP segments of one direction of one connection (as they are received on
// lo, each once).
type Capture struct {
	fd       int
	src, dst uint16
}

// CaptureTo starts capturing, on lo, the segments c receives from its peer.
// It needs root (CAP_NET_RAW): without it the test is skipped. The socket is
// closed when the test ends.
func CaptureTo(t testing.TB, c net.Conn) *Capture {
	t.Helper()
	src := uint16(c.RemoteAddr().(*net.TCPAddr).Port)
	dst := uint16(c.LocalAddr().(*net.TCPAddr).Port)
	if os.Geteuid() != 0 {
		t.Skip("needs root: captures loopback segments with a packet socket")
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatalf("loopback interface: %v", err)
	}
	// protocol 0 takes no packets until bind: none gets queued before
	// the filter is on
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("packet socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	// room for every segment of a transfer of a few MiB (each queued
	// packet counts its whole buffer, not the 128 bytes kept): a queue
	// that overflows drops segments, the FIN among them
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20)
	// offsets are from the IP header (SOCK_DGRAM), which on lo has no
	// options; 128 bytes of each segment are enough for its headers
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 9, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_TCP, SkipFalse: 5},
		bpf.LoadAbsolute{Off: 20, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(src), SkipFalse: 3},
		bpf.LoadAbsolute{Off: 22, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(dst), SkipFalse: 1},
		bpf.RetConstant{Val: 128},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	filter := make([]unix.SockFilter, len(prog))
	for i, in := range prog {
		filter[i] = unix.SockFilter{Code: in.Op, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
		&unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}); err != nil {
		t.Fatalf("attaching the filter: %v", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: lo.Index}); err != nil {
		t.Fatalf("binding to lo: %v", err)
	}
	return &Capture{fd: fd, src: src, dst: dst}
}

// Segment is a captured TCP segment: its payload size and whether it
// carries the FIN.
type Segment struct {
	Len int
	FIN bool
}

// Next is the next captured segment that carries data or a FIN (bare ACKs
// are skipped); the test fails if none comes within d.
func (c *Capture) Next(t testing.TB, d time.Duration) Segment {
	t.Helper()
	seg, err := c.next(time.Now().Add(d))
	if err != nil {
		t.Fatal(err)
	}
	return seg
}

// ToFIN is the captured segments up to the first that carries a FIN,
// and their bytes in all; the test fails if the FIN does not come within d.
func (c *Capture) ToFIN(t testing.TB, d time.Duration) (segs []Segment, bytes int) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		seg, err := c.next(deadline)
		if err != nil {
			t.Fatalf("after %v: %v", segs, err)
		}
		segs = append(segs, seg)
		bytes += seg.Len
		if seg.FIN {
			return segs, bytes
		}
	}
}

func (c *Capture) next(deadline time.Time) (Segment, error) {
	buf := make([]byte, 128)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return Segment{}, errors.New("no data segment captured in time")
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return Segment{}, err
		}
		n, from, err := unix.Recvfrom(c.fd, buf, 0)
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		if err != nil {
			return Segment{}, err
		}
		// lo shows a segment twice: sent (outgoing) and received (host)
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if n < 20 {
			continue
		}
		ihl := int(buf[0]&0x0f) * 4
		if buf[0]>>4 != 4 || buf[9] != unix.IPPROTO_TCP || n < ihl+13 ||
			binary.BigEndian.Uint16(buf[ihl:]) != c.src || binary.BigEndian.Uint16(buf[ihl+2:]) != c.dst {
			continue
		}
		total := int(binary.BigEndian.Uint16(buf[2:4]))
		doff := int(buf[ihl+12]>>4) * 4
		seg := Segment{Len: total - ihl - doff, FIN: buf[ihl+13]&0x01 != 0}
		if seg.Len > 0 || seg.FIN {
			return seg, nil
		}
	}
}

// htons is v in network byte order, as the kernel takes a packet socket's
// protocol.
func htons(v uint16) uint16 { return binary.NativeEndian.Uint16([]byte{byte(v >> 8), byte(v)}) }

// DialWideWindow dials addr over TCP with a 1 MiB receive buffer, set before
// the handshake: its window does not cap the peer's segments below 64 KiB
// (Linux bounds a sender's segments to half the largest window seen). Its
// reads and writes time out after 10 s; it is closed when the test ends.
func DialWideWindow(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		if cerr := rc.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20) }); cerr != nil {
			return cerr
		}
		return err
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c.(*net.TCPConn)
}
