package http1

// Chunked validates a chunked message body (RFC 9112 7.1) while it streams
// through the proxy, byte-exact, without buffering it. The zero value is ready
// to use; Reset it for the next message.
//
// Strict rules: chunk sizes are 1..15 hex digits; a chunk extension must start
// with ";" (optionally after SP/HTAB) and contain no control bytes; every line
// ends with CRLF; chunk data is followed by exactly CRLF; trailer fields are
// well-formed header lines; chunk lines and trailers are bounded in size.
type Chunked struct {
	state   uint8
	digits  uint8
	sawSemi bool
	sawWS   bool
	lineLen int
	trailer int
	size    uint64
}

const (
	csSize uint8 = iota
	csExt
	csSizeLF
	csData
	csDataCR
	csDataLF
	csTrailerStart
	csTrailerName
	csTrailerValue
	csTrailerLF
	csEndLF
	csDone
)

const (
	maxChunkLine    = 4096
	maxTrailerBytes = 16384
)

var (
	errChunkSize    = perr(400, "invalid chunk size")
	errChunkExt     = perr(400, "invalid chunk extension")
	errChunkCRLF    = perr(400, "invalid chunk line ending")
	errChunkData    = perr(400, "chunk data not followed by CRLF")
	errChunkTrailer = perr(400, "invalid chunked trailer")
)

// Reset prepares c for a new message.
func (c *Chunked) Reset() { *c = Chunked{} }

// Done reports whether the final CRLF of the message has been consumed.
func (c *Chunked) Done() bool { return c.state == csDone }

// Feed consumes the body bytes at the start of p and returns how many belong to
// the message (n < len(p) only when the body ended inside p, or on error). On
// error, p[:n] is the valid prefix; the rest must not be forwarded.
func (c *Chunked) Feed(p []byte) (n int, err error) {
	n, _, err = c.feed(p, nil, false)
	return n, err
}

// Decode is Feed that also appends the chunk data (without framing or
// trailers) to dst, for peers that cannot receive chunked messages.
func (c *Chunked) Decode(p, dst []byte) (n int, out []byte, err error) {
	return c.feed(p, dst, true)
}

func (c *Chunked) feed(p, dst []byte, decode bool) (int, []byte, error) {
	i := 0
	for i < len(p) {
		if c.state == csData {
			k := len(p) - i
			if uint64(k) > c.size {
				k = int(c.size)
			}
			if decode {
				dst = append(dst, p[i:i+k]...)
			}
			i += k
			c.size -= uint64(k)
			if c.size == 0 {
				c.state = csDataCR
			}
			continue
		}
		b := p[i]
		switch c.state {
		case csSize:
			c.lineLen++
			if v, ok := unhex(b); ok {
				if c.digits >= 15 {
					return i, dst, errChunkSize
				}
				c.digits++
				c.size = c.size<<4 | uint64(v)
				break
			}
			if c.digits == 0 {
				return i, dst, errChunkSize
			}
			switch b {
			case '\r':
				c.state = csSizeLF
			case ';':
				c.sawSemi = true
				c.state = csExt
			case ' ', '\t':
				c.sawWS = true
				c.state = csExt
			default:
				return i, dst, errChunkSize
			}
		case csExt:
			c.lineLen++
			if c.lineLen > maxChunkLine {
				return i, dst, errChunkExt
			}
			switch {
			case b == '\r':
				if !c.sawSemi {
					return i, dst, errChunkExt
				}
				c.state = csSizeLF
			case b == ';':
				c.sawSemi = true
			case b == ' ' || b == '\t':
			case !c.sawSemi:
				return i, dst, errChunkExt
			case ctab[b]&cVchar == 0:
				return i, dst, errChunkExt
			}
		case csSizeLF:
			if b != '\n' {
				return i, dst, errChunkCRLF
			}
			c.lineLen, c.digits, c.sawSemi, c.sawWS = 0, 0, false, false
			if c.size == 0 {
				c.state = csTrailerStart
			} else {
				c.state = csData
			}
		case csDataCR:
			if b != '\r' {
				return i, dst, errChunkData
			}
			c.state = csDataLF
		case csDataLF:
			if b != '\n' {
				return i, dst, errChunkData
			}
			c.state = csSize
		case csTrailerStart:
			c.trailer++
			if b == '\r' {
				c.state = csEndLF
				break
			}
			if ctab[b]&cTchar == 0 {
				return i, dst, errChunkTrailer
			}
			c.state = csTrailerName
		case csTrailerName:
			c.trailer++
			if b == ':' {
				c.state = csTrailerValue
			} else if ctab[b]&cTchar == 0 {
				return i, dst, errChunkTrailer
			}
		case csTrailerValue:
			c.trailer++
			if b == '\r' {
				c.state = csTrailerLF
			} else if ctab[b]&cVchar == 0 {
				return i, dst, errChunkTrailer
			}
		case csTrailerLF:
			c.trailer++
			if b != '\n' {
				return i, dst, errChunkTrailer
			}
			c.state = csTrailerStart
		case csEndLF:
			if b != '\n' {
				return i, dst, errChunkCRLF
			}
			c.state = csDone
			return i + 1, dst, nil
		case csDone:
			return i, dst, nil
		}
		if c.trailer > maxTrailerBytes {
			return i, dst, errChunkTrailer
		}
		i++
	}
	return i, dst, nil
}

func unhex(b byte) (byte, bool) {
	switch {
	case b >= '0' && b <= '9':
		return b - '0', true
	case b >= 'a' && b <= 'f':
		return b - 'a' + 10, true
	case b >= 'A' && b <= 'F':
		return b - 'A' + 10, true
	}
	return 0, false
}
