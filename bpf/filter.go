// Package bpf is palisade's XDP SYN-flood filter: an XDP program (synflood.c,
// compiled with bpf2go, objects committed) that judges TCP SYNs to the
// protected ports before they reach the kernel's TCP stack.
//
// Life cycle, as driven by the daemon:
//
//	f, err := bpf.Load(cfg)          // maps + program in the kernel, not attached
//	err = f.Attach("eth0", "auto")   // native XDP, generic as fallback
//	err = f.Update(newCfg)           // on reload: limits, lists, ports; stays attached
//	m, err := f.Counters()           // verdict counters summed over CPUs
//	err = f.Close()                  // detach and free everything
//
// Errors caused by missing privileges wrap ErrPermission, errors caused by a
// kernel or driver that cannot run the program wrap ErrUnsupported, so the
// caller can log one line and run on without the filter.
package bpf

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

var (
	// ErrPermission: the process lacks CAP_BPF/CAP_NET_ADMIN (or memlock).
	ErrPermission = errors.New("synflood: not permitted")
	// ErrUnsupported: the kernel, the verifier or the NIC driver cannot run
	// the filter in the requested mode.
	ErrUnsupported = errors.New("synflood: not supported")
	// ErrClosed is returned by methods called after Close.
	ErrClosed = errors.New("synflood: filter closed")
)

// XDP attach modes accepted by Attach and reported by Mode.
const (
	XDPAuto    = "auto"
	XDPNative  = "native"
	XDPGeneric = "generic"
)

// Verdict counter names returned by Counters. The first three are disjoint
// and cover every judged SYN (they are the metric's verdict label values);
// the others break them down.
const (
	VerdictPass     = "pass"      // admitted (includes pass_allow)
	VerdictDropRate = "drop_rate" // over a limit (drop_rate_source + drop_rate_port)
	VerdictDropDeny = "drop_deny" // source in the deny list

	DetailPassAllow      = "pass_allow"       // admitted because the source is in the allow list
	DetailDropRateSource = "drop_rate_source" // over the per-source limit
	DetailDropRatePort   = "drop_rate_port"   // over the per-port budget
	DetailTrustMarked    = "trust_marked"     // sources (re)marked trusted

	// Syncookie mode. syncookie_sent SYNs were answered from XDP (and not
	// passed); drop_syncookie ACKs matched only a listener and carried no
	// valid cookie; syncookie_ok ACKs carried a valid one and were passed.
	VerdictSyncookieSent = "syncookie_sent"
	VerdictDropSyncookie = "drop_syncookie"
	DetailSyncookieOK    = "syncookie_ok"
)

// Counter indices, as enum counter in synflood.c.
const (
	cntPass = iota
	cntPassAllow
	cntDropRateSource
	cntDropRatePort
	cntDropDeny
	cntTrustMarked
	cntSyncookieSent
	cntSyncookieOK
	cntDropSyncookie
	cntMax
)

// Filter is a loaded SYN-flood filter. Its methods are safe for concurrent use.
type Filter struct {
	mu     sync.Mutex
	objs   synfloodObjects
	cfg    *compiled
	link   link.Link
	iface  string
	mode   string
	mtu    uint32
	closed bool
	// syncookies is net.ipv4.tcp_syncookies of the attached interface's
	// namespace, opened at Attach (the fd stays bound to that namespace);
	// prevSyncookies is the value to restore, "" when untouched.
	syncookies     *os.File
	prevSyncookies string
}

// Status is what /api/v1/status reports about the filter.
type Status struct {
	Attached  bool   `json:"attached"`
	Interface string `json:"interface,omitempty"`
	Mode      string `json:"xdp_mode,omitempty"` // native | generic
}

