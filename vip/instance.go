package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Clock is the time source of an Instance; tests may inject their own.
type Clock interface {
	Now() time.Time
	// NewTimer returns a stopped-or-running timer like time.NewTimer.
	NewTimer(d time.Duration) Timer
}

// Timer is the part of *time.Timer an Instance uses.
type Timer interface {
	C() <-chan time.Time
	// Reset re-arms the timer (Go 1.23+ semantics: no stale value is delivered).
	Reset(d time.Duration)
	Stop()
}

// SystemClock is the real Clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// NewTimer wraps time.NewTimer.
func (SystemClock) NewTimer(d time.Duration) Timer { return sysTimer{time.NewTimer(d)} }

type sysTimer struct{ t *time.Timer }

func (t sysTimer) C() <-chan time.Time   { return t.t.C }
func (t sysTimer) Reset(d time.Duration) { t.t.Reset(d) }
func (t sysTimer) Stop()                 { t.t.Stop() }

// NetConfig is what a Network needs to open the I/O of one instance.
type NetConfig struct {
	Interface    string
	VRID         uint8
	UnicastPeers []netip.Addr
	// VIPs are excluded when choosing the primary address.
	VIPs []netip.Prefix
	// WatchLinks are the interfaces whose link state is reported (the
	// instance's own interface and the tracked ones).
	WatchLinks []string
}

// EventKind tells which fields of an Event are meaningful.
type EventKind uint8

// Events a Conn reports.
const (
	// EventPacket: Packet holds a whole received IPv4 packet of protocol 112.
	EventPacket EventKind = iota
	// EventLink: Link's carrier went Up or down.
	EventLink
	// EventAddrRemoved: Addr was removed from the instance's interface.
	EventAddrRemoved
)

// Event is something a Conn observed.
type Event struct {
	Kind   EventKind
	Packet []byte
	Link   string
	Up     bool
	Addr   netip.Prefix
}

// Network opens the per-instance I/O; the real one is LinuxNetwork.
type Network interface {
	Open(cfg NetConfig) (Conn, error)
}

// Conn is the I/O of one instance. Open starts nothing; Run does.
type Conn interface {
	// Primary is this router's primary IPv4 address on the interface.
	Primary() netip.Addr
	// Run reports events until ctx is done, then returns. It reports the
	// current state of every watched link first.
	Run(ctx context.Context, events chan<- Event) error
	// SendAdvert sends a with TTL 255 to `to` if it is valid, else to the
	// multicast group or to every unicast peer.
	SendAdvert(a Advert, to netip.Addr) error
	// AddVIPs adds the addresses; adding one already present is no error.
	AddVIPs(vips []netip.Prefix) error
	// RemoveVIPs removes the addresses; removing an absent one is no error.
	RemoveVIPs(vips []netip.Prefix) error
	// GARP sends one gratuitous ARP request and one reply for each address.
	GARP(vips []netip.Addr) error
	Close() error
}

// InstanceStatus is a snapshot of an instance for the admin API.
type InstanceStatus struct {
	Name              string     `json:"name"`
	Interface         string     `json:"interface"`
	VirtualRouterID   uint8      `json:"virtual_router_id"`
	State             State      `json:"state"`
	Priority          uint8      `json:"priority"`
	EffectivePriority uint8      `json:"effective_priority"`
	Master            netip.Addr `json:"master,omitzero"`
	Since             time.Time  `json:"since"`
	Cause             string     `json:"cause,omitempty"`
	VIPs              []string   `json:"vips"`
}

// ErrNotMaster is returned by Resign when the instance is not MASTER.
var ErrNotMaster = errors.New("instance is not master")

var errConnFailed = errors.New("vrrp network i/o failed")

// Options are the collaborators of an Instance. Zero values take defaults:
// LinuxNetwork, SystemClock, slog.Default, metrics not exported.
type Options struct {
	Network Network
	Clock   Clock
	Logger  *slog.Logger
	Metrics *Metrics
	// OnStateChange, if set, is called from the instance's goroutine after
	// every state change; it must return quickly.
	OnStateChange func(InstanceStatus)
}

