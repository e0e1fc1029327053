package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// wrkResult is what one wrk run reports.
type wrkResult struct {
	requests int64
	rps      float64
	p99      time.Duration
	errors   int64 // socket errors of every kind plus non-2xx/3xx answers
}

var (
	reRequests = regexp.MustCompile(`(\d+) requests in ([0-9.]+)(us|ms|s|m)`)
	reRPS      = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	reP99      = regexp.MustCompile(`(?m)^\s+99%\s+([0-9.]+)(us|ms|s|m)\s*$`)
	reSockErr  = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	reNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// runWrk runs wrk on cpus (all when empty) against url for d; closeConn sends
// Connection: close so every request is a new connection. The run is bounded
// by d plus a margin.
func runWrk(ctx context.Context, cpus []int, url string, threads, conns int, d time.Duration, closeConn bool) (wrkResult, error) {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	args := []string{"-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", fmt.Sprintf("%ds", secs),
		"--timeout", "5s", "--latency"}
	if closeConn {
		args = append(args, "-H", "Connection: close")
	}
	args = append(args, url)
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	bin, argv := command(cpus, "wrk", args)
	cmd := exec.CommandContext(ctx, bin, argv...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return parseWrk(out.String())
}

func parseWrk(s string) (wrkResult, error) {
	var r wrkResult
	m := reRequests.FindStringSubmatch(s)
	if m == nil {
		return r, fmt.Errorf("no request count in wrk output:\n%s", s)
	}
	r.requests, _ = strconv.ParseInt(m[1], 10, 64)
	if m = reRPS.FindStringSubmatch(s); m == nil {
		return r, fmt.Errorf("no Requests/sec in wrk output:\n%s", s)
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	if m = reP99.FindStringSubmatch(s); m == nil {
		return r, fmt.Errorf("no 99%% latency in wrk output:\n%s", s)
	}
	r.p99 = parseDur(m[1], m[2])
	if m = reSockErr.FindStringSubmatch(s); m != nil {
		for _, v := range m[1:] {
			n, _ := strconv.ParseInt(v, 10, 64)
			r.errors += n
		}
	}
	if m = reNon2xx.FindStringSubmatch(s); m != nil {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		r.errors += n
	}
	return r, nil
}

func parseDur(v, unit string) time.Duration {
	f, _ := strconv.ParseFloat(v, 64)
	mult := map[string]float64{"us": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9}[unit]
	return time.Duration(f * mult)
}

// bulkResult is one bulk-throughput run.
type bulkResult struct {
	bytes   int64
	elapsed time.Duration
	gets    int           // complete transfers
	p99     time.Duration // of complete transfers (0 when none completed)
}

func (b bulkResult) mbps() float64 { return float64(b.bytes) / b.elapsed.Seconds() / 1e6 }

// runBulk GETs path repeatedly over conns keep-alive connections (connection
// i goes to addrs[i%len(addrs)]) for d, counting body bytes received.
func runBulk(ctx context.Context, addrs []string, path string, conns int, d time.Duration) (bulkResult, error) {
	var (
		total atomic.Int64
		mu    sync.Mutex
		durs  []time.Duration
		errs  []error
		wg    sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(d)
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func(addr string) {
			defer wg.Done()
			ds, err := bulkConn(ctx, addr, path, end, &total)
			mu.Lock()
			durs = append(durs, ds...)
			if err != nil {
				errs = append(errs, err)
			}
			mu.Unlock()
		}(addrs[i%len(addrs)])
	}
	wg.Wait()
	r := bulkResult{bytes: total.Load(), elapsed: d, gets: len(durs)}
	if len(durs) > 0 {
		slices.Sort(durs)
		r.p99 = durs[min(len(durs)-1, len(durs)*99/100)]
	}
	if len(errs) > 0 {
		return r, errs[0]
	}
	return r, nil
}

// bulkConn is one client connection of runBulk; it stops at end.
func bulkConn(ctx context.Context, addr, path string, end time.Time, total *atomic.Int64) ([]time.Duration, error) {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(end)
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: bench\r\n\r\n")
	buf := make([]byte, 1<<20)
	var durs []time.Duration
	for {
		t0 := time.Now()
		if _, err := c.Write(req); err != nil {
			return durs, ignoreDeadline(err)
		}
		// read the head; what follows it in buf is the start of the body
		n := 0
		hdrEnd := -1
		for hdrEnd < 0 {
			if n == len(buf) {
				return durs, errors.New("response head too large")
			}
			m, err := c.Read(buf[n:])
			n += m
			if err != nil {
				return durs, ignoreDeadline(err)
			}
			hdrEnd = bytes.Index(buf[:n], []byte("\r\n\r\n"))
		}
		head := string(buf[:hdrEnd])
		if !strings.HasPrefix(head, "HTTP/1.1 200") {
			return durs, fmt.Errorf("bulk GET %s via %s: %q", path, addr, firstLine(head))
		}
		cl := contentLength(head)
		if cl < 0 {
			return durs, errors.New("bulk response without Content-Length")
		}
		got := int64(n - hdrEnd - 4)
		total.Add(got)
		for got < cl {
			m, err := c.Read(buf)
			got += int64(m)
			total.Add(int64(m))
			if err != nil {
				if err == io.EOF && got < cl {
					return durs, fmt.Errorf("bulk body cut at %d of %d bytes", got, cl)
				}
				return durs, ignoreDeadline(err)
			}
		}
		durs = append(durs, time.Since(t0))
	}
}

// ignoreDeadline treats the end of the run (the connection deadline) as success.
func ignoreDeadline(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	return err
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\r\n")
	return l
}

func contentLength(head string) int64 {
	for _, l := range strings.Split(head, "\r\n") {
		k, v, ok := strings.Cut(l, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), "content-length") {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// idleResult is the memory of a proxy holding n idle proxied connections.
type idleResult struct {
	n              int
	rssBefore, rss int64 // kB
	fdsBefore, fds int
	threads        int
	nofile         string
	slabGrowth     int64            // kB, the whole machine's kernel slab
	slabSource     string           // what slabGrowth was read from
	slabByCache    map[string]int64 // bytes, with /proc/slabinfo only
}

// topSlab is the n caches that grew most, as "name +N KiB" strings.
func (r idleResult) topSlab(n int) []string {
	names := make([]string, 0, len(r.slabByCache))
	for k := range r.slabByCache {
		names = append(names, k)
	}
	slices.SortFunc(names, func(a, b string) int { return cmp.Compare(r.slabByCache[b], r.slabByCache[a]) })
	var out []string
	for _, k := range names[:min(n, len(names))] {
		out = append(out, fmt.Sprintf("%s %+.0f KiB", k, float64(r.slabByCache[k])/1024))
	}
	return out
}

// fdsPerConn is the proxy's open file descriptors per proxied connection.
func (r idleResult) fdsPerConn() float64 { return float64(r.fds-r.fdsBefore) / float64(r.n) }

// runIdle opens n client connections to addr (a proxy whose backend is h),
// waits until h holds all n, reads the proxy's VmRSS and fd count, then
// closes them all and waits until the proxy has closed the server side too.
func runIdle(ctx context.Context, addr string, n int, h *holder, pid int) (idleResult, error) {
	r := idleResult{n: n, fdsBefore: fdCount(pid), nofile: nofileLimit(pid)}
	waitSocketsSettle(ctx, 15*time.Second)
	slab0, slabErr := slabInUse()
	var meminfo0 int64
	if slabErr != nil { // not root: the cruder figure
		meminfo0, _ = meminfoKB("Slab")
	}
	var err error
	if r.rssBefore, err = statusKB(pid, "VmRSS"); err != nil {
		return r, err
	}
	base := h.live()
	clients := make([]net.Conn, 0, n)
	var mu sync.Mutex
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var dialErrs atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i < n && ctx.Err() == nil && time.Now().Before(deadline); i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				dialErrs.Add(1)
				firstErr.CompareAndSwap(nil, err)
				return
			}
			mu.Lock()
			clients = append(clients, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range clients {
			c.Close()
		}
		// the proxy closes its server side once the client side is gone
		_ = h.waitLive(context.Background(), func(v int) bool { return v <= base }, 30*time.Second)
	}()
	if e := dialErrs.Load(); e > 0 {
		return r, fmt.Errorf("%d of %d connects failed, first: %v", e, n, firstErr.Load())
	}
	if len(clients) < n {
		return r, fmt.Errorf("only %d of %d connections opened in time", len(clients), n)
	}
	if err := h.waitLive(ctx, func(v int) bool { return v-base >= n }, 30*time.Second); err != nil {
		return r, err
	}
	if r.rss, err = statusKB(pid, "VmRSS"); err != nil {
		return r, err
	}
	r.fds = fdCount(pid)
	r.threads = threadCount(pid)
	if slabErr == nil {
		if slab1, err := slabInUse(); err == nil {
			r.slabByCache = slabGrowth(slab0, slab1)
			var sum int64
			for _, v := range r.slabByCache {
				sum += v
			}
			r.slabGrowth, r.slabSource = sum/1024, "`/proc/slabinfo` objects in use × size"
		}
	} else if meminfo1, err := meminfoKB("Slab"); err == nil && meminfo0 > 0 {
		r.slabGrowth, r.slabSource = meminfo1-meminfo0, "`/proc/meminfo` Slab, freed objects the caches keep included"
	}
	return r, nil
}
