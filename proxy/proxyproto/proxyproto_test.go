package proxyproto

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const sigHex = "0d0a0d0a000d0a515549540a"

// v2 builds a version 2 header from the ver/cmd byte, fam byte and body,
// with a correct length field.
func v2(verCmd, fam byte, body []byte) []byte {
	b := append([]byte(nil), v2Signature...)
	b = append(b, verCmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

func tcp4Body(extra ...byte) []byte {
	b := []byte{192, 0, 2, 1, 198, 51, 100, 2, 0xdc, 0x04, 0x01, 0xbb}
	return append(b, extra...)
}

func TestParseV1Valid(t *testing.T) {
	long6 := "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
	unknown107 := "PROXY UNKNOWN " + strings.Repeat("x", MaxV1Len-len("PROXY UNKNOWN ")-2) + "\r\n"
	tests := []struct {
		in       string
		src, dst netip.AddrPort
	}{
		{"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n", ap("192.0.2.1:56324"), ap("198.51.100.2:443")},
		{"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n", ap("0.0.0.0:0"), ap("255.255.255.255:65535")},
		{"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n", ap("[2001:db8::1]:1"), ap("[2001:db8::2]:2")},
		{"PROXY TCP6 :: :: 0 0\r\n", ap("[::]:0"), ap("[::]:0")},
		{"PROXY TCP6 ::ffff:192.0.2.1 ::1 80 8080\r\n", ap("[::ffff:192.0.2.1]:80"), ap("[::1]:8080")},
		{long6, ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"), ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")},
		{"PROXY UNKNOWN\r\n", netip.AddrPort{}, netip.AddrPort{}},
		{"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", netip.AddrPort{}, netip.AddrPort{}},
		{unknown107, netip.AddrPort{}, netip.AddrPort{}},
	}
	for _, tt := range tests {
		in := tt.in + "GET / HTTP/1.1\r\n"
		h, n, err := Parse([]byte(in))
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.in, err)
		}
		want := &Header{Version: 1, Command: Proxy, Src: tt.src, Dst: tt.dst}
		if n != len(tt.in) || !reflect.DeepEqual(h, want) {
			t.Errorf("Parse(%q) = %+v, %d; want %+v, %d", tt.in, h, n, want, len(tt.in))
		}
	}
	if len(unknown107) != MaxV1Len {
		t.Fatalf("worst-case line is %d bytes, want %d", len(unknown107), MaxV1Len)
	}
}

