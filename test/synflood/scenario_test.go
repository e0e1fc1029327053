package synflood

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/palisade-lb/palisade/bpf"
)

// scenario is one measured run: the client connects while the attacker
// floods, with or without the XDP filter on the server.
type scenario struct {
	name        string
	filter      *bpf.Config // nil: no filter
	xdpMode     string
	duration    time.Duration
	flood       floodSpec // Dst is filled in
	workers     int
	interval    time.Duration // between one worker's connection attempts
	dialTimeout time.Duration
}

type result struct {
	name          string
	xdpMode       string
	attempts, ok  int
	p50, p99      time.Duration // connect latency; failures count as dialTimeout
	sent          int
	sentPPS       float64
	dropped       uint64
	droppedPPS    float64
	synsPassed    uint64
	softirq       float64 // host-wide softirq CPU seconds during the run
	cookiesSent   uint64
	listenDrops   uint64
	cookiesRecv   uint64 // cookie ACKs the server's kernel accepted
	cookiesFailed uint64
	xdpCookies    uint64 // SYN-ACKs sent from XDP
	elapsed       time.Duration
	trustMarked   uint64
	counterDetail map[string]uint64
}

func (r result) successRate() float64 {
	if r.attempts == 0 {
		return 0
	}
	return float64(r.ok) / float64(r.attempts)
}

// echoServer stands in for palisade on the server host: it accepts and
// echoes what it reads until the client closes.
type echoServer struct {
	ln net.Listener
	wg sync.WaitGroup
}

func startEchoServer(t *testing.T, ns string, addr netip.AddrPort) *echoServer {
	t.Helper()
	s := &echoServer{}
	err := inNetns(ns, func() error {
		var err error
		s.ln, err = net.Listen("tcp4", addr.String())
		return err
	})
	if err != nil {
		t.Fatalf("echo server: %v", err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		s.ln.Close()
		s.wg.Wait()
	})
	return s
}

// connectOnce dials, exchanges one message and closes; it returns the
// connect latency.
func connectOnce(d *net.Dialer, addr string) (time.Duration, error) {
	start := time.Now()
	c, err := d.Dial("tcp4", addr)
	if err != nil {
		return 0, err
	}
	lat := time.Since(start)
	defer c.Close()
	c.SetDeadline(time.Now().Add(d.Timeout))
	if _, err := c.Write([]byte("ping")); err != nil {
		return lat, err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		return lat, err
	}
	if string(buf) != "ping" {
		return lat, errors.New("bad echo")
	}
	return lat, nil
}

type clientStats struct {
	mu        sync.Mutex
	attempts  int
	ok        int
	latencies []time.Duration
	firstErr  error
}

// runClients runs sc.workers client goroutines in namespace ns until stop
// closes or each did maxPerWorker attempts.
func runClients(ns, addr string, sc scenario, stop <-chan struct{}, maxPerWorker int) *clientStats {
	st := &clientStats{}
	var wg sync.WaitGroup
	for range sc.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The thread stays in the client namespace and is discarded.
			if err := lockIntoNetns(ns); err != nil {
				st.mu.Lock()
				st.firstErr = err
				st.mu.Unlock()
				return
			}
			d := &net.Dialer{Timeout: sc.dialTimeout}
			tick := time.NewTicker(sc.interval)
			defer tick.Stop()
			for i := 0; i < maxPerWorker; i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				lat, err := connectOnce(d, addr)
				st.mu.Lock()
				st.attempts++
				if err == nil {
					st.ok++
					st.latencies = append(st.latencies, lat)
				} else {
					st.latencies = append(st.latencies, sc.dialTimeout)
					if st.firstErr == nil {
						st.firstErr = err
					}
				}
				st.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return st
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s))*p+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func sumDrops(c map[string]uint64) uint64 {
	return c[bpf.VerdictDropRate] + c[bpf.VerdictDropDeny] + c[bpf.VerdictDropSyncookie]
}

