package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParsePin(t *testing.T) {
	for _, tc := range []struct {
		in          string
		ncpu        int
		proxy, load []int
		err         string
	}{
		{in: "", ncpu: 2},
		{in: "0:1", ncpu: 2, proxy: []int{0}, load: []int{1}},
		{in: "0-1:2-3", ncpu: 4, proxy: []int{0, 1}, load: []int{2, 3}},
		{in: "0,2:1,3", ncpu: 4, proxy: []int{0, 2}, load: []int{1, 3}},
		{in: "0,0-1:2", ncpu: 3, proxy: []int{0, 1}, load: []int{2}},
		{in: "0", ncpu: 2, err: "want PROXY_CPUS:LOAD_CPUS"},
		{in: "0:0", ncpu: 2, err: "CPU 0 is on both sides"},
		{in: "0-1:1", ncpu: 2, err: "CPU 1 is on both sides"},
		{in: "0:2", ncpu: 2, err: "load CPUs: \"2\": CPUs are 0-1 here"},
		{in: "x:1", ncpu: 2, err: "proxy CPUs: \"x\" is not a CPU number"},
		{in: "1-0:2", ncpu: 3, err: "\"1-0\": CPUs are 0-2 here"},
		{in: "0:", ncpu: 2, err: "load CPUs: \"\" is not a CPU number"},
	} {
		p, err := parsePin(tc.in, tc.ncpu)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parsePin(%q): error %v, want one containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parsePin(%q): %v", tc.in, err)
			continue
		}
		if !slices.Equal(p.proxy, tc.proxy) || !slices.Equal(p.load, tc.load) || p.on() != (tc.proxy != nil) {
			t.Errorf("parsePin(%q) = %v:%v (on %v), want %v:%v", tc.in, p.proxy, p.load, p.on(), tc.proxy, tc.load)
		}
	}
}

func TestCommandWrapsInTaskset(t *testing.T) {
	bin, args := command(nil, "wrk", []string{"-t", "2"})
	if bin != "wrk" || !slices.Equal(args, []string{"-t", "2"}) {
		t.Errorf("unpinned: %s %v", bin, args)
	}
	bin, args = command([]int{1, 3}, "wrk", []string{"-t", "2"})
	if bin != "taskset" || !slices.Equal(args, []string{"-c", "1,3", "wrk", "-t", "2"}) {
		t.Errorf("pinned: %s %v", bin, args)
	}
}

const pinChildEnv = "PALISADE_BENCH_PIN_CHILD"

// pinChild runs in a child process of TestPinSelf: it starts threads, pins
// itself to CPU 0, starts more, and checks every thread's mask.
func pinChild() int {
	stop := make(chan struct{})
	defer close(stop)
	started := make(chan struct{})
	busy := func() {
		runtime.LockOSThread() // a thread of its own, before and after the pin
		started <- struct{}{}
		<-stop
	}
	for range 4 {
		go busy()
		<-started
	}
	if err := pinSelf([]int{0}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for range 4 {
		go busy()
		<-started
	}
	if runtime.GOMAXPROCS(0) != 1 {
		fmt.Fprintf(os.Stderr, "GOMAXPROCS %d after pinning to one CPU\n", runtime.GOMAXPROCS(0))
		return 1
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, t := range tasks {
		tid, _ := strconv.Atoi(t.Name())
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(tid, &set); err != nil {
			continue // gone
		}
		if set.Count() != 1 || !set.IsSet(0) {
			fmt.Fprintf(os.Stderr, "thread %d of %d may run on %d CPUs, CPU 0 set %v\n", tid, len(tasks), set.Count(), set.IsSet(0))
			return 1
		}
	}
	fmt.Printf("%d threads on CPU 0\n", len(tasks))
	return 0
}

// TestPinSelf checks, in a child process, that pinSelf moves every thread.
func TestPinSelf(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("pinning needs 2 CPUs to show anything")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), pinChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("child: %s", out)
}