func TestParseV1Invalid(t *testing.T) {
	tests := []struct {
		in   string
		want error
	}{
		{"", ErrNeedMore},
		{"P", ErrNeedMore},
		{"PROXY", ErrNeedMore},
		{"PROXY ", ErrNeedMore},
		{"PROXY TC", ErrNeedMore},
		{"PROXY UNKNOWN", ErrNeedMore},
		{"PROXY UNKNOWN whatever", ErrNeedMore},
		{"PROXY TCP4 192.0.2.1 198.5", ErrNeedMore},
		{"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r", ErrNeedMore},
		{"GET / HTTP/1.1\r\n", ErrNotProxy},
		{"PROXX", ErrNotProxy},
		{"PROXY\r\n", ErrNotProxy},
		{"proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n", ErrNotProxy},
		{"\x16\x03\x01\x02\x00", ErrNotProxy},
		{"PROXY TCP5", ErrV1Protocol},
		{"PROXY FOO ", ErrV1Protocol},
		{"PROXY tcp4 1.2.3.4 1.2.3.4 1 2\r\n", ErrV1Protocol},
		{"PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n", ErrV1Protocol},
		{"PROXY UNKNOWNX\r\n", ErrV1Protocol},
		{"PROXY \r\n", ErrV1Protocol},
		{"PROXY  TCP4 1.2.3.4 1.2.3.4 1 2\r\n", ErrV1Protocol},
		{"PROXY TCP4 1.2.3.4 zz", ErrV1Format},
		{"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n", ErrV1Format},
		{"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rX", ErrV1Format},
		{"PROXY TCP4 1.2.3.4\n1.2.3.4 1 2\r\n", ErrV1Format},
		{"PROXY TCP4\r\n", ErrV1Format},
		{"PROXY TCP4 \r\n", ErrV1Format},
		{"PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n", ErrV1Format},
		{"PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n", ErrV1Format},
		{"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n", ErrV1Format},
		{"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n", ErrV1Format},
		{"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 \r\n", ErrV1Format},
		{"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\t\r\n", ErrV1Port},
		{"PROXY TCP4 ::1 ::1 1 2\r\n", ErrV1Address},
		{"PROXY TCP4 ::ffff:1.2.3.4 1.2.3.4 1 2\r\n", ErrV1Address},
		{"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", ErrV1Address},
		{"PROXY TCP6 ::1 1.2.3.4 1 2\r\n", ErrV1Address},
		{"PROXY TCP4 01.2.3.4 1.2.3.4 1 2\r\n", ErrV1Address},
		{"PROXY TCP4 256.1.1.1 1.2.3.4 1 2\r\n", ErrV1Address},
		{"PROXY TCP4 1.2.3 1.2.3.4 1 2\r\n", ErrV1Address},
		{"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", ErrV1Address},
		{"PROXY TCP6 ::g ::1 1 2\r\n", ErrV1Address},
		{"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n", ErrV1Port},
		{"PROXY TCP4 1.2.3.4 1.2.3.4 1 99999\r\n", ErrV1Port},
		{"PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n", ErrV1Port},
		{"PROXY TCP4 1.2.3.4 1.2.3.4 1 00\r\n", ErrV1Port},
		{"PROXY TCP4 1.2.3.4 1.2.3.4 123456 2\r\n", ErrV1Port},
		{"PROXY TCP4 1.2.3.4 1.2.3.4 -1 2\r\n", ErrV1Port},
		{"PROXY TCP4 1.2.3.4 1.2.3.4 1a 2\r\n", ErrV1Port},
		{"PROXY TCP6 ::1 ::1 :1 2\r\n", ErrV1Port},
		{"PROXY UNKNOWN " + strings.Repeat("x", 92) + "\r\n", ErrV1TooLong},
		{"PROXY UNKNOWN " + strings.Repeat("x", 200), ErrV1TooLong},
		{"PROXY UNKNOWN " + strings.Repeat("x", 91) + "\r", ErrNeedMore},
	}
	for _, tt := range tests {
		h, n, err := Parse([]byte(tt.in))
		if !errors.Is(err, tt.want) || h != nil || n != 0 {
			t.Errorf("Parse(%q) = %v, %d, %v; want %v", tt.in, h, n, err, tt.want)
		}
	}
}

// Hand-built version 2 headers following the layout in section 2.2 of the
// specification.
func TestParseV2SpecBytes(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want *Header
	}{
		{"tcp4", sigHex + "21 11 000c c0000201 c6336402 dc04 01bb",
			&Header{Version: 2, Command: Proxy, Src: ap("192.0.2.1:56324"), Dst: ap("198.51.100.2:443")}},
		{"tcp6 with ALPN and authority", sigHex + "21 21 0037" +
			"20010db8000000000000000000000001 20010db8000000000000000000000002 0050 1f90" +
			"01 0002 6832" + "02 000b 6578616d706c652e636f6d",
			&Header{Version: 2, Command: Proxy, Src: ap("[2001:db8::1]:80"), Dst: ap("[2001:db8::2]:8080"),
				TLVs: []TLV{{TypeALPN, []byte("h2")}, {TypeAuthority, []byte("example.com")}}}},
		{"local", sigHex + "20 00 0000", &Header{Version: 2, Command: Local}},
		{"local ignores family and block", sigHex + "20 99 0003 010203", &Header{Version: 2, Command: Local}},
		{"unspec", sigHex + "21 00 0000", &Header{Version: 2, Command: Proxy}},
		{"unspec with noop", sigHex + "21 00 0004 04 0001 00", &Header{Version: 2, Command: Proxy,
			TLVs: []TLV{{TypeNoop, []byte{0}}}}},
		{"unix stream", sigHex + "21 31 00d8" + strings.Repeat("00", 216), &Header{Version: 2, Command: Proxy}},
		{"ssl with sub-TLV", sigHex + "21 11 0019 c0000201 c6336402 dc04 01bb" + "20 000a 01 00000000 21 0002 3132",
			&Header{Version: 2, Command: Proxy, Src: ap("192.0.2.1:56324"), Dst: ap("198.51.100.2:443"),
				TLVs: []TLV{{TypeSSL, unhex(t, "01 00000000 21 0002 3132")}}}},
		{"empty TLV value", sigHex + "21 11 000f c0000201 c6336402 dc04 01bb" + "e0 0000",
			&Header{Version: 2, Command: Proxy, Src: ap("192.0.2.1:56324"), Dst: ap("198.51.100.2:443"),
				TLVs: []TLV{{0xe0, []byte{}}}}},
	}
	for _, tt := range tests {
		in := unhex(t, tt.in)
		h, n, err := Parse(append(in, "payload"...))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if n != len(in) || !reflect.DeepEqual(h, tt.want) {
			t.Errorf("%s: got %+v, %d; want %+v, %d", tt.name, h, n, tt.want, len(in))
		}
	}
}