// runScenario builds a fresh topology and measures one run.
func runScenario(t *testing.T, sc scenario) result {
	t.Helper()
	tp := newTopology(t)
	dst := netip.AddrPortFrom(serverAddr, serverPort)
	startEchoServer(t, tp.server, dst)
	res := result{name: sc.name}

	var f *bpf.Filter
	if sc.filter != nil {
		var err error
		f, err = bpf.Load(*sc.filter)
		if err != nil {
			t.Fatalf("loading filter: %v", err)
		}
		t.Cleanup(func() { f.Close() })
		if err := inNetns(tp.server, func() error { return f.Attach(tp.serverDev, sc.xdpMode) }); err != nil {
			t.Fatalf("attaching filter: %v", err)
		}
		res.xdpMode = f.Mode()
		if sc.filter.Mode == bpf.FilterSyncookie && res.xdpMode == bpf.XDPNative {
			// veth delivers XDP_TX frames only to a peer with XDP.
			var pt io.Closer
			err := inNetns(tp.bridgeNS, func() error {
				var err error
				pt, err = bpf.AttachPassThrough(tp.serverPeer)
				return err
			})
			if err != nil {
				t.Fatalf("pass-through on the server's bridge port: %v", err)
			}
			t.Cleanup(func() { pt.Close() })
		}
	}

	// Warm-up before the attack: the client is a returning one, and with
	// the filter it must have earned trust (an ACK on an established socket).
	deadline := time.Now().Add(15 * time.Second)
	warm := 0
	for {
		var err error
		if err = inNetns(tp.client, func() error {
			_, err := connectOnce(&net.Dialer{Timeout: 2 * time.Second}, dst.String())
			return err
		}); err == nil {
			warm++
		}
		trusted := f == nil
		if f != nil {
			c, cerr := f.Counters()
			if cerr != nil {
				t.Fatal(cerr)
			}
			trusted = c[bpf.DetailTrustMarked] > 0
		}
		if warm >= 3 && trusted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("warm-up: %d connections, trusted=%v, last error %v", warm, trusted, err)
		}
	}

	before := map[string]uint64{}
	if f != nil {
		before, _ = f.Counters()
	}
	ns0, err := netstat(tp.server)
	if err != nil {
		t.Fatal(err)
	}
	soft0, err := softirqSeconds()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()

	spec := sc.flood
	spec.Dst = dst
	fl := startFlood(t, tp.attacker, spec)
	stop := make(chan struct{})
	var st *clientStats
	clientsDone := make(chan struct{})
	go func() {
		defer close(clientsDone)
		maxPer := int(sc.duration/sc.interval) + 1
		st = runClients(tp.client, dst.String(), sc, stop, maxPer)
	}()
	// Also on failure: no client may outlive the test (and its namespaces).
	stopClients := sync.OnceFunc(func() {
		close(stop)
		<-clientsDone
	})
	t.Cleanup(stopClients)
	res.sent, _ = fl.wait(t)
	stopClients()
	res.elapsed = time.Since(start)

	soft1, err := softirqSeconds()
	if err != nil {
		t.Fatal(err)
	}
	ns1, err := netstat(tp.server)
	if err != nil {
		t.Fatal(err)
	}
	res.softirq = soft1 - soft0
	res.cookiesSent = ns1["SyncookiesSent"] - ns0["SyncookiesSent"]
	res.listenDrops = ns1["ListenDrops"] - ns0["ListenDrops"]
	res.cookiesRecv = ns1["SyncookiesRecv"] - ns0["SyncookiesRecv"]
	res.cookiesFailed = ns1["SyncookiesFailed"] - ns0["SyncookiesFailed"]
	secs := res.elapsed.Seconds()
	res.sentPPS = float64(res.sent) / secs
	if f != nil {
		after, err := f.Counters()
		if err != nil {
			t.Fatal(err)
		}
		res.counterDetail = map[string]uint64{}
		for k, v := range after {
			res.counterDetail[k] = v - before[k]
		}
		res.dropped = sumDrops(after) - sumDrops(before)
		res.droppedPPS = float64(res.dropped) / secs
		res.synsPassed = after[bpf.VerdictPass] - before[bpf.VerdictPass]
		res.trustMarked = after[bpf.DetailTrustMarked]
		res.xdpCookies = after[bpf.VerdictSyncookieSent] - before[bpf.VerdictSyncookieSent]
	}
	if st.firstErr != nil && st.ok == 0 {
		t.Fatalf("client: no connection succeeded: %v", st.firstErr)
	}
	if st.firstErr != nil {
		t.Logf("%s: first client error: %v", sc.name, st.firstErr)
	}
	res.attempts, res.ok = st.attempts, st.ok
	res.p50, res.p99 = percentile(st.latencies, 0.50), percentile(st.latencies, 0.99)
	return res
}

func (r result) String() string {
	return fmt.Sprintf("%s: success %d/%d (%.2f%%), connect p50 %v p99 %v, attack sent %d (%.0f pps), dropped in XDP %d (%.0f/s), SYNs passed %d, softirq %.2f s, kernel syncookies sent %d recv %d failed %d, XDP syncookies sent %d, listen drops %d, xdp mode %q",
		r.name, r.ok, r.attempts, 100*r.successRate(), r.p50, r.p99, r.sent, r.sentPPS, r.dropped, r.droppedPPS, r.synsPassed, r.softirq, r.cookiesSent, r.cookiesRecv, r.cookiesFailed, r.xdpCookies, r.listenDrops, r.xdpMode)
}