// Instance runs one VRRP instance.
type Instance struct {
	cfg     InstanceConfig
	net     Network
	clock   Clock
	log     *slog.Logger
	metrics *Metrics
	onState func(InstanceStatus)

	mu       sync.Mutex
	status   InstanceStatus
	frontend map[string]bool
	running  bool
	siblings []uint8

	poke    chan struct{}
	resign  chan chan error
	updates chan updateReq
	// loopDone is non-nil while the run loop runs, closed when it ends.
	loopDone chan struct{}
}

type updateReq struct {
	cfg   InstanceConfig
	reply chan error
}

// NewInstance validates cfg and returns an instance in INIT. It starts nothing.
func NewInstance(cfg InstanceConfig, o Options) (*Instance, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if o.Network == nil {
		o.Network = LinuxNetwork{}
	}
	if o.Clock == nil {
		o.Clock = SystemClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	vips := make([]string, len(cfg.VIPs))
	for i, p := range cfg.VIPs {
		vips[i] = p.String()
	}
	return &Instance{
		cfg: cfg, net: o.Network, clock: o.Clock, metrics: o.Metrics, onState: o.OnStateChange,
		log: o.Logger.With("instance", cfg.Name, "interface", cfg.Interface, "vrid", cfg.VirtualRouterID),
		status: InstanceStatus{
			Name: cfg.Name, Interface: cfg.Interface, VirtualRouterID: cfg.VirtualRouterID,
			State: StateInit, Priority: cfg.Priority, EffectivePriority: cfg.Priority, VIPs: vips,
		},
		frontend: map[string]bool{},
		poke:     make(chan struct{}, 1),
		resign:   make(chan chan error),
		updates:  make(chan updateReq),
	}, nil
}

// Config returns the instance's config with defaults applied.
func (i *Instance) Config() InstanceConfig {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.cfg
}

// ErrNeedsRestart is returned by Update when the change cannot be applied
// to a running instance.
var ErrNeedsRestart = errors.New("vrrp instance change needs a restart")

// errNotRunning: Update found no running instance to update.
var errNotRunning = errors.New("vrrp instance is not running")

// softChange reports whether b differs from a only in what a running
// instance can take over without releasing its VIPs: priority (not to or
// from the owner's 255), preempt, preempt_delay, frontend tracking, weights
// of tracked interfaces, garp and notify.
func softChange(a, b InstanceConfig) bool {
	a, b = a.WithDefaults(), b.WithDefaults()
	links := func(c InstanceConfig) []string {
		var l []string
		for _, t := range c.Track {
			if t.Interface != "" && !slices.Contains(l, t.Interface) {
				l = append(l, t.Interface)
			}
		}
		slices.Sort(l)
		return l
	}
	return a.Name == b.Name && a.Interface == b.Interface && a.VirtualRouterID == b.VirtualRouterID &&
		a.AdvertInterval == b.AdvertInterval && slices.Equal(a.VIPs, b.VIPs) &&
		slices.Equal(a.UnicastPeers, b.UnicastPeers) && slices.Equal(links(a), links(b)) &&
		(a.Priority == PriorityOwner) == (b.Priority == PriorityOwner)
}

// Update applies cfg to the running instance in place, keeping its state
// and VIPs: a MASTER whose effective priority changes advertises it at once.
// It returns ErrNeedsRestart when cfg changes more than softChange allows.
func (i *Instance) Update(ctx context.Context, cfg InstanceConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg = cfg.WithDefaults()
	if !softChange(i.Config(), cfg) {
		return ErrNeedsRestart
	}
	i.mu.Lock()
	done := i.loopDone
	i.mu.Unlock()
	if done == nil {
		return errNotRunning
	}
	req := updateReq{cfg: cfg, reply: make(chan error, 1)}
	select {
	case i.updates <- req:
	case <-done:
		return errNotRunning
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Status returns a snapshot of the instance.
func (i *Instance) Status() InstanceStatus {
	i.mu.Lock()
	defer i.mu.Unlock()
	s := i.status
	s.VIPs = slices.Clone(s.VIPs)
	return s
}

// SetFrontendHealth tells the instance whether a frontend can serve (it has
// an available server and its listeners are up). A frontend never reported
// counts as healthy. Safe to call at any time, from any goroutine.
func (i *Instance) SetFrontendHealth(name string, ok bool) {
	i.mu.Lock()
	old, known := i.frontend[name]
	i.frontend[name] = ok
	i.mu.Unlock()
	if known && old == ok {
		return
	}
	select {
	case i.poke <- struct{}{}:
	default:
	}
}

// SetSiblingVRIDs names the VRIDs of the node's other instances on the same
// interface: their adverts are ignored instead of counted as VRID drops.
// The Manager maintains it.
func (i *Instance) SetSiblingVRIDs(vrids []uint8) {
	i.mu.Lock()
	i.siblings = slices.Clone(vrids)
	i.mu.Unlock()
}

func (i *Instance) isSibling(vrid uint8) bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return slices.Contains(i.siblings, vrid)
}

// Resign makes a MASTER send a priority-0 advert and become BACKUP once a
// successor announced itself (VIPs are kept until then, at most about one
// advert interval); it does not preempt the new master until it is MASTER
// again. It returns ErrNotMaster in any other state.
func (i *Instance) Resign(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case i.resign <- reply:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// tracking computes the effective priority and fault from the tracked
// objects' state.
func (i *Instance) tracking(links map[string]bool) (uint8, bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if up, ok := links[i.cfg.Interface]; ok && !up {
		return i.cfg.Priority, true
	}
	prio, fault, failed := int(i.cfg.Priority), false, false
	for _, t := range i.cfg.Track {
		down := false
		if t.Frontend != "" {
			ok, known := i.frontend[t.Frontend]
			down = known && !ok
		} else if up, known := links[t.Interface]; known && !up {
			down = true
		}
		if !down {
			continue
		}
		failed = true
		if t.Weight == 0 {
			fault = true
		}
		prio += t.Weight
	}
	if failed {
		prio = min(max(prio, 1), PriorityOwner-1)
	}
	return uint8(prio), fault
}

// Run drives the instance until ctx is done, then releases the VIPs (with a
// priority-0 advert when MASTER) and returns. If the interface cannot be
// opened, or its I/O fails, the instance reports FAULT and retries every second.
func (i *Instance) Run(ctx context.Context) error {
	i.mu.Lock()
	if i.running {
		i.mu.Unlock()
		return errors.New("vrrp instance already running")
	}
	i.running = true
	i.mu.Unlock()
	defer func() {
		i.mu.Lock()
		i.running = false
		i.mu.Unlock()
	}()
	for {
		conn, err := i.net.Open(NetConfig{
			Interface: i.cfg.Interface, VRID: i.cfg.VirtualRouterID, UnicastPeers: i.cfg.UnicastPeers,
			VIPs: i.cfg.VIPs, WatchLinks: i.watchLinks(),
		})
		if err == nil {
			err = i.run(ctx, conn)
			if !errors.Is(err, errConnFailed) {
				return err
			}
			i.log.Error("vrrp: network i/o failed, reopening", "err", err)
			i.setState(StateFault, 0, netip.Addr{}, err.Error())
		} else {
			i.log.Error("vrrp: cannot open interface, staying in FAULT", "err", err)
			i.setState(StateFault, 0, netip.Addr{}, "interface unavailable: "+err.Error())
		}
		t := i.clock.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			i.setState(StateInit, 0, netip.Addr{}, CauseShutdown)
			return nil
		case <-t.C():
		}
	}
}

func (i *Instance) watchLinks() []string {
	l := []string{i.cfg.Interface}
	for _, t := range i.cfg.Track {
		if t.Interface != "" && !slices.Contains(l, t.Interface) {
			l = append(l, t.Interface)
		}
	}
	return l
}

func (i *Instance) setState(s State, eff uint8, master netip.Addr, cause string) {
	i.mu.Lock()
	changed := i.status.State != s
	i.status.State = s
	if eff != 0 {
		i.status.EffectivePriority = eff
	}
	i.status.Master = master
	if changed {
		i.status.Since = i.clock.Now()
		i.status.Cause = cause
	}
	st := i.status
	i.mu.Unlock()
	i.metrics.setState(i.cfg.Name, s)
	if changed && i.onState != nil {
		st.VIPs = slices.Clone(st.VIPs)
		i.onState(st)
	}
}

// runner is the state of one Run.
type runner struct {
	*Instance
	conn    Conn
	m       Machine
	timer   Timer
	links   map[string]bool
	garpAt  time.Time
	garpN   int
	notifyQ chan notifyReq
	// stopSent: the priority-0 advert of a graceful stop went out already.
	stopSent bool
}

// handover is the first half of a graceful stop or a resignation of a
// MASTER: it sends the priority-0 advert but keeps the VIPs until a successor announces itself
// (or the slowest possible backup, priority 1, would have: Skew_Time(1) plus
// a margin), so that clients never find the VIP unowned in between.
func (r *runner) handover(events <-chan Event) {
	if r.m.State() != StateMaster {
		return
	}
	r.do(Action{Kind: ActSendAdvert, Priority: PriorityStop})
	r.stopSent = true
	wait := min(SkewTime(1, r.cfg.AdvertInterval)+r.cfg.AdvertInterval/4, 2*time.Second)
	t := r.clock.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-t.C():
			return
		case ev := <-events:
			if ev.Kind == EventLink {
				r.links[ev.Link] = ev.Up // acted upon after the handover
			}
			if ev.Kind != EventPacket {
				continue
			}
			p, reason := DecodeIPv4(ev.Packet)
			if reason == ReasonNone && p.Src != r.conn.Primary() && p.Advert.VRID == r.cfg.VirtualRouterID &&
				p.Advert.Priority != PriorityStop &&
				(len(r.cfg.UnicastPeers) == 0 || slices.Contains(r.cfg.UnicastPeers, p.Src)) {
				r.log.Info("vrrp: successor took over, releasing VIPs", "master", p.Src)
				return
			}
		}
	}
}

