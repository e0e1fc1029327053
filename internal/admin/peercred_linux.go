package admin

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// peerCred names the process at the other end of a unix socket via
// SO_PEERCRED ("uid=N pid=N"), or "" when it cannot be read.
func peerCred(c *net.UnixConn) string {
	raw, err := c.SyscallConn()
	if err != nil {
		return ""
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || credErr != nil {
		return ""
	}
	return fmt.Sprintf("uid=%d pid=%d", cred.Uid, cred.Pid)
}
