// Package proxyproto encodes and decodes the PROXY protocol, versions 1 (text)
// and 2 (binary), as specified by HAProxy ("The PROXY protocol", versions 1 and 2).
//
// The parser is strict: anything the specification does not allow is rejected
// with one of the exported sentinel errors, so callers can count rejects by
// reason with errors.Is. A stream that does not start with a PROXY header at
// all yields ErrNotProxy.
//
// Accepted: v1 lines of at most 107 bytes with TCP4, TCP6 or UNKNOWN (the
// rest of an UNKNOWN line is ignored, as the specification requires); v2
// headers with command LOCAL (address block ignored) or PROXY over
// AF_INET, AF_INET6, AF_UNIX (addresses ignored) or AF_UNSPEC, stream
// transport only, a length of at most MaxV2Len covering the address block,
// and well-formed TLVs after it (a CRC32C TLV is verified).
//
// ReadFrom consumes exactly the header bytes from a reader and never reads
// ahead, so the caller may keep splicing the raw connection afterwards without
// a buffered reader in front of it.
package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/netip"
	"strconv"
)

// Command is the version 2 command. Version 1 headers always carry Proxy.
type Command uint8

const (
	// Local: the connection was made by the proxy itself (e.g. a health
	// check); the receiver uses the connection's real endpoints.
	Local Command = 0
	// Proxy: the connection was relayed on behalf of the client in Src.
	Proxy Command = 1
)

func (c Command) String() string {
	switch c {
	case Local:
		return "LOCAL"
	case Proxy:
		return "PROXY"
	}
	return "Command(" + strconv.Itoa(int(c)) + ")"
}

// TLV types defined by the version 2 specification.
const (
	TypeALPN      byte = 0x01
	TypeAuthority byte = 0x02
	TypeCRC32C    byte = 0x03
	TypeNoop      byte = 0x04
	TypeUniqueID  byte = 0x05
	TypeSSL       byte = 0x20
	TypeNetNS     byte = 0x30
)

// TLV is one version 2 type-length-value extension.
type TLV struct {
	Type  byte
	Value []byte
}

// Header is a decoded PROXY protocol header.
//
// Src and Dst are the zero netip.AddrPort when the header carries no usable
// addresses (version 1 UNKNOWN, version 2 LOCAL, AF_UNSPEC or AF_UNIX); the
// receiver then uses the connection's own endpoints. Addresses are returned as
// sent: an IPv4-mapped IPv6 address in a TCP6/AF_INET6 header stays mapped.
type Header struct {
	Version int // 1 or 2
	Command Command
	Src     netip.AddrPort
	Dst     netip.AddrPort
	TLVs    []TLV // version 2 only, in wire order
}

// Limits from the specification (v1) and chosen by Palisade (v2).
const (
	// MaxV1Len is the longest valid version 1 line, CRLF included.
	MaxV1Len = 107
	// MaxV2Len is the largest version 2 length field accepted (bytes after
	// the 16-byte fixed part). The specification allows 65535; real
	// senders stay far below this.
	MaxV2Len = 2048

	minV1Len   = 15 // "PROXY UNKNOWN\r\n"
	v2FixedLen = 16
	minHdrLen  = minV1Len // no valid header of either version is shorter
)

