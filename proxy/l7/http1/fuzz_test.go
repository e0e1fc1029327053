package http1

import (
	"bufio"
	"bytes"
	"net/http"
	"testing"
)

// FuzzParseRequest checks that the parser never panics, that accepted heads
// are within limits, and that whatever it accepts Go's own (independent)
// parser reads with the same method, target and body framing — the property
// that keeps smuggling out: the proxy and a server agree on message bounds.
func FuzzParseRequest(f *testing.F) {
	// Seeds also live in testdata/fuzz/FuzzParseRequest.
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Add([]byte("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"))
	f.Add([]byte("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var r Request
		n, err := ParseRequest(in, &r, Limits{MaxHeaderBytes: 4096})
		if err != nil {
			return
		}
		if n > 4096 || n > len(in) {
			t.Fatalf("head length %d", n)
		}
		// Independent parser on the accepted head.
		gr, gerr := http.ReadRequest(bufio.NewReader(bytes.NewReader(in[:n])))
		if gerr != nil {
			// Go is stricter on a few things (e.g. some targets); not a framing disagreement.
			return
		}
		if gr.Method != string(r.Method) {
			t.Fatalf("method %q vs %q", r.Method, gr.Method)
		}
		if r.Chunked != (len(gr.TransferEncoding) > 0) {
			t.Fatalf("chunked %v vs %v", r.Chunked, gr.TransferEncoding)
		}
		if !r.Chunked && r.ContentLength >= 0 && gr.ContentLength != r.ContentLength {
			t.Fatalf("content-length %d vs %d", r.ContentLength, gr.ContentLength)
		}
	})
}

// FuzzChunked checks that the streaming validator gives the same verdict and
// body length however the input is split.
func FuzzChunked(f *testing.F) {
	f.Add([]byte("5\r\nhello\r\n0\r\n\r\n"), uint8(3))
	f.Add([]byte("5;ext=1\r\nhello\r\n0\r\nT: v\r\n\r\nrest"), uint8(9))
	f.Fuzz(func(t *testing.T, in []byte, split uint8) {
		var a, b Chunked
		na, erra := a.Feed(in)
		s := int(split)
		if s > len(in) {
			s = len(in)
		}
		n1, err1 := b.Feed(in[:s])
		nb, errb := n1, err1
		if err1 == nil && !b.Done() {
			n2, err2 := b.Feed(in[s:])
			nb, errb = n1+n2, err2
		}
		if (erra == nil) != (errb == nil) || a.Done() != b.Done() || (erra == nil && na != nb) {
			t.Fatalf("split %d: %d/%v/%v vs %d/%v/%v", s, na, erra, a.Done(), nb, errb, b.Done())
		}
	})
}

// FuzzParseResponse: no panics, bounds respected.
func FuzzParseResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var r Response
		n, err := ParseResponse(in, &r, 4096)
		if err == nil && (n > len(in) || r.Status < 100 || r.Status > 999) {
			t.Fatalf("n=%d status=%d", n, r.Status)
		}
	})
}
