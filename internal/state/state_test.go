package state

import (
	"sync"
	"testing"
	"time"
)

func newServer(weight, maxConns int, slow time.Duration) *Server {
	st := NewStore()
	s := st.Get("be", "s1")
	s.Configure(weight, maxConns, slow, true)
	s.SetAddr("127.0.0.1:1")
	return s
}

func TestAvailability(t *testing.T) {
	s := newServer(100, 0, 0)
	if s.Available() || s.Weight() != 0 {
		t.Fatal("an unchecked server must not take traffic before its first check")
	}
	s.SetHealth(Up, "ok", time.Now())
	if !s.Available() || s.Weight() != 100 {
		t.Fatalf("up: available %v weight %d", s.Available(), s.Weight())
	}
	for _, a := range []Admin{Drain, Maint} {
		s.SetAdmin(a)
		if s.Available() || s.Weight() != 0 {
			t.Fatalf("%s: still available", a)
		}
	}
	s.SetAdmin(Ready)
	s.SetAgent(Drain, true, -1)
	if s.Admin() != Drain || s.Available() {
		t.Fatal("agent drain ignored")
	}
	s.SetAgent(Ready, true, 50)
	if s.Admin() != Ready || s.Weight() != 50 {
		t.Fatalf("agent ready 50%%: admin %s weight %d", s.Admin(), s.Weight())
	}
	s.SetAgentDown(true)
	if s.Available() {
		t.Fatal("agent down ignored")
	}
	s.SetAgentDown(false)
	s.SetWeight(10)
	if s.ConfigWeight() != 10 || s.Weight() != 5 {
		t.Fatalf("override 10 at 50%%: config %d effective %d", s.ConfigWeight(), s.Weight())
	}
	unchecked := NewStore().Get("be", "x")
	unchecked.Configure(100, 0, 0, false)
	unchecked.SetAddr("127.0.0.1:2")
	if !unchecked.Available() {
		t.Fatal("health type none must count as up")
	}
}

func TestSlowstartRamp(t *testing.T) {
	s := newServer(200, 0, 400*time.Millisecond)
	now := time.Now()
	s.SetHealth(Up, "ok", now)
	// the ramp is linear in the time since the server came up
	w0 := s.Weight()
	if w0 < 1 || w0 > 100 {
		t.Fatalf("weight right after recovery = %d, want a small fraction of 200", w0)
	}
	s.upSince.Store(now.Add(-200 * time.Millisecond).UnixNano())
	if w := s.Weight(); w < 90 || w > 110 {
		t.Fatalf("weight halfway through slowstart = %d, want ~100", w)
	}
	s.upSince.Store(now.Add(-time.Second).UnixNano())
	if w := s.Weight(); w != 200 {
		t.Fatalf("weight after slowstart = %d", w)
	}
}

func TestMaxConns(t *testing.T) {
	s := newServer(100, 3, 0)
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := 0
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s.Acquire() {
				mu.Lock()
				got++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if got != 3 || s.Conns() != 3 || !s.Full() {
		t.Fatalf("acquired %d, conns %d", got, s.Conns())
	}
	s.Release()
	if s.Full() || !s.Acquire() {
		t.Fatal("slot not freed")
	}
}

func TestStoreKeepsStateByName(t *testing.T) {
	st := NewStore()
	a := st.Get("be", "a")
	a.SetAdmin(Drain)
	if st.Get("be", "a") != a {
		t.Fatal("same key, different state")
	}
	st.Retain(map[string]bool{"be/b": true})
	if st.Lookup("be", "a") != nil {
		t.Fatal("removed server kept")
	}
	if st.Get("be", "a").Admin() != Ready {
		t.Fatal("re-added server inherited old state")
	}
}