// Errors returned by Parse and ReadFrom. Every reject is one of these (I/O
// errors from ReadFrom are wrapped and are not).
var (
	ErrNeedMore = errors.New("proxyproto: incomplete header")
	ErrNotProxy = errors.New("proxyproto: not a PROXY protocol header")

	ErrV1TooLong  = errors.New("proxyproto: v1 header longer than 107 bytes")
	ErrV1Format   = errors.New("proxyproto: malformed v1 header")
	ErrV1Protocol = errors.New("proxyproto: v1 protocol is not TCP4, TCP6 or UNKNOWN")
	ErrV1Address  = errors.New("proxyproto: invalid v1 address")
	ErrV1Port     = errors.New("proxyproto: invalid v1 port")

	ErrV2Version   = errors.New("proxyproto: unsupported v2 version")
	ErrV2Command   = errors.New("proxyproto: unsupported v2 command")
	ErrV2Family    = errors.New("proxyproto: unsupported v2 address family")
	ErrV2Datagram  = errors.New("proxyproto: v2 datagram transport not supported")
	ErrV2Length    = errors.New("proxyproto: invalid v2 length")
	ErrV2TLV       = errors.New("proxyproto: malformed v2 TLV")
	ErrV2Checksum  = errors.New("proxyproto: v2 CRC32C mismatch")
	ErrV2TooLong   = errors.New("proxyproto: v2 header exceeds 2048 bytes")
	ErrV2TLVLength = errors.New("proxyproto: v2 TLV value longer than 65535 bytes")
)

var (
	v1Prefix    = []byte("PROXY ")
	v2Signature = []byte("\r\n\r\n\x00\r\nQUIT\n")
	castagnoli  = crc32.MakeTable(crc32.Castagnoli)
	zeroCRC     [4]byte
)

// Version 2 address family/transport bytes.
const (
	famUnspec = 0x00
	famTCP4   = 0x11
	famTCP6   = 0x21
	famUnix   = 0x31

	addrLenInet  = 12
	addrLenInet6 = 36
	addrLenUnix  = 216
)

// AppendV1 appends a version 1 line for a TCP connection from src to dst.
// Two IPv4 (or IPv4-mapped) addresses are sent as TCP4, two IPv6 addresses
// (one of them possibly IPv4-mapped) as TCP6; zones are dropped. When an
// address is invalid or one is IPv4 and the other IPv6, it appends
// "PROXY UNKNOWN\r\n", which tells the receiver to use the real endpoints.
func AppendV1(b []byte, src, dst netip.AddrPort) []byte {
	s, d := src.Addr().WithZone(""), dst.Addr().WithZone("")
	switch {
	case s.Unmap().Is4() && d.Unmap().Is4():
		s, d = s.Unmap(), d.Unmap()
		b = append(b, "PROXY TCP4 "...)
	case s.Is6() && d.Is6():
		b = append(b, "PROXY TCP6 "...)
	default:
		return append(b, "PROXY UNKNOWN\r\n"...)
	}
	b = s.AppendTo(b)
	b = append(b, ' ')
	b = d.AppendTo(b)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(src.Port()), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(dst.Port()), 10)
	return append(b, '\r', '\n')
}

// AppendV2 appends a version 2 PROXY header for a TCP connection from src to
// dst, without TLVs. Two IPv4 (or IPv4-mapped) addresses are sent as
// AF_INET; if only one side is IPv4 it is mapped into IPv6 and both are sent
// as AF_INET6. Invalid addresses yield AF_UNSPEC. Zones are dropped.
func AppendV2(b []byte, src, dst netip.AddrPort) []byte {
	b, _ = appendV2(b, Proxy, src, dst, nil)
	return b
}

// Append appends h in its version's wire format. Version 1 ignores Command
// and TLVs (see AppendV1). Version 2 sends no addresses and no TLVs for the
// Local command; for Proxy it sends the addresses as AppendV2 does followed
// by h.TLVs, and fills in the value of a 4-byte TypeCRC32C TLV with the
// checksum of the result. It fails, appending nothing, when the encoded
// version 2 length would exceed MaxV2Len or a TLV value 65535 bytes.
func (h *Header) Append(b []byte) ([]byte, error) {
	switch h.Version {
	case 1:
		return AppendV1(b, h.Src, h.Dst), nil
	case 2:
		if h.Command != Local && h.Command != Proxy {
			return b, ErrV2Command
		}
		return appendV2(b, h.Command, h.Src, h.Dst, h.TLVs)
	}
	return b, fmt.Errorf("proxyproto: cannot encode version %d", h.Version)
}

