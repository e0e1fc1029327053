// Package http1 is a strict, allocation-free HTTP/1.x message head parser and
// chunked transfer-coding validator for the Palisade layer-7 proxy.
//
// Parsed heads are views into the caller's buffer: slices stay valid only while
// that buffer is not modified. Parsing is strict on requests (RFC 9112 as a
// security boundary: anything a downstream server could read differently is
// rejected) and tolerant of bare-LF line endings only on responses, whose heads the
// proxy rebuilds before forwarding.
package http1

import (
	"bytes"
	"errors"
)

// ErrIncomplete means the buffer does not yet hold a complete message head.
var ErrIncomplete = errors.New("http1: incomplete message head")

// Error is a parse failure with the HTTP status a server should answer with.
type Error struct {
	Status int    // 400, 414, 431, 501 or 505 for requests; 502 for responses
	Reason string // short, constant, for logs
}

func (e *Error) Error() string { return "http1: " + e.Reason }

func perr(status int, reason string) *Error { return &Error{Status: status, Reason: reason} }

// Pre-allocated errors keep the reject path allocation-free too.
var (
	errBareLF          = perr(400, "bare LF line ending")
	errBareCR          = perr(400, "bare CR")
	errRequestLine     = perr(400, "malformed request line")
	errMethod          = perr(400, "invalid method")
	errTarget          = perr(400, "invalid request target")
	errVersion         = perr(400, "invalid HTTP version")
	errVersionUnsup    = perr(505, "unsupported HTTP version")
	errURITooLong      = perr(414, "request line too long")
	errHeadersTooLarge = perr(431, "request header section too large")
	errTooManyHeaders  = perr(431, "too many header fields")
	errObsFold         = perr(400, "obsolete line folding")
	errHeaderName      = perr(400, "invalid header field name")
	errHeaderValue     = perr(400, "invalid byte in header field value")
	errDupCL           = perr(400, "repeated Content-Length")
	errBadCL           = perr(400, "invalid Content-Length")
	errCLAndTE         = perr(400, "both Content-Length and Transfer-Encoding")
	errTE10            = perr(400, "Transfer-Encoding in an HTTP/1.0 request")
	errTEBad           = perr(400, "invalid Transfer-Encoding")
	errTENotChunked    = perr(400, "chunked is not the final transfer coding")
	errTEUnsupported   = perr(501, "unsupported transfer coding")
	errNoHost          = perr(400, "missing Host")
	errDupHost         = perr(400, "repeated Host")
	errBadHost         = perr(400, "invalid Host")

	errRespStatus  = perr(502, "malformed status line")
	errRespHeader  = perr(502, "malformed response header")
	errRespCL      = perr(502, "invalid response Content-Length")
	errRespTooBig  = perr(502, "response header section too large")
	errRespObsFold = perr(502, "obsolete line folding in response")
)

// Kind classifies the header fields the proxy treats specially.
type Kind uint8

const (
	KindOther Kind = iota
	KindHost
	KindContentLength
	KindTransferEncoding
	KindConnection
	KindKeepAlive
	KindProxyConnection
	KindTE
	KindTrailer
	KindUpgrade
	KindExpect
	KindXForwardedFor
	KindXForwardedProto
	KindXForwardedHost
	KindForwarded
	KindXRequestID
	KindCookie
	KindSetCookie
	// KindHop marks a field nominated by the Connection header.
	KindHop
)

// Header is one field line, both slices pointing into the parsed buffer. Value
// has surrounding whitespace removed.
type Header struct {
	Name, Value []byte
	Kind        Kind
}

// Limits bounds a request head. Zero fields take the defaults.
type Limits struct {
	MaxHeaderBytes int // whole head incl. request line; default 65536
	MaxLine        int // request line; default 8192
	MaxHeaders     int // field lines; default 100
}

func (l Limits) norm() Limits {
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = 65536
	}
	if l.MaxLine <= 0 {
		l.MaxLine = 8192
	}
	if l.MaxLine > l.MaxHeaderBytes {
		l.MaxLine = l.MaxHeaderBytes
	}
	if l.MaxHeaders <= 0 {
		l.MaxHeaders = 100
	}
	return l
}

