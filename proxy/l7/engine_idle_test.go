package l7

import (
	"bufio"
	"io"
	"net/http"
	"testing"
	"time"
	"unsafe"
)

// An idle keep-alive connection on the engine holds none of the pooled
// memory an exchange takes: no buffer and no header array. (Before the
// header arrays were pooled, an idle connection kept both parsers' arrays:
// about 450 bytes of a response's headers.)
func TestEngineIdleConnectionHoldsNoPooledMemory(t *testing.T) {
	if !onEngine {
		t.Skip("engine only")
	}
	srv := fixedServer(t, []byte("HTTP/1.1 200 OK\r\nServer: raw\r\nContent-Type: text/plain\r\nETag: \"x\"\r\nContent-Length: 2\r\n\r\nok"))
	s := newFakeServer("s", srv.addr())
	eh := newEngineHarness(t, fakeBackends{"app": {name: "app", servers: []*fakeServer{s}}})
	c, ec, _ := eh.serve(t, nil)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i := range 2 {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
		}
	}
	// what the connection holds, read on its loop
	var held []string
	defer func() {
		if t.Failed() {
			t.Logf("the idle connection holds %v", held)
		}
	}()
	waitFor(t, "an idle keep-alive connection to hold no pooled memory", func() bool {
		done := make(chan []string, 1)
		if !eh.lp.Post(func() {
			e := ec.e
			var h []string
			for name, p := range map[string]bool{
				"rbuf": e.rbp != nil, "ubuf": e.ubp != nil, "obuf": e.obp != nil, "wbuf": e.wbp != nil, "goroutine I/O state": e.g != nil,
				"request headers":  e.qhp != nil || e.req.Headers != nil,
				"response headers": e.shp != nil || e.resp.Headers != nil,
			} {
				if p {
					h = append(h, name)
				}
			}
			done <- h
		}) {
			t.Fatal("the loop has ended")
		}
		held = <-done
		return len(held) == 0
	})
}

// An engine connection stays in the 1536-byte allocation class: the next
// class is 1792 bytes, 256 more per idle connection (idlemem: 2.3 KiB
// of RSS per idle connection at 1,624 bytes, 2.1-2.2 at 1,520).
func TestEngineConnSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(econn{}); n > 1536 {
		t.Errorf("econn is %d bytes, over the 1536-byte class: move state only an exchange or the goroutine path needs out of it", n)
	}
}