func appendV2(b []byte, cmd Command, src, dst netip.AddrPort, tlvs []TLV) ([]byte, error) {
	start := len(b)
	b = append(b, v2Signature...)
	b = append(b, 0x20|byte(cmd), famUnspec, 0, 0)
	if cmd == Local {
		return b, nil
	}
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	switch {
	case !s.IsValid() || !d.IsValid():
	case s.Is4() && d.Is4():
		b[start+13] = famTCP4
		s4, d4 := s.As4(), d.As4()
		b = append(b, s4[:]...)
		b = append(b, d4[:]...)
		b = binary.BigEndian.AppendUint16(b, src.Port())
		b = binary.BigEndian.AppendUint16(b, dst.Port())
	default:
		b[start+13] = famTCP6
		s16, d16 := s.As16(), d.As16()
		b = append(b, s16[:]...)
		b = append(b, d16[:]...)
		b = binary.BigEndian.AppendUint16(b, src.Port())
		b = binary.BigEndian.AppendUint16(b, dst.Port())
	}
	crcAt := -1
	for _, t := range tlvs {
		if len(t.Value) > 0xffff {
			return b[:start], ErrV2TLVLength
		}
		b = append(b, t.Type)
		b = binary.BigEndian.AppendUint16(b, uint16(len(t.Value)))
		if t.Type == TypeCRC32C && len(t.Value) == 4 && crcAt < 0 {
			crcAt = len(b)
			b = append(b, 0, 0, 0, 0)
			continue
		}
		b = append(b, t.Value...)
	}
	n := len(b) - start - v2FixedLen
	if n > MaxV2Len {
		return b[:start], ErrV2TooLong
	}
	binary.BigEndian.PutUint16(b[start+14:], uint16(n))
	if crcAt >= 0 {
		binary.BigEndian.PutUint32(b[crcAt:], crc32.Checksum(b[start:], castagnoli))
	}
	return b, nil
}

// Parse decodes the PROXY header at the start of b and returns it with its
// length in bytes. It returns ErrNeedMore when b is a valid but incomplete
// prefix of a header, and ErrNotProxy when b cannot start one. Rejects that can
// be decided from a prefix (bad signature, version, command, family, length,
// v1 protocol) are reported before the header is complete. TLV values alias b.
func Parse(b []byte) (h *Header, n int, err error) {
	if len(b) == 0 {
		return nil, 0, ErrNeedMore
	}
	switch b[0] {
	case v1Prefix[0]:
		return parseV1(b)
	case v2Signature[0]:
		return parseV2(b)
	}
	return nil, 0, ErrNotProxy
}

func parseV1(b []byte) (*Header, int, error) {
	if !bytes.HasPrefix(b, v1Prefix[:min(len(b), len(v1Prefix))]) {
		return nil, 0, ErrNotProxy
	}
	if len(b) < len(v1Prefix) {
		return nil, 0, ErrNeedMore
	}
	// The CR must sit at index MaxV1Len-2 at the latest.
	limit := min(len(b), MaxV1Len-1)
	for i := len(v1Prefix); i < limit; i++ {
		switch b[i] {
		case '\r':
			if i+1 == len(b) {
				return nil, 0, ErrNeedMore
			}
			if b[i+1] != '\n' {
				return nil, 0, ErrV1Format
			}
			h, err := parseV1Line(b[len(v1Prefix):i])
			if err != nil {
				return nil, 0, err
			}
			return h, i + 2, nil
		case '\n':
			return nil, 0, ErrV1Format
		}
	}
	if len(b) >= MaxV1Len-1 {
		return nil, 0, ErrV1TooLong
	}
	return nil, 0, checkV1Prefix(b[len(v1Prefix):])
}

