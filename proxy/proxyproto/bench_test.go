package proxyproto

import (
	"bytes"
	"net/netip"
	"testing"
)

var (
	benchSrc4 = netip.MustParseAddrPort("192.0.2.1:56324")
	benchDst4 = netip.MustParseAddrPort("198.51.100.2:443")
	benchSrc6 = netip.MustParseAddrPort("[2001:db8::1]:56324")
	benchDst6 = netip.MustParseAddrPort("[2001:db8::2]:443")
)

func BenchmarkAppendV2(b *testing.B) {
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendV2(buf[:0], benchSrc6, benchDst6)
	}
}

func BenchmarkAppendV1(b *testing.B) {
	buf := make([]byte, 0, MaxV1Len)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendV1(buf[:0], benchSrc6, benchDst6)
	}
}

func BenchmarkParseV2(b *testing.B) {
	hdr := AppendV2(nil, benchSrc4, benchDst4)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Parse(hdr); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseV2TLVs(b *testing.B) {
	h := &Header{Version: 2, Command: Proxy, Src: benchSrc6, Dst: benchDst6,
		TLVs: []TLV{{TypeALPN, []byte("h2")}, {TypeAuthority, []byte("example.com")}, {TypeCRC32C, make([]byte, 4)}}}
	hdr, _ := h.Append(nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Parse(hdr); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseV1(b *testing.B) {
	hdr := AppendV1(nil, benchSrc4, benchDst4)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Parse(hdr); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadFromV1(b *testing.B) {
	hdr := AppendV1(nil, benchSrc4, benchDst4)
	r := bytes.NewReader(hdr)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(hdr)
		if _, err := ReadFrom(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadFromV2(b *testing.B) {
	hdr := AppendV2(nil, benchSrc6, benchDst6)
	r := bytes.NewReader(hdr)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(hdr)
		if _, err := ReadFrom(r); err != nil {
			b.Fatal(err)
		}
	}
}
