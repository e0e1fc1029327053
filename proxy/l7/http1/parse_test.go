package http1

import (
	"errors"
	"strings"
	"testing"
)

func TestParseRequestOK(t *testing.T) {
	var r Request
	in := "\r\nGET /a/b?x=1 HTTP/1.1\r\nHost: example.com:8080\r\nConnection: keep-alive, X-Foo\r\nX-Foo: 1\r\nUser-Agent:  test \t\r\n\r\nBODY"
	n, err := ParseRequest([]byte(in), &r, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if in[n:] != "BODY" {
		t.Fatalf("head length %d", n)
	}
	if string(r.Method) != "GET" || string(r.Target) != "/a/b?x=1" || r.Minor != 1 || string(r.Host) != "example.com:8080" {
		t.Fatalf("%+v", r)
	}
	if string(r.Path()) != "/a/b" || r.Close || r.ContentLength != -1 || r.Chunked {
		t.Fatalf("path %q close %v", r.Path(), r.Close)
	}
	if r.Headers[2].Kind != KindHop || string(r.Headers[3].Value) != "test" {
		t.Fatalf("headers %+v", r.Headers)
	}
	// Incomplete heads.
	for i := 0; i < len(in)-5; i++ {
		if _, err := ParseRequest([]byte(in[:i]), &r, Limits{}); err != ErrIncomplete {
			t.Fatalf("prefix %d: %v", i, err)
		}
	}
	// HTTP/1.0 defaults to close; absolute-form.
	if _, err := ParseRequest([]byte("GET http://h.example/x?y HTTP/1.0\r\n\r\n"), &r, Limits{}); err != nil {
		t.Fatal(err)
	}
	if !r.Close || string(r.Authority()) != "h.example" || string(r.Path()) != "/x" || string(r.OriginTarget()) != "/x?y" {
		t.Fatalf("%+v", r)
	}
}

func TestParseRequestErrors(t *testing.T) {
	for in, status := range map[string]int{
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n": 400,
		"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: br\r\n\r\n":                           400,
		"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: br, chunked\r\n\r\n":                  501,
		"GET / HTTP/3.0\r\nHost: a\r\n\r\n":                                                    505,
		"GET /" + strings.Repeat("x", 9000) + " HTTP/1.1\r\n":                                  414,
		"GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("x", 70000):                        431,
		"GET / HTTP/1.1\r\nHost: a\r\nX:\x00\r\n\r\n":                                          400,
	} {
		var r Request
		_, err := ParseRequest([]byte(in), &r, Limits{})
		var pe *Error
		if !errors.As(err, &pe) || pe.Status != status {
			t.Errorf("%.60q: %v, want %d", in, err, status)
		}
	}
}

func TestParseResponse(t *testing.T) {
	var r Response
	in := "HTTP/1.1 200 OK\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
	n, err := ParseResponse([]byte(in), &r, 0)
	if err != nil {
		t.Fatal(err)
	}
	if in[n:] != "hello" || r.Status != 200 || r.ContentLength != 5 || !r.Close || r.Body(false) != BodyLength || r.Body(true) != BodyNone {
		t.Fatalf("%+v", r)
	}
	for _, bad := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"HTTX/1.1 200 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
		"HTTP/1.1 200 OK\r\nBad Name: a\r\n\r\n",
	} {
		if _, err := ParseResponse([]byte(bad), &r, 0); err == nil || err == ErrIncomplete {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if _, err := ParseResponse([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\n"), &r, 0); err != nil || r.Body(false) != BodyClose {
		t.Fatalf("TE without chunked: %v %v", err, r.Body(false))
	}
}

func TestChunked(t *testing.T) {
	body := "5;a=b\r\nhello\r\n0a\r\n0123456789\r\n0\r\nX-T: v\r\n\r\nNEXT"
	// Every split point gives the same result.
	for split := 0; split <= len(body); split++ {
		var c Chunked
		n1, err := c.Feed([]byte(body[:split]))
		if err != nil {
			t.Fatalf("split %d: %v", split, err)
		}
		var dec []byte
		var c2 Chunked
		_, dec, _ = c2.Decode([]byte(body), dec)
		n2, err := c.Feed([]byte(body[n1:]))
		if err != nil || !c.Done() || n1+n2 != len(body)-4 {
			t.Fatalf("split %d: n=%d+%d done=%v err=%v", split, n1, n2, c.Done(), err)
		}
		if string(dec) != "hello0123456789" {
			t.Fatalf("decoded %q", dec)
		}
	}
	for _, bad := range []string{"g\r\n", "5 \r\n", "5\n", "5\r\nhelloX", "1234567890abcdef0\r\n", "0\r\nbad header\r\n", "0\r\n\rX", "5;\x01\r\n"} {
		var c Chunked
		if _, err := c.Feed([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseNoAllocs(t *testing.T) {
	in := []byte("GET /a HTTP/1.1\r\nHost: a\r\nUser-Agent: x\r\nAccept: */*\r\nConnection: keep-alive, x-y\r\nTransfer-Encoding: chunked\r\n\r\n")
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok")
	var r Request
	var rs Response
	ParseRequest(in, &r, Limits{})
	ParseResponse(resp, &rs, 0)
	if n := testing.AllocsPerRun(100, func() {
		ParseRequest(in, &r, Limits{})
		ParseResponse(resp, &rs, 0)
	}); n != 0 {
		t.Fatalf("%v allocs", n)
	}
}

func BenchmarkParseRequest(b *testing.B) {
	in := []byte("GET /index.html?x=1 HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: text/html,application/xhtml+xml\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\nCookie: a=b; c=d\r\n\r\n")
	var r Request
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := ParseRequest(in, &r, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

func TestValidTokenAndFieldValue(t *testing.T) {
	for s, want := range map[string]bool{"X-Env": true, "GET": true, "!#$%&'*+-.^_`|~": true, "": false, "a b": false, "a:b": false, "a\x00": false, "é": false} {
		if ValidToken(s) != want {
			t.Errorf("ValidToken(%q) = %v", s, !want)
		}
	}
	for s, want := range map[string]bool{"": true, "a b\tc": true, "\x80\xff": true, "a\r\nb": false, "a\x00": false, "\x7f": false} {
		if ValidFieldValue(s) != want {
			t.Errorf("ValidFieldValue(%q) = %v", s, !want)
		}
	}
}