// checkV1Prefix looks at an incomplete line (after "PROXY ") and rejects it
// early when its protocol or characters cannot start a valid line; otherwise
// it returns ErrNeedMore.
func checkV1Prefix(rest []byte) error {
	sp := bytes.IndexByte(rest, ' ')
	if sp < 0 {
		if isPrefixOf(rest, "TCP4") || isPrefixOf(rest, "TCP6") || isPrefixOf(rest, "UNKNOWN") {
			return ErrNeedMore
		}
		return ErrV1Protocol
	}
	switch string(rest[:sp]) {
	case "UNKNOWN":
		return ErrNeedMore
	case "TCP4", "TCP6":
	default:
		return ErrV1Protocol
	}
	for _, c := range rest[sp+1:] {
		if !isV1AddrChar(c) {
			return ErrV1Format
		}
	}
	return ErrNeedMore
}

func isPrefixOf(p []byte, s string) bool {
	return len(p) <= len(s) && string(p) == s[:len(p)]
}

func isV1AddrChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '.' || c == ':' || c == ' '
}

// parseV1Line parses the line between "PROXY " and CRLF.
func parseV1Line(line []byte) (*Header, error) {
	h := &Header{Version: 1, Command: Proxy}
	proto := line
	if sp := bytes.IndexByte(line, ' '); sp >= 0 {
		proto = line[:sp]
	}
	v6 := false
	switch string(proto) {
	case "UNKNOWN":
		// The specification tells receivers to ignore the rest of the line.
		return h, nil
	case "TCP4":
	case "TCP6":
		v6 = true
	default:
		return nil, ErrV1Protocol
	}
	if len(line) == len(proto) {
		return nil, ErrV1Format
	}
	var fields [4][]byte
	rest := line[5:]
	for i := range fields {
		sp := bytes.IndexByte(rest, ' ')
		if i == len(fields)-1 {
			if sp >= 0 {
				return nil, ErrV1Format
			}
			fields[i] = rest
			break
		}
		if sp < 0 {
			return nil, ErrV1Format
		}
		fields[i], rest = rest[:sp], rest[sp+1:]
	}
	for _, f := range fields {
		if len(f) == 0 {
			return nil, ErrV1Format
		}
	}
	// One conversion for both addresses; netip.ParseAddr takes strings.
	addrs := string(line[5 : 5+len(fields[0])+1+len(fields[1])])
	src, err := parseV1Addr(addrs[:len(fields[0])], v6)
	if err != nil {
		return nil, err
	}
	dst, err := parseV1Addr(addrs[len(fields[0])+1:], v6)
	if err != nil {
		return nil, err
	}
	sport, err := parseV1Port(fields[2])
	if err != nil {
		return nil, err
	}
	dport, err := parseV1Port(fields[3])
	if err != nil {
		return nil, err
	}
	h.Src = netip.AddrPortFrom(src, sport)
	h.Dst = netip.AddrPortFrom(dst, dport)
	return h, nil
}

func parseV1Addr(f string, v6 bool) (netip.Addr, error) {
	for _, c := range []byte(f) {
		// Excludes zones ("%eth0") and anything else ParseAddr would take.
		if !isV1AddrChar(c) || c == ' ' {
			return netip.Addr{}, ErrV1Address
		}
	}
	a, err := netip.ParseAddr(f)
	if err != nil || a.Is6() != v6 {
		return netip.Addr{}, ErrV1Address
	}
	return a, nil
}

func parseV1Port(f []byte) (uint16, error) {
	if len(f) == 0 || len(f) > 5 || len(f) > 1 && f[0] == '0' {
		return 0, ErrV1Port
	}
	n := 0
	for _, c := range f {
		if c < '0' || c > '9' {
			return 0, ErrV1Port
		}
		n = n*10 + int(c-'0')
	}
	if n > 0xffff {
		return 0, ErrV1Port
	}
	return uint16(n), nil
}

