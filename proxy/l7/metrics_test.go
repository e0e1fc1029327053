package l7

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestMetricsAndAccessLog(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewMetrics(reg); err != nil {
		t.Fatalf("second registration: %v", err)
	}
	_, s1 := goBackend(t, "s1")
	var logs syncBuf
	h, err := New(Config{Frontend: "web", DefaultBackend: "app", AccessLog: true}, fakeBackends{"app": {name: "app", servers: []*fakeServer{s1}}}, m,
		slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	p := serveHandler(t, h)
	for i := 0; i < 3; i++ {
		rawRoundTrip(t, p.addr, "GET /m?x HTTP/1.1\r\nHost: a\r\n\r\n")
	}
	rawRoundTrip(t, p.addr, "GET / HTTP/1.1\r\n\r\n") // 400, no backend
	want := map[string]float64{
		"palisade_http_requests_total,backend=app,code=2xx,frontend=web":  3,
		"palisade_http_requests_total,backend=-,code=4xx,frontend=web":    1,
		"palisade_http_request_duration_seconds,backend=app,frontend=web": 3,
		"palisade_http_request_duration_seconds,backend=-,frontend=web":   1,
	}
	gather := func() map[string]float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			for _, mt := range mf.GetMetric() {
				key := mf.GetName()
				for _, l := range mt.GetLabel() {
					key += "," + l.GetName() + "=" + l.GetValue()
				}
				if mt.GetCounter() != nil {
					got[key] = mt.GetCounter().GetValue()
				}
				if mt.GetHistogram() != nil {
					got[key] = float64(mt.GetHistogram().GetSampleCount())
				}
			}
		}
		return got
	}
	// a request is counted once its response is written: the client may
	// read the response a moment before the counter moves
	var got map[string]float64
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		got = gather()
		done := true
		for k, v := range want {
			done = done && got[k] == v
		}
		if done || time.Now().After(deadline) {
			break
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	waitFor(t, "an access log line", func() bool { return strings.Contains(logs.String(), `"msg":"access"`) })
	var line map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if strings.Contains(l, `"msg":"access"`) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	for _, k := range []string{"frontend", "backend", "server", "method", "path", "status", "bytes_in", "bytes_out", "queue_ms", "connect_ms", "response_ms", "total_ms"} {
		if _, ok := line[k]; !ok {
			t.Errorf("access log lacks %q: %v", k, line)
		}
	}
	if line["path"] != "/m" || line["status"] != float64(200) || line["server"] != "s1" || line["frontend"] != "web" {
		t.Errorf("access log %v", line)
	}
}
