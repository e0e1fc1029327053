package balance

import "sync/atomic"

// leastConn picks the eligible server with the lowest Conns()/Weight().
// Equal loads are broken by a rotating start position, so idle servers share
// short connections in turn instead of the first one taking them all.
// Pick is O(servers) and lock-free.
type leastConn struct {
	servers []Server
	next    atomic.Uint64
}

func newLeastConn(servers []Server) *leastConn {
	return &leastConn{servers: servers}
}

func (p *leastConn) Pick(_ uint64, skip func(Server) bool) Server {
	n := len(p.servers)
	if n == 0 {
		return nil
	}
	start := int(p.next.Add(1) % uint64(n))
	var (
		best  Server
		bestW int
		bestC int64
	)
	i := start
	for range n {
		s := p.servers[i]
		if w, ok := eligible(s, skip); ok {
			c := s.Conns()
			if best == nil || cmpLoad(c, w, bestC, bestW) < 0 {
				best, bestW, bestC = s, w, c
			}
		}
		if i++; i == n {
			i = 0
		}
	}
	return best
}
