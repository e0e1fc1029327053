package healthcheck

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeRESP answers one INFO replication with reply after checking the
// command bytes.
func fakeRESP(t *testing.T, reply string, badCommand *atomic.Bool) string {
	return serveTCP(t, func(c net.Conn) {
		got := make([]byte, len(infoReplication))
		if _, err := io.ReadFull(c, got); err != nil {
			return
		}
		if !bytes.Equal(got, infoReplication) {
			badCommand.Store(true)
			return
		}
		_, _ = io.WriteString(c, reply)
	})
}

func bulk(s string) string { return fmt.Sprintf("$%d\r\n%s\r\n", len(s), s) }

const masterInfo = "# Replication\r\nrole:master\r\nconnected_slaves:1\r\nslave0:ip=127.0.0.1,port=6380,state=online,offset=42,lag=0\r\nmaster_replid:abc\r\n"
const replicaInfo = "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:6379\r\nmaster_link_status:up\r\n"

func TestRedisMasterFake(t *testing.T) {
	var bad atomic.Bool
	cases := []struct {
		reply  string
		ok     bool
		reason string
	}{
		{bulk(masterInfo), true, "role:master"},
		{bulk(replicaInfo), false, "role:slave"},
		{"=" + bulk("txt:" + masterInfo)[1:], true, "role:master"}, // RESP3 verbatim string
		{"-NOAUTH Authentication required.\r\n", false, "redis: NOAUTH Authentication required."},
		{bulk("# Replication\r\n"), false, "no role in INFO replication reply"},
		{"+OK\r\n", false, `read: malformed RESP reply: unexpected reply "+OK"`},
		{"$100\r\nshort", false, "read: connection closed by server"},
	}
	for _, tc := range cases {
		c := mustNew(t, Spec{Type: TypeRedisMaster}, fakeRESP(t, tc.reply, &bad))
		r := c.Check(checkCtx(t, time.Second))
		if r.OK != tc.ok || r.Reason != tc.reason {
			t.Errorf("reply %q: got ok=%v %q, want ok=%v %q", tc.reply, r.OK, r.Reason, tc.ok, tc.reason)
		}
	}
	if bad.Load() {
		t.Error("checker sent a malformed command")
	}
	c := mustNew(t, Spec{Type: TypeRedisMaster}, deadAddr(t))
	if r := c.Check(checkCtx(t, time.Second)); r.OK || r.Reason != "connect: connection refused" {
		t.Errorf("refused: %+v", r)
	}
}

func TestReadRESPBulk(t *testing.T) {
	cases := []struct {
		in      string
		want    string
		wantErr string
	}{
		{bulk("abc"), "abc", ""},
		{bulk(""), "", ""},
		{"$-1\r\n", "", "null reply"},
		{"$5\r\nabc\r\n", "", "EOF"},
		{"$3\r\nabcXY", "", "payload not ended by CRLF"},
		{"$x\r\n", "", "bad length"},
		{"$01\r\na\r\n", "", "bad length"},
		{"$+1\r\na\r\n", "", "bad length"},
		{"$-2\r\n", "", "bad length"},
		{"$\r\n", "", "bad length"},
		{"$99999999\r\n", "", "exceeds"},
		{"$3\nabc\r\n", "", "line not ended by CRLF"},
		{"-ERR boom\r\n", "", "redis: ERR boom"},
		{"!4\r\nboom\r\n", "", "redis: boom"},
		{"=7\r\ntxt:abc\r\n", "abc", ""},
		{"=3\r\nabc\r\n", "", "bad verbatim"},
		{"\r\n", "", "empty line"},
		{"$" + strings.Repeat("1", 600) + "\r\n", "", "line too long"},
		{":1\r\n", "", "unexpected reply"},
	}
	for _, tc := range cases {
		got, err := readRESPBulk(bufio.NewReader(strings.NewReader(tc.in)), 1<<16)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestRedisRole(t *testing.T) {
	for info, want := range map[string]string{
		masterInfo:                      "master",
		replicaInfo:                     "slave",
		"role:replica\n":                "replica",
		"# Replication\r\nrole: master": "master",
		"x:1\r\n":                       "",
	} {
		got, ok := redisRole([]byte(info))
		if got != want || ok != (want != "") {
			t.Errorf("redisRole(%q) = %q, %v; want %q", info, got, ok, want)
		}
	}
}

// FuzzReadRESPBulk: the RESP reader never panics, never returns more than
// the limit, and anything it accepts as a bulk string round-trips.
func FuzzReadRESPBulk(f *testing.F) {
	for _, s := range []string{bulk(masterInfo), bulk(replicaInfo), "-NOAUTH x\r\n", "$-1\r\n", "=7\r\ntxt:abc\r\n", "!3\r\nabc\r\n", "$3\r\nab"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 4096
		got, err := readRESPBulk(bufio.NewReader(bytes.NewReader(data)), limit)
		if err != nil {
			var re *redisError
			if got != nil && !errors.As(err, &re) {
				t.Fatalf("payload with error")
			}
			return
		}
		if len(got) > limit {
			t.Fatalf("payload of %d bytes over limit", len(got))
		}
		if data[0] == '$' && !bytes.HasPrefix(data, []byte(bulk(string(got)))) {
			t.Fatalf("accepted %q as %q", data, got)
		}
		redisRole(got)
	})
}
