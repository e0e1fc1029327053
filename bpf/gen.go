package bpf

// The committed synflood_bpfel.* / synflood_bpfeb.* files are generated from
// synflood.c; `make generate` (or `go generate ./bpf`) rebuilds them with
// clang and records the compiler in synflood.clang-version, which
// TestObjectsFresh uses to decide how strictly it can compare.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu" -target bpfel,bpfeb synflood synflood.c
//go:generate sh -c "clang --version | head -n 1 > synflood.clang-version"
