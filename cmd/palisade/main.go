// Command palisade is a high-availability Layer-4/7 load balancer.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/palisade-lb/palisade/internal/admin"
	"github.com/palisade-lb/palisade/internal/config"
	"github.com/palisade-lb/palisade/internal/daemon"
	"github.com/palisade-lb/palisade/internal/logging"
	"github.com/palisade-lb/palisade/internal/sdnotify"
)

// Set with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = ""
)

const usage = `usage:
  palisade run -c FILE      run in the foreground
  palisade check -c FILE    validate a config file (exit 0 valid, 1 invalid)
  palisade version          print version, commit and Go version
  palisade ctl [--admin URL] [--token-file F] status|backends|drain B/S|ready B/S|maint B/S|weight B/S N|reload
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stderr)
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "palisade %s (commit %s, %s)\n", version, commitID(), runtime.Version())
		return 0
	case "ctl":
		return cmdCtl(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "palisade: unknown command %q\n%s", args[0], usage)
	return 2
}

func commitID() string {
	if commit != "" {
		return commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

func configFlag(name string, args []string, stderr io.Writer) (string, bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "/etc/palisade/palisade.yaml", "config file")
	if err := fs.Parse(args); err != nil {
		return "", false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "palisade %s: unexpected argument %q\n", name, fs.Arg(0))
		return "", false
	}
	return *path, true
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	path, ok := configFlag("check", args, stderr)
	if !ok {
		return 2
	}
	if _, err := config.Load(path); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", path)
	return 0
}

func cmdRun(args []string, stderr io.Writer) int {
	path, ok := configFlag("run", args, stderr)
	if !ok {
		return 2
	}
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	out, err := logging.Open(cfg.Global.Log.File)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	var level slog.LevelVar
	if l, err := logging.ParseLevel(cfg.Global.Log.Level); err == nil {
		level.Set(l)
	}
	log := logging.New(out, cfg.Global.Log.Format, &level)
	slog.SetDefault(log)
	if os.Getenv("GOGC") == "" {
		// A proxy's heap is small and churns per connection: trade a little
		// memory for much less GC work (GOGC in the environment wins).
		debug.SetGCPercent(400)
	}

	reg := prometheus.NewRegistry()
	var adm *admin.Server
	d, err := daemon.New(daemon.Options{
		ConfigPath: path, Log: log, Registry: reg, Level: &level,
		Notify:  func(s string) { _ = sdnotify.Notify(s) },
		Version: version, Commit: commitID(),
		OnConfig: func(c *config.Config) error { return adm.Apply(c.Global.Admin) },
	})
	if err != nil {
		log.Error("starting", "error", err)
		return 1
	}
	adm = admin.New(d, reg, log)
	defer adm.Close()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	defer signal.Stop(sigs)
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()

	var watchdog <-chan time.Time
	if iv := sdnotify.WatchdogInterval(); iv > 0 {
		t := time.NewTicker(iv)
		defer t.Stop()
		watchdog = t.C
	}
	for {
		select {
		case err := <-done:
			if err != nil {
				if errors.As(err, new(config.Errors)) {
					fmt.Fprintln(stderr, err)
				}
				log.Error("palisade stopped", "error", err)
				return 1
			}
			return 0
		case <-watchdog:
			_ = sdnotify.Notify("WATCHDOG=1")
		case s := <-sigs:
			switch s {
			case syscall.SIGHUP:
				log.Info("reload requested", "by", "SIGHUP")
				_ = d.Reload()
			case syscall.SIGUSR1:
				if err := out.Reopen(); err != nil {
					log.Error("reopening log", "error", err)
				}
			default:
				log.Info("stop requested", "signal", s.String())
				stop()
			}
		}
	}
}
