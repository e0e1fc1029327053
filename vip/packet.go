// Package vip implements the floating virtual IP of a palisade node: VRRPv3
// (RFC 5798) election for IPv4, wire-compatible with keepalived
// `vrrp_version 3`, VIP addresses through netlink, gratuitous ARP and
// tracking of local frontends and interfaces.
//
// The daemon maps each vrrp.instances entry onto an InstanceConfig and uses
// a Manager:
//
//	m := vip.NewManager(vip.ManagerOptions{Logger: log, Registerer: reg})
//	err := m.Apply(ctx, cfgs)          // start, and on every reload (unchanged instances untouched)
//	m.SetFrontendHealth("web", ok)     // whenever a frontend's serviceability changes
//	st := m.Status()                   // GET /api/v1/vrrp
//	err = m.Resign(ctx, "edge")        // POST /api/v1/vrrp/{instance}/resign
//	err = m.Stop(ctx)                  // SIGTERM: priority-0 advert, VIPs released
//
// Apply validates everything first (errors wrap ErrInvalidConfig) and changes
// nothing on invalid input. Resign returns ErrUnknownInstance or ErrNotMaster.
//
// Layers, so that most of it is tested without root: packet.go holds pure
// encode/decode functions, fsm.go the election as a pure step function,
// instance.go the driver that feeds the state machine from an injected Clock
// and Network, and net_linux.go the real raw-socket, netlink and ARP
// implementation of Network.
package vip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Wire constants of VRRPv3 for IPv4 (RFC 5798 §5).
const (
	// IPProtocol is the IP protocol number of VRRP.
	IPProtocol = 112
	// Version is the only VRRP version this package speaks.
	Version = 3
	// TypeAdvertisement is the only VRRP packet type defined by RFC 5798.
	TypeAdvertisement = 1
	// RequiredTTL is the TTL (IPv4) every advertisement must be sent and received with.
	RequiredTTL = 255
	// PriorityOwner is the priority of the address owner; it always wins.
	PriorityOwner = 255
	// PriorityStop is the priority of the advert a master sends when it stops.
	PriorityStop = 0
	// MaxAdvertInterval is the largest advert interval in centiseconds (12 bits).
	MaxAdvertInterval = 0x0fff
	// MaxAddresses is the largest address count an advert can carry.
	MaxAddresses = 255

	headerLen   = 8
	ipv4MinHdr  = 20
	addrLen     = 4
	ipv4Version = 4
)

// MulticastGroup is the IPv4 multicast address VRRP adverts are sent to.
var MulticastGroup = netip.AddrFrom4([4]byte{224, 0, 0, 18})

// Advert is one VRRPv3 advertisement.
type Advert struct {
	VRID     uint8
	Priority uint8
	// MaxAdvertInterval is in centiseconds, 1..4095.
	MaxAdvertInterval uint16
	// Addrs are the IPv4 virtual addresses the router protects.
	Addrs []netip.Addr
}

// ErrInvalidAdvert is wrapped by Marshal when the advert cannot be encoded.
var ErrInvalidAdvert = errors.New("invalid vrrp advert")

// Marshal encodes a as a VRRPv3 message (the IP payload) with its checksum
// computed over the IPv4 pseudo-header of src and dst (RFC 5798 §5.2.8).
func (a Advert) Marshal(src, dst netip.Addr) ([]byte, error) {
	if a.VRID == 0 {
		return nil, fmt.Errorf("%w: vrid 0", ErrInvalidAdvert)
	}
	if a.MaxAdvertInterval == 0 || a.MaxAdvertInterval > MaxAdvertInterval {
		return nil, fmt.Errorf("%w: advert interval %d cs out of 1..%d", ErrInvalidAdvert, a.MaxAdvertInterval, MaxAdvertInterval)
	}
	if len(a.Addrs) > MaxAddresses {
		return nil, fmt.Errorf("%w: %d addresses, at most %d", ErrInvalidAdvert, len(a.Addrs), MaxAddresses)
	}
	if !src.Is4() || !dst.Is4() {
		return nil, fmt.Errorf("%w: source %v and destination %v must be IPv4", ErrInvalidAdvert, src, dst)
	}
	b := make([]byte, headerLen+addrLen*len(a.Addrs))
	b[0] = Version<<4 | TypeAdvertisement
	b[1] = a.VRID
	b[2] = a.Priority
	b[3] = uint8(len(a.Addrs))
	binary.BigEndian.PutUint16(b[4:6], a.MaxAdvertInterval) // 4 reserved bits stay 0
	for i, ip := range a.Addrs {
		if !ip.Is4() {
			return nil, fmt.Errorf("%w: address %v is not IPv4", ErrInvalidAdvert, ip)
		}
		v := ip.As4()
		copy(b[headerLen+addrLen*i:], v[:])
	}
	binary.BigEndian.PutUint16(b[6:8], checksum(src, dst, b))
	return b, nil
}

