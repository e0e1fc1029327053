package balance

import "net/netip"

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// mix64 is a bijective 64-bit finalizer (the splitmix64 output function):
// every input bit affects every output bit.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// HashBytes returns a well-mixed 64-bit hash of b (FNV-1a followed by a
// finalizer). It equals HashString(string(b)). It does not allocate.
func HashBytes(b []byte) uint64 {
	h := uint64(fnvOffset)
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return mix64(h)
}

// HashString returns a well-mixed 64-bit hash of s; see HashBytes.
func HashString(s string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return mix64(h)
}

// HashIP returns the hash of a client address for the source policy. An
// IPv4-mapped IPv6 address hashes like its IPv4 form and the zone is ignored,
// so a client keeps its server whichever socket family accepted it. The
// invalid (zero) Addr hashes like an empty string.
func HashIP(a netip.Addr) uint64 {
	a = a.Unmap()
	switch {
	case a.Is4():
		b := a.As4()
		return HashBytes(b[:])
	case a.Is6():
		b := a.As16()
		return HashBytes(b[:])
	default:
		return HashBytes(nil)
	}
}
