package testutil

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// AckWait is how long the peer of c takes to acknowledge everything c has
// sent (TCP_INFO's unacked count reaching 0), polled every 200 µs and given
// up after limit. Tests compare it with Linux's 40 ms delayed-ACK timer to
// see whether a receiver acknowledged at once.
func AckWait(c *net.TCPConn, limit time.Duration) time.Duration {
	start := time.Now()
	for time.Since(start) < limit {
		ti, err := TCPInfo(c)
		if err != nil {
			return limit
		}
		if ti.Unacked == 0 {
			break
		}
		time.Sleep(200 * time.Microsecond) // polling the kernel's count, bounded by limit
	}
	return time.Since(start)
}

// AckedWait waits until the peer of c has acknowledged at least n bytes of
// what c has sent since before (TCP_INFO's bytes_acked, read by Acked), polled
// every 200 µs; false after limit. On loopback an acknowledged byte is in the
// peer's receive queue: a test can know what the peer will find there.
func AckedWait(c *net.TCPConn, before, n uint64, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if Acked(c) >= before+n {
			return true
		}
		time.Sleep(200 * time.Microsecond) // polling the kernel's count, bounded by limit
	}
	return false
}

// Acked is TCP_INFO's bytes_acked of c (0 if it cannot be read).
func Acked(c *net.TCPConn) uint64 {
	ti, err := TCPInfo(c)
	if err != nil {
		return 0
	}
	return ti.Bytes_acked
}

// TCPInfo is the kernel's TCP_INFO of c.
func TCPInfo(c *net.TCPConn) (*unix.TCPInfo, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var ti *unix.TCPInfo
	if cerr := rc.Control(func(fd uintptr) { ti, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); cerr != nil {
		return nil, cerr
	}
	return ti, err
}
