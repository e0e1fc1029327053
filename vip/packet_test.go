package vip

import (
	"encoding/hex"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// Captured with tcpdump from keepalived 2.2.7 (vrrp_version 3) in a test
// namespace, IPv4 header onwards.
var keepalivedVectors = []struct {
	name string
	hex  string
	want Packet
}{
	{
		name: "multicast vrid 51 prio 150 1s two addresses",
		hex:  "45c0 0024 0003 0000 ff70 1481 c612 0001 e000 0012 3133 9602 0064 04d1 c612 0064 c612 0065",
		want: Packet{
			Src: netip.MustParseAddr("198.18.0.1"), Dst: MulticastGroup, TTL: 255,
			Advert: Advert{VRID: 51, Priority: 150, MaxAdvertInterval: 100, Addrs: []netip.Addr{
				netip.MustParseAddr("198.18.0.100"), netip.MustParseAddr("198.18.0.101")}},
		},
	},
	{
		name: "multicast priority 0 on shutdown",
		hex:  "45c0 0024 0004 0000 ff70 1480 c612 0001 e000 0012 3133 0002 0064 9ad1 c612 0064 c612 0065",
		want: Packet{
			Src: netip.MustParseAddr("198.18.0.1"), Dst: MulticastGroup, TTL: 255,
			Advert: Advert{VRID: 51, Priority: 0, MaxAdvertInterval: 100, Addrs: []netip.Addr{
				netip.MustParseAddr("198.18.0.100"), netip.MustParseAddr("198.18.0.101")}},
		},
	},
	{
		name: "unicast vrid 52 prio 100 100ms",
		hex:  "45c0 0020 0001 0000 ff70 2e85 c612 0001 c612 0002 3134 6401 000a 179b c612 006e",
		want: Packet{
			Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"), TTL: 255,
			Advert: Advert{VRID: 52, Priority: 100, MaxAdvertInterval: 10, Addrs: []netip.Addr{
				netip.MustParseAddr("198.18.0.110")}},
		},
	},
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeKeepalivedCaptures(t *testing.T) {
	for _, v := range keepalivedVectors {
		t.Run(v.name, func(t *testing.T) {
			b := mustHex(t, v.hex)
			got, r := DecodeIPv4(b)
			if r != ReasonNone {
				t.Fatalf("dropped: %v", r)
			}
			if !reflect.DeepEqual(got, v.want) {
				t.Fatalf("got %+v\nwant %+v", got, v.want)
			}
			// Our encoder produces the very same VRRP bytes, checksum included.
			enc, err := v.want.Advert.Marshal(v.want.Src, v.want.Dst)
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(enc) != hex.EncodeToString(b[20:]) {
				t.Fatalf("encode mismatch:\n got %x\nwant %x", enc, b[20:])
			}
		})
	}
}

// ipPacket wraps msg in a minimal IPv4 header (checksum of the IP header is
// not checked by the decoder; the kernel did that).
func ipPacket(src, dst netip.Addr, ttl uint8, msg []byte) []byte {
	b := make([]byte, 20+len(msg))
	b[0] = 0x45
	b[2], b[3] = byte(len(b)>>8), byte(len(b))
	b[8] = ttl
	b[9] = IPProtocol
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	copy(b[20:], msg)
	return b
}

func TestDecodeDropReasons(t *testing.T) {
	src, dst := netip.MustParseAddr("198.18.0.5"), MulticastGroup
	good, err := Advert{VRID: 7, Priority: 100, MaxAdvertInterval: 10,
		Addrs: []netip.Addr{netip.MustParseAddr("198.18.1.1")}}.Marshal(src, dst)
	if err != nil {
		t.Fatal(err)
	}
	mod := func(f func(b []byte) []byte) []byte {
		b := ipPacket(src, dst, 255, good)
		return f(b)
	}
	cases := []struct {
		name string
		pkt  []byte
		want DropReason
	}{
		{"ok", mod(func(b []byte) []byte { return b }), ReasonNone},
		{"empty", nil, ReasonShort},
		{"short ip", mod(func(b []byte) []byte { return b[:19] }), ReasonShort},
		{"ipv6", mod(func(b []byte) []byte { b[0] = 0x65; return b }), ReasonNotIPv4},
		{"other proto", mod(func(b []byte) []byte { b[9] = 6; return b }), ReasonNotIPv4},
		{"ihl too small", mod(func(b []byte) []byte { b[0] = 0x44; return b }), ReasonShort},
		{"total beyond buffer", mod(func(b []byte) []byte { b[3] += 4; return b }), ReasonShort},
		{"fragment", mod(func(b []byte) []byte { b[6] = 0x20; return b }), ReasonFragment},
		{"ttl 254", mod(func(b []byte) []byte { b[8] = 254; return b }), ReasonTTL},
		{"ttl 1", mod(func(b []byte) []byte { b[8] = 1; return b }), ReasonTTL},
		{"vrrp v2", mod(func(b []byte) []byte { b[20] = 0x21; return b }), ReasonVersion},
		{"type 2", mod(func(b []byte) []byte { b[20] = 0x32; return b }), ReasonType},
		{"truncated header", mod(func(b []byte) []byte { b = b[:26]; b[3] = 26; return b }), ReasonShort},
		{"count beyond message", mod(func(b []byte) []byte { b[23] = 2; return b }), ReasonAddressList},
		{"bad checksum", mod(func(b []byte) []byte { b[27] ^= 1; return b }), ReasonChecksum},
		{"payload altered", mod(func(b []byte) []byte { b[22] = 200; return b }), ReasonChecksum},
		{"wrong pseudo header", mod(func(b []byte) []byte { b[19] = 19; return b }), ReasonChecksum},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, r := DecodeIPv4(c.pkt)
			if r != c.want {
				t.Fatalf("reason %v, want %v", r, c.want)
			}
		})
	}
}

