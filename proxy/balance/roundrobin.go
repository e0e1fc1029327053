package balance

import "sync"

// roundRobin is smooth weighted round-robin (the nginx algorithm): on each
// pick every eligible server's current value grows by its weight, the server
// with the highest value wins and loses the sum of the weights. Over any run
// of picks with fixed weights each server gets its weighted share, spread
// evenly rather than in bursts (weights 5,1,1 give a a b a c a a).
//
// Weights are read on every pick, so slowstart and `ctl weight` apply at
// once. A server with weight <= 0 restarts from zero when it comes back; a
// server excluded by skip keeps its value. Pick is O(servers) under a short
// mutex.
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
		w := s.Weight()
		if w <= 0 {
			p.current[i] = 0
			continue
		}
		if skip != nil && skip(s) {
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
