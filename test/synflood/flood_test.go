package synflood

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/palisade-lb/palisade/bpf/packet"
	"golang.org/x/sys/unix"
)

// Hard bounds of the generator, whatever the caller asks.
const (
	maxFloodCount    = 20_000_000
	maxFloodDuration = 60 * time.Second
)

// floodSpec is one bounded SYN flood: TCP SYNs to Dst from random sources
// in Src, until Count packets are sent or Duration has passed.
type floodSpec struct {
	Dst      netip.AddrPort
	Src      netip.Prefix
	Count    int
	Duration time.Duration
	Rate     int   // packets per second; 0 = as fast as the generator goes
	Flags    uint8 // TCP flags; 0 means SYN
}

func (s floodSpec) validate() error {
	switch {
	case !s.Dst.Addr().Is4() || !benchRange.Contains(s.Dst.Addr()):
		return fmt.Errorf("flood destination %v outside %v", s.Dst, benchRange)
	case !s.Src.Addr().Is4() || s.Src.Bits() < benchRange.Bits() || !benchRange.Contains(s.Src.Addr()):
		return fmt.Errorf("spoofed sources %v not inside %v", s.Src, benchRange)
	case s.Count <= 0 || s.Count > maxFloodCount:
		return fmt.Errorf("flood count %d outside (0, %d]", s.Count, maxFloodCount)
	case s.Duration <= 0 || s.Duration > maxFloodDuration:
		return fmt.Errorf("flood duration %v outside (0, %v]", s.Duration, maxFloodDuration)
	}
	return nil
}

func (s floodSpec) env() []string {
	return []string{
		"SYNFLOOD_CHILD=1",
		"SYNFLOOD_DST=" + s.Dst.String(),
		"SYNFLOOD_SRC=" + s.Src.String(),
		"SYNFLOOD_COUNT=" + strconv.Itoa(s.Count),
		"SYNFLOOD_DURATION=" + s.Duration.String(),
		"SYNFLOOD_RATE=" + strconv.Itoa(s.Rate),
		"SYNFLOOD_FLAGS=" + strconv.Itoa(int(s.Flags)),
	}
}

func floodSpecFromEnv() (floodSpec, error) {
	var s floodSpec
	var errs []error
	var err error
	s.Dst, err = netip.ParseAddrPort(os.Getenv("SYNFLOOD_DST"))
	errs = append(errs, err)
	s.Src, err = netip.ParsePrefix(os.Getenv("SYNFLOOD_SRC"))
	errs = append(errs, err)
	s.Count, err = strconv.Atoi(os.Getenv("SYNFLOOD_COUNT"))
	errs = append(errs, err)
	s.Duration, err = time.ParseDuration(os.Getenv("SYNFLOOD_DURATION"))
	errs = append(errs, err)
	s.Rate, err = strconv.Atoi(os.Getenv("SYNFLOOD_RATE"))
	errs = append(errs, err)
	flags, err := strconv.ParseUint(os.Getenv("SYNFLOOD_FLAGS"), 10, 8)
	s.Flags = uint8(flags)
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return s, err
	}
	return s, s.validate()
}

