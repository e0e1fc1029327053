package healthcheck

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// maxRedisReply bounds the INFO replication reply (a few hundred bytes in
// practice, more with many replicas).
const maxRedisReply = 64 << 10

// infoReplication is INFO replication as a RESP array of bulk strings.
var infoReplication = []byte("*2\r\n$4\r\nINFO\r\n$11\r\nreplication\r\n")

// RedisMasterChecker passes only when the server answers INFO replication
// with role:master, so writes follow the current primary after a failover.
type RedisMasterChecker struct {
	addr func() string
}

// NewRedisMasterChecker returns a redis_master check against addr().
func NewRedisMasterChecker(addr func() string) *RedisMasterChecker {
	return &RedisMasterChecker{addr: addr}
}

// Check sends INFO replication. Reasons: "role:master" on success;
// "role:slave", "redis: NOAUTH Authentication required.", "connect: ..." on failure.
func (c *RedisMasterChecker) Check(ctx context.Context) Result {
	start := time.Now()
	conn, stop, err := dial(ctx, c.addr())
	if err != nil {
		return fail(ctx, start, "connect", err)
	}
	defer func() { stop(); _ = conn.Close() }()
	if _, err := conn.Write(infoReplication); err != nil {
		return fail(ctx, start, "write", err)
	}
	info, err := readRESPBulk(bufio.NewReaderSize(conn, 4096), maxRedisReply)
	if err != nil {
		var re *redisError
		if errors.As(err, &re) {
			return Result{Reason: "redis: " + re.msg, Duration: time.Since(start)}
		}
		return fail(ctx, start, "read", err)
	}
	role, ok := redisRole(info)
	if !ok {
		return Result{Reason: "no role in INFO replication reply", Duration: time.Since(start)}
	}
	return Result{OK: role == "master", Reason: "role:" + role, Duration: time.Since(start)}
}

// redisError is a RESP error reply ("-ERR ...").
type redisError struct{ msg string }

func (e *redisError) Error() string { return "redis: " + e.msg }

// errRESP reports a reply that is not the expected RESP.
var errRESP = errors.New("malformed RESP reply")

// readRESPBulk reads one RESP2/RESP3 reply that must be a bulk or verbatim
// string of at most max bytes and returns its payload. An error reply is
// returned as *redisError.
func readRESPBulk(r *bufio.Reader, max int) ([]byte, error) {
	line, err := readRESPLine(r)
	if err != nil {
		return nil, err
	}
	if len(line) == 0 {
		return nil, fmt.Errorf("%w: empty line", errRESP)
	}
	switch line[0] {
	case '-', '!':
		if line[0] == '!' { // RESP3 bulk error: length line, then the message
			msg, err := readRESPPayload(r, line[1:], max)
			if err != nil {
				return nil, err
			}
			return nil, &redisError{msg: string(msg)}
		}
		return nil, &redisError{msg: string(line[1:])}
	case '$', '=':
		payload, err := readRESPPayload(r, line[1:], max)
		if err != nil {
			return nil, err
		}
		if line[0] == '=' { // verbatim string: "txt:" format prefix
			if len(payload) < 4 || payload[3] != ':' {
				return nil, fmt.Errorf("%w: bad verbatim string", errRESP)
			}
			payload = payload[4:]
		}
		return payload, nil
	}
	return nil, fmt.Errorf("%w: unexpected reply %s", errRESP, quote(line, 32))
}

// readRESPLine reads one CRLF-terminated line of at most 512 bytes, without
// the CRLF.
func readRESPLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		b, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		if b == '\n' {
			if len(line) == 0 || line[len(line)-1] != '\r' {
				return nil, fmt.Errorf("%w: line not ended by CRLF", errRESP)
			}
			return line[:len(line)-1], nil
		}
		if len(line) >= 512 {
			return nil, fmt.Errorf("%w: line too long", errRESP)
		}
		line = append(line, b)
	}
}

// readRESPPayload reads a length-prefixed payload and its trailing CRLF.
func readRESPPayload(r *bufio.Reader, lenText []byte, max int) ([]byte, error) {
	if string(lenText) == "-1" {
		return nil, fmt.Errorf("%w: null reply", errRESP)
	}
	// Canonical decimal only: no sign, no leading zeros.
	n, err := strconv.Atoi(string(lenText))
	if err != nil || n < 0 || lenText[0] < '0' || lenText[0] > '9' || (len(lenText) > 1 && lenText[0] == '0') {
		return nil, fmt.Errorf("%w: bad length %s", errRESP, quote(lenText, 16))
	}
	if n > max {
		return nil, fmt.Errorf("%w: reply of %d bytes exceeds %d", errRESP, n, max)
	}
	payload := make([]byte, n+2)
	if _, err := io.ReadFull(r, payload); err != nil {
		return nil, err
	}
	if payload[n] != '\r' || payload[n+1] != '\n' {
		return nil, fmt.Errorf("%w: payload not ended by CRLF", errRESP)
	}
	return payload[:n], nil
}

// redisRole finds the "role:" field of an INFO reply.
func redisRole(info []byte) (string, bool) {
	for len(info) > 0 {
		var line []byte
		line, info, _ = bytes.Cut(info, []byte("\n"))
		line = bytes.TrimRight(line, "\r")
		if v, ok := bytes.CutPrefix(line, []byte("role:")); ok {
			return string(bytes.TrimSpace(v)), true
		}
	}
	return "", false
}