func (i *Instance) run(ctx context.Context, conn Conn) error {
	r := &runner{
		Instance: i, conn: conn, links: map[string]bool{},
		notifyQ: make(chan notifyReq, 16),
	}
	defer conn.Close()
	r.m = NewMachine(r.fsmConfig())
	i.log.Info("vrrp: instance starting", "primary", conn.Primary(), "priority", i.cfg.Priority,
		"advert_interval", i.cfg.AdvertInterval, "preempt", i.cfg.Preempt, "vips", i.status.VIPs)

	ioCtx, cancelIO := context.WithCancel(context.WithoutCancel(ctx))
	events := make(chan Event, 256)
	var wg sync.WaitGroup
	wg.Add(2)
	ioFailed := make(chan error, 1)
	go func() {
		defer wg.Done()
		err := conn.Run(ioCtx, events)
		if ioCtx.Err() == nil {
			if err == nil {
				err = errors.New("i/o stopped")
			}
			ioFailed <- err
		}
	}()
	go func() {
		defer wg.Done()
		r.notifier(ioCtx)
	}()
	defer func() {
		cancelIO()
		close(r.notifyQ)
		wg.Wait()
	}()

	r.timer = i.clock.NewTimer(time.Hour)
	defer r.timer.Stop()

	loopDone := make(chan struct{})
	i.mu.Lock()
	i.loopDone = loopDone
	i.mu.Unlock()
	defer func() {
		i.mu.Lock()
		i.loopDone = nil
		i.mu.Unlock()
		close(loopDone)
	}()

	// Let the Conn report the initial link states before leaving INIT, so an
	// instance whose interface is down starts in FAULT.
	r.drainEvents(events)
	prio, fault := i.tracking(r.links)
	r.step(Input{Kind: InputTracking, Priority: prio, Fault: fault})
	r.step(Input{Kind: InputStartup})

	for {
		r.armTimer()
		select {
		case <-ctx.Done():
			r.handover(events)
			r.step(Input{Kind: InputShutdown})
			return nil
		case ev := <-events:
			r.event(ev)
		case err := <-ioFailed:
			// Deaf, an instance would soon claim mastership blindly: release
			// everything and start over.
			r.step(Input{Kind: InputShutdown})
			return fmt.Errorf("%w: %w", errConnFailed, err)
		case <-r.timer.C():
			r.timersDue()
		case <-i.poke:
			r.retrack()
		case req := <-i.updates:
			r.reconfigure(req.cfg)
			req.reply <- nil
		case reply := <-i.resign:
			if r.m.State() != StateMaster {
				reply <- fmt.Errorf("resign %q: %w (state %v)", i.cfg.Name, ErrNotMaster, r.m.State())
				continue
			}
			r.handover(events)
			r.step(Input{Kind: InputResign})
			r.stopSent = false
			r.retrack()
			reply <- nil
		}
	}
}

