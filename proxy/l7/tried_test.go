package l7

import (
	"fmt"
	"testing"
)

// Tried keeps eight servers inline and the rest in a slice it keeps across
// resets: a set of any size answers Has and Len, and after the first
// request that spilled, none allocates.
func TestTriedBeyondInline(t *testing.T) {
	servers := make([]Server, 10)
	for i := range servers {
		servers[i] = newFakeServer(fmt.Sprintf("s%d", i), "127.0.0.1:1")
	}
	var tr Tried
	fill := func() {
		for _, s := range servers {
			tr.add(s)
			tr.add(s) // a second add changes nothing
		}
	}
	fill()
	if tr.Len() != len(servers) {
		t.Fatalf("Len %d after adding %d servers", tr.Len(), len(servers))
	}
	for i, s := range servers {
		if !tr.Has(s) {
			t.Fatalf("server %d not in the set", i)
		}
	}
	tr.reset()
	if tr.Len() != 0 || tr.Has(servers[0]) || tr.Has(servers[9]) {
		t.Fatalf("after reset: Len %d", tr.Len())
	}
	if a := testing.AllocsPerRun(100, func() { fill(); tr.reset() }); a != 0 {
		t.Fatalf("%v allocations per request once the set had spilled, want 0", a)
	}
}