func TestParseV2Invalid(t *testing.T) {
	valid4 := v2(0x21, famTCP4, tcp4Body())
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrNeedMore},
		{"partial signature", v2Signature[:5], ErrNeedMore},
		{"signature only", v2Signature, ErrNeedMore},
		{"no family yet", valid4[:13], ErrNeedMore},
		{"no length yet", valid4[:15], ErrNeedMore},
		{"short body", valid4[:len(valid4)-1], ErrNeedMore},
		{"bad signature", []byte("\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x00"), ErrNotProxy},
		{"bad signature early", []byte("\r\r"), ErrNotProxy},
		{"version 1", v2(0x11, famTCP4, tcp4Body()), ErrV2Version},
		{"version 3", v2(0x31, famTCP4, tcp4Body()), ErrV2Version},
		{"version 0", v2(0x01, famTCP4, tcp4Body()), ErrV2Version},
		{"bad version early", append(append([]byte(nil), v2Signature...), 0x11), ErrV2Version},
		{"command 2", v2(0x22, famTCP4, tcp4Body()), ErrV2Command},
		{"command 15", v2(0x2f, famTCP4, tcp4Body()), ErrV2Command},
		{"udp4", v2(0x21, 0x12, tcp4Body()), ErrV2Datagram},
		{"udp6", v2(0x21, 0x22, make([]byte, 36)), ErrV2Datagram},
		{"unix dgram", v2(0x21, 0x32, make([]byte, 216)), ErrV2Datagram},
		{"family 4", v2(0x21, 0x41, tcp4Body()), ErrV2Family},
		{"transport 3", v2(0x21, 0x13, tcp4Body()), ErrV2Family},
		{"inet unspec transport", v2(0x21, 0x10, tcp4Body()), ErrV2Family},
		{"unspec stream", v2(0x21, 0x01, nil), ErrV2Family},
		{"bad family early", append(append([]byte(nil), v2Signature...), 0x21, 0x12), ErrV2Datagram},
		{"length over 2048", append(append([]byte(nil), v2Signature...), 0x21, 0x11, 0x08, 0x01), ErrV2TooLong},
		{"length 65535", append(append([]byte(nil), v2Signature...), 0x20, 0x00, 0xff, 0xff), ErrV2TooLong},
		{"tcp4 short", v2(0x21, famTCP4, tcp4Body()[:11]), ErrV2Length},
		{"tcp6 short", v2(0x21, famTCP6, make([]byte, 35)), ErrV2Length},
		{"unix short", v2(0x21, famUnix, make([]byte, 215)), ErrV2Length},
		{"tlv truncated header", v2(0x21, famTCP4, tcp4Body(1, 0)), ErrV2TLV},
		{"tlv one byte", v2(0x21, famTCP4, tcp4Body(1)), ErrV2TLV},
		{"tlv value overruns", v2(0x21, famTCP4, tcp4Body(1, 0, 3, 'h', '2')), ErrV2TLV},
		{"second tlv overruns", v2(0x21, famTCP4, tcp4Body(4, 0, 0, 1, 0, 9)), ErrV2TLV},
		{"tlv on unspec overruns", v2(0x21, famUnspec, []byte{4, 0, 1}), ErrV2TLV},
		{"crc wrong size", v2(0x21, famTCP4, tcp4Body(3, 0, 2, 0, 0)), ErrV2TLV},
		{"crc mismatch", v2(0x21, famTCP4, tcp4Body(3, 0, 4, 1, 2, 3, 4)), ErrV2Checksum},
		{"unique id too long", v2(0x21, famTCP4, append(tcp4Body(5, 0, 129), make([]byte, 129)...)), ErrV2TLV},
		{"ssl too short", v2(0x21, famTCP4, tcp4Body(0x20, 0, 4, 1, 0, 0, 0)), ErrV2TLV},
		{"ssl sub-tlv overruns", v2(0x21, famTCP4, tcp4Body(0x20, 0, 8, 1, 0, 0, 0, 0, 0x21, 0, 5)), ErrV2TLV},
	}
	for _, tt := range tests {
		h, n, err := Parse(tt.in)
		if !errors.Is(err, tt.want) || h != nil || n != 0 {
			t.Errorf("%s: Parse = %v, %d, %v; want %v", tt.name, h, n, err, tt.want)
		}
	}
}

