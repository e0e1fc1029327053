package testutil

import (
	"maps"
	"testing"
)

func TestProcNetCounters(t *testing.T) {
	const text = "Ip: Forwarding DefaultTTL\nIp: 1 64\n" +
		"Tcp: RtoAlgorithm RtoMin ActiveOpens OutSegs RetransSegs\nTcp: 1 200 35 123456789012 7\n" +
		"Udp: InDatagrams OutSegs\nUdp: 5 6\n" +
		"MPTcpExt: SyncookiesSent\nMPTcpExt: 9\nTcpExt: SyncookiesSent SyncookiesRecv\nTcpExt: 3 2\n"
	for _, tc := range []struct {
		proto string
		want  map[string]uint64
	}{
		{"Tcp", map[string]uint64{"RtoAlgorithm": 1, "RtoMin": 200, "ActiveOpens": 35, "OutSegs": 123456789012, "RetransSegs": 7}},
		{"Udp", map[string]uint64{"InDatagrams": 5, "OutSegs": 6}},
		{"TcpExt", map[string]uint64{"SyncookiesSent": 3, "SyncookiesRecv": 2}}, // not MPTcpExt's
		{"Icmp", map[string]uint64{}},
	} {
		if got := ProcNetCounters(text, tc.proto); !maps.Equal(got, tc.want) {
			t.Errorf("ProcNetCounters(%s) = %v, want %v", tc.proto, got, tc.want)
		}
	}
}
