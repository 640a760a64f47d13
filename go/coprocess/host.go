package coprocess

/*
#include <stdlib.h>
#include "api.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"log"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// EventSink receives the events middleware fires through TykTriggerEvent.
type EventSink interface {
	TriggerEvent(name, payload string)
}

// Logger receives the library's log lines (CoProcessLog). level is one of "debug", "info",
// "warning", "error".
type Logger interface {
	Log(level, msg string)
}

// Store is the key-value store behind TykStoreData / TykGetData. A ttl <= 0 means no expiry.
// Get reports ok=false for an absent or expired key. A Store that also implements
// SetIfAbsentStore answers CoProcessStoreDataIfAbsent atomically; for one that does not, the
// binding does a Get then a Set under a process-wide lock (atomic within this process only).
type Store interface {
	Set(key, value string, ttl time.Duration) error
	Get(key string) (value string, ok bool, err error)
}

// SetIfAbsentStore is a Store with an atomic "store only when absent"
// (CoProcessStoreDataIfAbsent): stored reports whether value was written; false with a nil
// error means the key was present and nothing was written. An error means the store could
// not answer (the library then fails closed).
type SetIfAbsentStore interface {
	Store
	SetIfAbsent(key, value string, ttl time.Duration) (stored bool, err error)
}

// DefaultMaxStoreCalls bounds the store calls in flight at once when Host.MaxStoreCalls is 0.
// Every call in flight holds an OS thread (it runs inside a cgo callback), so this bounds
// the threads a hung store can hold.
const DefaultMaxStoreCalls = 64

// DefaultStoreErrorLogInterval is the shortest gap between two store-error log lines when
// Host.StoreErrorLogInterval is 0.
const DefaultStoreErrorLogInterval = 10 * time.Second

// ErrStoreBusy: Host.MaxStoreCalls store calls were already in flight; the call failed fast
// (as if the store were unavailable) instead of waiting.
var ErrStoreBusy = errors.New("coprocess: too many store calls in flight")

// Host is what the library's host-function calls are routed to. A nil Logger logs to
// stderr, a nil Store is a fresh MemoryStore, a nil EventSink logs the event at level info.
type Host struct {
	Events EventSink
	Logger Logger
	Store  Store
	// MaxStoreCalls bounds the store host-function calls (TykStoreData, TykGetData,
	// CoProcessStoreDataIfAbsent) running at once; a call over the bound fails at once as
	// if the store were unavailable (TykGetData answers NULL, CoProcessStoreDataIfAbsent -1,
	// TykStoreData drops the write). 0: DefaultMaxStoreCalls; negative: unbounded.
	MaxStoreCalls int
	// StoreErrorLogInterval rate-limits the log lines about failed store calls: at most one
	// per interval, carrying the count of the ones suppressed since the previous line.
	// 0: DefaultStoreErrorLogInterval; negative: every failure is logged.
	StoreErrorLogInterval time.Duration

	slots  chan struct{} // nil: unbounded
	errLog *rateLimiter
}

// EventFunc adapts a function to EventSink.
type EventFunc func(name, payload string)

// TriggerEvent calls f.
func (f EventFunc) TriggerEvent(name, payload string) { f(name, payload) }

// LogFunc adapts a function to Logger.
type LogFunc func(level, msg string)

// Log calls f.
func (f LogFunc) Log(level, msg string) { f(level, msg) }

// StdLogger writes "[level] msg" lines to a *log.Logger, dropping levels below Min.
type StdLogger struct {
	L   *log.Logger
	Min string // "debug" (default), "info", "warning" or "error"
}

var levelRank = map[string]int{"debug": 0, "info": 1, "warning": 2, "error": 3}

// Log implements Logger.
func (s StdLogger) Log(level, msg string) {
	if rank, ok := levelRank[level]; ok && rank < levelRank[s.Min] {
		return
	}
	l := s.L
	if l == nil {
		l = log.New(os.Stderr, "coprocess ", log.LstdFlags)
	}
	l.Printf("[%s] %s", level, msg)
}

var host atomic.Pointer[Host]

func init() {
	installHost(Host{})
}

func installHost(h Host) {
	if h.Logger == nil {
		h.Logger = StdLogger{}
	}
	if h.Store == nil {
		h.Store = NewMemoryStore()
	}
	if h.MaxStoreCalls == 0 {
		h.MaxStoreCalls = DefaultMaxStoreCalls
	}
	if h.MaxStoreCalls > 0 {
		h.slots = make(chan struct{}, h.MaxStoreCalls)
	}
	if h.StoreErrorLogInterval == 0 {
		h.StoreErrorLogInterval = DefaultStoreErrorLogInterval
	}
	h.errLog = &rateLimiter{interval: h.StoreErrorLogInterval}
	if h.Events == nil {
		logger := h.Logger
		h.Events = EventFunc(func(name, payload string) {
			logger.Log("info", fmt.Sprintf("event %s fired by a plugin: %s", name, payload))
		})
	}
	host.Store(&h)
}

// currentHost is the Host the most recent New installed.
func currentHost() *Host { return host.Load() }

// A Go panic must never unwind into the library's frames: every export recovers and logs.
func recoverInto(fn string) {
	if r := recover(); r != nil {
		currentHost().Logger.Log("error", fmt.Sprintf("host function %s panicked: %v\n%s", fn, r, debug.Stack()))
	}
}

//export TykTriggerEvent
func TykTriggerEvent(eventName *C.char, payload *C.char) {
	defer recoverInto("TykTriggerEvent")
	if eventName == nil {
		return
	}
	p := ""
	if payload != nil {
		p = C.GoString(payload)
	}
	currentHost().Events.TriggerEvent(C.GoString(eventName), p)
}

//export CoProcessLog
func CoProcessLog(msg *C.char, level *C.char) {
	defer recoverInto("CoProcessLog")
	if msg == nil {
		return
	}
	lvl := "info"
	if level != nil {
		lvl = C.GoString(level)
	}
	currentHost().Logger.Log(lvl, C.GoString(msg))
}

// acquire takes a store slot without waiting; false: all MaxStoreCalls are in flight.
func (h *Host) acquire() bool {
	if h.slots == nil {
		storeInFlight.Add(1)
		return true
	}
	select {
	case h.slots <- struct{}{}:
		storeInFlight.Add(1)
		return true
	default:
		return false
	}
}

func (h *Host) release() {
	storeInFlight.Add(-1)
	if h.slots != nil {
		<-h.slots
	}
}

// storeFailed logs a failed store call, at most once per StoreErrorLogInterval. The key may
// be sensitive-ish (an id) and the value may be a secret: neither is logged.
func (h *Host) storeFailed(fn string, err error) {
	if line, ok := h.errLog.allow(time.Now()); ok {
		h.Logger.Log("error", fmt.Sprintf("%s: store failed: %v%s", fn, err, line))
	}
}

// storeCall runs f on the host's store within a store slot and counts the call as op with
// f's result: resBusy when no slot was free, resError when f failed, both logged as fn's
// failure.
func storeCall(fn string, op int, f func(Store) (int, error)) int {
	h := currentHost()
	if !h.acquire() {
		countStore(op, resBusy)
		h.storeFailed(fn, ErrStoreBusy)
		return resBusy
	}
	defer h.release()
	result, err := f(h.Store)
	if err != nil {
		countStore(op, resError)
		h.storeFailed(fn, err)
		return resError
	}
	countStore(op, result)
	return result
}

// goStrings converts the key and the value (NULL: "") of a store call.
func goStrings(key, value *C.char) (string, string) {
	v := ""
	if value != nil {
		v = C.GoString(value)
	}
	return C.GoString(key), v
}

//export TykStoreData
func TykStoreData(key *C.char, value *C.char, ttl C.int) {
	defer recoverInto("TykStoreData")
	if key == nil {
		return
	}
	k, v := goStrings(key, value)
	storeCall("TykStoreData", opSet, func(s Store) (int, error) {
		return resOK, s.Set(k, v, time.Duration(ttl)*time.Second)
	})
}

// TykGetData returns a malloc'd copy of the value (the library frees it), or NULL when the
// key is absent or the store failed.
//
//export TykGetData
func TykGetData(key *C.char) (out *C.char) {
	defer recoverInto("TykGetData")
	if key == nil {
		return nil
	}
	k := C.GoString(key)
	var v string
	if result := storeCall("TykGetData", opGet, func(s Store) (int, error) {
		got, ok, err := s.Get(k)
		v = got
		if ok {
			return resOK, err
		}
		return resMiss, err
	}); result != resOK {
		return nil
	}
	return C.CString(v)
}

// fallbackSetIfAbsent serialises the Get-then-Set of stores without SetIfAbsent.
var fallbackSetIfAbsent sync.Mutex

// CoProcessStoreDataIfAbsent stores value under key for ttl seconds (ttl <= 0: no expiry)
// only when the key is absent: 1 stored, 0 present (nothing written), -1 the store failed,
// was too busy (MaxStoreCalls) or the call panicked.
//
//export CoProcessStoreDataIfAbsent
func CoProcessStoreDataIfAbsent(key *C.char, value *C.char, ttl C.int) (rc C.int) {
	rc = -1
	defer recoverInto("CoProcessStoreDataIfAbsent")
	if key == nil {
		return -1
	}
	k, v := goStrings(key, value)
	result := storeCall("CoProcessStoreDataIfAbsent", opSetIfAbsent, func(s Store) (int, error) {
		stored, err := setIfAbsent(s, k, v, time.Duration(ttl)*time.Second)
		if stored {
			return resStored, err
		}
		return resPresent, err
	})
	switch result {
	case resStored:
		return 1
	case resPresent:
		return 0
	default:
		return -1
	}
}

func setIfAbsent(s Store, key, value string, ttl time.Duration) (bool, error) {
	if a, ok := s.(SetIfAbsentStore); ok {
		return a.SetIfAbsent(key, value, ttl)
	}
	fallbackSetIfAbsent.Lock()
	defer fallbackSetIfAbsent.Unlock()
	if _, present, err := s.Get(key); err != nil || present {
		return false, err
	}
	if err := s.Set(key, value, ttl); err != nil {
		return false, err
	}
	return true, nil
}
