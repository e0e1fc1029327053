package balance

import (
	"cmp"
	"math/bits"
	"slices"
	"strings"
)

// pointsPerServer is the number of ring points of a server with the
// reference weight (see refWeight); the heaviest server has between half and
// all of them. A share's spread is about 1/sqrt(points): with
// the 200 points of the default weight 100, a server's share of keys deviates
// from its weighted share by about 7% (one standard deviation).
const pointsPerServer = 256

// ringPoint is one virtual node: ordinal-th point of servers[server].
type ringPoint struct {
	hash    uint64
	server  uint32
	ordinal uint32
}

// ring is the consistent hashing policy behind source and uri_hash.
//
// Server i owns ceil(256 * w_i / w_ref) points, where w_i is its configured
// weight (ConfigWeighter, else Weight() at construction) and w_ref the highest
// such weight rounded up to a power of two (128 for the default weight 100).
// Point k of a server sits at a position derived only from its ID and k, so a
// reload that keeps a server keeps its points where they were, and removing
// one of N servers moves only the keys it owned (about 1/N). Only a reload
// that moves the highest weight across a power of two changes w_ref; then the
// other servers gain or lose points at their tail and the keys on those move.
//
// A key goes to the first active point clockwise from its hash. With runtime
// weight w < w_i only the first ceil(256 * w / w_ref) points of the server are
// active (slowstart and `ctl weight` shrink its share, moving only the keys on
// the deactivated points); w <= 0 or skip deactivates all of them; weights
// above w_i do not grow the share beyond w_i. Keys of servers that stay
// eligible never move.
type ring struct {
	servers []Server
	cfgW    []int64 // weight each server's points were sized by
	wref    int64
	points  []ringPoint
}

func newRing(servers []Server) *ring {
	r := &ring{servers: servers, cfgW: make([]int64, len(servers))}
	var maxW int64 = 1
	for i, s := range servers {
		w := s.Weight()
		if cw, ok := s.(ConfigWeighter); ok {
			w = cw.ConfigWeight()
		}
		r.cfgW[i] = int64(w)
		maxW = max(maxW, int64(w))
	}
	r.wref = refWeight(maxW)
	total := 0
	for i, w := range r.cfgW {
		if w <= 0 {
			// Down or in maintenance at construction: size it like the
			// heaviest server so it gets a full share when it comes up.
			w = maxW
			r.cfgW[i] = w
		}
		total += r.pointsFor(w)
	}
	r.points = make([]ringPoint, 0, total)
	for i, s := range servers {
		seed := HashString(s.ID())
		for k := range r.pointsFor(r.cfgW[i]) {
			r.points = append(r.points, ringPoint{
				hash:    pointHash(seed, k),
				server:  uint32(i),
				ordinal: uint32(k),
			})
		}
	}
	slices.SortFunc(r.points, func(a, b ringPoint) int {
		if c := cmp.Compare(a.hash, b.hash); c != 0 {
			return c
		}
		// Hash collisions: order by ID then ordinal, so the outcome does not
		// depend on config order.
		if c := strings.Compare(servers[a.server].ID(), servers[b.server].ID()); c != 0 {
			return c
		}
		if c := cmp.Compare(a.ordinal, b.ordinal); c != 0 {
			return c
		}
		return cmp.Compare(a.server, b.server)
	})
	return r
}

// refWeight returns the weight that gets pointsPerServer points: the
// highest weight rounded up to a power of two. Rounding keeps the point
// counts of the servers that stay unchanged when a reload adds, removes or
// reweights others, unless the highest weight crosses a power of two.
func refWeight(maxW int64) int64 {
	if maxW <= 1 {
		return 1
	}
	return 1 << bits.Len64(uint64(maxW-1))
}

// pointsFor returns the number of points of a server with weight w
// (1 <= w <= wref): ceil(pointsPerServer * w / wref).
func (r *ring) pointsFor(w int64) int {
	return int((pointsPerServer*w + r.wref - 1) / r.wref)
}

// pointHash places the k-th point of the server whose ID hashes to seed (a
// splitmix64 sequence seeded by the ID hash).
func pointHash(seed uint64, k int) uint64 {
	return mix64(seed + uint64(k+1)*0x9e3779b97f4a7c15)
}

// active reports whether point pt is in use at runtime weight w.
func (r *ring) active(pt *ringPoint, w int) bool {
	if w <= 0 {
		return false
	}
	if int64(w) >= r.cfgW[pt.server] {
		return true
	}
	// ordinal < ceil(pointsPerServer*w/wref), exact in integers.
	return int64(pt.ordinal)*r.wref < pointsPerServer*int64(w)
}

// rejectCacheServers bounds the per-pick bitmap of servers found down or
// skipped, which keeps a walk over a mostly-down ring from asking the same
// server again on each of its points.
const rejectCacheServers = 256

func (r *ring) Pick(hash uint64, skip func(Server) bool) Server {
	n := len(r.points)
	if n == 0 {
		return nil
	}
	key := mix64(hash)
	i, _ := slices.BinarySearchFunc(r.points, key, func(p ringPoint, k uint64) int {
		return cmp.Compare(p.hash, k)
	})
	if i == n {
		i = 0
	}
	var (
		rejected  [rejectCacheServers / 64]uint64
		nRejected int
	)
	useCache := len(r.servers) <= rejectCacheServers
	for range n {
		pt := &r.points[i]
		if i++; i == n {
			i = 0
		}
		si := pt.server
		if useCache && rejected[si/64]&(1<<(si%64)) != 0 {
			continue
		}
		s := r.servers[si]
		w := s.Weight()
		if w > 0 {
			if !r.active(pt, w) {
				continue // only this point is off; the server's others may be on
			}
			if skip == nil || !skip(s) {
				return s
			}
		}
		if useCache {
			rejected[si/64] |= 1 << (si % 64)
			if nRejected++; nRejected == len(r.servers) {
				return nil
			}
		}
	}
	return nil
}