// Request is a parsed request head. Reuse one value per connection: Parse
// resets it and keeps the capacity of its slices.
type Request struct {
	Method  []byte
	Target  []byte
	Minor   int // HTTP/1.Minor, 0 or 1
	Headers []Header

	// Host is the Host field value (empty when absent).
	Host []byte
	// ContentLength is the declared body length, -1 when absent.
	ContentLength int64
	// Chunked is true when the body uses the chunked transfer coding.
	Chunked bool
	// Close is true when the client asked to close after this exchange
	// (HTTP/1.1 "Connection: close", or HTTP/1.0 without "keep-alive").
	Close bool
	// Upgrade is true when Connection lists "upgrade" and an Upgrade field is
	// present; UpgradeProto is that field's value.
	Upgrade      bool
	UpgradeProto []byte
	// Expect100 is true for "Expect: 100-continue".
	Expect100 bool

	connTokens [][]byte
}

// HasBody reports whether a message body follows the head.
func (r *Request) HasBody() bool { return r.Chunked || r.ContentLength > 0 }

// Path returns the target's path (without query) for origin-form and
// absolute-form targets, "*" for asterisk-form.
func (r *Request) Path() []byte {
	t := r.Target
	if len(t) > 0 && t[0] != '/' && t[0] != '*' {
		// absolute-form: scheme "://" authority path
		if i := bytes.Index(t, []byte("://")); i >= 0 {
			t = t[i+3:]
			j := bytes.IndexByte(t, '/')
			if j < 0 {
				return slash
			}
			t = t[j:]
		}
	}
	if i := bytes.IndexByte(t, '?'); i >= 0 {
		t = t[:i]
	}
	return t
}

// OriginTarget returns the target in origin-form ("/path?query"), converting
// absolute-form (the result may then start with "?" when the path is empty);
// asterisk-form is returned unchanged.
func (r *Request) OriginTarget() []byte {
	t := r.Target
	if len(t) > 0 && t[0] != '/' && t[0] != '*' {
		if i := bytes.Index(t, []byte("://")); i >= 0 {
			t = t[i+3:]
			j := bytes.IndexAny(t, "/?")
			if j < 0 {
				return slash
			}
			// "?query" without a path: callers write "/" before it.
			return t[j:]
		}
	}
	return t
}

// Authority returns the authority of an absolute-form target, or nil.
func (r *Request) Authority() []byte {
	t := r.Target
	if len(t) == 0 || t[0] == '/' || t[0] == '*' {
		return nil
	}
	i := bytes.Index(t, []byte("://"))
	if i < 0 {
		return nil
	}
	t = t[i+3:]
	if j := bytes.IndexAny(t, "/?"); j >= 0 {
		t = t[:j]
	}
	return t
}

var slash = []byte("/")

// isConnToken reports whether the Connection header nominated name.
func (r *Request) isConnToken(name []byte) bool {
	for _, t := range r.connTokens {
		if bytes.EqualFold(t, name) {
			return true
		}
	}
	return false
}

// Idempotent reports whether the method is idempotent (RFC 9110 9.2.2).
func Idempotent(method []byte) bool {
	switch string(method) {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

const (
	cTchar  = 1 << iota // token character
	cVchar              // allowed in a field value (VCHAR, SP, HTAB, obs-text)
	cTarget             // allowed in a request target
	cHost               // allowed in a Host value
)

var ctab = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		isAlnum := b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
		if isAlnum || bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), b) >= 0 {
			t[c] |= cTchar
		}
		if b == '\t' || b >= 0x20 && b != 0x7f {
			t[c] |= cVchar
		}
		if b > 0x20 && b < 0x7f {
			t[c] |= cTarget
		}
		if isAlnum || bytes.IndexByte([]byte("-._~!$&'()*+,;=:[]%"), b) >= 0 {
			t[c] |= cHost
		}
	}
	return
}()

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if ctab[c]&cTchar == 0 {
			return false
		}
	}
	return true
}

