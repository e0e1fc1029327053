package testutil

import (
	"strconv"
	"strings"
)

// ProcNetCounters reads the counters of one protocol from text in the format
// of /proc/net/snmp and /proc/net/netstat: a line of names, then a line of
// values, both starting with "Proto:" (proto is given without the colon,
// e.g. "Tcp" or "TcpExt"). A protocol absent from text gives an empty map.
func ProcNetCounters(text, proto string) map[string]uint64 {
	out := map[string]uint64{}
	var names []string
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != proto+":" {
			continue
		}
		if names == nil {
			names = f[1:]
			continue
		}
		for i, v := range f[1:] {
			if i < len(names) {
				out[names[i]], _ = strconv.ParseUint(v, 10, 64)
			}
		}
		break
	}
	return out
}
