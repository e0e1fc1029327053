package pipes

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const pipeChildEnv = "PALISADE_TEST_PIPE_CHILD"

// TestPipesUnderTheUserLimit runs Get as an unprivileged user (nobody)
// up to fs.pipe-user-pages-soft and past it: pipes get smaller as more are
// open, so hundreds fit; every pipe really has the capacity it claims and
// at least MinSize; and once the kernel only gives tiny pipes, Get
// says so (the engine then copies through buffers).
func TestPipesUnderTheUserLimit(t *testing.T) {
	if os.Getenv(pipeChildEnv) != "" {
		pipeChild()
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs a child as user nobody")
	}
	t.Parallel()
	// the test binary, where nobody may run it
	dir, err := os.MkdirTemp("", "palisade-pipes-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "pipes.test")
	if err := copyFile(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	var out []byte
	// A process forked by a parallel test may hold the copy's write
	// descriptor until it execs (golang/go#22315): ETXTBSY for a moment.
	for deadline := time.Now().Add(10 * time.Second); ; {
		cmd := exec.Command(bin, "-test.run=^TestPipesUnderTheUserLimit$", "-test.count=1")
		cmd.Env = append(os.Environ(), pipeChildEnv+"=1")
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err = cmd.CombinedOutput()
		if !errors.Is(err, syscall.ETXTBSY) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var ok, small int
	var sizes string
	if _, err := fmt.Sscanf(lastLine(string(out)), "ok %d small %d sizes %s", &ok, &small, &sizes); err != nil {
		t.Fatalf("child said %q: %v", out, err)
	}
	t.Logf("as nobody: %d pipes handed out (sizes %s), then %d refused as too small", ok, sizes, small)
	if ok < 400 || small == 0 || !strings.Contains(sizes, "KiB,") {
		t.Fatalf("want ~500 pipes of falling sizes, then refusals past the user limit; got %d (%s) and %d", ok, sizes, small)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "ok ") {
			return lines[i]
		}
	}
	return ""
}

// pipeChild takes pipes (keeping them open) until well past the default
// user limit and prints what it got; any pipe that is not what it claims
// is a failure.
func pipeChild() {
	var held []*Pipe
	var ok, small int
	sizes := map[int]int{}
	for range 600 { // the default limit (64 MiB) holds about 500
		p, err := Get()
		if errors.Is(err, ErrSmall) {
			small++
			continue
		}
		if err != nil {
			fmt.Println("Get:", err)
			os.Exit(1)
		}
		n, err := unix.FcntlInt(uintptr(p.W), unix.F_GETPIPE_SZ, 0)
		if err != nil || n != p.Size || n < MinSize {
			fmt.Printf("pipe claims %d bytes, has %d (%v)\n", p.Size, n, err)
			os.Exit(1)
		}
		sizes[n]++
		ok++
		held = append(held, p)
	}
	for _, p := range held {
		p.close()
	}
	var parts []string
	for n, c := range sizes {
		parts = append(parts, fmt.Sprintf("%dx%dKiB", c, n>>10))
	}
	fmt.Printf("ok %d small %d sizes %s\n", ok, small, strings.Join(parts, ","))
	os.Exit(0)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
