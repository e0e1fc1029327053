// Package limit holds the per-frontend admission checks applied to new
// connections: a per-source connection rate limiter and CIDR allow/deny lists.
package limit

import (
	"encoding/binary"
	"hash/maphash"
	"math"
	"math/bits"
	"net/netip"
	"sync"
	"time"
)

// DefaultMaxEntries is the number of tracked sources when Config.MaxEntries is 0.
const DefaultMaxEntries = 65536

// Config configures a Limiter.
type Config struct {
	// Rate is the sustained number of new connections per second allowed
	// per source. It must be positive; fractions such as 0.5 (one
	// connection every two seconds) are exact to the nanosecond.
	Rate float64
	// Burst is how many connections a source may open at once after
	// being idle. Values below 1 are treated as 1, above 2^30 as 2^30.
	Burst int
	// MaxEntries bounds the number of sources tracked at once; 0 (or
	// negative) means DefaultMaxEntries.
	MaxEntries int
}

const (
	maxShards     = 64
	minPerShard   = 16      // fewer, larger shards for small MaxEntries
	evictSample   = 8       // occupied slots examined per eviction
	maxTolerance  = 1 << 61 // tat + interval stays below 2^63 for 146 years
	maxBurst      = 1 << 30
	keyLoIPv6     = 1 // marks a /64 group key
	keyLoInvalid  = 2 // the one key shared by invalid addresses
	keyLoV4Marker = 0xffff << 32
)

// Limiter is a per-source token-bucket rate limiter with bounded memory.
//
// Sources are keyed by client address: IPv4 addresses (and IPv4-mapped IPv6
// addresses, which are the same hosts) each get their own bucket; IPv6
// addresses are grouped by their /64 prefix, since a single host or
// subscriber is routinely given a whole /64 and could otherwise evade the
// limit by rotating addresses within it.
//
// Each bucket is kept as a theoretical arrival time (GCRA), so an entry is
// 24 bytes and refill needs no timer. At most MaxEntries sources are tracked,
// spread over up to 64 fixed-size shards selected by a keyed hash. When a
// shard is full and a new source arrives, one resident entry is evicted:
// among the next 8 entries after a rotating hand, the first whose bucket has
// refilled completely (such an entry carries no information, so evicting it
// is lossless), otherwise the one with the smallest outstanding debt.
//
// Under a flood from more distinct sources than MaxEntries (say a million
// spoofed or botnet addresses), memory stays fixed: each shard allocates
// its table (24-byte slots, load factor at most 1/2, so 48 to 96 bytes per
// entry; 3 MiB for the default 65536) when first used, and each new source
// costs one eviction. Every new source gets its full burst, so such a flood is not
// slowed by this limiter: per-source limits only stop sources that repeat
// (global caps such as max_conns and the SYN filter handle the rest). A
// heavy repeating source keeps its debt, because eviction prefers entries
// with the least debt; when the flood is large enough to push even drained
// entries out, such a source may be forgotten and get a fresh burst, which
// at worst lets it through at about Burst connections per eviction cycle.
//
// A nil *Limiter allows everything. Allow is safe for concurrent use and does
// not allocate once a source's shard is allocated.
type Limiter struct {
	now       func() time.Time
	epoch     time.Time
	interval  int64 // nanoseconds per token
	tolerance int64 // interval * burst
	seed      maphash.Seed
	shift     uint // hash >> shift selects the shard
	shards    []shard
}

type key struct{ hi, lo uint64 }

type slot struct {
	k   key   // zero key = empty slot
	tat int64 // theoretical arrival time, ns since epoch
}

type shard struct {
	mu    sync.Mutex
	slots []slot // open addressing, linear probing; nil until first use
	n     int
	limit int // capacity: at most limit entries
	hand  int
	_     [64]byte // keep neighbouring shards' locks off one cache line
}

// NewLimiter returns a limiter for cfg reading time from now (time.Now when
// nil). A Rate that is not positive (or NaN) disables limiting: NewLimiter
// then returns nil, which allows everything. It starts no goroutine.
func NewLimiter(cfg Config, now func() time.Time) *Limiter {
	if !(cfg.Rate > 0) {
		return nil
	}
	if now == nil {
		now = time.Now
	}
	burst := int64(min(max(cfg.Burst, 1), maxBurst))
	entries := cfg.MaxEntries
	if entries <= 0 {
		entries = DefaultMaxEntries
	}
	interval := int64(math.Round(1e9 / cfg.Rate))
	if 1e9/cfg.Rate > float64(maxTolerance/burst) {
		interval = maxTolerance / burst
	}
	n := 1
	for n*2 <= maxShards && n*2*minPerShard <= entries {
		n *= 2
	}
	l := &Limiter{
		now:       now,
		epoch:     now(),
		interval:  interval,
		tolerance: interval * burst,
		seed:      maphash.MakeSeed(),
		shift:     uint(64 - bits.TrailingZeros(uint(n))),
		shards:    make([]shard, n),
	}
	for i := range l.shards {
		l.shards[i].limit = entries / n
		if i < entries%n {
			l.shards[i].limit++
		}
	}
	return l
}