func TestDecodeZeroInterval(t *testing.T) {
	src, dst := netip.MustParseAddr("198.18.0.5"), MulticastGroup
	b, err := Advert{VRID: 7, Priority: 100, MaxAdvertInterval: 1}.Marshal(src, dst)
	if err != nil {
		t.Fatal(err)
	}
	b[4], b[5] = 0xf0, 0 // reserved bits set, interval 0
	b[6], b[7] = 0, 0
	c := checksum(src, dst, b)
	b[6], b[7] = byte(c>>8), byte(c)
	if _, r := DecodeAdvert(b, src, dst); r != ReasonInterval {
		t.Fatalf("reason %v, want interval", r)
	}
}

func TestDecodeIgnoresReservedBitsAndOddTrailer(t *testing.T) {
	src, dst := netip.MustParseAddr("198.18.0.5"), netip.MustParseAddr("198.18.0.6")
	b, err := Advert{VRID: 9, Priority: 1, MaxAdvertInterval: 4095}.Marshal(src, dst)
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, 0xab) // odd length: checksum pads with a zero byte
	b[6], b[7] = 0, 0
	c := checksum(src, dst, b)
	b[6], b[7] = byte(c>>8), byte(c)
	a, r := DecodeAdvert(b, src, dst)
	if r != ReasonNone || a.MaxAdvertInterval != 4095 || a.VRID != 9 || len(a.Addrs) != 0 {
		t.Fatalf("got %+v %v", a, r)
	}
}

func TestMarshalRejects(t *testing.T) {
	src, dst := netip.MustParseAddr("198.18.0.5"), MulticastGroup
	v6 := netip.MustParseAddr("2001:db8::1")
	many := make([]netip.Addr, 256)
	for i := range many {
		many[i] = src
	}
	cases := []struct {
		name     string
		a        Advert
		src, dst netip.Addr
	}{
		{"vrid 0", Advert{VRID: 0, MaxAdvertInterval: 1}, src, dst},
		{"interval 0", Advert{VRID: 1}, src, dst},
		{"interval too big", Advert{VRID: 1, MaxAdvertInterval: 4096}, src, dst},
		{"ipv6 vip", Advert{VRID: 1, MaxAdvertInterval: 1, Addrs: []netip.Addr{v6}}, src, dst},
		{"ipv6 src", Advert{VRID: 1, MaxAdvertInterval: 1}, v6, dst},
		{"too many", Advert{VRID: 1, MaxAdvertInterval: 1, Addrs: many}, src, dst},
	}
	for _, c := range cases {
		if _, err := c.a.Marshal(c.src, c.dst); !errors.Is(err, ErrInvalidAdvert) {
			t.Errorf("%s: err %v, want ErrInvalidAdvert", c.name, err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	src, dst := netip.MustParseAddr("198.19.255.254"), MulticastGroup
	for _, n := range []int{0, 1, 17, 255} {
		a := Advert{VRID: 255, Priority: 255, MaxAdvertInterval: 4095}
		for i := range n {
			a.Addrs = append(a.Addrs, netip.AddrFrom4([4]byte{198, 18, byte(i), 1}))
		}
		b, err := a.Marshal(src, dst)
		if err != nil {
			t.Fatal(err)
		}
		p, r := DecodeIPv4(ipPacket(src, dst, 255, b))
		if r != ReasonNone || !reflect.DeepEqual(p.Advert, a) {
			t.Fatalf("n=%d: %v %+v", n, r, p.Advert)
		}
	}
}

func TestDropReasonNames(t *testing.T) {
	seen := map[string]bool{}
	for r := ReasonNone; r < numDropReasons; r++ {
		s := r.String()
		if s == "" || strings.HasPrefix(s, "reason(") || seen[s] {
			t.Fatalf("reason %d has bad or duplicate name %q", r, s)
		}
		seen[s] = true
	}
}

func FuzzDecodeIPv4(f *testing.F) {
	for _, v := range keepalivedVectors {
		f.Add(mustHex(f, v.hex))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, r := DecodeIPv4(b)
		if r != ReasonNone {
			return
		}
		// Whatever decodes must re-encode to the same message.
		enc, err := p.Advert.Marshal(p.Src, p.Dst)
		if err != nil {
			t.Fatalf("accepted advert does not encode: %v", err)
		}
		ihl := int(b[0]&0x0f) * 4
		msg := b[ihl : ihl+len(enc)]
		if hex.EncodeToString(enc[:4]) != hex.EncodeToString(msg[:4]) || hex.EncodeToString(enc[8:]) != hex.EncodeToString(msg[8:]) {
			t.Fatalf("re-encode differs: %x vs %x", enc, msg)
		}
	})
}