// drainEvents waits briefly (real time: this is I/O start-up, not protocol
// timing) for the Conn to report the watched links' initial state.
func (r *runner) drainEvents(events <-chan Event) {
	t := time.NewTimer(100 * time.Millisecond)
	defer t.Stop()
	for len(r.links) < len(r.watchLinks()) {
		select {
		case ev := <-events:
			r.event(ev)
		case <-t.C:
			return
		}
	}
}

// reconfigure takes over a soft change (see softChange) in place.
func (r *runner) reconfigure(cfg InstanceConfig) {
	r.mu.Lock()
	r.Instance.cfg = cfg
	r.status.Priority = cfg.Priority
	r.mu.Unlock()
	r.m = r.m.Reconfigure(r.fsmConfig())
	r.log.Info("vrrp: configuration updated in place", "priority", cfg.Priority, "preempt", cfg.Preempt,
		"preempt_delay", cfg.PreemptDelay, "state", r.m.State().String())
	r.retrack()
}

func (r *runner) fsmConfig() FSMConfig {
	return FSMConfig{
		Priority: r.cfg.Priority, AdvertInterval: r.cfg.AdvertInterval, Preempt: r.cfg.Preempt,
		PreemptDelay: r.cfg.PreemptDelay, GARPRefresh: max(r.cfg.GARP.Refresh, 0), Primary: r.conn.Primary(),
	}
}

