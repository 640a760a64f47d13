package coprocess

/*
#include <stdlib.h>
#include "api.h"
*/
import "C"

import (
	"fmt"
	"log"
	"os"
	"runtime/debug"
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
// Get reports ok=false for an absent or expired key.
type Store interface {
	Set(key, value string, ttl time.Duration) error
	Get(key string) (value string, ok bool, err error)
}

// Host is what the library's host-function calls are routed to. A nil Logger logs to
// stderr, a nil Store is a fresh MemoryStore, a nil EventSink logs the event at level info.
type Host struct {
	Events EventSink
	Logger Logger
	Store  Store
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

//export TykStoreData
func TykStoreData(key *C.char, value *C.char, ttl C.int) {
	defer recoverInto("TykStoreData")
	if key == nil {
		return
	}
	v := ""
	if value != nil {
		v = C.GoString(value)
	}
	h := currentHost()
	k := C.GoString(key)
	if err := h.Store.Set(k, v, time.Duration(ttl)*time.Second); err != nil {
		// The key may be sensitive-ish (an id), the value may be a secret: log neither value.
		h.Logger.Log("error", fmt.Sprintf("TykStoreData: store failed: %v", err))
	}
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
	h := currentHost()
	v, ok, err := h.Store.Get(C.GoString(key))
	if err != nil {
		h.Logger.Log("error", fmt.Sprintf("TykGetData: store failed: %v", err))
		return nil
	}
	if !ok {
		return nil
	}
	return C.CString(v)
}