// classify wraps err with ErrPermission or ErrUnsupported when its cause says so.
func classify(what string, err error) error {
	var verr *ebpf.VerifierError
	switch {
	case errors.As(err, &verr) && strings.Contains(verr.Error(), "!root"):
		// Variable-offset packet pointer arithmetic needs CAP_PERFMON
		// (Spectre v1 mitigation); the verifier says "prohibited for !root".
		return fmt.Errorf("%w (CAP_PERFMON missing?): %s: %w", ErrPermission, what, err)
	case errors.As(err, &verr):
		// The verifier reports with EACCES/EPERM too: this kernel cannot
		// run the program, privileges are not the problem.
		return fmt.Errorf("%w: %s: %w", ErrUnsupported, what, err)
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES), errors.Is(err, unix.EROFS), errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%w: %s: %w", ErrPermission, what, err)
	case errors.Is(err, ebpf.ErrNotSupported), errors.Is(err, unix.EOPNOTSUPP),
		errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EINVAL):
		return fmt.Errorf("%w: %s: %w", ErrUnsupported, what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Load validates cfg, loads the program and its maps into the kernel and
// fills the maps. The program is not attached to any interface yet.
func Load(cfg Config) (*Filter, error) {
	c, err := cfg.compile()
	if err != nil {
		return nil, err
	}
	// Only matters on kernels before 5.11 (memlock accounting); newer
	// kernels charge memory to the cgroup and this is a no-op.
	// Failing to raise it is only reported when loading then fails.
	memlockErr := rlimit.RemoveMemlock()
	f := &Filter{}
	if err := loadSynfloodObjects(&f.objs, nil); err != nil {
		if memlockErr != nil {
			err = errors.Join(err, memlockErr)
		}
		return nil, classify("loading XDP program", err)
	}
	if err := f.apply(nil, c); err != nil {
		f.objs.Close()
		return nil, err
	}
	f.cfg = c
	return f, nil
}

// Attach attaches the program to interface ifname (in the calling thread's
// network namespace) in mode auto, native or generic ("" means auto). Auto
// tries native first and falls back to generic. If the filter is already
// attached it is moved: the new link is made first, then the old one removed.
func (f *Filter) Attach(ifname, mode string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return ErrClosed
	}
	if mode == "" {
		mode = XDPAuto
	}
	var tries []string
	switch mode {
	case XDPAuto:
		tries = []string{XDPNative, XDPGeneric}
	case XDPNative, XDPGeneric:
		tries = []string{mode}
	default:
		return fmt.Errorf("xdp mode %q: want auto, native or generic", mode)
	}
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("attaching XDP: interface %q: %w", ifname, err)
	}
	if f.link != nil && f.iface == ifname {
		// Same device: XDP allows one program per mode, detach first.
		if err := f.detachLocked(); err != nil {
			return err
		}
	}
	var errs []error
	for _, m := range tries {
		flags := link.XDPDriverMode
		if m == XDPGeneric {
			flags = link.XDPGenericMode
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: f.objs.Synflood, Interface: ifi.Index, Flags: flags})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m, err))
			continue
		}
		if f.link != nil {
			f.detachLocked()
		}
		f.link, f.iface, f.mode = l, ifname, m
		f.syncookies, err = os.OpenFile(syncookiesSysctl, os.O_RDWR, 0)
		if err != nil && f.cfg.kcfg.Mode == modeSyncookie {
			f.detachLocked()
			return classify("syncookie mode: opening "+syncookiesSysctl, err)
		}
		f.mtu = uint32(ifi.MTU)
		if err := f.applyAttached(f.cfg); err != nil {
			f.detachLocked()
			return err
		}
		return nil
	}
	return classify(fmt.Sprintf("attaching XDP to %s", ifname), errors.Join(errs...))
}

// Detach removes the program from its interface, keeping maps and counters;
// Attach may be called again. Detaching a detached filter is a no-op.
func (f *Filter) Detach() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.detachLocked()
}

