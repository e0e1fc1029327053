package vip

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	t0      = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	me      = netip.MustParseAddr("198.18.0.10")
	peerLo  = netip.MustParseAddr("198.18.0.5")
	peerHi  = netip.MustParseAddr("198.18.0.20")
	advert1 = 100 * time.Millisecond
)

func cfg(prio uint8) FSMConfig {
	return FSMConfig{Priority: prio, AdvertInterval: advert1, Preempt: true, GARPRefresh: time.Minute, Primary: me}
}

// kinds renders actions compactly for comparisons.
func kinds(acts []Action) string {
	var s []string
	for _, a := range acts {
		switch a.Kind {
		case ActSendAdvert:
			if a.To.IsValid() {
				s = append(s, "advert:"+itoa(int(a.Priority))+">"+a.To.String())
				continue
			}
			s = append(s, "advert:"+itoa(int(a.Priority)))
		case ActSetTimer:
			s = append(s, "set:"+a.Timer.String())
		case ActStopTimer:
			s = append(s, "stop:"+a.Timer.String())
		case ActNotify:
			s = append(s, "notify:"+a.State.String())
		default:
			s = append(s, a.String())
		}
	}
	return strings.Join(s, " ")
}

func itoa(i int) string { return strconv.Itoa(i) }

func step(t *testing.T, m Machine, in Input, now time.Time, wantState State, wantActs string) Machine {
	t.Helper()
	m2, acts := m.Step(in, now)
	if m2.State() != wantState {
		t.Fatalf("state %v, want %v (actions %s)", m2.State(), wantState, kinds(acts))
	}
	if got := kinds(acts); got != wantActs {
		t.Fatalf("actions\n got %s\nwant %s", got, wantActs)
	}
	return m2
}

func adv(src netip.Addr, prio uint8, iv time.Duration) Input {
	return Input{Kind: InputAdvert, Src: src, Priority: prio, Interval: iv}
}

func timer(k TimerKind) Input { return Input{Kind: InputTimer, Timer: k} }

const (
	toBackupFromInit = "remove_vips set:master_down notify:BACKUP"
	becomeMaster     = "add_vips garp advert:%d set:advert set:garp_refresh notify:MASTER"
)

func masterActs(prio int, stops string) string {
	s := strings.Replace(becomeMaster, "%d", itoa(prio), 1)
	if stops != "" {
		return stops + " " + s
	}
	return s
}

func backup(t *testing.T, prio uint8) Machine {
	t.Helper()
	return step(t, NewMachine(cfg(prio)), Input{Kind: InputStartup}, t0, StateBackup, toBackupFromInit)
}

func master(t *testing.T, prio uint8) Machine {
	t.Helper()
	m := backup(t, prio)
	now := m.Deadline(TimerMasterDown)
	return step(t, m, timer(TimerMasterDown), now, StateMaster, masterActs(int(prio), ""))
}

func TestSkewAndMasterDown(t *testing.T) {
	cases := []struct {
		prio       uint8
		iv         time.Duration
		skew, down time.Duration
	}{
		{100, time.Second, 609375 * time.Microsecond, 3609375 * time.Microsecond},
		{255, time.Second, 3906250, 3*time.Second + 3906250},
		{1, 100 * time.Millisecond, 99609375, 399609375},
		{150, 100 * time.Millisecond, 41406250, 341406250},
	}
	for _, c := range cases {
		if got := SkewTime(c.prio, c.iv); got != c.skew {
			t.Errorf("skew(%d,%v)=%v want %v", c.prio, c.iv, got, c.skew)
		}
		if got := MasterDownInterval(c.prio, c.iv); got != c.down {
			t.Errorf("down(%d,%v)=%v want %v", c.prio, c.iv, got, c.down)
		}
	}
}

func TestStartupToBackup(t *testing.T) {
	m := backup(t, 100)
	if want := t0.Add(MasterDownInterval(100, advert1)); !m.Deadline(TimerMasterDown).Equal(want) {
		t.Fatalf("master down at %v want %v", m.Deadline(TimerMasterDown), want)
	}
	// A second startup is ignored.
	step(t, m, Input{Kind: InputStartup}, t0, StateBackup, "")
}

func TestStartupOwnerGoesMaster(t *testing.T) {
	step(t, NewMachine(cfg(255)), Input{Kind: InputStartup}, t0, StateMaster, masterActs(255, ""))
}