func parseV2(b []byte) (*Header, int, error) {
	if !bytes.HasPrefix(b, v2Signature[:min(len(b), len(v2Signature))]) {
		return nil, 0, ErrNotProxy
	}
	if len(b) <= 12 {
		return nil, 0, ErrNeedMore
	}
	if b[12]>>4 != 2 {
		return nil, 0, ErrV2Version
	}
	cmd := Command(b[12] & 0x0f)
	if cmd != Local && cmd != Proxy {
		return nil, 0, ErrV2Command
	}
	if len(b) <= 13 {
		return nil, 0, ErrNeedMore
	}
	// For LOCAL the specification says the family is ignored.
	addrLen := 0
	if cmd == Proxy {
		switch b[13] {
		case famUnspec:
		case famTCP4:
			addrLen = addrLenInet
		case famTCP6:
			addrLen = addrLenInet6
		case famUnix:
			addrLen = addrLenUnix
		case 0x12, 0x22, 0x32:
			return nil, 0, ErrV2Datagram
		default:
			return nil, 0, ErrV2Family
		}
	}
	if len(b) < v2FixedLen {
		return nil, 0, ErrNeedMore
	}
	l := int(binary.BigEndian.Uint16(b[14:16]))
	if l > MaxV2Len {
		return nil, 0, ErrV2TooLong
	}
	if l < addrLen {
		return nil, 0, ErrV2Length
	}
	end := v2FixedLen + l
	if len(b) < end {
		return nil, 0, ErrNeedMore
	}
	h := &Header{Version: 2, Command: cmd}
	if cmd == Local {
		return h, end, nil
	}
	a := b[v2FixedLen:]
	switch b[13] {
	case famTCP4:
		h.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[0:4])), binary.BigEndian.Uint16(a[8:10]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[4:8])), binary.BigEndian.Uint16(a[10:12]))
	case famTCP6:
		h.Src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[0:16])), binary.BigEndian.Uint16(a[32:34]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[16:32])), binary.BigEndian.Uint16(a[34:36]))
	}
	tlvs, err := parseTLVs(b[:end], v2FixedLen+addrLen)
	if err != nil {
		return nil, 0, err
	}
	h.TLVs = tlvs
	return h, end, nil
}

// parseTLVs decodes the TLVs in hdr[off:], hdr being the whole header, and
// checks a CRC32C TLV against hdr.
func parseTLVs(hdr []byte, off int) ([]TLV, error) {
	count, crcAt := 0, -1
	for p := hdr[off:]; len(p) > 0; count++ {
		t, v, rest, err := nextTLV(p)
		if err != nil {
			return nil, err
		}
		switch t {
		case TypeCRC32C:
			if len(v) != 4 || crcAt >= 0 {
				return nil, ErrV2TLV
			}
			crcAt = len(hdr) - len(p) + 3
		case TypeUniqueID:
			if len(v) > 128 {
				return nil, ErrV2TLV
			}
		case TypeSSL:
			// client (1 byte), verify (4 bytes), then sub-TLVs.
			if len(v) < 5 {
				return nil, ErrV2TLV
			}
			for sub := v[5:]; len(sub) > 0; {
				if _, _, sub, err = nextTLV(sub); err != nil {
					return nil, err
				}
			}
		}
		p = rest
	}
	if crcAt >= 0 {
		want := binary.BigEndian.Uint32(hdr[crcAt:])
		c := crc32.Update(0, castagnoli, hdr[:crcAt])
		c = crc32.Update(c, castagnoli, zeroCRC[:])
		c = crc32.Update(c, castagnoli, hdr[crcAt+4:])
		if c != want {
			return nil, ErrV2Checksum
		}
	}
	if count == 0 {
		return nil, nil
	}
	tlvs := make([]TLV, 0, count)
	for p := hdr[off:]; len(p) > 0; {
		t, v, rest, _ := nextTLV(p)
		tlvs = append(tlvs, TLV{Type: t, Value: v[:len(v):len(v)]})
		p = rest
	}
	return tlvs, nil
}