func (r *runner) retrack() {
	prio, fault := r.tracking(r.links)
	if prio == r.m.EffectivePriority() && fault == (r.m.State() == StateFault) {
		return
	}
	r.log.Info("vrrp: tracking changed", "effective_priority", prio, "fault", fault)
	r.step(Input{Kind: InputTracking, Priority: prio, Fault: fault})
}

func (r *runner) event(ev Event) {
	switch ev.Kind {
	case EventLink:
		if old, ok := r.links[ev.Link]; ok && old == ev.Up {
			return
		}
		r.links[ev.Link] = ev.Up
		r.log.Info("vrrp: link state", "link", ev.Link, "up", ev.Up)
		if r.m.State() != StateInit {
			r.retrack()
		}
	case EventAddrRemoved:
		if r.m.State() != StateMaster || !slices.Contains(r.cfg.VIPs, ev.Addr) {
			return
		}
		r.log.Warn("vrrp: VIP removed by someone else while MASTER, putting it back", "vip", ev.Addr)
		if err := r.conn.AddVIPs([]netip.Prefix{ev.Addr}); err != nil {
			r.log.Error("vrrp: re-adding VIP", "vip", ev.Addr, "err", err)
		}
		r.startGARP()
	case EventPacket:
		r.packet(ev.Packet)
	}
}

func (r *runner) packet(b []byte) {
	p, reason := DecodeIPv4(b)
	if reason == ReasonNone && p.Src == r.conn.Primary() {
		return // our own advert looped back
	}
	if reason == ReasonNone && p.Advert.VRID != r.cfg.VirtualRouterID {
		if r.isSibling(p.Advert.VRID) {
			return // another local instance's router on this interface
		}
		reason = ReasonVRID
	}
	if reason == ReasonNone && len(r.cfg.UnicastPeers) > 0 && !slices.Contains(r.cfg.UnicastPeers, p.Src) {
		reason = ReasonNotPeer
	}
	if reason != ReasonNone {
		r.metrics.dropped(r.cfg.Name, reason)
		r.log.Debug("vrrp: advert dropped", "reason", reason.String(), "src", p.Src)
		return
	}
	r.metrics.received(r.cfg.Name)
	r.step(Input{
		Kind: InputAdvert, Src: p.Src, Priority: p.Advert.Priority,
		Interval: time.Duration(p.Advert.MaxAdvertInterval) * 10 * time.Millisecond,
	})
}

func (r *runner) timersDue() {
	now := r.clock.Now()
	for k := range numTimers {
		if d := r.m.Deadline(k); !d.IsZero() && !now.Before(d) {
			r.step(Input{Kind: InputTimer, Timer: k})
		}
	}
	if !r.garpAt.IsZero() && !now.Before(r.garpAt) {
		r.garpRound()
	}
}

