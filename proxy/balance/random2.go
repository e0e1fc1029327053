package balance

import "math/rand/v2"

// random2 is the power of two random choices: it draws two distinct eligible
// servers at random, each with probability proportional to its weight, and
// takes the one with the lower Conns()/Weight() (the first drawn on a tie, so
// idle backends see plain weighted random). It needs no shared mutable state,
// so concurrent picks never contend. Pick is O(servers): up to three passes
// over the list, tolerant of weights changing between them.
type random2 struct {
	servers []Server
	int64n  func(n int64) int64 // uniform in [0,n); tests swap in a seeded source
}

func newRandom2(servers []Server) *random2 {
	return &random2{servers: servers, int64n: rand.Int64N}
}

func (p *random2) Pick(_ uint64, skip func(Server) bool) Server {
	var (
		total int64
		n     int
		only  Server
	)
	for _, s := range p.servers {
		if w, ok := eligible(s, skip); ok {
			total += int64(w)
			n++
			only = s
		}
	}
	switch n {
	case 0:
		return nil
	case 1:
		return only
	}
	ia, wa := p.draw(p.int64n(total), -1, skip)
	if ia < 0 {
		return nil
	}
	a := p.servers[ia]
	rest := total - int64(wa)
	if rest <= 0 {
		return a
	}
	ib, wb := p.draw(p.int64n(rest), ia, skip)
	if ib < 0 {
		return a
	}
	b := p.servers[ib]
	if cmpLoad(b.Conns(), wb, a.Conns(), wa) < 0 {
		return b
	}
	return a
}

// draw returns the eligible server (other than exclude) at weight offset r
// and its weight. If weights dropped since r was drawn it returns the last
// eligible server, or -1 if none is left.
func (p *random2) draw(r int64, exclude int, skip func(Server) bool) (int, int) {
	last, lastW := -1, 0
	for i, s := range p.servers {
		if i == exclude {
			continue
		}
		w, ok := eligible(s, skip)
		if !ok {
			continue
		}
		if r < int64(w) {
			return i, w
		}
		r -= int64(w)
		last, lastW = i, w
	}
	return last, lastW
}
