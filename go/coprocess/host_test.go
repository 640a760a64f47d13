package coprocess

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

const authFailureEvent = `{"message":{"Type":"AuthFailure","Meta":{"Path":"/api1/get","Origin":"127.0.0.1"},"TimeStamp":"2024-05-03T12:00:42Z"},"handler_name":"%s","spec":{"APIID":"api1","OrgID":"org1"}}`

func event(handler string) []byte {
	return []byte(strings.Replace(authFailureEvent, "%s", handler, 1))
}

// Events in (DispatchEvent) and out again (RelayEvent -> TykTriggerEvent -> the EventSink).
func TestEventsBothDirections(t *testing.T) {
	d, rec := newDispatcher(t, nil)
	writeGlobalConfig(t, globalConfig("a"))
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	in := event("RelayEvent")
	if err := d.DispatchEvent(in); err != nil {
		t.Fatal(err)
	}
	events, _ := rec.snapshot()
	if len(events) != 1 || events[0][0] != "Relayed-a" || events[0][1] != string(in) {
		t.Fatalf("events out: %q", events)
	}

	// LogEvent: the library logs through CoProcessLog, at the configured level.
	rec.reset()
	if err := d.DispatchEvent(event("LogEvent")); err != nil {
		t.Fatal(err)
	}
	_, logs := rec.snapshot()
	if len(logs) != 1 || logs[0][0] != "warning" || !strings.Contains(logs[0][1], "AuthFailure") || !strings.Contains(logs[0][1], "api1") {
		t.Fatalf("logs: %q", logs)
	}

	// The relayed name follows the global file after a Reload.
	rec.reset()
	writeGlobalConfig(t, globalConfig("b"))
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := d.DispatchEvent(in); err != nil {
		t.Fatal(err)
	}
	if events, _ := rec.snapshot(); len(events) != 1 || events[0][0] != "Relayed-b" {
		t.Fatalf("after reload: %q", events)
	}
}

func TestBrokenGlobalFileKeepsTheLastGoodState(t *testing.T) {
	d, rec := newDispatcher(t, nil)
	writeGlobalConfig(t, globalConfig("a"))
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	for _, broken := range []string{`{"RelayEvent": {"event_name": `, `{"RelayEvent": {}}`, `{"NoSuchPlugin": {}}`, `[]`} {
		writeGlobalConfig(t, broken)
		err := d.Reload()
		if !errors.Is(err, ErrConfig) || err.(*Error).Op != "Reload" || err.(*Error).Message == "" {
			t.Fatalf("Reload with %q: %v", broken, err)
		}
	}
	rec.reset()
	if err := d.DispatchEvent(event("RelayEvent")); err != nil {
		t.Fatal(err)
	}
	if events, _ := rec.snapshot(); len(events) != 1 || events[0][0] != "Relayed-a" {
		t.Fatalf("last good state lost: %q", events)
	}
	writeGlobalConfig(t, globalConfig("a"))
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
}

type panickySink struct{}

func (panickySink) TriggerEvent(name, payload string) { panic("sink exploded") }

// A Go panic in a host function must not unwind into the library: it is recovered and logged.
func TestHostFunctionPanicIsContained(t *testing.T) {
	rec := &recorder{}
	d, err := New(Host{Events: panickySink{}, Logger: rec})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.DispatchEvent(event("RelayEvent")); err != nil {
		t.Fatal(err)
	}
	_, logs := rec.snapshot()
	if len(logs) != 1 || logs[0][0] != "error" || !strings.Contains(logs[0][1], "TykTriggerEvent panicked: sink exploded") {
		t.Fatalf("logs: %q", logs)
	}
}

// The store behind TykStoreData/TykGetData, called the way the library calls it: through the
// process's dynamic symbol table, with C strings, the answer malloc'd and freed with free(3).
func TestMemoryStoreThroughTheHostFunctions(t *testing.T) {
	store := NewMemoryStore()
	clock := time.Unix(1_700_000_000, 0)
	store.now = func() time.Time { return clock }
	if _, err := New(Host{Store: store, Logger: &recorder{}}); err != nil {
		t.Fatal(err)
	}
	if err := CallHostStore("k-forever", "v1 ünïcode", 0); err != nil {
		t.Fatal(err)
	}
	if err := CallHostStore("k-2s", "v2", 2); err != nil {
		t.Fatal(err)
	}
	get := func(k string) (string, bool) {
		v, ok, err := CallHostGet(k)
		if err != nil {
			t.Fatal(err)
		}
		return v, ok
	}
	if v, ok := get("k-forever"); !ok || v != "v1 ünïcode" {
		t.Errorf("k-forever = %q %v", v, ok)
	}
	if v, ok := get("k-2s"); !ok || v != "v2" {
		t.Errorf("k-2s = %q %v", v, ok)
	}
	if _, ok := get("absent"); ok {
		t.Error("absent key found")
	}
	clock = clock.Add(2 * time.Second)
	if _, ok := get("k-2s"); ok {
		t.Error("k-2s outlived its TTL")
	}
	if _, ok := get("k-forever"); !ok {
		t.Error("a ttl of 0 expired")
	}
	if store.Len() != 1 {
		t.Errorf("expired key kept: %d keys", store.Len())
	}
	// Negative TTL: no expiry, as in the library's fallback store.
	_ = CallHostStore("k-neg", "v", -5)
	clock = clock.Add(1000 * time.Hour)
	if _, ok := get("k-neg"); !ok {
		t.Error("ttl < 0 expired")
	}
}

func TestMemoryStoreSweepsExpiredKeys(t *testing.T) {
	store := NewMemoryStore()
	clock := time.Unix(0, 0)
	store.now = func() time.Time { return clock }
	for i := 0; i < 1000; i++ {
		_ = store.Set(fmt.Sprintf("old-%d", i), "v", time.Second)
	}
	clock = clock.Add(time.Minute)
	for i := 0; i < 24; i++ {
		_ = store.Set(fmt.Sprintf("fresh-%d", i), "v", 0)
	}
	if n := store.Len(); n != 24 {
		t.Errorf("after the sweep %d keys remain, want the 24 live ones", n)
	}
}

type failingStore struct{}

func (failingStore) Set(key, value string, ttl time.Duration) error { return errors.New("store down") }
func (failingStore) Get(key string) (string, bool, error)           { return "", false, errors.New("store down") }

func TestStoreFailuresAreLoggedAndReadAsAbsent(t *testing.T) {
	rec := &recorder{}
	if _, err := New(Host{Store: failingStore{}, Logger: rec, StoreErrorLogInterval: -1}); err != nil {
		t.Fatal(err)
	}
	if err := CallHostStore("k", "the-secret-value", 10); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := CallHostGet("k"); ok || err != nil {
		t.Fatalf("failing store read: ok=%v err=%v", ok, err)
	}
	_, logs := rec.snapshot()
	if len(logs) != 2 || logs[0][0] != "error" || !strings.Contains(logs[1][1], "store down") {
		t.Fatalf("logs %q", logs)
	}
	for _, l := range logs {
		if strings.Contains(l[1], "the-secret-value") {
			t.Error("a stored value reached the log")
		}
	}
}
