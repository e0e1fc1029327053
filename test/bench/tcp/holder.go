package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// holderEnv set to 1 makes this binary run as the idle-connection holder.
const holderEnv = "PALISADE_TCPBENCH_HOLDER"

// holderMain is the holder process: it listens on two loopback ports, prints
// them, and holds every accepted connection open until its peer closes it. It
// exits when stdin closes (the bench ended or died). It is a separate process
// so that its sockets and the bench's client sockets each fit under
// RLIMIT_NOFILE.
func holderMain() {
	var addrs []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, "holder:", err)
			os.Exit(1)
		}
		addrs = append(addrs, ln.Addr().String())
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					if errors.Is(err, net.ErrClosed) {
						return
					}
					time.Sleep(10 * time.Millisecond) // EMFILE: back off rather than spin
					continue
				}
				go func() {
					var b [1]byte
					_, _ = c.Read(b[:])
					c.Close()
				}()
			}
		}()
	}
	fmt.Println(strings.Join(addrs, " "))
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// holder is the parent's handle on the holder process; connections held are
// counted from its open file descriptors.
type holder struct {
	p      *proc
	stdin  io.Closer
	addrs  []string
	base   int
	stderr string
}

func (e *env) startHolder(ctx context.Context) (*holder, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(e.dir, "holder.log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), holderEnv+"=1")
	cmd.Stderr = lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting holder: %w", err)
	}
	p := &proc{name: "holder", cmd: cmd, logPath: logPath, done: make(chan struct{})}
	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		line <- l
		_, _ = io.Copy(io.Discard, out)
	}()
	go func() { p.err = cmd.Wait(); close(p.done) }()
	h := &holder{p: p, stdin: in}
	select {
	case l := <-line:
		h.addrs = strings.Fields(l)
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}
	if len(h.addrs) != 2 {
		return nil, fmt.Errorf("holder did not report its addresses: %s", p.logTail())
	}
	h.base = fdCount(p.pid())
	return h, nil
}

// live is the number of connections the holder holds now.
func (h *holder) live() int { return fdCount(h.p.pid()) - h.base }

// waitLive waits until the holder's live count satisfies ok.
func (h *holder) waitLive(ctx context.Context, ok func(int) bool, deadline time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	for !ok(h.live()) {
		if h.p.exited() {
			return fmt.Errorf("holder exited: %v\n%s", h.p.err, h.p.logTail())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("held connections: %d after %v", h.live(), deadline)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}