// armTimer points the single clock timer at the earliest pending deadline.
func (r *runner) armTimer() {
	var next time.Time
	for k := range numTimers {
		if d := r.m.Deadline(k); !d.IsZero() && (next.IsZero() || d.Before(next)) {
			next = d
		}
	}
	if !r.garpAt.IsZero() && (next.IsZero() || r.garpAt.Before(next)) {
		next = r.garpAt
	}
	if next.IsZero() {
		r.timer.Stop()
		return
	}
	r.timer.Reset(max(next.Sub(r.clock.Now()), 0))
}

func (r *runner) step(in Input) {
	var acts []Action
	r.m, acts = r.m.Step(in, r.clock.Now())
	for _, a := range acts {
		r.do(a)
	}
	r.metrics.setPriority(r.cfg.Name, r.m.EffectivePriority())
	r.mu.Lock()
	r.status.EffectivePriority = r.m.EffectivePriority()
	r.status.Master = r.m.Master()
	r.mu.Unlock()
}

func (r *runner) do(a Action) {
	switch a.Kind {
	case ActSendAdvert:
		if a.Priority == PriorityStop && r.stopSent {
			return
		}
		adv := Advert{
			VRID: r.cfg.VirtualRouterID, Priority: a.Priority,
			MaxAdvertInterval: centiseconds(r.cfg.AdvertInterval), Addrs: r.cfg.vipAddrs(),
		}
		if err := r.conn.SendAdvert(adv, a.To); err != nil {
			r.log.Warn("vrrp: sending advert", "priority", a.Priority, "err", err)
		}
	case ActAddVIPs:
		if err := r.conn.AddVIPs(r.cfg.VIPs); err != nil {
			r.log.Error("vrrp: adding VIPs", "err", err)
		}
	case ActRemoveVIPs:
		r.garpAt, r.garpN = time.Time{}, 0
		if err := r.conn.RemoveVIPs(r.cfg.VIPs); err != nil {
			r.log.Error("vrrp: removing VIPs", "err", err)
		}
	case ActGARP:
		r.startGARP()
	case ActSetTimer, ActStopTimer:
		// Deadlines live in the machine; armTimer reads them.
	case ActNotify:
		r.transition(a)
	}
}

func (r *runner) startGARP() {
	if r.cfg.GARP.Repeat <= 0 {
		return
	}
	r.garpN = r.cfg.GARP.Repeat
	r.garpRound()
}

func (r *runner) garpRound() {
	r.garpAt = time.Time{}
	if r.garpN <= 0 || r.m.State() != StateMaster {
		r.garpN = 0
		return
	}
	r.garpN--
	if err := r.conn.GARP(r.cfg.vipAddrs()); err != nil {
		r.log.Warn("vrrp: gratuitous ARP", "err", err)
	}
	if r.garpN > 0 {
		r.garpAt = r.clock.Now().Add(r.cfg.GARP.Interval)
	}
}

func (r *runner) transition(a Action) {
	r.metrics.transition(r.cfg.Name)
	r.setState(a.State, a.Priority, r.m.Master(), a.Cause)
	lvl := slog.LevelInfo
	if a.State == StateFault {
		lvl = slog.LevelWarn
	}
	r.log.Log(context.Background(), lvl, "vrrp: state change", "from", a.From.String(), "to", a.State.String(),
		"cause", a.Cause, "effective_priority", a.Priority, "master", r.m.Master())
	if r.cfg.Notify == "" {
		return
	}
	state := a.State.String()
	if a.State == StateInit {
		state = "STOP" // what keepalived users' notify scripts expect
	}
	args := []string{r.cfg.Name, state, strconv.Itoa(int(a.Priority))}
	select {
	case r.notifyQ <- notifyReq{script: r.cfg.Notify, timeout: r.cfg.NotifyTimeout, args: args}:
	default:
		r.log.Warn("vrrp: notify queue full, skipping notify", "state", a.State.String())
	}
}

type notifyReq struct {
	script  string
	timeout time.Duration
	args    []string
}

// notifier runs the notify script for queued transitions, one at a time and
// in order, each bounded by NotifyTimeout. It returns when the queue closes;
// a script still running then is killed when ctx is done.
func (r *runner) notifier(ctx context.Context) {
	for n := range r.notifyQ {
		args := n.args
		runCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.timeout)
		cmd := exec.CommandContext(runCtx, n.script, args...)
		cmd.WaitDelay = time.Second
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			r.log.Warn("vrrp: notify script failed", "script", n.script, "args", args, "err", err, "output", string(out))
		}
	}
}
