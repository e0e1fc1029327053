//go:build linux

package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// LinuxNetwork is the real Network: a raw IPv4 socket of protocol 112 bound
// to the interface (multicast group 224.0.0.18 joined unless unicast peers
// are configured), netlink for addresses and link state, and an ARP socket
// for gratuitous ARP. It needs CAP_NET_RAW and CAP_NET_ADMIN.
type LinuxNetwork struct {
	// Logger receives I/O errors that have no caller; default slog.Default.
	Logger *slog.Logger
}

// Open resolves the interface and its primary address and opens the sockets.
func (n LinuxNetwork) Open(cfg NetConfig) (Conn, error) {
	log := n.Logger
	if log == nil {
		log = slog.Default()
	}
	link, err := netlink.LinkByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("looking up interface %s: %w", cfg.Interface, err)
	}
	ifi, err := net.InterfaceByIndex(link.Attrs().Index)
	if err != nil {
		return nil, fmt.Errorf("looking up interface %s: %w", cfg.Interface, err)
	}
	primary, err := primaryAddr(link, cfg.VIPs)
	if err != nil {
		return nil, err
	}
	c := &linuxConn{cfg: cfg, ifi: ifi, link: link, primary: primary, log: log}
	if err := c.openRaw(); err != nil {
		return nil, err
	}
	if c.arp, err = arp.Dial(ifi); err != nil {
		c.file.Close()
		return nil, fmt.Errorf("opening ARP socket on %s: %w", cfg.Interface, err)
	}
	return c, nil
}

// primaryAddr picks the interface's first primary (non-secondary) IPv4
// address that is not a VIP.
func primaryAddr(link netlink.Link, vips []netip.Prefix) (netip.Addr, error) {
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("listing addresses of %s: %w", link.Attrs().Name, err)
	}
	var fallback netip.Addr
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP.To4())
		if !ok || slices.ContainsFunc(vips, func(p netip.Prefix) bool { return p.Addr() == ip }) {
			continue
		}
		if a.Flags&unix.IFA_F_SECONDARY == 0 {
			return ip, nil
		}
		if !fallback.IsValid() {
			fallback = ip
		}
	}
	if fallback.IsValid() {
		return fallback, nil
	}
	return netip.Addr{}, fmt.Errorf("interface %s has no IPv4 address besides the VIPs", link.Attrs().Name)
}

type linuxConn struct {
	cfg     NetConfig
	ifi     *net.Interface
	link    netlink.Link
	primary netip.Addr
	log     *slog.Logger

	file *os.File
	raw  interface {
		Write(func(fd uintptr) bool) error
	}
	arp     *arp.Client
	closeMu sync.Once
}

func (c *linuxConn) openRaw() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, IPProtocol)
	if err != nil {
		return fmt.Errorf("opening raw socket for protocol 112: %w", err)
	}
	mreq := &unix.IPMreqn{Ifindex: int32(c.ifi.Index)}
	set := []struct {
		name string
		f    func() error
	}{
		{"SO_BINDTODEVICE", func() error { return unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, c.ifi.Name) }},
		{"IP_TTL", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TTL, RequiredTTL) }},
		{"IP_MULTICAST_TTL", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, RequiredTTL) }},
		{"IP_MULTICAST_LOOP", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 0) }},
		{"IP_TOS", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TOS, 0xc0) }},
		{"IP_MULTICAST_IF", func() error { return unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, mreq) }},
	}
	if len(c.cfg.UnicastPeers) == 0 {
		set = append(set, struct {
			name string
			f    func() error
		}{"IP_ADD_MEMBERSHIP", func() error {
			m := &unix.IPMreqn{Multiaddr: MulticastGroup.As4(), Ifindex: int32(c.ifi.Index)}
			return unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, m)
		}})
	}
	for _, s := range set {
		if err := s.f(); err != nil {
			unix.Close(fd)
			return fmt.Errorf("raw socket on %s: %s: %w", c.ifi.Name, s.name, err)
		}
	}
	c.file = os.NewFile(uintptr(fd), "vrrp-"+c.ifi.Name)
	rc, err := c.file.SyscallConn()
	if err != nil {
		c.file.Close()
		return fmt.Errorf("raw socket on %s: %w", c.ifi.Name, err)
	}
	c.raw = rc
	return nil
}

func (c *linuxConn) Primary() netip.Addr { return c.primary }

func (c *linuxConn) Close() error {
	var err error
	c.closeMu.Do(func() {
		err = errors.Join(c.file.Close(), c.arp.Close())
	})
	return err
}