func TestStartupWithFault(t *testing.T) {
	m, _ := NewMachine(cfg(100)).Step(Input{Kind: InputTracking, Priority: 100, Fault: true}, t0)
	if m.State() != StateInit {
		t.Fatalf("tracking in INIT changed state to %v", m.State())
	}
	step(t, m, Input{Kind: InputStartup}, t0, StateFault, "remove_vips notify:FAULT")
}

func TestBackupMasterDownTimeout(t *testing.T) {
	m := backup(t, 100)
	due := m.Deadline(TimerMasterDown)
	// Early or stale fire is ignored.
	step(t, m, timer(TimerMasterDown), due.Add(-time.Millisecond), StateBackup, "")
	step(t, m, timer(TimerAdvert), due, StateBackup, "")
	m = step(t, m, timer(TimerMasterDown), due, StateMaster, masterActs(100, ""))
	if m.Master() != me || !m.Deadline(TimerAdvert).Equal(due.Add(advert1)) {
		t.Fatalf("master %v advert due %v", m.Master(), m.Deadline(TimerAdvert))
	}
}

func TestBackupAcceptsHigherOrEqualAndLearnsInterval(t *testing.T) {
	m := backup(t, 100)
	now := t0.Add(50 * time.Millisecond)
	m = step(t, m, adv(peerHi, 200, time.Second), now, StateBackup, "set:master_down")
	if m.MasterAdverInterval() != time.Second || m.Master() != peerHi {
		t.Fatalf("learned %v from %v", m.MasterAdverInterval(), m.Master())
	}
	if want := now.Add(MasterDownInterval(100, time.Second)); !m.Deadline(TimerMasterDown).Equal(want) {
		t.Fatalf("master down %v want %v", m.Deadline(TimerMasterDown), want)
	}
	// Equal priority, even from a lower address, is accepted: no preemption on ties.
	step(t, m, adv(peerLo, 100, advert1), now, StateBackup, "set:master_down")
}

func TestBackupPriorityZeroWaitsSkewOnly(t *testing.T) {
	m := backup(t, 100)
	m = step(t, m, adv(peerHi, 200, advert1), t0, StateBackup, "set:master_down")
	now := t0.Add(30 * time.Millisecond)
	m = step(t, m, adv(peerHi, 0, advert1), now, StateBackup, "set:master_down")
	if want := now.Add(SkewTime(100, advert1)); !m.Deadline(TimerMasterDown).Equal(want) {
		t.Fatalf("master down %v want %v (skew only)", m.Deadline(TimerMasterDown), want)
	}
	step(t, m, timer(TimerMasterDown), m.Deadline(TimerMasterDown), StateMaster, masterActs(100, ""))
}

func TestBackupPreemptsLowerPriority(t *testing.T) {
	m := backup(t, 150)
	step(t, m, adv(peerHi, 100, advert1), t0, StateMaster, masterActs(150, "stop:master_down"))
}

func TestBackupNoPreempt(t *testing.T) {
	c := cfg(150)
	c.Preempt = false
	m := step(t, NewMachine(c), Input{Kind: InputStartup}, t0, StateBackup, toBackupFromInit)
	m = step(t, m, adv(peerHi, 100, advert1), t0.Add(time.Millisecond), StateBackup, "set:master_down")
	if m.Master() != peerHi {
		t.Fatalf("master %v", m.Master())
	}
}

func TestOwnerPreemptsEvenWithoutPreempt(t *testing.T) {
	c := cfg(255)
	c.Preempt = false
	// An owner found in BACKUP (after resigning) still outranks everybody
	// once the resignation is over; here: right after FAULT clears it is MASTER.
	m := step(t, NewMachine(c), Input{Kind: InputStartup}, t0, StateMaster, masterActs(255, ""))
	m = step(t, m, Input{Kind: InputTracking, Priority: 255, Fault: true}, t0, StateFault,
		"advert:0 stop:advert stop:garp_refresh remove_vips notify:FAULT")
	step(t, m, Input{Kind: InputTracking, Priority: 255}, t0, StateMaster, masterActs(255, ""))
}

