package admin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// listenUnix binds a unix socket at path with mode 0600. A socket file left
// behind by a dead process is removed first; a live one, or a file that is
// not a socket, is an error. The socket is bound under a temporary name,
// restricted, then renamed into place, so the path never exists with wider
// permissions. cleanup removes the file if it is still the one bound here.
func listenUnix(path string) (net.Listener, func(), error) {
	if path == "" {
		return nil, nil, errors.New("empty socket path")
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, nil, err
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, nil, err
	}
	tmp := filepath.Join(filepath.Dir(path), ".palisade-"+hex.EncodeToString(rnd[:]))
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, nil, err
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, func(), error) {
		ln.Close()
		os.Remove(tmp)
		return nil, nil, err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	cleanup := func() {
		if cur, err := os.Lstat(path); err == nil && os.SameFile(cur, fi) {
			os.Remove(path)
		}
	}
	return &unixListener{UnixListener: ln, addr: &net.UnixAddr{Name: path, Net: "unix"}}, cleanup, nil
}

func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s is in use by another process", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing stale socket: %w", err)
	}
	return nil
}

// unixListener reports the final socket path rather than the temporary name
// it was bound under.
type unixListener struct {
	*net.UnixListener
	addr *net.UnixAddr
}

func (l *unixListener) Addr() net.Addr { return l.addr }

// connInfo describes the connection a request arrived on.
type connInfo struct {
	unix   bool
	caller string // remote address, or "unix uid=N pid=N"
}

type connKey struct{}

func connContext(ctx context.Context, c net.Conn) context.Context {
	ci := connInfo{caller: c.RemoteAddr().String()}
	if uc, ok := c.(*net.UnixConn); ok {
		ci.unix = true
		ci.caller = "unix"
		if cred := peerCred(uc); cred != "" {
			ci.caller = "unix " + cred
		}
	}
	return context.WithValue(ctx, connKey{}, ci)
}

// requestConn is the connection info of r; requests that did not come
// through Server's listeners (Handler used directly) count as TCP.
func requestConn(r interface{ Context() context.Context }) connInfo {
	if ci, ok := r.Context().Value(connKey{}).(connInfo); ok {
		return ci
	}
	return connInfo{caller: "unknown"}
}
