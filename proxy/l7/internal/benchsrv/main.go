// Command benchsrv runs one HTTP frontend of the l7 package over a static
// round-robin backend, for test/bench/http until `palisade run -c FILE` can be
// driven instead. Not part of the product.
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/palisade-lb/palisade/proxy/l7"
	"golang.org/x/sys/unix"
)

type server struct {
	name, addr string
	active     atomic.Int64
}

func (s *server) Name() string      { return s.name }
func (s *server) Addr() string      { return s.addr }
func (s *server) Done(o l7.Outcome) { s.active.Add(-1) }

type backend struct {
	servers []*server
	next    atomic.Uint64
}

func (b *backend) Name() string { return "app" }
func (b *backend) Pick(hash uint64, tried *l7.Tried) l7.Server {
	n := uint64(len(b.servers))
	start := b.next.Add(1)
	for i := uint64(0); i < n; i++ {
		s := b.servers[(start+i)%n]
		if !tried.Has(s) {
			s.active.Add(1)
			return s
		}
	}
	return nil
}
func (b *backend) PickByName(string) l7.Server { return nil }
func (b *backend) HashURI() bool               { return false }
func (b *backend) Retries() int                { return 2 }
func (b *backend) Cookie() string              { return "" }

type backends struct{ b *backend }

func (bs backends) Backend(name string) l7.Backend {
	if name == "app" {
		return bs.b
	}
	return nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "listen address")
	servers := flag.String("servers", "127.0.0.1:8081", "comma-separated server addresses")
	accessLog := flag.Bool("access-log", false, "log every request")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile here until stopped")
	deferAccept := flag.Bool("defer-accept", true, "accept a connection once its request is in (TCP_DEFER_ACCEPT), as the daemon's http frontends do")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	be := &backend{}
	for i, a := range strings.Split(*servers, ",") {
		be.servers = append(be.servers, &server{name: "s" + string(rune('1'+i)), addr: a})
	}
	m, err := l7.NewMetrics(nil)
	if err != nil {
		log.Fatal(err)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if *accessLog {
		logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	h, err := l7.New(l7.Config{Frontend: "bench", DefaultBackend: "app", AccessLog: *accessLog}, backends{be}, m, logger)
	if err != nil {
		log.Fatal(err)
	}
	lc := net.ListenConfig{}
	if *deferAccept {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, 1)
			})
			return errors.Join(err, serr)
		}
	}
	ln, err := lc.Listen(context.Background(), "tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				h.Close()
				return
			}
			log.Print(err)
			continue
		}
		ap := c.RemoteAddr().(*net.TCPAddr).AddrPort()
		go h.ServeConn(ctx, c, ap)
	}
}