// checksum is the internet checksum of the IPv4 pseudo-header followed by
// msg, whose checksum field is treated as zero.
func checksum(src, dst netip.Addr, msg []byte) uint16 {
	var sum uint32
	s, d := src.As4(), dst.As4()
	sum += uint32(s[0])<<8 | uint32(s[1])
	sum += uint32(s[2])<<8 | uint32(s[3])
	sum += uint32(d[0])<<8 | uint32(d[1])
	sum += uint32(d[2])<<8 | uint32(d[3])
	sum += IPProtocol
	sum += uint32(len(msg))
	for i := 0; i+1 < len(msg); i += 2 {
		if i == 6 {
			continue
		}
		sum += uint32(msg[i])<<8 | uint32(msg[i+1])
	}
	if len(msg)%2 == 1 {
		sum += uint32(msg[len(msg)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// DropReason says why a received packet was not accepted as an advert.
// Its String form is the value of the reason label of
// palisade_vrrp_adverts_dropped_total.
type DropReason uint8

// Drop reasons. ReasonNone means the packet was accepted.
const (
	ReasonNone DropReason = iota
	// ReasonShort: shorter than an IPv4 header plus a VRRP header, or the IP
	// header lengths are inconsistent with the packet.
	ReasonShort
	// ReasonNotIPv4: the IP version is not 4, or the protocol is not 112.
	ReasonNotIPv4
	// ReasonFragment: the packet is an IP fragment.
	ReasonFragment
	// ReasonTTL: TTL is not 255 (it crossed a router, RFC 5798 §7.1).
	ReasonTTL
	// ReasonVersion: the VRRP version is not 3.
	ReasonVersion
	// ReasonType: the VRRP type is not 1 (advertisement).
	ReasonType
	// ReasonChecksum: the checksum over pseudo-header and message is wrong.
	ReasonChecksum
	// ReasonAddressList: the message is shorter than its address count says.
	ReasonAddressList
	// ReasonInterval: the max advert interval is 0.
	ReasonInterval
	// ReasonVRID: the VRID is not the one of the receiving instance.
	ReasonVRID
	// ReasonNotPeer: with unicast peers configured, the source is not a peer.
	ReasonNotPeer
	numDropReasons
)

var dropReasonNames = [...]string{
	ReasonNone:        "none",
	ReasonShort:       "short",
	ReasonNotIPv4:     "not_ipv4",
	ReasonFragment:    "fragment",
	ReasonTTL:         "ttl",
	ReasonVersion:     "version",
	ReasonType:        "type",
	ReasonChecksum:    "checksum",
	ReasonAddressList: "address_list",
	ReasonInterval:    "interval",
	ReasonVRID:        "vrid",
	ReasonNotPeer:     "not_peer",
}

func (r DropReason) String() string {
	if int(r) < len(dropReasonNames) {
		return dropReasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Packet is a decoded IPv4 packet carrying a VRRP advert.
type Packet struct {
	Src, Dst netip.Addr
	TTL      uint8
	Advert   Advert
}

// DecodeIPv4 decodes a complete IPv4 packet as read from a raw socket of
// protocol 112 and validates everything that does not depend on the
// receiving instance: IP header sanity, TTL, VRRP version and type, checksum,
// length against the address count. On any failure it returns the reason and
// never panics, whatever the input.
func DecodeIPv4(b []byte) (Packet, DropReason) {
	if len(b) < ipv4MinHdr {
		return Packet{}, ReasonShort
	}
	if b[0]>>4 != ipv4Version {
		return Packet{}, ReasonNotIPv4
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if ihl < ipv4MinHdr || total < ihl || total > len(b) {
		return Packet{}, ReasonShort
	}
	if b[9] != IPProtocol {
		return Packet{}, ReasonNotIPv4
	}
	if frag := binary.BigEndian.Uint16(b[6:8]); frag&0x3fff != 0 { // MF or offset
		return Packet{}, ReasonFragment
	}
	p := Packet{
		TTL: b[8],
		Src: netip.AddrFrom4([4]byte(b[12:16])),
		Dst: netip.AddrFrom4([4]byte(b[16:20])),
	}
	if p.TTL != RequiredTTL {
		return p, ReasonTTL
	}
	a, r := DecodeAdvert(b[ihl:total], p.Src, p.Dst)
	p.Advert = a
	return p, r
}

// DecodeAdvert decodes and checks a VRRPv3 message (the IP payload) received
// from src for dst.
func DecodeAdvert(msg []byte, src, dst netip.Addr) (Advert, DropReason) {
	if len(msg) < headerLen {
		return Advert{}, ReasonShort
	}
	if msg[0]>>4 != Version {
		return Advert{}, ReasonVersion
	}
	if msg[0]&0x0f != TypeAdvertisement {
		return Advert{}, ReasonType
	}
	a := Advert{
		VRID:              msg[1],
		Priority:          msg[2],
		MaxAdvertInterval: binary.BigEndian.Uint16(msg[4:6]) & MaxAdvertInterval,
	}
	count := int(msg[3])
	if len(msg) < headerLen+addrLen*count {
		return a, ReasonAddressList
	}
	if !src.Is4() || !dst.Is4() || checksum(src, dst, msg) != binary.BigEndian.Uint16(msg[6:8]) {
		return a, ReasonChecksum
	}
	if a.MaxAdvertInterval == 0 {
		return a, ReasonInterval
	}
	if a.VRID == 0 {
		return a, ReasonVRID
	}
	if count > 0 {
		a.Addrs = make([]netip.Addr, count)
		for i := range count {
			a.Addrs[i] = netip.AddrFrom4([4]byte(msg[headerLen+addrLen*i:]))
		}
	}
	return a, ReasonNone
}
