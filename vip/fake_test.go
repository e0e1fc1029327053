package vip

import (
	"context"
	"net/netip"
	"sync"
)

// bus connects fake Conns like a LAN segment: adverts sent by one are
// delivered to the others as IPv4 packets with TTL 255.
type bus struct {
	mu    sync.Mutex
	conns []*fakeConn
	// owner records which node last added each VIP, like a neighbour's ARP cache would after GARP.
	owner map[netip.Addr]string
	// holders are the nodes holding VIPs; gaps counts the times the last
	// holder released them (the VIP was unowned).
	holders map[string]bool
	gaps    int
}

func newBus() *bus { return &bus{owner: map[netip.Addr]string{}, holders: map[string]bool{}} }

func (b *bus) hold(name string, on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	was := len(b.holders)
	if on {
		b.holders[name] = true
	} else {
		delete(b.holders, name)
	}
	if was > 0 && len(b.holders) == 0 {
		b.gaps++
	}
}

func (b *bus) gapCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.gaps
}

type fakeNet struct {
	bus     *bus
	name    string
	primary netip.Addr
}

func (n *fakeNet) Open(cfg NetConfig) (Conn, error) {
	c := &fakeConn{net: n, cfg: cfg, events: make(chan Event, 256), vips: map[netip.Prefix]bool{}, linkUp: map[string]bool{},
		fail: make(chan error, 1)}
	for _, l := range cfg.WatchLinks {
		c.linkUp[l] = true
	}
	n.bus.mu.Lock()
	n.bus.conns = append(n.bus.conns, c)
	n.bus.mu.Unlock()
	return c, nil
}

type fakeConn struct {
	net *fakeNet
	cfg NetConfig

	mu      sync.Mutex
	running bool
	out     chan<- Event
	events  chan Event
	vips    map[netip.Prefix]bool
	linkUp  map[string]bool
	adverts []Advert
	garps   int
	cut     bool // link to the bus cut (split brain)
	closed  bool
	fail    chan error // Run returns what is sent here
}

func (c *fakeConn) Primary() netip.Addr { return c.net.primary }

func (c *fakeConn) Run(ctx context.Context, events chan<- Event) error {
	c.mu.Lock()
	for l, up := range c.linkUp {
		events <- Event{Kind: EventLink, Link: l, Up: up}
	}
	c.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-c.fail:
			return err
		case ev := <-c.events:
			select {
			case events <- ev:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

func (c *fakeConn) inject(ev Event) { c.events <- ev }

func (c *fakeConn) SendAdvert(a Advert, to netip.Addr) error {
	c.mu.Lock()
	c.adverts = append(c.adverts, a)
	cut := c.cut
	c.mu.Unlock()
	if cut {
		return nil
	}
	dst := MulticastGroup
	if to.IsValid() {
		dst = to
	}
	msg, err := a.Marshal(c.net.primary, dst)
	if err != nil {
		return err
	}
	pkt := ipPacket(c.net.primary, dst, 255, msg)
	c.net.bus.mu.Lock()
	defer c.net.bus.mu.Unlock()
	for _, o := range c.net.bus.conns {
		o.mu.Lock()
		deliver := o != c && !o.closed && !o.cut && o.cfg.Interface == c.cfg.Interface &&
			(!to.IsValid() || o.net.primary == to)
		o.mu.Unlock()
		if deliver {
			select {
			case o.events <- Event{Kind: EventPacket, Packet: pkt}:
			default:
			}
		}
	}
	return nil
}

func (c *fakeConn) AddVIPs(v []netip.Prefix) error {
	c.mu.Lock()
	for _, p := range v {
		c.vips[p] = true
	}
	c.mu.Unlock()
	c.net.bus.hold(c.net.name, true) // lock order: bus.mu is never taken under c.mu
	return nil
}

func (c *fakeConn) RemoveVIPs(v []netip.Prefix) error {
	c.mu.Lock()
	for _, p := range v {
		delete(c.vips, p)
	}
	empty := len(c.vips) == 0
	c.mu.Unlock()
	if empty {
		c.net.bus.hold(c.net.name, false)
	}
	return nil
}

func (c *fakeConn) GARP(v []netip.Addr) error {
	c.mu.Lock()
	c.garps++
	cut := c.cut
	c.mu.Unlock()
	if !cut {
		c.net.bus.mu.Lock()
		for _, a := range v {
			c.net.bus.owner[a] = c.net.name
		}
		c.net.bus.mu.Unlock()
	}
	return nil
}

func (c *fakeConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}

func (c *fakeConn) hasVIPs() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.vips) > 0
}

func (c *fakeConn) advertPriorities() []uint8 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var p []uint8
	for _, a := range c.adverts {
		p = append(p, a.Priority)
	}
	return p
}

func (b *bus) conn(name string) *fakeConn {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := len(b.conns) - 1; i >= 0; i-- {
		if b.conns[i].net.name == name {
			return b.conns[i]
		}
	}
	return nil
}

func (b *bus) ownerOf(a netip.Addr) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.owner[a]
}

func (b *bus) setCut(name string, cut bool) {
	c := b.conn(name)
	c.mu.Lock()
	c.cut = cut
	c.mu.Unlock()
}