func TestV2ChecksumAndDuplicate(t *testing.T) {
	// Build a header with a CRC32C TLV computed independently of the package:
	// over the whole header with the checksum field zeroed.
	in := v2(0x21, famTCP4, tcp4Body(TypeCRC32C, 0, 4, 0, 0, 0, 0, TypeNoop, 0, 0))
	binary.BigEndian.PutUint32(in[16+12+3:], crc32.Checksum(in, crc32.MakeTable(crc32.Castagnoli)))
	h, n, err := Parse(in)
	if err != nil || n != len(in) {
		t.Fatalf("Parse = %v, %d, %v", h, n, err)
	}
	if len(h.TLVs) != 2 || h.TLVs[0].Type != TypeCRC32C || h.TLVs[1].Type != TypeNoop {
		t.Fatalf("TLVs = %+v", h.TLVs)
	}
	for i := range in {
		if i == 12 || i == 16+12 {
			// 0x21->0x20 turns it into LOCAL, which ignores the block;
			// 0x03->0x02 turns the CRC32C TLV into an authority.
			continue
		}
		bad := bytes.Clone(in)
		bad[i] ^= 0x01
		if _, _, err := Parse(bad); err == nil {
			t.Errorf("flipping a bit in byte %d went unnoticed", i)
		}
	}
	dup := v2(0x21, famTCP4, tcp4Body(TypeCRC32C, 0, 4, 0, 0, 0, 0, TypeCRC32C, 0, 4, 0, 0, 0, 0))
	if _, _, err := Parse(dup); !errors.Is(err, ErrV2TLV) {
		t.Errorf("duplicate CRC32C: %v, want ErrV2TLV", err)
	}
}

func TestAppendV1(t *testing.T) {
	tests := []struct {
		src, dst netip.AddrPort
		want     string
	}{
		{ap("192.0.2.1:56324"), ap("198.51.100.2:443"), "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"},
		{ap("[2001:db8::1]:1"), ap("[2001:db8::2]:65535"), "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n"},
		{ap("[::ffff:192.0.2.1]:1"), ap("198.51.100.2:2"), "PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\n"},
		{ap("[fe80::1%eth0]:1"), ap("[fe80::2%eth0]:2"), "PROXY TCP6 fe80::1 fe80::2 1 2\r\n"},
		{ap("192.0.2.1:1"), ap("[2001:db8::2]:2"), "PROXY UNKNOWN\r\n"},
		{ap("[::ffff:192.0.2.1]:1"), ap("[2001:db8::2]:2"), "PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 1 2\r\n"},
		{netip.AddrPort{}, ap("198.51.100.2:2"), "PROXY UNKNOWN\r\n"},
		{netip.AddrPort{}, netip.AddrPort{}, "PROXY UNKNOWN\r\n"},
	}
	for _, tt := range tests {
		got := AppendV1([]byte("x"), tt.src, tt.dst)
		if string(got) != "x"+tt.want {
			t.Errorf("AppendV1(%v, %v) = %q, want %q", tt.src, tt.dst, got[1:], tt.want)
		}
	}
}