func TestPreemptDelay(t *testing.T) {
	c := cfg(150)
	c.PreemptDelay = time.Second
	m := step(t, NewMachine(c), Input{Kind: InputStartup}, t0, StateBackup, toBackupFromInit)
	// Lower-priority master: accepted, preempt timer armed once.
	m = step(t, m, adv(peerHi, 100, advert1), t0, StateBackup, "set:master_down set:preempt")
	m = step(t, m, adv(peerHi, 100, advert1), t0.Add(advert1), StateBackup, "set:master_down")
	if !m.Deadline(TimerPreempt).Equal(t0.Add(time.Second)) {
		t.Fatalf("preempt due %v", m.Deadline(TimerPreempt))
	}
	// A higher-priority master in between cancels the pending preemption.
	m2 := step(t, m, adv(peerLo, 200, advert1), t0.Add(2*advert1), StateBackup, "stop:preempt set:master_down")
	step(t, m2, timer(TimerPreempt), t0.Add(time.Second), StateBackup, "")
	// Otherwise the delay expires and the backup takes over.
	step(t, m, timer(TimerPreempt), t0.Add(time.Second), StateMaster, masterActs(150, "stop:master_down"))
}

func TestMasterSendsAdverts(t *testing.T) {
	m := master(t, 100)
	due := m.Deadline(TimerAdvert)
	m = step(t, m, timer(TimerAdvert), due, StateMaster, "advert:100 set:advert")
	if !m.Deadline(TimerAdvert).Equal(due.Add(advert1)) {
		t.Fatalf("next advert %v", m.Deadline(TimerAdvert))
	}
	step(t, m, timer(TimerGARPRefresh), m.Deadline(TimerGARPRefresh), StateMaster, "garp set:garp_refresh")
}

func TestMasterYieldsToHigherPriority(t *testing.T) {
	m := master(t, 100)
	now := m.Deadline(TimerAdvert)
	m = step(t, m, adv(peerLo, 101, time.Second), now, StateBackup,
		"advert:100>198.18.0.5 stop:advert stop:garp_refresh remove_vips set:master_down notify:BACKUP")
	if m.Master() != peerLo || m.MasterAdverInterval() != time.Second {
		t.Fatalf("master %v interval %v", m.Master(), m.MasterAdverInterval())
	}
}

func TestMasterTieBrokenByAddress(t *testing.T) {
	m := master(t, 100)
	now := m.Deadline(TimerAdvert).Add(-time.Millisecond)
	// Equal priority from a higher address wins.
	step(t, m, adv(peerHi, 100, advert1), now, StateBackup,
		"advert:100>198.18.0.20 stop:advert stop:garp_refresh remove_vips set:master_down notify:BACKUP")
	// Equal priority from a lower address loses: we assert and re-GARP.
	step(t, m, adv(peerLo, 100, advert1), now, StateMaster, "advert:100 set:advert garp")
}

func TestMasterLowerPriorityHealsSplitBrainRateLimited(t *testing.T) {
	m := master(t, 200)
	now := m.Deadline(TimerAdvert).Add(-time.Millisecond)
	m = step(t, m, adv(peerHi, 100, advert1), now, StateMaster, "advert:200 set:advert garp")
	m = step(t, m, adv(peerHi, 100, advert1), now.Add(advert1), StateMaster, "")
	step(t, m, adv(peerHi, 100, advert1), now.Add(lowerPrioGARPGap), StateMaster, "advert:200 set:advert garp")
}

func TestMasterPriorityZeroFromOther(t *testing.T) {
	m := master(t, 100)
	step(t, m, adv(peerHi, 0, advert1), m.Deadline(TimerAdvert).Add(-time.Millisecond), StateMaster, "advert:100 set:advert")
}

func TestMasterShutdownSendsPriorityZero(t *testing.T) {
	m := master(t, 100)
	m = step(t, m, Input{Kind: InputShutdown}, t0, StateInit,
		"advert:0 stop:advert stop:garp_refresh remove_vips notify:INIT")
	step(t, m, Input{Kind: InputShutdown}, t0, StateInit, "")
}

func TestBackupShutdown(t *testing.T) {
	step(t, backup(t, 100), Input{Kind: InputShutdown}, t0, StateInit, "stop:master_down remove_vips notify:INIT")
}

