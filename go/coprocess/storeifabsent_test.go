package coprocess

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"coprocess/go/pb"
)

// storeCount reads one (op, result) counter of StoreStats.
func storeCount(op, result string) uint64 {
	for _, c := range StoreStats() {
		if c.Op == op && c.Result == result {
			return c.Count
		}
	}
	return 0
}

// plainStore is a Store without SetIfAbsent: the binding's fallback (Get then Set under a
// lock) answers for it.
type plainStore struct{ m *MemoryStore }

func (p plainStore) Set(k, v string, ttl time.Duration) error { return p.m.Set(k, v, ttl) }
func (p plainStore) Get(k string) (string, bool, error)       { return p.m.Get(k) }

// CoProcessStoreDataIfAbsent through the process's dynamic symbol table, as the library
// calls it: 1 stored, 0 present (the value is left alone), the TTL honoured, and exactly one
// winner among concurrent callers, for the MemoryStore and for a Store without SetIfAbsent.
func TestStoreDataIfAbsent(t *testing.T) {
	for name, store := range map[string]Store{"MemoryStore": NewMemoryStore(), "fallback": plainStore{NewMemoryStore()}} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(Host{Store: store, Logger: &recorder{}}); err != nil {
				t.Fatal(err)
			}
			stored := storeCount("set_if_absent", "stored")
			if rc, err := CallHostStoreIfAbsent("nonce-1", "first", 0); err != nil || rc != 1 {
				t.Fatalf("first: %d %v", rc, err)
			}
			if rc, _ := CallHostStoreIfAbsent("nonce-1", "second", 0); rc != 0 {
				t.Fatalf("present key: %d", rc)
			}
			if v, ok, _ := store.Get("nonce-1"); !ok || v != "first" {
				t.Fatalf("a present key was overwritten: %q", v)
			}
			if got := storeCount("set_if_absent", "stored") - stored; got != 1 {
				t.Errorf("stored counter moved by %d", got)
			}
			// A TTL expires the key; then it can be stored again.
			if err := store.Set("short", "x", 20*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			time.Sleep(40 * time.Millisecond)
			if rc, _ := CallHostStoreIfAbsent("short", "y", 1); rc != 1 {
				t.Fatalf("expired key: %d", rc)
			}
			var wins atomic.Int32
			var wg sync.WaitGroup
			for i := 0; i < 50; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					if rc, _ := CallHostStoreIfAbsent("race", fmt.Sprint(i), 60); rc == 1 {
						wins.Add(1)
					}
				}(i)
			}
			wg.Wait()
			if wins.Load() != 1 {
				t.Fatalf("%d concurrent callers stored the same key, want exactly 1", wins.Load())
			}
		})
	}
}

type failingIfAbsentStore struct{ failingStore }

func (failingIfAbsentStore) SetIfAbsent(string, string, time.Duration) (bool, error) {
	return false, errors.New("store down")
}

// A failing store answers negative (the library then fails closed), logged without the value.
func TestStoreDataIfAbsentStoreDown(t *testing.T) {
	for name, store := range map[string]Store{"SetIfAbsent fails": failingIfAbsentStore{}, "fallback Get fails": failingStore{}} {
		rec := &recorder{}
		if _, err := New(Host{Store: store, Logger: rec}); err != nil {
			t.Fatal(err)
		}
		errs := storeCount("set_if_absent", "error")
		if rc, err := CallHostStoreIfAbsent("k", "the-secret-value", 10); err != nil || rc >= 0 {
			t.Fatalf("%s: rc %d %v, want negative", name, rc, err)
		}
		if storeCount("set_if_absent", "error") != errs+1 {
			t.Errorf("%s: error not counted", name)
		}
		_, logs := rec.snapshot()
		if len(logs) != 1 || !strings.Contains(logs[0][1], "CoProcessStoreDataIfAbsent: store failed: store down") || strings.Contains(logs[0][1], "the-secret-value") {
			t.Errorf("%s: logs %q", name, logs)
		}
	}
}

// blockingStore blocks every call until release is closed.
type blockingStore struct {
	entered chan struct{}
	release chan struct{}
}

func (b blockingStore) wait() {
	b.entered <- struct{}{}
	<-b.release
}
func (b blockingStore) Set(string, string, time.Duration) error { b.wait(); return nil }
func (b blockingStore) Get(string) (string, bool, error)        { b.wait(); return "v", true, nil }
func (b blockingStore) SetIfAbsent(string, string, time.Duration) (bool, error) {
	b.wait()
	return true, nil
}