func (f *Filter) detachLocked() error {
	if f.link == nil {
		return nil
	}
	err := f.link.Close()
	f.link, f.iface, f.mode = nil, "", ""
	if err != nil {
		err = fmt.Errorf("detaching XDP: %w", err)
	}
	if f.syncookies != nil {
		err = errors.Join(err, f.setSyncookies(false))
		f.syncookies.Close()
		f.syncookies = nil
	}
	return err
}

const (
	syncookiesSysctl = "/proc/sys/net/ipv4/tcp_syncookies"
	modeSyncookie    = 1
)

// setSyncookies forces net.ipv4.tcp_syncookies to 2 (on) or restores the
// value found before (off).
func (f *Filter) setSyncookies(on bool) error {
	if f.syncookies == nil {
		return nil
	}
	write := func(v string) error {
		_, err := f.syncookies.WriteAt([]byte(v+"\n"), 0)
		return err
	}
	if !on {
		if f.prevSyncookies == "" {
			return nil
		}
		if err := write(f.prevSyncookies); err != nil {
			return fmt.Errorf("restoring %s: %w", syncookiesSysctl, err)
		}
		f.prevSyncookies = ""
		return nil
	}
	buf := make([]byte, 8)
	n, err := f.syncookies.ReadAt(buf, 0)
	if err != nil && n == 0 {
		return classify("reading "+syncookiesSysctl, err)
	}
	cur := strings.TrimSpace(string(buf[:n]))
	if cur == "2" {
		return nil
	}
	if err := write("2"); err != nil {
		return classify("syncookie mode: setting "+syncookiesSysctl+" to 2", err)
	}
	if f.prevSyncookies == "" {
		f.prevSyncookies = cur
	}
	return nil
}

// applyAttached refreshes the config map with the device MTU and puts the
// syncookies sysctl in line with the mode. Called with f.mu held.
func (f *Filter) applyAttached(c *compiled) error {
	if err := f.setSyncookies(c.kcfg.Mode == modeSyncookie); err != nil {
		return err
	}
	return f.writeConfig(c)
}

func (f *Filter) writeConfig(c *compiled) error {
	k := c.kcfg
	k.Mtu = f.mtu
	if k.Mtu == 0 {
		k.Mtu = 1500
	}
	if err := f.objs.ConfigMap.Update(uint32(0), k, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("updating config map: %w", err)
	}
	return nil
}

// Mode reports the active attach mode, "native" or "generic", or "" when
// the filter is not attached.
func (f *Filter) Mode() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mode
}

// Status reports whether and where the filter is attached.
func (f *Filter) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Status{Attached: f.link != nil, Interface: f.iface, Mode: f.mode}
}

// Update validates cfg and applies limits, lists and ports to the live maps
// without detaching. Per-port budgets of ports that stay protected and the
// per-source state are kept. On a validation error nothing changes.
func (f *Filter) Update(cfg Config) error {
	c, err := cfg.compile()
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return ErrClosed
	}
	if c.kcfg.Mode == modeSyncookie && f.link != nil && f.syncookies == nil {
		return fmt.Errorf("%w: syncookie mode: %s was not readable at Attach", ErrUnsupported, syncookiesSysctl)
	}
	// Turning syncookie mode on: the sysctl first, so no cookie ACK can
	// meet a kernel that refuses it. Turning it off: the map first.
	if c.kcfg.Mode == modeSyncookie {
		if err := f.setSyncookies(true); err != nil {
			return err
		}
	}
	if err := f.apply(f.cfg, c); err != nil {
		return err
	}
	f.cfg = c
	if c.kcfg.Mode != modeSyncookie {
		return f.setSyncookies(false)
	}
	return nil
}

