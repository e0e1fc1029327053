package balance

import "sync"

// roundRobin is smooth weighted round-robin (the nginx algorithm): on each
// pick every eligible server's current value grows by its weight, the server
// with the highest value wins and loses the sum of the weights. Over any run
// of picks with fixed weights each server gets its weighted share, spread
// evenly rather than in bursts (weights 5,1,1 give a a b a c a a).
//
// Weights are read on every pick, so slowstart and `ctl weight` apply at
// once. A server that is down (weight <= 0) or excluded by skip keeps its
// value untouched; since each pick leaves the sum of the values unchanged,
// the sum stays zero and a server rejoining cannot take a burst of picks.
// Pick is O(servers) under a short mutex; skip is called with it held.
type roundRobin struct {
	servers []Server

	mu      sync.Mutex
	current []int64 // guarded by mu
}

func newRoundRobin(servers []Server) *roundRobin {
	return &roundRobin{servers: servers, current: make([]int64, len(servers))}
}

func (p *roundRobin) Pick(_ uint64, skip func(Server) bool) Server {
	p.mu.Lock()
	defer p.mu.Unlock()
	var total int64
	best := -1
	for i, s := range p.servers {
		w, ok := eligible(s, skip)
		if !ok {
			continue
		}
		p.current[i] += int64(w)
		total += int64(w)
		if best < 0 || p.current[i] > p.current[best] {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	p.current[best] -= total
	return p.servers[best]
}
