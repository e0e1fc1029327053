package l7

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync/atomic"
)

// countConn counts the bytes read from and written to a client connection on
// the goroutine path (TLS HTTP/1.1, connections handed off by the event loop),
// for the frontend's byte counters, handed over by conn.flushBytes after each
// exchange and at close. Reads and writes may run on different goroutines
// (tunnels). io.Copy through it still splices; bytes that bypass it through
// the raw *net.TCPConn (copyN's splice, writeClient's non-blocking write) are
// added where that happens. For TLS it counts the bytes of the HTTP
// exchange, as HAProxy's frontend counters do, not those of the TLS records.
type countConn struct {
	net.Conn
	in, out atomic.Uint64
}

func (c *countConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.in.Add(uint64(max(n, 0)))
	return n, err
}

func (c *countConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.out.Add(uint64(max(n, 0)))
	return n, err
}

// ReadFrom keeps io.Copy into a plain client connection on splice(2).
func (c *countConn) ReadFrom(r io.Reader) (int64, error) {
	n, err := io.Copy(c.Conn, r)
	c.out.Add(uint64(max(n, 0)))
	return n, err
}

// WriteTo keeps io.Copy from a plain client connection on splice(2).
func (c *countConn) WriteTo(w io.Writer) (int64, error) {
	n, err := io.Copy(w, c.Conn)
	c.in.Add(uint64(max(n, 0)))
	return n, err
}

// CloseWrite half-closes the connection (TCP FIN, or TLS close_notify and FIN).
func (c *countConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// take returns the bytes counted since the last take.
func (c *countConn) take() (in, out uint64) { return c.in.Swap(0), c.out.Swap(0) }

// h2CountConn gives count the bytes of each read and write of an HTTP/2
// connection as they happen: the HTTP/2 server writes a response after its
// handler has returned, so a count taken per request would miss it. Its
// writes are buffered, so this is not a call per frame. Being a *tls.Conn
// still, it tells the server its TLS state.
type h2CountConn struct {
	*tls.Conn
	count func(in, out uint64)
}

func (c h2CountConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.count(uint64(n), 0)
	}
	return n, err
}

func (c h2CountConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.count(0, uint64(n))
	}
	return n, err
}

// flushBytes hands the client bytes counted so far to the frontend's
// counters (after each exchange and at close).
func (c *conn) flushBytes() {
	if in, out := c.cc.take(); in|out != 0 && c.count != nil {
		c.count(in, out)
	}
}

// countSpliced adds k bytes spliced between the raw connections dtcp and
// stcp (past c.cc) when one of them is the client's.
func (c *conn) countSpliced(dtcp, stcp *net.TCPConn, k int64) {
	switch {
	case c.tcp == nil || k <= 0:
	case dtcp == c.tcp:
		c.cc.out.Add(uint64(k))
	case stcp == c.tcp:
		c.cc.in.Add(uint64(k))
	}
}