// apply moves the maps from old (nil: empty maps) to c. Entries are added
// before stale ones are removed, so no list is ever emptier than both the
// old and the new one.
func (f *Filter) apply(old, c *compiled) error {
	if old == nil {
		old = &compiled{}
	}
	for _, p := range c.ports {
		err := f.objs.Ports.Update(p, synfloodPortState{}, ebpf.UpdateNoExist)
		if err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
			return fmt.Errorf("updating ports map: %w", err)
		}
	}
	if err := syncLPM(f.objs.AllowV4, old.allowV4, c.allowV4); err != nil {
		return fmt.Errorf("updating allow list: %w", err)
	}
	if err := syncLPM(f.objs.AllowV6, old.allowV6, c.allowV6); err != nil {
		return fmt.Errorf("updating allow list: %w", err)
	}
	if err := syncLPM(f.objs.DenyV4, old.denyV4, c.denyV4); err != nil {
		return fmt.Errorf("updating deny list: %w", err)
	}
	if err := syncLPM(f.objs.DenyV6, old.denyV6, c.denyV6); err != nil {
		return fmt.Errorf("updating deny list: %w", err)
	}
	if err := f.writeConfig(c); err != nil {
		return err
	}
	for _, p := range old.ports {
		if _, keep := slices.BinarySearch(c.ports, p); keep {
			continue
		}
		if err := f.objs.Ports.Delete(p); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("updating ports map: %w", err)
		}
	}
	return nil
}

func syncLPM[K comparable](m *ebpf.Map, old, want []K) error {
	keep := make(map[K]bool, len(want))
	for _, k := range want {
		keep[k] = true
		if err := m.Update(k, uint8(1), ebpf.UpdateAny); err != nil {
			return err
		}
	}
	for _, k := range old {
		if keep[k] {
			continue
		}
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}

// Counters returns the verdict counters summed over all CPUs, keyed by the
// Verdict* and Detail* names. They count since Load and survive Update.
func (f *Filter) Counters() (map[string]uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, ErrClosed
	}
	var raw [cntMax]uint64
	var perCPU []uint64
	for i := range raw {
		if err := f.objs.Counters.Lookup(uint32(i), &perCPU); err != nil {
			return nil, fmt.Errorf("reading counters: %w", err)
		}
		for _, v := range perCPU {
			raw[i] += v
		}
	}
	return map[string]uint64{
		VerdictPass:          raw[cntPass] + raw[cntPassAllow],
		VerdictDropRate:      raw[cntDropRateSource] + raw[cntDropRatePort],
		VerdictDropDeny:      raw[cntDropDeny],
		DetailPassAllow:      raw[cntPassAllow],
		DetailDropRateSource: raw[cntDropRateSource],
		DetailDropRatePort:   raw[cntDropRatePort],
		DetailTrustMarked:    raw[cntTrustMarked],
		VerdictSyncookieSent: raw[cntSyncookieSent],
		VerdictDropSyncookie: raw[cntDropSyncookie],
		DetailSyncookieOK:    raw[cntSyncookieOK],
	}, nil
}

// Close detaches the program and frees the program and all maps. Further
// calls return nil.
func (f *Filter) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	return errors.Join(f.detachLocked(), f.objs.Close())
}

// AttachPassThrough attaches a program that passes every frame to interface
// ifname (in the calling thread's namespace), in native mode. A veth device
// delivers frames that its peer sends with XDP_TX (syncookie mode answers)
// only when it has an XDP program itself: call this on the peer of a veth
// the filter is attached to natively. Close detaches and frees it.
func AttachPassThrough(ifname string) (io.Closer, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("attaching XDP pass-through: interface %q: %w", ifname, err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    "xdp_pass",
		Type:    ebpf.XDP,
		License: "Dual BSD/GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 2), // XDP_PASS
			asm.Return(),
		},
	})
	if err != nil {
		return nil, classify("loading XDP pass-through", err)
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifi.Index, Flags: link.XDPDriverMode})
	if err != nil {
		prog.Close()
		return nil, classify("attaching XDP pass-through to "+ifname, err)
	}
	return passThrough{l, prog}, nil
}

type passThrough struct {
	l link.Link
	p *ebpf.Program
}

func (p passThrough) Close() error { return errors.Join(p.l.Close(), p.p.Close()) }