// With MaxStoreCalls calls stuck in the store, every further store call fails at once as
// unavailable (NULL, -1, write dropped), counted as busy; when the stuck ones return, calls
// go through again.
func TestMaxStoreCallsFailFast(t *testing.T) {
	store := blockingStore{entered: make(chan struct{}, 10), release: make(chan struct{})}
	rec := &recorder{}
	if _, err := New(Host{Store: store, Logger: rec, MaxStoreCalls: 2, StoreErrorLogInterval: time.Hour}); err != nil {
		t.Fatal(err)
	}
	done := make(chan int, 2)
	for i := 0; i < 2; i++ {
		go func() { rc, _ := CallHostStoreIfAbsent("k", "v", 1); done <- rc }()
	}
	<-store.entered
	<-store.entered
	if StoreCallsInFlight() != 2 {
		t.Errorf("in flight %d, want 2", StoreCallsInFlight())
	}
	busy := storeCount("get", "busy") + storeCount("set", "busy") + storeCount("set_if_absent", "busy")
	start := time.Now()
	if rc, _ := CallHostStoreIfAbsent("k2", "v", 1); rc != -1 {
		t.Errorf("set_if_absent over the bound: %d, want -1", rc)
	}
	if _, ok, _ := CallHostGet("k2"); ok {
		t.Error("get over the bound found a value")
	}
	_ = CallHostStore("k2", "v", 1)
	if el := time.Since(start); el > time.Second {
		t.Errorf("calls over the bound took %v: they must not wait", el)
	}
	after := storeCount("get", "busy") + storeCount("set", "busy") + storeCount("set_if_absent", "busy")
	if after-busy != 3 {
		t.Errorf("busy counted %d times, want 3", after-busy)
	}
	_, logs := rec.snapshot()
	if len(logs) != 1 || !strings.Contains(logs[0][1], "too many store calls in flight") {
		t.Errorf("rate-limited logs: %q", logs)
	}
	close(store.release)
	for i := 0; i < 2; i++ {
		if rc := <-done; rc != 1 {
			t.Errorf("a stuck call answered %d after release", rc)
		}
	}
	if rc, _ := CallHostStoreIfAbsent("k3", "v", 1); rc != 1 {
		t.Errorf("after release: %d", rc)
	}
	if StoreCallsInFlight() != 0 {
		t.Errorf("in flight %d after all returned", StoreCallsInFlight())
	}
}

// Store failures are logged once per interval; the next line says how many were not.
func TestStoreErrorLogsRateLimited(t *testing.T) {
	rec := &recorder{}
	if _, err := New(Host{Store: failingStore{}, Logger: rec, StoreErrorLogInterval: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		CallHostGet("k")
	}
	_, logs := rec.snapshot()
	if len(logs) != 1 {
		t.Fatalf("50 failures in a burst logged %d lines, want 1: %q", len(logs), logs)
	}
	time.Sleep(350 * time.Millisecond)
	CallHostGet("k")
	_, logs = rec.snapshot()
	if len(logs) != 2 || !strings.Contains(logs[1][1], "(49 more store failures not logged since") {
		t.Fatalf("logs %q", logs)
	}
}

// Dispatcher.Metrics is the library's Prometheus exposition; dispatches show in it.
func TestDispatcherMetrics(t *testing.T) {
	d, _ := newDispatcher(t, nil)
	before, err := d.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := d.Dispatch(requestObject(pb.HookType_Pre, "InjectHeaders", map[string]string{"Cookie": "x"})); err != nil {
			t.Fatal(err)
		}
	}
	after, err := d.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	count := func(text []byte) float64 {
		for _, line := range bytes.Split(text, []byte("\n")) {
			l := string(line)
			if strings.HasPrefix(l, "coprocess_dispatch_total{") && strings.Contains(l, `middleware="InjectHeaders"`) && strings.Contains(l, `hook="Pre"`) && strings.Contains(l, `outcome="passed"`) {
				var v float64
				fmt.Sscan(l[strings.LastIndex(l, " ")+1:], &v)
				return v
			}
		}
		return 0
	}
	if !bytes.Contains(after, []byte("# TYPE coprocess_dispatch_total counter")) {
		t.Fatalf("no coprocess_dispatch_total in\n%s", after)
	}
	if got := count(after) - count(before); got != 3 {
		t.Errorf("InjectHeaders passed dispatches moved by %v, want 3\n%s", got, after)
	}
}