func nextTLV(p []byte) (typ byte, val, rest []byte, err error) {
	if len(p) < 3 {
		return 0, nil, nil, ErrV2TLV
	}
	n := int(binary.BigEndian.Uint16(p[1:3]))
	if len(p)-3 < n {
		return 0, nil, nil, ErrV2TLV
	}
	return p[0], p[3 : 3+n], p[3+n:], nil
}

// ReadFrom reads one PROXY header from r, consuming exactly its bytes: after
// a successful return the next byte read from r is the first byte after the
// header. Reads are sized from what the header can still need at minimum, so
// a version 1 line takes a few small reads and a version 2 header two or
// three. On a reject it may have consumed more than the invalid header; the
// caller is expected to close the connection. Set a read deadline on network
// connections: ReadFrom blocks until the header is complete or r fails.
// A stream that ends before the header is complete yields an error wrapping
// io.EOF (nothing read) or io.ErrUnexpectedEOF.
func ReadFrom(r io.Reader) (*Header, error) {
	buf := make([]byte, minHdrLen, v2FixedLen+addrLenUnix)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("reading PROXY header: %w", err)
	}
	for {
		h, n, err := Parse(buf)
		if err == nil {
			if n != len(buf) {
				// Cannot happen for a valid header: need() is a lower bound.
				return nil, fmt.Errorf("proxyproto: internal error: read %d bytes past the header", len(buf)-n)
			}
			return h, nil
		}
		if err != ErrNeedMore {
			return nil, err
		}
		more := need(buf)
		if buf[0] == v1Prefix[0] && len(buf)+more > MaxV1Len {
			return nil, ErrV1TooLong
		}
		old := len(buf)
		buf = append(buf, make([]byte, more)...)
		if _, err := io.ReadFull(r, buf[old:]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("reading PROXY header: %w", err)
		}
	}
}

// need returns a lower bound (at least 1) on the bytes still missing from the
// incomplete header prefix p, for which Parse returned ErrNeedMore.
func need(p []byte) int {
	if p[0] == v2Signature[0] {
		if len(p) < v2FixedLen {
			return v2FixedLen - len(p)
		}
		return v2FixedLen + int(binary.BigEndian.Uint16(p[14:16])) - len(p)
	}
	return max(1, v1Need(p))
}

// Shortest complete v1 lines per protocol, CRLF included:
// "PROXY UNKNOWN\r\n", "PROXY TCP6 :: :: 0 0\r\n", "PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n".
const (
	minV1Unknown = 15
	minV1TCP6    = 22
	minV1TCP4    = 32
)

func v1Need(p []byte) int {
	if p[len(p)-1] == '\r' {
		return 1
	}
	if len(p) < len(v1Prefix) {
		return minV1Len - len(p)
	}
	rest := p[len(v1Prefix):]
	sp := bytes.IndexByte(rest, ' ')
	if sp < 0 {
		total := minV1TCP4
		switch {
		case isPrefixOf(rest, "UNKNOWN"):
			total = minV1Unknown
		case isPrefixOf(rest, "TCP6"):
			total = minV1TCP6
		}
		return total - len(p)
	}
	var mins [4]int
	switch string(rest[:sp]) {
	case "TCP4":
		mins = [4]int{7, 7, 1, 1}
	case "TCP6":
		mins = [4]int{2, 2, 1, 1}
	default: // UNKNOWN: anything may follow up to CRLF
		return 2
	}
	fields := rest[sp+1:]
	k := bytes.Count(fields, []byte{' '})
	if k >= len(mins) {
		return 2
	}
	cur := len(fields) - (bytes.LastIndexByte(fields, ' ') + 1)
	n := max(0, mins[k]-cur) + 2
	for _, m := range mins[k+1:] {
		n += 1 + m
	}
	return n
}