func TestAppendV2(t *testing.T) {
	tests := []struct {
		src, dst netip.AddrPort
		want     string
	}{
		{ap("192.0.2.1:56324"), ap("198.51.100.2:443"), sigHex + "21 11 000c c0000201 c6336402 dc04 01bb"},
		{ap("[::ffff:192.0.2.1]:56324"), ap("[::ffff:198.51.100.2]:443"), sigHex + "21 11 000c c0000201 c6336402 dc04 01bb"},
		{ap("[2001:db8::1]:80"), ap("[2001:db8::2%eth0]:8080"), sigHex + "21 21 0024" +
			"20010db8000000000000000000000001 20010db8000000000000000000000002 0050 1f90"},
		{ap("192.0.2.1:80"), ap("[2001:db8::2]:8080"), sigHex + "21 21 0024" +
			"00000000000000000000ffffc0000201 20010db8000000000000000000000002 0050 1f90"},
		{netip.AddrPort{}, ap("192.0.2.1:1"), sigHex + "21 00 0000"},
	}
	for _, tt := range tests {
		got := AppendV2([]byte{0xee}, tt.src, tt.dst)
		if want := append([]byte{0xee}, unhex(t, tt.want)...); !bytes.Equal(got, want) {
			t.Errorf("AppendV2(%v, %v) =\n%x\nwant\n%x", tt.src, tt.dst, got, want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	pairs := [][2]netip.AddrPort{
		{ap("192.0.2.1:56324"), ap("198.51.100.2:443")},
		{ap("0.0.0.0:0"), ap("255.255.255.255:65535")},
		{ap("[2001:db8::1]:1"), ap("[2001:db8:ffff::2]:65535")},
		{ap("[::]:0"), ap("[::1]:22")},
		{ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"), ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")},
	}
	for _, p := range pairs {
		for _, enc := range []struct {
			version int
			f       func([]byte, netip.AddrPort, netip.AddrPort) []byte
		}{{1, AppendV1}, {2, AppendV2}} {
			b := enc.f(nil, p[0], p[1])
			h, n, err := Parse(b)
			if err != nil || n != len(b) {
				t.Fatalf("v%d %v: Parse(%q) = %d, %v", enc.version, p, b, n, err)
			}
			want := &Header{Version: enc.version, Command: Proxy, Src: p[0], Dst: p[1]}
			if !reflect.DeepEqual(h, want) {
				t.Errorf("v%d round trip: got %+v, want %+v", enc.version, h, want)
			}
			r, err := ReadFrom(bytes.NewReader(b))
			if err != nil || !reflect.DeepEqual(r, want) {
				t.Errorf("v%d ReadFrom: got %+v, %v", enc.version, r, err)
			}
		}
	}
}

func TestHeaderAppend(t *testing.T) {
	h := &Header{Version: 2, Command: Proxy, Src: ap("[2001:db8::1]:1234"), Dst: ap("[2001:db8::2]:443"),
		TLVs: []TLV{{TypeALPN, []byte("http/1.1")}, {TypeCRC32C, make([]byte, 4)}, {TypeUniqueID, []byte("abc")}}}
	b, err := h.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	got, n, err := Parse(b)
	if err != nil || n != len(b) {
		t.Fatalf("Parse = %d, %v", n, err)
	}
	if got.Src != h.Src || got.Dst != h.Dst || len(got.TLVs) != 3 || string(got.TLVs[2].Value) != "abc" {
		t.Errorf("got %+v", got)
	}
	if bytes.Equal(got.TLVs[1].Value, make([]byte, 4)) {
		t.Errorf("CRC32C value not filled in")
	}

	local, err := (&Header{Version: 2, Command: Local, Src: h.Src, TLVs: h.TLVs}).Append(nil)
	if err != nil || !bytes.Equal(local, unhex(t, sigHex+"20 00 0000")) {
		t.Errorf("LOCAL = %x, %v", local, err)
	}
	v1, err := (&Header{Version: 1, Src: ap("192.0.2.1:1"), Dst: ap("192.0.2.2:2")}).Append(nil)
	if err != nil || string(v1) != "PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n" {
		t.Errorf("v1 = %q, %v", v1, err)
	}
	big := &Header{Version: 2, Command: Proxy, TLVs: []TLV{{TypeNoop, make([]byte, MaxV2Len)}}}
	if b, err := big.Append([]byte("keep")); !errors.Is(err, ErrV2TooLong) || string(b) != "keep" {
		t.Errorf("oversized: %q, %v", b, err)
	}
	huge := &Header{Version: 2, Command: Proxy, TLVs: []TLV{{TypeNoop, make([]byte, 70000)}}}
	if _, err := huge.Append(nil); !errors.Is(err, ErrV2TLVLength) {
		t.Errorf("huge TLV: %v", err)
	}
	if _, err := (&Header{Version: 3}).Append(nil); err == nil {
		t.Error("version 3 encoded")
	}
	if _, err := (&Header{Version: 2, Command: 7}).Append(nil); !errors.Is(err, ErrV2Command) {
		t.Errorf("command 7: %v", err)
	}
}

// countingReader records the size of every Read call.
type countingReader struct {
	r     io.Reader
	reads []int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.reads = append(c.reads, len(p))
	return c.r.Read(p)
}

func TestReadFromLeavesPayload(t *testing.T) {
	headers := []string{
		"PROXY UNKNOWN\r\n",
		"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
		"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
		"PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n",
		"PROXY TCP6 :: :: 0 0\r\n",
		"PROXY TCP6 ::ffff:1.2.3.4 2001:db8::1 65535 1\r\n",
		"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
		string(unhex(t, sigHex+"20 00 0000")),
		string(unhex(t, sigHex+"21 11 000c c0000201 c6336402 dc04 01bb")),
		string(v2(0x21, famTCP6, append(make([]byte, 36), 4, 0, 2, 'h', 'i'))),
		string(v2(0x21, famUnix, make([]byte, 216+1000+3)[:216+3])),
		string(v2(0x21, famTCP4, append(tcp4Body(TypeNoop, 0x07, 0xf1), make([]byte, 0x7f1)...))),
	}
	const payload = "\r\n\r\nPROXY TCP4 payload bytes"
	for _, hdr := range headers {
		for _, mk := range []func(io.Reader) io.Reader{
			func(r io.Reader) io.Reader { return r },
			iotest.OneByteReader,
			iotest.HalfReader,
		} {
			src := bytes.NewReader([]byte(hdr + payload))
			cr := &countingReader{r: mk(src)}
			h, err := ReadFrom(cr)
			if err != nil {
				t.Fatalf("ReadFrom(%q): %v", hdr, err)
			}
			want, _, _ := Parse([]byte(hdr))
			if !reflect.DeepEqual(h, want) {
				t.Errorf("ReadFrom(%q) = %+v, want %+v", hdr, h, want)
			}
			rest, _ := io.ReadAll(src)
			if string(rest) != payload {
				t.Errorf("ReadFrom(%q) left %q", hdr, rest)
			}
		}
	}
}

func TestReadFromFewReads(t *testing.T) {
	for _, tt := range []struct {
		hdr      string
		maxReads int
	}{
		{"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n", 6},
		{"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n", 6},
		{string(unhex(t, sigHex+"21 11 000c c0000201 c6336402 dc04 01bb")), 3},
	} {
		cr := &countingReader{r: bytes.NewReader([]byte(tt.hdr))}
		if _, err := ReadFrom(cr); err != nil {
			t.Fatal(err)
		}
		t.Logf("%q: reads of %v bytes", tt.hdr, cr.reads)
		if len(cr.reads) > tt.maxReads {
			t.Errorf("%q took %d reads %v, want at most %d", tt.hdr, len(cr.reads), cr.reads, tt.maxReads)
		}
	}
}

func TestReadFromErrors(t *testing.T) {
	tests := []struct {
		in   string
		want error
	}{
		{"", io.EOF},
		{"PROXY TCP4", io.ErrUnexpectedEOF},
		{"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443", io.ErrUnexpectedEOF},
		{"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r", io.ErrUnexpectedEOF},
		{string(unhex(t, sigHex+"21 11 000c c0000201")), io.ErrUnexpectedEOF},
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", ErrNotProxy},
		{"PROXY TCP4 1.2.3.4 1.2.3.4 99999 1\r\n", ErrV1Port},
		{"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", ErrV1Format},
		{"PROXY UNKNOWN " + strings.Repeat("y", 300), ErrV1TooLong},
		{"PROXY TCP4 " + strings.Repeat("1", 300), ErrV1TooLong},
		{string(v2(0x21, 0x12, tcp4Body())), ErrV2Datagram},
		{string(unhex(t, sigHex+"21 11 ffff")) + strings.Repeat("z", 100), ErrV2TooLong},
	}
	for _, tt := range tests {
		h, err := ReadFrom(strings.NewReader(tt.in))
		if !errors.Is(err, tt.want) || h != nil {
			t.Errorf("ReadFrom(%q) = %v, %v; want %v", tt.in, h, err, tt.want)
		}
	}
}

// TestReadFromTCP checks on a real socket that ReadFrom returns as soon as
// the header has arrived (it never waits for bytes beyond it) and that the
// payload is intact afterwards.
func TestReadFromTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, hdr := range [][]byte{
		AppendV1(nil, ap("192.0.2.1:1000"), ap("198.51.100.2:443")),
		AppendV2(nil, ap("[2001:db8::1]:1000"), ap("[2001:db8::2]:443")),
	} {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(hdr); err != nil {
			t.Fatal(err)
		}
		// The client sends nothing more until the header is acknowledged,
		// so any over-read would block until the deadline.
		s.SetReadDeadline(time.Now().Add(10 * time.Second))
		h, err := ReadFrom(s)
		if err != nil {
			t.Fatalf("ReadFrom: %v", err)
		}
		if h.Src.Port() != 1000 || h.Dst.Port() != 443 {
			t.Errorf("header %+v", h)
		}
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		c.Close()
		rest, err := io.ReadAll(s)
		if err != nil || string(rest) != "hello" {
			t.Errorf("payload %q, %v", rest, err)
		}
		s.Close()
	}
}

// TestReadFromRandomV1 checks the no-over-read guarantee over many lines of
// varied shape (short and long addresses, one- to five-digit ports).
func TestReadFromRandomV1(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	randAP := func(v6 bool) netip.AddrPort {
		var a netip.Addr
		if v6 {
			var b [16]byte
			for i := range b {
				if r.IntN(3) == 0 {
					b[i] = byte(r.IntN(256))
				}
			}
			a = netip.AddrFrom16(b)
		} else {
			a = netip.AddrFrom4([4]byte{byte(r.IntN(256)), byte(r.IntN(12)), byte(r.IntN(256)), byte(r.IntN(3))})
		}
		port := []uint16{0, 9, 99, 999, 9999, 65535}[r.IntN(6)]
		if r.IntN(2) == 0 {
			port = uint16(r.IntN(65536))
		}
		return netip.AddrPortFrom(a, port)
	}
	for range 5000 {
		v6 := r.IntN(2) == 0
		line := AppendV1(nil, randAP(v6), randAP(v6))
		src := bytes.NewReader(append(bytes.Clone(line), "PROXY"...))
		h, err := ReadFrom(src)
		if err != nil {
			t.Fatalf("ReadFrom(%q): %v", line, err)
		}
		if src.Len() != len("PROXY") {
			t.Fatalf("ReadFrom(%q) left %d bytes, want 5", line, src.Len())
		}
		if want, _, _ := Parse(line); !reflect.DeepEqual(h, want) {
			t.Fatalf("ReadFrom(%q) = %+v, want %+v", line, h, want)
		}
	}
}
