package proxyproto

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

// FuzzParse checks that Parse never panics, that whatever it accepts
// re-encodes to a header that parses back to the same content, and that
// ReadFrom over the same bytes agrees with Parse and consumes exactly n bytes.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n",
		"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n",
		"PROXY TCP6 ::ffff:192.0.2.1 ::1 80 8080\r\n",
		"PROXY UNKNOWN\r\n",
		"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
		"PROXY TCP4 01.2.3.4 1.2.3.4 1 2\r\n",
		"GET / HTTP/1.1\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Add(AppendV2(nil, netip.MustParseAddrPort("192.0.2.1:56324"), netip.MustParseAddrPort("198.51.100.2:443")))
	f.Add(AppendV2(nil, netip.MustParseAddrPort("[2001:db8::1]:1"), netip.MustParseAddrPort("[2001:db8::2]:2")))
	h := &Header{Version: 2, Command: Proxy, Src: netip.MustParseAddrPort("192.0.2.1:1"), Dst: netip.MustParseAddrPort("192.0.2.2:2"),
		TLVs: []TLV{{TypeALPN, []byte("h2")}, {TypeCRC32C, make([]byte, 4)}, {TypeSSL, []byte{1, 0, 0, 0, 0, 0x21, 0, 1, 'x'}}}}
	b, _ := h.Append(nil)
	f.Add(b)
	f.Add(v2(0x20, 0x00, nil))
	f.Add(v2(0x21, famUnix, make([]byte, 216)))

	f.Fuzz(func(t *testing.T, data []byte) {
		h, n, err := Parse(data)
		if err != nil {
			if h != nil || n != 0 {
				t.Fatalf("error %v with header %v, n %d", err, h, n)
			}
			if _, rerr := ReadFrom(bytes.NewReader(data)); rerr == nil {
				t.Fatalf("Parse failed with %v but ReadFrom succeeded", err)
			}
			return
		}
		if n <= 0 || n > len(data) {
			t.Fatalf("n = %d for %d bytes", n, len(data))
		}
		if h.Version == 1 && n > MaxV1Len || h.Version == 2 && n > v2FixedLen+MaxV2Len {
			t.Fatalf("v%d header of %d bytes accepted", h.Version, n)
		}
		if h2, n2, err := Parse(data[:n]); err != nil || n2 != n || !reflect.DeepEqual(h, h2) {
			t.Fatalf("header alone parses differently: %v, %d, %v", h2, n2, err)
		}
		if _, _, err := Parse(data[:n-1]); !errors.Is(err, ErrNeedMore) {
			t.Fatalf("truncated header: %v, want ErrNeedMore", err)
		}

		r := bytes.NewReader(data)
		rh, err := ReadFrom(r)
		if err != nil {
			t.Fatalf("Parse accepted but ReadFrom: %v", err)
		}
		if !reflect.DeepEqual(rh, h) {
			t.Fatalf("ReadFrom = %+v, Parse = %+v", rh, h)
		}
		if r.Len() != len(data)-n {
			t.Fatalf("ReadFrom consumed %d bytes, header is %d", len(data)-r.Len(), n)
		}

		enc, err := h.Append(nil)
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", h, err)
		}
		back, m, err := Parse(enc)
		if err != nil || m != len(enc) {
			t.Fatalf("re-encoded %q: %d, %v", enc, m, err)
		}
		if back.Version != h.Version || back.Command != h.Command ||
			unmap(back.Src) != unmap(h.Src) || unmap(back.Dst) != unmap(h.Dst) ||
			len(back.TLVs) != len(h.TLVs) {
			t.Fatalf("round trip: %+v -> %+v", h, back)
		}
		for i, tv := range h.TLVs {
			bt := back.TLVs[i]
			if bt.Type != tv.Type || len(bt.Value) != len(tv.Value) ||
				tv.Type != TypeCRC32C && !bytes.Equal(bt.Value, tv.Value) {
				t.Fatalf("TLV %d: %+v -> %+v", i, tv, bt)
			}
		}
	})
}

func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}