// ValidToken reports whether s is a token (RFC 9110 5.6.2), as methods and
// field names must be: the check the parser applies, for configured values.
func ValidToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if ctab[s[i]]&cTchar == 0 {
			return false
		}
	}
	return true
}

// ValidFieldValue reports whether s holds only bytes a field value may
// carry (no control bytes but HTAB), as the parser requires.
func ValidFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if ctab[s[i]]&cVchar == 0 {
			return false
		}
	}
	return true
}

// nextLine returns the line starting at b[i:] without its terminator and the
// index just past the terminator. strict requires CRLF; otherwise a bare LF
// also ends a line. ok is false when no line terminator is buffered yet.
func nextLine(b []byte, i int, strict bool) (line []byte, next int, ok bool, err *Error) {
	j := bytes.IndexByte(b[i:], '\n')
	if j < 0 {
		return nil, 0, false, nil
	}
	end := i + j
	if end > i && b[end-1] == '\r' {
		return b[i : end-1], end + 1, true, nil
	}
	if strict {
		return nil, 0, false, errBareLF
	}
	return b[i:end], end + 1, true, nil
}

// ParseRequest parses a request head at the start of b. It returns the length of
// the head (including the empty line and any leading empty lines), ErrIncomplete
// when more bytes are needed, or an *Error.
func ParseRequest(b []byte, r *Request, lim Limits) (int, error) {
	lim = lim.norm()
	*r = Request{Headers: r.Headers[:0], connTokens: r.connTokens[:0], ContentLength: -1}
	i := 0
	// RFC 9112 2.2: ignore at least one empty line before the request line.
	for n := 0; n < 4 && i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n'; n++ {
		i += 2
	}
	line, next, ok, perr := nextLine(b, i, true)
	if perr != nil {
		return 0, perr
	}
	if !ok {
		if len(b)-i > lim.MaxLine {
			return 0, errURITooLong
		}
		if bytes.IndexByte(b[i:], 0) >= 0 {
			return 0, errRequestLine
		}
		return 0, ErrIncomplete
	}
	if len(line) > lim.MaxLine {
		return 0, errURITooLong
	}
	if err := parseRequestLine(line, r); err != nil {
		return 0, err
	}
	i = next
	for {
		line, next, ok, perr = nextLine(b, i, true)
		if perr != nil {
			return 0, perr
		}
		if !ok {
			if len(b) > lim.MaxHeaderBytes {
				return 0, errHeadersTooLarge
			}
			// Reject garbage early instead of waiting for a terminator.
			if err := checkPartialField(b[i:]); err != nil {
				return 0, err
			}
			return 0, ErrIncomplete
		}
		if next > lim.MaxHeaderBytes {
			return 0, errHeadersTooLarge
		}
		i = next
		if len(line) == 0 {
			break
		}
		if len(r.Headers) >= lim.MaxHeaders {
			return 0, errTooManyHeaders
		}
		h, err := parseField(line, true)
		if err != nil {
			return 0, err
		}
		r.Headers = append(r.Headers, h)
	}
	if err := r.finish(); err != nil {
		return 0, err
	}
	return i, nil
}

func checkPartialField(b []byte) *Error {
	for _, c := range b {
		if c == 0 {
			return errHeaderValue
		}
	}
	return nil
}

func parseRequestLine(line []byte, r *Request) *Error {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		if sp == 0 {
			return errRequestLine
		}
		for _, c := range line {
			if ctab[c]&cVchar == 0 || c == '\t' {
				return errBareCR
			}
		}
		return errRequestLine
	}
	r.Method = line[:sp]
	if !isToken(r.Method) {
		return errMethod
	}
	rest := line[sp+1:]
	sp = bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		return errRequestLine
	}
	r.Target = rest[:sp]
	for _, c := range r.Target {
		if ctab[c]&cTarget == 0 {
			return errTarget
		}
	}
	v := rest[sp+1:]
	if len(v) != 8 || string(v[:5]) != "HTTP/" || v[6] != '.' {
		return errVersion
	}
	if v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9' {
		return errVersion
	}
	if v[5] != '1' || v[7] > '1' {
		return errVersionUnsup
	}
	r.Minor = int(v[7] - '0')
	t := r.Target
	switch {
	case t[0] == '/':
	case len(t) == 1 && t[0] == '*':
		if string(r.Method) != "OPTIONS" {
			return errTarget
		}
	case hasPrefixFold(t, "http://") || hasPrefixFold(t, "https://"):
		a := r.Authority()
		if len(a) == 0 || !validHost(a) {
			return errTarget
		}
	case string(r.Method) == "CONNECT":
		// authority-form; the proxy refuses CONNECT itself.
	default:
		return errTarget
	}
	return nil
}