// Allow reports whether a new connection from ip is admitted, and if so
// takes a token from its source's bucket.
func (l *Limiter) Allow(ip netip.Addr) bool {
	if l == nil {
		return true
	}
	k := keyOf(ip)
	now := l.now().Sub(l.epoch).Nanoseconds()
	h := l.hash(k)
	s := &l.shards[h>>l.shift]
	s.mu.Lock()
	i, ok := s.find(k, h)
	if !ok {
		if l.interval == 0 {
			s.mu.Unlock()
			return true
		}
		i = s.insert(k, h, now, l)
	}
	e := &s.slots[i]
	tat := max(e.tat, now) + l.interval
	allowed := tat-now <= l.tolerance
	if allowed {
		e.tat = tat
	}
	s.mu.Unlock()
	return allowed
}

// Len returns the number of sources currently tracked (at most MaxEntries).
func (l *Limiter) Len() int {
	if l == nil {
		return 0
	}
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += s.n
		s.mu.Unlock()
	}
	return n
}

// keyOf maps an address to its source key: IPv4 (mapped or not) as the
// mapped 128-bit address, IPv6 as its /64 with a marker in the low half.
func keyOf(ip netip.Addr) key {
	ip = ip.Unmap()
	switch {
	case ip.Is4():
		a := ip.As4()
		return key{lo: keyLoV4Marker | uint64(binary.BigEndian.Uint32(a[:]))}
	case ip.Is6():
		a := ip.As16()
		return key{hi: binary.BigEndian.Uint64(a[:8]), lo: keyLoIPv6}
	}
	return key{lo: keyLoInvalid}
}

func (l *Limiter) hash(k key) uint64 {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], k.hi)
	binary.LittleEndian.PutUint64(b[8:], k.lo)
	return maphash.Bytes(l.seed, b[:])
}

func (s *shard) find(k key, h uint64) (int, bool) {
	if s.slots == nil {
		return 0, false
	}
	mask := len(s.slots) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		switch s.slots[i].k {
		case k:
			return i, true
		case key{}:
			return 0, false
		}
	}
}

// insert adds k with a full bucket, evicting an entry first if the shard is
// at capacity, and returns its slot.
func (s *shard) insert(k key, h uint64, now int64, l *Limiter) int {
	if s.slots == nil {
		// Load factor at most 1/2 keeps probe sequences short.
		s.slots = make([]slot, 1<<bits.Len(uint(2*s.limit-1)))
	}
	if s.n >= s.limit {
		s.evict(now, l)
	}
	mask := len(s.slots) - 1
	i := int(h) & mask
	for s.slots[i].k != (key{}) {
		i = (i + 1) & mask
	}
	s.slots[i] = slot{k: k, tat: now}
	s.n++
	return i
}

// evict removes the first entry with a full bucket among the next
// evictSample entries from the hand, or else the one with the least debt.
func (s *shard) evict(now int64, l *Limiter) {
	mask := len(s.slots) - 1
	victim, least, seen := -1, int64(math.MaxInt64), 0
	for i := 0; i < len(s.slots) && seen < evictSample; i++ {
		j := (s.hand + i) & mask
		if s.slots[j].k == (key{}) {
			continue
		}
		seen++
		debt := s.slots[j].tat - now
		if debt < least {
			victim, least = j, debt
			if debt <= 0 {
				break
			}
		}
	}
	s.hand = (victim + 1) & mask
	s.remove(victim, l)
}

// remove deletes slot i, shifting later entries of the probe run back so
// that lookups never need tombstones.
func (s *shard) remove(i int, l *Limiter) {
	mask := len(s.slots) - 1
	for j := (i + 1) & mask; s.slots[j].k != (key{}); j = (j + 1) & mask {
		home := int(l.hash(s.slots[j].k)) & mask
		// Move j into the hole at i unless its home lies cyclically in (i, j].
		if (j-home)&mask >= (j-i)&mask {
			s.slots[i] = s.slots[j]
			i = j
		}
	}
	s.slots[i] = slot{}
	s.n--
}
