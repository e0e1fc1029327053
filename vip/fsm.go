package vip

import (
	"fmt"
	"net/netip"
	"time"
)

// State is the VRRP state of an instance (RFC 5798 §6.4) plus FAULT, the
// state keepalived users know for "tracking says this node must not serve".
type State uint8

// States.
const (
	StateInit State = iota
	StateBackup
	StateMaster
	StateFault
)

// States lists every state, in the order of the State constants.
var States = [...]State{StateInit, StateBackup, StateMaster, StateFault}

func (s State) String() string {
	switch s {
	case StateInit:
		return "INIT"
	case StateBackup:
		return "BACKUP"
	case StateMaster:
		return "MASTER"
	case StateFault:
		return "FAULT"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// MarshalText makes State render as its name in JSON.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// TimerKind names one of the timers the state machine asks its driver to run.
type TimerKind uint8

// Timers.
const (
	// TimerAdvert is the Adver_Timer of a MASTER.
	TimerAdvert TimerKind = iota
	// TimerMasterDown is the Master_Down_Timer of a BACKUP.
	TimerMasterDown
	// TimerPreempt runs while a BACKUP waits out preempt_delay before
	// taking over from a lower-priority master.
	TimerPreempt
	// TimerGARPRefresh repeats the gratuitous ARP burst while MASTER.
	TimerGARPRefresh
	numTimers
)

func (k TimerKind) String() string {
	switch k {
	case TimerAdvert:
		return "advert"
	case TimerMasterDown:
		return "master_down"
	case TimerPreempt:
		return "preempt"
	case TimerGARPRefresh:
		return "garp_refresh"
	}
	return fmt.Sprintf("timer(%d)", uint8(k))
}

// FSMConfig is what the state machine needs to know of its instance.
type FSMConfig struct {
	// Priority is the configured priority, 1..255.
	Priority uint8
	// AdvertInterval is this router's Advertisement_Interval; a multiple of
	// 10ms in 10ms..40.95s.
	AdvertInterval time.Duration
	Preempt        bool
	// PreemptDelay: a BACKUP that sees a lower-priority master waits this long
	// (accepting the master meanwhile) before it takes over. 0: at once.
	PreemptDelay time.Duration
	// GARPRefresh: repeat the gratuitous ARP burst this often while MASTER;
	// 0 disables the refresh.
	GARPRefresh time.Duration
	// Primary is this router's primary IPv4 address on the interface; it
	// breaks priority ties (the higher address wins).
	Primary netip.Addr
}

// InputKind tells which field of an Input is meaningful.
type InputKind uint8

// Inputs.
const (
	// InputStartup leaves INIT.
	InputStartup InputKind = iota
	// InputAdvert: a valid advert for this VRID was received (Src, Priority, Interval).
	InputAdvert
	// InputTimer: Timer fired.
	InputTimer
	// InputTracking: effective priority or fault changed (Priority, Fault).
	InputTracking
	// InputShutdown: release everything and go to INIT.
	InputShutdown
	// InputResign: hand mastership to a backup now.
	InputResign
)

// Input is one event for the state machine.
type Input struct {
	Kind InputKind
	// InputAdvert: the sender's primary address.
	Src netip.Addr
	// InputAdvert: the advertised priority; InputTracking: the new
	// effective priority (clamped to 1..254 for non-owners by the caller).
	Priority uint8
	// InputAdvert: the advertised Max Advert Interval.
	Interval time.Duration
	// InputTimer: which timer fired.
	Timer TimerKind
	// InputTracking: true while tracking says the node must not serve.
	Fault bool
}

// ActionKind tells the driver what to do.
type ActionKind uint8

// Actions, executed by the driver in the order returned.
const (
	// ActSendAdvert: send an advert with Priority, to To if valid, else to
	// the group or the unicast peers.
	ActSendAdvert ActionKind = iota
	// ActAddVIPs: add the virtual addresses (idempotent).
	ActAddVIPs
	// ActRemoveVIPs: remove the virtual addresses (idempotent).
	ActRemoveVIPs
	// ActGARP: start a gratuitous ARP burst for the virtual addresses.
	ActGARP
	// ActSetTimer: (re)arm Timer to fire at At.
	ActSetTimer
	// ActStopTimer: disarm Timer.
	ActStopTimer
	// ActNotify: the state changed from From to State because of Cause.
	ActNotify
)

// Action is one thing the driver must do.
type Action struct {
	Kind     ActionKind
	Priority uint8
	To       netip.Addr
	Timer    TimerKind
	At       time.Time
	From     State
	State    State
	Cause    string
}

func (a Action) String() string {
	switch a.Kind {
	case ActSendAdvert:
		if a.To.IsValid() {
			return fmt.Sprintf("send_advert(%d to %v)", a.Priority, a.To)
		}
		return fmt.Sprintf("send_advert(%d)", a.Priority)
	case ActAddVIPs:
		return "add_vips"
	case ActRemoveVIPs:
		return "remove_vips"
	case ActGARP:
		return "garp"
	case ActSetTimer:
		return fmt.Sprintf("set_timer(%v@%s)", a.Timer, a.At.Format("05.000"))
	case ActStopTimer:
		return fmt.Sprintf("stop_timer(%v)", a.Timer)
	case ActNotify:
		return fmt.Sprintf("notify(%v->%v: %s)", a.From, a.State, a.Cause)
	}
	return fmt.Sprintf("action(%d)", a.Kind)
}

// Transition causes, as logged and passed in ActNotify.
const (
	CauseStartup       = "startup"
	CauseOwner         = "address owner (priority 255)"
	CauseMasterDown    = "master down timer expired"
	CausePriorityZero  = "master resigned (priority 0 advert)"
	CauseHigherPrio    = "higher priority advert seen"
	CausePreempt       = "preempting lower priority master"
	CauseTrackingFault = "tracking: fault"
	CauseTrackingOK    = "tracking: fault cleared"
	CauseShutdown      = "shutdown"
	CauseResign        = "resigned by request"
)

// lowerPrioGARPGap bounds how often a MASTER answers a lower-priority
// master's advert (split brain healing) with an advert and a GARP burst.
const lowerPrioGARPGap = time.Second

// Machine is the VRRP state machine of one instance. It is a value: Step
// returns the next machine and the actions to perform, and has no side
// effects, so every transition is tested without a network or a clock.
type Machine struct {
	cfg FSMConfig

	state State
	// effPrio is the effective priority (configured priority adjusted by tracking).
	effPrio uint8
	fault   bool

	// masterAdverInterval is Master_Adver_Interval (learned while BACKUP).
	masterAdverInterval time.Duration
	// master is the primary address of the current master, if known.
	master netip.Addr
	// resigned: a resigning MASTER does not preempt until it is MASTER again.
	resigned bool

	timers       [numTimers]time.Time
	lastSplitFix time.Time
}

// NewMachine returns a machine in INIT.
func NewMachine(cfg FSMConfig) Machine {
	return Machine{cfg: cfg, effPrio: cfg.Priority, masterAdverInterval: cfg.AdvertInterval}
}

// Reconfigure returns the machine with a new config, state and timers kept;
// the effective priority follows with the next InputTracking.
func (m Machine) Reconfigure(cfg FSMConfig) Machine {
	m.cfg = cfg
	return m
}

// State returns the current state.
func (m Machine) State() State { return m.state }

// EffectivePriority returns the priority the machine advertises and elects with.
func (m Machine) EffectivePriority() uint8 { return m.effPrio }

// Master returns the primary address of the master as far as known: this
// router's own while MASTER, the last accepted advert's source while BACKUP.
func (m Machine) Master() netip.Addr {
	if m.state == StateMaster {
		return m.cfg.Primary
	}
	if m.state == StateBackup {
		return m.master
	}
	return netip.Addr{}
}

// MasterAdverInterval returns the learned Master_Adver_Interval.
func (m Machine) MasterAdverInterval() time.Duration { return m.masterAdverInterval }

// Deadline returns when timer k is due, zero when it is not armed.
func (m Machine) Deadline(k TimerKind) time.Time { return m.timers[k] }

// Skew returns Skew_Time = ((256 - priority) * Master_Adver_Interval) / 256.
func (m Machine) Skew() time.Duration {
	return SkewTime(m.effPrio, m.masterAdverInterval)
}

// MasterDownInterval returns 3 * Master_Adver_Interval + Skew_Time.
func (m Machine) MasterDownInterval() time.Duration {
	return MasterDownInterval(m.effPrio, m.masterAdverInterval)
}

// SkewTime is RFC 5798's Skew_Time for priority and interval.
func SkewTime(priority uint8, interval time.Duration) time.Duration {
	return time.Duration(256-int64(priority)) * interval / 256
}

// MasterDownInterval is RFC 5798's Master_Down_Interval.
func MasterDownInterval(priority uint8, interval time.Duration) time.Duration {
	return 3*interval + SkewTime(priority, interval)
}

type stepper struct {
	m   Machine
	out []Action
}

func (s *stepper) do(a Action) { s.out = append(s.out, a) }

func (s *stepper) setTimer(k TimerKind, at time.Time) {
	s.m.timers[k] = at
	s.do(Action{Kind: ActSetTimer, Timer: k, At: at})
}

func (s *stepper) stopTimer(k TimerKind) {
	if s.m.timers[k].IsZero() {
		return
	}
	s.m.timers[k] = time.Time{}
	s.do(Action{Kind: ActStopTimer, Timer: k})
}

func (s *stepper) stopAll() {
	for k := range numTimers {
		s.stopTimer(k)
	}
}

func (s *stepper) notify(from State, cause string) {
	s.do(Action{Kind: ActNotify, From: from, State: s.m.state, Priority: s.m.effPrio, Cause: cause})
}

func (s *stepper) sendAdvert(now time.Time) {
	s.do(Action{Kind: ActSendAdvert, Priority: s.m.effPrio})
	s.setTimer(TimerAdvert, now.Add(s.m.cfg.AdvertInterval))
}

func (s *stepper) toMaster(now time.Time, cause string) {
	from := s.m.state
	s.stopAll()
	s.m.state = StateMaster
	s.m.resigned = false
	s.m.master = s.m.cfg.Primary
	s.m.masterAdverInterval = s.m.cfg.AdvertInterval
	// VIPs and GARP first: a master handing over (graceful stop, resign)
	// releases its VIPs when it hears this advert, so by then the VIPs are
	// in place here and the neighbours' ARP caches point here already.
	s.do(Action{Kind: ActAddVIPs})
	s.do(Action{Kind: ActGARP})
	s.sendAdvert(now)
	if s.m.cfg.GARPRefresh > 0 {
		s.setTimer(TimerGARPRefresh, now.Add(s.m.cfg.GARPRefresh))
	}
	s.notify(from, cause)
}

// toBackup enters BACKUP with the master-down timer running for interval
// (learned from src's advert, or our own when src is unknown).
func (s *stepper) toBackup(now time.Time, cause string, src netip.Addr, interval time.Duration) {
	from := s.m.state
	s.stopAll()
	s.m.state = StateBackup
	s.m.master = src
	s.m.masterAdverInterval = interval
	s.do(Action{Kind: ActRemoveVIPs})
	s.setTimer(TimerMasterDown, now.Add(s.m.MasterDownInterval()))
	s.notify(from, cause)
}

func (s *stepper) toFault(cause string) {
	from := s.m.state
	if from == StateMaster {
		s.do(Action{Kind: ActSendAdvert, Priority: PriorityStop})
	}
	s.stopAll()
	s.m.state = StateFault
	s.m.master = netip.Addr{}
	s.do(Action{Kind: ActRemoveVIPs})
	s.notify(from, cause)
}

// leaveInit is the RFC's Startup event, or leaving FAULT.
func (s *stepper) leaveInit(now time.Time, cause string) {
	switch {
	case s.m.fault:
		s.toFault(CauseTrackingFault)
	case s.m.effPrio == PriorityOwner:
		s.toMaster(now, CauseOwner)
	default:
		s.toBackup(now, cause, netip.Addr{}, s.m.cfg.AdvertInterval)
	}
}

// loses reports whether an advert (prio, src) beats this router.
func (m Machine) loses(prio uint8, src netip.Addr) bool {
	if prio != m.effPrio {
		return prio > m.effPrio
	}
	return src.Compare(m.cfg.Primary) > 0
}

// Step feeds one input to the machine at time now and returns the machine
// after it with the actions to perform, in order.
func (m Machine) Step(in Input, now time.Time) (Machine, []Action) {
	s := &stepper{m: m}
	switch in.Kind {
	case InputStartup:
		if s.m.state == StateInit {
			s.leaveInit(now, CauseStartup)
		}
	case InputShutdown:
		s.shutdown()
	case InputTracking:
		s.tracking(in, now)
	case InputResign:
		if s.m.state == StateMaster {
			s.do(Action{Kind: ActSendAdvert, Priority: PriorityStop})
			s.toBackup(now, CauseResign, netip.Addr{}, s.m.cfg.AdvertInterval)
			s.m.resigned = true
		}
	case InputTimer:
		s.timer(in.Timer, now)
	case InputAdvert:
		s.advert(in, now)
	}
	return s.m, s.out
}

func (s *stepper) shutdown() {
	if s.m.state == StateInit {
		return
	}
	from := s.m.state
	if from == StateMaster {
		s.do(Action{Kind: ActSendAdvert, Priority: PriorityStop})
	}
	s.stopAll()
	s.m.state = StateInit
	s.m.master = netip.Addr{}
	s.do(Action{Kind: ActRemoveVIPs})
	s.notify(from, CauseShutdown)
}

func (s *stepper) tracking(in Input, now time.Time) {
	oldPrio := s.m.effPrio
	s.m.effPrio = in.Priority
	s.m.fault = in.Fault
	switch s.m.state {
	case StateInit:
	case StateFault:
		if !in.Fault {
			s.leaveInit(now, CauseTrackingOK)
		}
	case StateBackup, StateMaster:
		if in.Fault {
			s.toFault(CauseTrackingFault)
			return
		}
		if s.m.state == StateMaster && oldPrio != s.m.effPrio {
			// Tell the backups at once: a higher-priority backup preempts now
			// instead of at the next advert.
			s.sendAdvert(now)
		}
	}
}

func (s *stepper) timer(k TimerKind, now time.Time) {
	due := s.m.timers[k]
	if due.IsZero() || now.Before(due) {
		return // stale or early fire
	}
	s.m.timers[k] = time.Time{}
	switch {
	case s.m.state == StateMaster && k == TimerAdvert:
		s.sendAdvert(now)
	case s.m.state == StateMaster && k == TimerGARPRefresh:
		s.do(Action{Kind: ActGARP})
		s.setTimer(TimerGARPRefresh, now.Add(s.m.cfg.GARPRefresh))
	case s.m.state == StateBackup && k == TimerMasterDown:
		s.toMaster(now, CauseMasterDown)
	case s.m.state == StateBackup && k == TimerPreempt:
		s.toMaster(now, CausePreempt)
	}
}

func (s *stepper) advert(in Input, now time.Time) {
	switch s.m.state {
	case StateBackup:
		s.backupAdvert(in, now)
	case StateMaster:
		s.masterAdvert(in, now)
	}
}

// backupAdvert is RFC 5798 §6.4.2 "If an ADVERTISEMENT is received", with
// preempt_delay and an immediate takeover from a lower-priority master.
func (s *stepper) backupAdvert(in Input, now time.Time) {
	m := &s.m
	if in.Priority == PriorityStop {
		m.master = netip.Addr{}
		s.stopTimer(TimerPreempt)
		s.setTimer(TimerMasterDown, now.Add(m.Skew()))
		return
	}
	// Equal priority never preempts a running master (RFC 5798 §6.4.2);
	// the address owner always does.
	preempt := in.Priority < m.effPrio && !m.resigned && (m.cfg.Preempt || m.effPrio == PriorityOwner)
	if !preempt {
		s.stopTimer(TimerPreempt)
		m.master = in.Src
		m.masterAdverInterval = in.Interval
		s.setTimer(TimerMasterDown, now.Add(m.MasterDownInterval()))
		return
	}
	if m.cfg.PreemptDelay <= 0 {
		s.toMaster(now, CausePreempt)
		return
	}
	// Accept the lower-priority master until the preempt delay is over.
	m.master = in.Src
	m.masterAdverInterval = in.Interval
	s.setTimer(TimerMasterDown, now.Add(m.MasterDownInterval()))
	if m.timers[TimerPreempt].IsZero() {
		s.setTimer(TimerPreempt, now.Add(m.cfg.PreemptDelay))
	}
}

// masterAdvert is RFC 5798 §6.4.3 "If an ADVERTISEMENT is received".
func (s *stepper) masterAdvert(in Input, now time.Time) {
	m := &s.m
	switch {
	case in.Priority == PriorityStop:
		s.sendAdvert(now)
	case m.loses(in.Priority, in.Src):
		// Tell the winner, and only it, that we held the VIPs too (a healed
		// split brain): it answers with a GARP burst so the neighbours' ARP
		// caches, which may point to us, follow it.
		s.do(Action{Kind: ActSendAdvert, Priority: m.effPrio, To: in.Src})
		s.toBackup(now, CauseHigherPrio, in.Src, in.Interval)
	default:
		// Another master with lower priority: a healed split brain. Assert
		// at once and re-announce the VIPs so neighbours' ARP caches follow.
		if m.lastSplitFix.IsZero() || now.Sub(m.lastSplitFix) >= lowerPrioGARPGap {
			m.lastSplitFix = now
			s.sendAdvert(now)
			s.do(Action{Kind: ActGARP})
		}
	}
}