func hasPrefixFold(b []byte, p string) bool {
	return len(b) >= len(p) && bytes.EqualFold(b[:len(p)], []byte(p))
}

func parseField(line []byte, strict bool) (Header, *Error) {
	if line[0] == ' ' || line[0] == '\t' {
		if strict {
			return Header{}, errObsFold
		}
		return Header{}, errRespObsFold
	}
	colon := -1
	for k, c := range line {
		if c == ':' {
			colon = k
			break
		}
		if ctab[c]&cTchar == 0 {
			if !strict {
				return Header{}, errRespHeader
			}
			if c == '\r' {
				return Header{}, errBareCR
			}
			return Header{}, errHeaderName
		}
	}
	if colon <= 0 {
		if strict {
			return Header{}, errHeaderName
		}
		return Header{}, errRespHeader
	}
	v := line[colon+1:]
	for _, c := range v {
		if ctab[c]&cVchar == 0 {
			if !strict {
				return Header{}, errRespHeader
			}
			if c == '\r' {
				return Header{}, errBareCR
			}
			return Header{}, errHeaderValue
		}
	}
	return Header{Name: line[:colon], Value: trimOWS(v), Kind: classify(line[:colon])}, nil
}

func trimOWS(v []byte) []byte {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

func classify(n []byte) Kind {
	eq := func(s string) bool { return bytes.EqualFold(n, []byte(s)) }
	switch len(n) {
	case 2:
		if eq("te") {
			return KindTE
		}
	case 4:
		if eq("host") {
			return KindHost
		}
	case 6:
		if eq("expect") {
			return KindExpect
		}
		if eq("cookie") {
			return KindCookie
		}
	case 7:
		if eq("upgrade") {
			return KindUpgrade
		}
		if eq("trailer") {
			return KindTrailer
		}
	case 9:
		if eq("forwarded") {
			return KindForwarded
		}
	case 10:
		if eq("connection") {
			return KindConnection
		}
		if eq("keep-alive") {
			return KindKeepAlive
		}
		if eq("set-cookie") {
			return KindSetCookie
		}
	case 12:
		if eq("x-request-id") {
			return KindXRequestID
		}
	case 14:
		if eq("content-length") {
			return KindContentLength
		}
	case 15:
		if eq("x-forwarded-for") {
			return KindXForwardedFor
		}
	case 16:
		if eq("proxy-connection") {
			return KindProxyConnection
		}
		if eq("x-forwarded-host") {
			return KindXForwardedHost
		}
	case 17:
		if eq("transfer-encoding") {
			return KindTransferEncoding
		}
		if eq("x-forwarded-proto") {
			return KindXForwardedProto
		}
	}
	return KindOther
}

// parseCL parses 1*DIGIT with overflow protection (max 2^62).
func parseCL(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func validHost(h []byte) bool {
	for _, c := range h {
		if ctab[c]&cHost == 0 {
			return false
		}
	}
	return true
}

// forEachElement calls fn for each non-empty, OWS-trimmed list element.
func forEachElement(v []byte, fn func(e []byte) bool) bool {
	for len(v) > 0 {
		var e []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			e, v = v[:i], v[i+1:]
		} else {
			e, v = v, nil
		}
		e = trimOWS(e)
		if len(e) == 0 {
			continue
		}
		if !fn(e) {
			return false
		}
	}
	return true
}

func (r *Request) finish() *Error {
	hosts, cls, tes := 0, 0, 0
	keepAlive, connUpgrade := false, false
	var chunkedSeen, afterChunked, unknown, badTE bool
	for k := range r.Headers {
		h := &r.Headers[k]
		switch h.Kind {
		case KindHost:
			hosts++
			r.Host = h.Value
		case KindContentLength:
			cls++
			if cls > 1 {
				return errDupCL
			}
			n, ok := parseCL(h.Value)
			if !ok {
				return errBadCL
			}
			r.ContentLength = n
		case KindTransferEncoding:
			tes++
			ok := forEachElement(h.Value, func(e []byte) bool {
				if chunkedSeen {
					afterChunked = true
				}
				if bytes.EqualFold(e, []byte("chunked")) {
					if chunkedSeen {
						badTE = true
						return false
					}
					chunkedSeen = true
					return true
				}
				if !isToken(e) {
					// parameters or garbage: never a coding we implement
					for _, c := range e {
						if ctab[c]&cTchar == 0 && c != ';' && c != '=' && c != ' ' && c != '\t' && c != '"' {
							badTE = true
							return false
						}
					}
				}
				unknown = true
				return true
			})
			if !ok || len(trimOWS(h.Value)) == 0 {
				badTE = true
			}
		case KindConnection:
			forEachElement(h.Value, func(e []byte) bool {
				switch {
				case bytes.EqualFold(e, []byte("close")):
					r.Close = true
				case bytes.EqualFold(e, []byte("keep-alive")):
					keepAlive = true
				case bytes.EqualFold(e, []byte("upgrade")):
					connUpgrade = true
				default:
					r.connTokens = append(r.connTokens, e)
				}
				return true
			})
		case KindUpgrade:
			r.UpgradeProto = h.Value
		case KindExpect:
			if bytes.EqualFold(h.Value, []byte("100-continue")) {
				r.Expect100 = true
			}
		}
	}
	if tes > 0 {
		if r.Minor == 0 {
			return errTE10
		}
		if cls > 0 {
			return errCLAndTE
		}
		if badTE {
			return errTEBad
		}
		if !chunkedSeen || afterChunked {
			return errTENotChunked
		}
		if unknown {
			return errTEUnsupported
		}
		r.Chunked = true
	}
	if hosts > 1 {
		return errDupHost
	}
	if hosts == 1 && !validHost(r.Host) {
		return errBadHost
	}
	if hosts == 0 && r.Minor == 1 {
		return errNoHost
	}
	if r.Minor == 0 && !keepAlive {
		r.Close = true
	}
	r.Upgrade = connUpgrade && len(r.UpgradeProto) > 0 && r.Minor == 1
	if len(r.connTokens) > 0 {
		for k := range r.Headers {
			h := &r.Headers[k]
			switch h.Kind {
			case KindOther, KindXForwardedFor, KindXForwardedHost, KindXForwardedProto, KindForwarded,
				KindXRequestID, KindCookie, KindExpect:
				if r.isConnToken(h.Name) {
					h.Kind = KindHop
				}
			}
		}
	}
	return nil
}

// Response is a parsed response head; reuse it like Request.
type Response struct {
	Minor   int
	Status  int
	Reason  []byte
	Headers []Header

	// ContentLength is -1 when absent.
	ContentLength int64
	Chunked       bool
	// OtherTE is true when Transfer-Encoding is present but chunked is not the
	// final coding: the body then runs until the connection closes.
	OtherTE bool
	// Close is true when the server will close the connection after this
	// response (Connection: close, or HTTP/1.0 without keep-alive).
	Close        bool
	UpgradeProto []byte

	connTokens [][]byte
}

// ParseResponse parses a response head at the start of b.
func ParseResponse(b []byte, r *Response, maxBytes int) (int, error) {
	if maxBytes <= 0 {
		maxBytes = 65536
	}
	*r = Response{Headers: r.Headers[:0], connTokens: r.connTokens[:0], ContentLength: -1}
	line, next, ok, _ := nextLine(b, 0, false)
	if !ok {
		if len(b) > maxBytes {
			return 0, errRespTooBig
		}
		if len(b) >= 5 && string(b[:5]) != "HTTP/" {
			return 0, errRespStatus
		}
		return 0, ErrIncomplete
	}
	// HTTP/1.x SP 3DIGIT [SP reason]
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[7] < '0' || line[7] > '9' || line[8] != ' ' {
		return 0, errRespStatus
	}
	r.Minor = int(line[7] - '0')
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, errRespStatus
		}
	}
	r.Status = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	if r.Status < 100 {
		return 0, errRespStatus
	}
	if len(line) > 12 {
		if line[12] != ' ' {
			return 0, errRespStatus
		}
		r.Reason = line[13:]
		for _, c := range r.Reason {
			if ctab[c]&cVchar == 0 {
				return 0, errRespStatus
			}
		}
	}
	i := next
	for {
		line, next, ok, _ = nextLine(b, i, false)
		if !ok {
			if len(b) > maxBytes {
				return 0, errRespTooBig
			}
			return 0, ErrIncomplete
		}
		if next > maxBytes {
			return 0, errRespTooBig
		}
		i = next
		if len(line) == 0 {
			break
		}
		if len(r.Headers) >= 200 {
			return 0, errRespTooBig
		}
		h, err := parseField(line, false)
		if err != nil {
			return 0, err
		}
		r.Headers = append(r.Headers, h)
	}
	keepAlive := false
	var lastCoding []byte
	hasTE := false
	for k := range r.Headers {
		h := &r.Headers[k]
		switch h.Kind {
		case KindContentLength:
			// Identical repeated values (also as a list) are tolerated (RFC 9110 8.6).
			okAll := forEachElement(h.Value, func(e []byte) bool {
				n, ok := parseCL(e)
				if !ok || (r.ContentLength >= 0 && n != r.ContentLength) {
					return false
				}
				r.ContentLength = n
				return true
			})
			if !okAll || len(h.Value) == 0 {
				return 0, errRespCL
			}
		case KindTransferEncoding:
			hasTE = true
			forEachElement(h.Value, func(e []byte) bool { lastCoding = e; return true })
		case KindConnection:
			forEachElement(h.Value, func(e []byte) bool {
				switch {
				case bytes.EqualFold(e, []byte("close")):
					r.Close = true
				case bytes.EqualFold(e, []byte("keep-alive")):
					keepAlive = true
				case bytes.EqualFold(e, []byte("upgrade")):
				default:
					r.connTokens = append(r.connTokens, e)
				}
				return true
			})
		case KindUpgrade:
			r.UpgradeProto = h.Value
		}
	}
	if hasTE {
		// Transfer-Encoding overrides Content-Length (RFC 9112 6.3).
		r.ContentLength = -1
		if bytes.EqualFold(lastCoding, []byte("chunked")) {
			r.Chunked = true
		} else {
			r.OtherTE = true
		}
	}
	if r.Minor == 0 && !keepAlive {
		r.Close = true
	}
	if len(r.connTokens) > 0 {
		for k := range r.Headers {
			h := &r.Headers[k]
			if h.Kind == KindOther || h.Kind == KindSetCookie {
				for _, t := range r.connTokens {
					if bytes.EqualFold(t, h.Name) {
						h.Kind = KindHop
						break
					}
				}
			}
		}
	}
	return i, nil
}

// BodyKind says how a response body is delimited.
type BodyKind uint8

const (
	BodyNone   BodyKind = iota // no body (HEAD, 1xx, 204, 304)
	BodyLength                 // Content-Length bytes
	BodyChunked
	BodyClose // until the server closes the connection
)

// Body returns how the body of r is delimited when it answers a request with
// the given method.
func (r *Response) Body(head bool) BodyKind {
	switch {
	case head || r.Status < 200 || r.Status == 204 || r.Status == 304:
		return BodyNone
	case r.Chunked:
		return BodyChunked
	case r.OtherTE:
		return BodyClose
	case r.ContentLength >= 0:
		return BodyLength
	}
	return BodyClose
}
