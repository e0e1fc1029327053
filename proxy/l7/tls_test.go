package l7

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/palisade-lb/palisade/internal/testutil"
)

func writeCert(t *testing.T, dir, name string, dnsNames ...string) CertFile {
	t.Helper()
	c, k := testutil.WriteSelfSigned(t, dir, name, dnsNames...)
	return CertFile{CertFile: c, KeyFile: k}
}

func TestLoadCertificates(t *testing.T) {
	dir := t.TempDir()
	a := writeCert(t, dir, "a", "localhost", "*.example.com")
	b := writeCert(t, dir, "b", "other.test")
	cfg, err := LoadCertificates([]CertFile{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Fatal("min version")
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	for sni, want := range map[string]string{"www.example.com": "localhost", "other.test": "other.test", "unknown.test": "localhost", "": "localhost"} {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, ServerName: sni})
		if err != nil {
			t.Fatal(err)
		}
		got := c.ConnectionState().PeerCertificates[0].Subject.CommonName
		c.Close()
		if got != want {
			t.Errorf("SNI %q: got cert %q, want %q", sni, got, want)
		}
	}
	if _, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("TLS 1.1 accepted")
	}
	// Key of another certificate.
	_, err = LoadCertificates([]CertFile{{CertFile: a.CertFile, KeyFile: b.KeyFile}})
	if err == nil || !strings.Contains(err.Error(), "private key does not match") || !strings.Contains(err.Error(), a.CertFile) {
		t.Errorf("mismatched key: %v", err)
	}
	_, err = LoadCertificates([]CertFile{{CertFile: filepath.Join(dir, "missing.pem"), KeyFile: a.KeyFile}})
	if err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Errorf("missing file: %v", err)
	}
}

func tlsProxy(t *testing.T) (*proxy, *fakeServer) {
	dir := t.TempDir()
	cfgTLS, err := LoadCertificates([]CertFile{writeCert(t, dir, "a", "localhost")})
	if err != nil {
		t.Fatal(err)
	}
	_, s1 := goBackend(t, "s1")
	be := &fakeBackend{name: "app", servers: []*fakeServer{s1}, retries: 1}
	p := startProxy(t, Config{DefaultBackend: "app", TLS: cfgTLS, Forwarded: true,
		ResponseHeaders: HeaderRules{Set: map[string]string{"X-Via": "palisade"}}}, fakeBackends{"app": be})
	return p, s1
}

func TestTLSHTTP2AndHTTP1(t *testing.T) {
	p, _ := tlsProxy(t)
	for _, h2 := range []bool{true, false} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: h2}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		for i := 0; i < 3; i++ {
			resp, err := cl.Get("https://" + p.addr + "/headers")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			wantMajor := 1
			if h2 {
				wantMajor = 2
			}
			if resp.ProtoMajor != wantMajor || resp.StatusCode != 200 || resp.Header.Get("X-Via") != "palisade" {
				t.Fatalf("h2=%v: proto %s status %d headers %v", h2, resp.Proto, resp.StatusCode, resp.Header)
			}
			if !strings.Contains(string(b), "X-Forwarded-Proto=https") {
				t.Fatalf("h2=%v: backend saw %s", h2, b)
			}
		}
		resp, err := cl.Get("https://" + p.addr + "/big")
		if err != nil {
			t.Fatal(err)
		}
		big, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if len(big) != 1<<20 {
			t.Fatalf("h2=%v: big body %d bytes", h2, len(big))
		}
		upload := strings.Repeat("u", 500000)
		resp, err = cl.Post("https://"+p.addr+"/echo", "text/plain", strings.NewReader(upload))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "POST 500000 text/plain" {
			t.Fatalf("h2=%v: upload %q", h2, b)
		}
		resp, err = cl.Post("https://"+p.addr+"/echo", "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "POST 7 text/plain" {
			t.Fatalf("h2=%v: POST %q", h2, b)
		}
		tr.CloseIdleConnections()
	}
}

func TestCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	p, _ := tlsProxy(t)
	_, s1 := goBackend(t, "s1")
	plain := startProxy(t, Config{DefaultBackend: "app"}, fakeBackends{"app": {name: "app", servers: []*fakeServer{s1}}})
	for _, tc := range []struct {
		args  []string
		proto string
	}{
		{[]string{"--http1.1", "http://" + plain.addr + "/a", "http://" + plain.addr + "/b"}, "1.1"},
		{[]string{"--http2", "-k", "https://" + p.addr + "/a", "https://" + p.addr + "/b"}, "2"},
		{[]string{"--http1.1", "-k", "https://" + p.addr + "/a", "https://" + p.addr + "/b"}, "1.1"},
	} {
		args := append([]string{"-sS", "--max-time", "10", "-w", "|%{http_version}|%{http_code}\n"}, tc.args...)
		out, err := exec.Command(curl, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
		want := "hello from s1 /a|" + tc.proto + "|200\nhello from s1 /b|" + tc.proto + "|200\n"
		if string(out) != want {
			t.Fatalf("curl %v:\n%s\nwant\n%s", tc.args, out, want)
		}
	}
}

func TestWebSocketUpgrade(t *testing.T) {
	ws := startRaw(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if req.Header.Get("Upgrade") != "websocket" || !strings.EqualFold(req.Header.Get("Connection"), "upgrade") {
			c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
			return
		}
		h := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
			base64.StdEncoding.EncodeToString(h[:]) + "\r\n\r\n"))
		// Echo, including bytes the client sent right behind its request.
		if br.Buffered() > 0 {
			b, _ := br.Peek(br.Buffered())
			c.Write(b)
		}
		io.Copy(c, c)
	})
	s := newFakeServer("ws", ws.addr())
	p := startProxy(t, Config{DefaultBackend: "app"}, fakeBackends{"app": {name: "app", servers: []*fakeServer{s}}})
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	key := "dGhlIHNhbXBsZSBub25jZQ=="
	c.Write([]byte("GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Version: 13\r\n\r\nearly"))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" || resp.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("handshake: %d %v", resp.StatusCode, resp.Header)
	}
	msg := bytes.Repeat([]byte("0123456789"), 20000)
	go c.Write(msg)
	got := make([]byte, len("early")+len(msg))
	if _, err := io.ReadFull(br, got); err != nil {
		t.Fatal(err)
	}
	if string(got[:5]) != "early" || !bytes.Equal(got[5:], msg) {
		t.Fatal("tunnel corrupted data")
	}
	// Half-close from the client propagates; the server's echo loop ends and closes.
	c.(*net.TCPConn).CloseWrite()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after close: %v", err)
	}
	waitFor(t, "outcome", func() bool { return len(s.outcomes()) == 1 })
	if o := s.outcomes()[0]; o.Status != 101 {
		t.Fatalf("outcome %+v", o)
	}
}

// Cancelling the context of an HTTP/2 connection lets the stream in flight
// finish (GOAWAY), then the connection closes.
func TestHTTP2GracefulDrain(t *testing.T) {
	dir := t.TempDir()
	cfgTLS, err := LoadCertificates([]CertFile{writeCert(t, dir, "a", "localhost")})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		io.WriteString(w, "finished")
	}))
	defer ts.Close()
	s := newFakeServer("s", ts.Listener.Addr().String())
	p := startProxy(t, Config{DefaultBackend: "app", TLS: cfgTLS}, fakeBackends{"app": {name: "app", servers: []*fakeServer{s}}})
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	type res struct {
		body  string
		proto int
		err   error
	}
	done := make(chan res, 1)
	go func() {
		resp, err := cl.Get("https://" + p.addr + "/slow")
		if err != nil {
			done <- res{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- res{string(b), resp.ProtoMajor, err}
	}()
	<-arrived
	p.cancel()
	close(release)
	r := <-done
	if r.err != nil || r.body != "finished" || r.proto != 2 {
		t.Fatalf("in-flight h2 request: %+v", r)
	}
}
