package bpf

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

// TestObjectsFresh regenerates the bpf2go output from synflood.c into a
// temporary directory, with the exact command line from gen.go, and fails if
// the committed files differ.
//
// How strictly it compares:
//   - The generated Go bindings must match byte for byte. They depend only on
//     the C source (types, map and program names) and on bpf2go, which go.mod
//     pins, not on the compiler version.
//   - The .o objects must match byte for byte when the local clang is the one
//     recorded in synflood.clang-version at generation time: clang output is
//     deterministic (DWARF is stripped and the source path is relative), so
//     any difference means the C source changed without regenerating.
//   - With another clang, instruction streams legitimately differ, so only
//     what the source fixes is compared: every map's type, key/value size,
//     capacity and flags, and every program's name, type and section.
func TestObjectsFresh(t *testing.T) {
	clang, err := exec.LookPath("clang")
	if err != nil {
		t.Skip("clang not installed: cannot check that the committed BPF objects are fresh")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH: cannot run bpf2go")
	}
	args := generateArgs(t)
	tmp := t.TempDir()
	cmd := exec.Command(goTool, append([]string{"run", "github.com/cilium/ebpf/cmd/bpf2go", "-output-dir", tmp}, args...)...)
	cmd.Env = append(os.Environ(), "GOPACKAGE=bpf")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bpf2go: %v\n%s", err, out)
	}

	version, err := exec.Command(clang, "--version").Output()
	if err != nil {
		t.Fatalf("clang --version: %v", err)
	}
	recorded, err := os.ReadFile("synflood.clang-version")
	if err != nil {
		t.Fatalf("reading synflood.clang-version: %v", err)
	}
	sameCompiler := strings.TrimSpace(strings.SplitN(string(version), "\n", 2)[0]) == strings.TrimSpace(string(recorded))
	if !sameCompiler {
		t.Logf("local clang differs from %q: comparing map and program specs instead of bytes", strings.TrimSpace(string(recorded)))
	}

	for _, suffix := range []string{"bpfel", "bpfeb"} {
		for _, ext := range []string{".go", ".o"} {
			name := "synflood_" + suffix + ext
			committed, err := os.ReadFile(name)
			if err != nil {
				t.Fatalf("committed %s: %v", name, err)
			}
			fresh, err := os.ReadFile(filepath.Join(tmp, name))
			if err != nil {
				t.Fatalf("regenerated %s: %v", name, err)
			}
			if bytes.Equal(committed, fresh) {
				continue
			}
			if ext == ".go" || sameCompiler {
				t.Errorf("%s is stale relative to synflood.c: run `make generate` and commit the result", name)
				continue
			}
			if a, b := specSummary(t, committed), specSummary(t, fresh); a != b {
				t.Errorf("%s is stale relative to synflood.c: run `make generate`\ncommitted:\n%s\nfresh:\n%s", name, a, b)
			}
		}
	}
}

// generateArgs returns the bpf2go arguments of the go:generate line in gen.go.
func generateArgs(t *testing.T) []string {
	t.Helper()
	src, err := os.ReadFile("gen.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(src), "\n") {
		_, rest, ok := strings.Cut(line, "//go:generate go run github.com/cilium/ebpf/cmd/bpf2go ")
		if !ok {
			continue
		}
		args, err := splitQuoted(rest)
		if err != nil {
			t.Fatalf("gen.go: %v", err)
		}
		return args
	}
	t.Fatal("gen.go has no bpf2go go:generate line")
	return nil
}

// splitQuoted splits s at spaces, keeping double-quoted runs together, the
// way go generate does.
func splitQuoted(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inQuote, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote, have = !inQuote, true
		case r == ' ' && !inQuote:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if inQuote {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	if have {
		out = append(out, cur.String())
	}
	return out, nil
}

func specSummary(t *testing.T, obj []byte) string {
	t.Helper()
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(obj))
	if err != nil {
		t.Fatalf("parsing object: %v", err)
	}
	var lines []string
	for name, m := range spec.Maps {
		lines = append(lines, fmt.Sprintf("map %s %v key=%d value=%d max=%d flags=%#x",
			name, m.Type, m.KeySize, m.ValueSize, m.MaxEntries, m.Flags))
	}
	for name, p := range spec.Programs {
		lines = append(lines, fmt.Sprintf("prog %s %v %s", name, p.Type, p.SectionName))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