func TestFaultShutdown(t *testing.T) {
	m := step(t, backup(t, 100), Input{Kind: InputTracking, Priority: 100, Fault: true}, t0, StateFault,
		"stop:master_down remove_vips notify:FAULT")
	step(t, m, Input{Kind: InputShutdown}, t0, StateInit, "remove_vips notify:INIT")
}

func TestTrackingFaultAndRecovery(t *testing.T) {
	m := master(t, 100)
	m = step(t, m, Input{Kind: InputTracking, Priority: 100, Fault: true}, t0, StateFault,
		"advert:0 stop:advert stop:garp_refresh remove_vips notify:FAULT")
	// Adverts and timers are ignored in FAULT.
	step(t, m, adv(peerHi, 50, advert1), t0, StateFault, "")
	step(t, m, timer(TimerMasterDown), t0.Add(time.Hour), StateFault, "")
	m2, acts := m.Step(Input{Kind: InputTracking, Priority: 100}, t0)
	if m2.State() != StateBackup || kinds(acts) != toBackupFromInit {
		t.Fatalf("recovery: %v %s", m2.State(), kinds(acts))
	}
	if n := acts[len(acts)-1]; n.From != StateFault || n.Cause != CauseTrackingOK {
		t.Fatalf("notify %+v", n)
	}
	// Still faulty: stays.
	step(t, m, Input{Kind: InputTracking, Priority: 90, Fault: true}, t0, StateFault, "")
}

func TestTrackingPriorityChange(t *testing.T) {
	m := master(t, 150)
	now := t0.Add(time.Second)
	// A master whose priority drops tells the backups at once.
	m = step(t, m, Input{Kind: InputTracking, Priority: 90}, now, StateMaster, "advert:90 set:advert")
	if m.EffectivePriority() != 90 {
		t.Fatal(m.EffectivePriority())
	}
	// Unchanged priority: nothing.
	m = step(t, m, Input{Kind: InputTracking, Priority: 90}, now, StateMaster, "")
	// The backup (120, preempting) answers, we yield.
	step(t, m, adv(peerLo, 120, advert1), now, StateBackup,
		"advert:90>198.18.0.5 stop:advert stop:garp_refresh remove_vips set:master_down notify:BACKUP")

	// In BACKUP the new priority is used for skew and preemption.
	b := backup(t, 100)
	b = step(t, b, adv(peerHi, 110, advert1), t0, StateBackup, "set:master_down")
	b = step(t, b, Input{Kind: InputTracking, Priority: 120}, t0, StateBackup, "")
	step(t, b, adv(peerHi, 110, advert1), t0.Add(advert1), StateMaster, masterActs(120, "stop:master_down"))
}

func TestResign(t *testing.T) {
	m := master(t, 200)
	now := t0.Add(time.Second)
	m = step(t, m, Input{Kind: InputResign}, now, StateBackup,
		"advert:0 stop:advert stop:garp_refresh remove_vips set:master_down notify:BACKUP")
	// The new, lower-priority master is not preempted.
	m = step(t, m, adv(peerHi, 100, advert1), now.Add(50*time.Millisecond), StateBackup, "set:master_down")
	// If it dies, we take over again, and preempt normally afterwards.
	m = step(t, m, timer(TimerMasterDown), m.Deadline(TimerMasterDown), StateMaster, masterActs(200, ""))
	m = step(t, m, adv(peerHi, 250, advert1), m.Deadline(TimerAdvert), StateBackup,
		"advert:200>198.18.0.20 stop:advert stop:garp_refresh remove_vips set:master_down notify:BACKUP")
	step(t, m, adv(peerHi, 100, advert1), m.Deadline(TimerMasterDown).Add(-time.Millisecond), StateMaster, masterActs(200, "stop:master_down"))
	// Resign outside MASTER does nothing.
	step(t, backup(t, 100), Input{Kind: InputResign}, now, StateBackup, "")
}

func TestAdvertsIgnoredInInit(t *testing.T) {
	step(t, NewMachine(cfg(100)), adv(peerHi, 100, advert1), t0, StateInit, "")
	step(t, NewMachine(cfg(100)), timer(TimerAdvert), t0, StateInit, "")
}

func TestStateNames(t *testing.T) {
	got := []string{}
	for _, s := range States {
		got = append(got, s.String())
	}
	if !slices.Equal(got, []string{"INIT", "BACKUP", "MASTER", "FAULT"}) {
		t.Fatal(got)
	}
}