// Run reads adverts and subscribes to link and address updates until ctx is
// done; it closes the sockets on return.
func (c *linuxConn) Run(ctx context.Context, events chan<- Event) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	linkCh := make(chan netlink.LinkUpdate, 64)
	addrCh := make(chan netlink.AddrUpdate, 64)
	nlErr := make(chan error, 2)
	onErr := func(err error) {
		select {
		case nlErr <- err:
		default:
		}
	}
	if err := netlink.LinkSubscribeWithOptions(linkCh, done, netlink.LinkSubscribeOptions{ListExisting: true, ErrorCallback: onErr}); err != nil {
		close(done)
		return fmt.Errorf("subscribing to link updates: %w", err)
	}
	if err := netlink.AddrSubscribeWithOptions(addrCh, done, netlink.AddrSubscribeOptions{ErrorCallback: onErr}); err != nil {
		close(done)
		return fmt.Errorf("subscribing to address updates: %w", err)
	}
	defer close(done)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.readLoop(ctx, events)
	}()
	defer wg.Wait()
	defer c.file.Close() // unblocks readLoop

	send := func(ev Event) bool {
		select {
		case events <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-nlErr:
			c.log.Error("vrrp: netlink subscription error", "interface", c.ifi.Name, "err", err)
		case u, ok := <-linkCh:
			if !ok {
				return errors.New("link subscription closed")
			}
			name := u.Attrs().Name
			if !slices.Contains(c.cfg.WatchLinks, name) {
				continue
			}
			if u.Header.Type == unix.RTM_DELLINK {
				if !send(Event{Kind: EventLink, Link: name, Up: false}) {
					return nil
				}
				continue
			}
			if !send(Event{Kind: EventLink, Link: name, Up: linkUp(u.Attrs())}) {
				return nil
			}
		case u, ok := <-addrCh:
			if !ok {
				return errors.New("address subscription closed")
			}
			if u.NewAddr || u.LinkIndex != c.ifi.Index {
				continue
			}
			ip, ok := netip.AddrFromSlice(u.LinkAddress.IP.To4())
			if !ok {
				continue
			}
			ones, _ := u.LinkAddress.Mask.Size()
			if !send(Event{Kind: EventAddrRemoved, Addr: netip.PrefixFrom(ip, ones)}) {
				return nil
			}
		}
	}
}

// linkUp: administratively up with carrier.
func linkUp(a *netlink.LinkAttrs) bool {
	return a.Flags&net.FlagUp != 0 && a.RawFlags&unix.IFF_RUNNING != 0
}

func (c *linuxConn) readLoop(ctx context.Context, events chan<- Event) {
	buf := make([]byte, 65536)
	for {
		n, err := c.file.Read(buf)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, os.ErrClosed) {
				c.log.Error("vrrp: reading adverts", "interface", c.ifi.Name, "err", err)
			}
			return
		}
		select {
		case events <- Event{Kind: EventPacket, Packet: slices.Clone(buf[:n])}:
		case <-ctx.Done():
			return
		default:
			// The instance is not keeping up; dropping is safe (adverts repeat).
		}
	}
}

func (c *linuxConn) SendAdvert(a Advert, to netip.Addr) error {
	dsts := c.cfg.UnicastPeers
	if to.IsValid() {
		dsts = []netip.Addr{to}
	} else if len(dsts) == 0 {
		dsts = []netip.Addr{MulticastGroup}
	}
	oob := (&ipv4.ControlMessage{Src: c.primary.AsSlice(), IfIndex: c.ifi.Index}).Marshal()
	var errs []error
	for _, dst := range dsts {
		msg, err := a.Marshal(c.primary, dst)
		if err != nil {
			return err
		}
		sa := &unix.SockaddrInet4{Addr: dst.As4()}
		var serr error
		err = c.raw.Write(func(fd uintptr) bool {
			serr = unix.Sendmsg(int(fd), msg, oob, sa, 0)
			return serr != unix.EAGAIN
		})
		if err == nil {
			err = serr
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("sending advert to %v: %w", dst, err))
		}
	}
	return errors.Join(errs...)
}

func (c *linuxConn) AddVIPs(vips []netip.Prefix) error {
	var errs []error
	for _, p := range vips {
		addr := &netlink.Addr{IPNet: prefixNet(p)}
		if err := netlink.AddrReplace(c.link, addr); err != nil {
			errs = append(errs, fmt.Errorf("adding %v to %s: %w", p, c.ifi.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (c *linuxConn) RemoveVIPs(vips []netip.Prefix) error {
	var errs []error
	for _, p := range vips {
		addr := &netlink.Addr{IPNet: prefixNet(p)}
		err := netlink.AddrDel(c.link, addr)
		if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("removing %v from %s: %w", p, c.ifi.Name, err))
		}
	}
	return errors.Join(errs...)
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}

// GARP sends, for each VIP, a gratuitous ARP request (sender = target = VIP,
// target hardware address zero) and a gratuitous ARP reply (target hardware
// address broadcast), both to the Ethernet broadcast address.
func (c *linuxConn) GARP(vips []netip.Addr) error {
	mac := c.ifi.HardwareAddr
	zero := make(net.HardwareAddr, len(mac))
	var errs []error
	for _, ip := range vips {
		req, err := arp.NewPacket(arp.OperationRequest, mac, ip, zero, ip)
		if err != nil {
			return err
		}
		rep, err := arp.NewPacket(arp.OperationReply, mac, ip, ethernet.Broadcast, ip)
		if err != nil {
			return err
		}
		for _, p := range []*arp.Packet{req, rep} {
			if err := c.arp.WriteTo(p, ethernet.Broadcast); err != nil {
				errs = append(errs, fmt.Errorf("gratuitous ARP for %v on %s: %w", ip, c.ifi.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}