// randomSource returns a random address inside p (IPv4).
func randomSource(r *rand.Rand, p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	base := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	host := r.Uint32() & (1<<(32-p.Bits()) - 1)
	v := base | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// synPacket builds a spoofed IPv4 SYN (or segment with s.Flags), IP header
// included.
func synPacket(r *rand.Rand, s floodSpec) []byte {
	src := randomSource(r, s.Src)
	seg := packet.TCP{
		SrcPort: uint16(1024 + r.IntN(64512)), DstPort: s.Dst.Port(),
		Seq: r.Uint32(), Flags: packet.SYN, Window: 64240,
		Options: []byte{2, 4, 0x05, 0xb4}, // MSS 1460
	}
	if s.Flags != 0 {
		seg.Flags, seg.Ack, seg.Options = s.Flags, r.Uint32(), nil
	}
	return packet.TCPPacket(src, s.Dst.Addr(), seg)
}

// TestFloodHelper is the attacker: the parent re-executes the test binary
// with this test selected inside the attacker namespace. It sends spoofed
// SYNs through a raw socket and prints what it did.
func TestFloodHelper(t *testing.T) {
	if os.Getenv("SYNFLOOD_CHILD") != "1" {
		t.Skip("helper process for the namespace tests")
	}
	spec, err := floodSpecFromEnv()
	if err != nil {
		t.Fatalf("flood spec: %v", err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err != nil {
		t.Fatalf("raw socket: %v", err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrInet4{Addr: spec.Dst.Addr().As4()}
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid())))
	fmt.Println("FLOOD started")
	start := time.Now()
	deadline := start.Add(spec.Duration)
	sent, failed := 0, 0
	for sent < spec.Count {
		if sent%256 == 0 {
			now := time.Now()
			if now.After(deadline) {
				break
			}
			if spec.Rate > 0 {
				ahead := time.Duration(float64(sent)/float64(spec.Rate)*float64(time.Second)) - now.Sub(start)
				if ahead > 0 {
					time.Sleep(ahead) // pacing, not synchronisation
				}
			}
		}
		if err := unix.Sendto(fd, synPacket(r, spec), 0, to); err != nil {
			// ENOBUFS under pressure: count it and go on.
			failed++
			if failed > spec.Count/2+1000 {
				t.Fatalf("sendto keeps failing: %v", err)
			}
			continue
		}
		sent++
	}
	fmt.Printf("FLOOD sent=%d failed=%d elapsed=%s\n", sent, failed, time.Since(start))
}

// flood is a running attacker process.
type flood struct {
	cmd    *exec.Cmd
	done   chan struct{}
	report string
	err    error
}

// startFlood re-executes the test binary as the attacker in namespace ns
// and returns once it has started sending.
func startFlood(t *testing.T, ns string, spec floodSpec) *flood {
	t.Helper()
	if err := spec.validate(); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The context bounds the child even if its own limits failed.
	ctx, cancel := context.WithTimeout(context.Background(), spec.Duration+20*time.Second)
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, exe, "-test.run=^TestFloodHelper$", "-test.v")
	cmd.Env = append(os.Environ(), spec.env()...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	fl := &flood{cmd: cmd, done: make(chan struct{})}
	started := make(chan struct{})
	go func() {
		defer close(fl.done)
		defer cancel()
		sc := bufio.NewScanner(stdout)
		var out []string
		for sc.Scan() {
			line := sc.Text()
			out = append(out, line)
			if line == "FLOOD started" {
				close(started)
			}
			if strings.HasPrefix(line, "FLOOD sent=") {
				fl.report = line
			}
		}
		fl.err = cmd.Wait()
		if fl.err != nil {
			fl.err = fmt.Errorf("flood child: %w\n%s", fl.err, strings.Join(out, "\n"))
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-fl.done
	})
	select {
	case <-started:
	case <-fl.done:
		t.Fatalf("flood child exited before starting: %v", fl.err)
	case <-time.After(15 * time.Second):
		t.Fatal("flood child did not start within 15s")
	}
	return fl
}

// wait waits for the child to finish and returns packets sent.
func (fl *flood) wait(t *testing.T) (sent int, elapsed time.Duration) {
	t.Helper()
	<-fl.done
	if fl.err != nil {
		t.Fatal(fl.err)
	}
	var failed int
	var el string
	if _, err := fmt.Sscanf(fl.report, "FLOOD sent=%d failed=%d elapsed=%s", &sent, &failed, &el); err != nil {
		t.Fatalf("flood report %q: %v", fl.report, err)
	}
	elapsed, err := time.ParseDuration(el)
	if err != nil {
		t.Fatalf("flood report %q: %v", fl.report, err)
	}
	return sent, elapsed
}

func TestFloodSpecBounds(t *testing.T) {
	ok := floodSpec{Dst: netip.MustParseAddrPort("198.18.0.1:80"), Src: netip.MustParsePrefix("198.19.0.0/16"), Count: 10, Duration: time.Second}
	if err := ok.validate(); err != nil {
		t.Fatal(err)
	}
	bad := []floodSpec{ok, ok, ok, ok, ok, ok}
	bad[0].Dst = netip.MustParseAddrPort("10.0.0.1:80")
	bad[1].Src = netip.MustParsePrefix("0.0.0.0/0")
	bad[2].Src = netip.MustParsePrefix("198.20.0.0/16")
	bad[3].Count = maxFloodCount + 1
	bad[4].Duration = time.Hour
	bad[5].Count = 0
	for i, s := range bad {
		if s.validate() == nil {
			t.Errorf("case %d accepted: %+v", i, s)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		if a := randomSource(r, ok.Src); !ok.Src.Contains(a) {
			t.Fatalf("random source %v outside %v", a, ok.Src)
		}
	}
}
