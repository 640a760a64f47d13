package coprocess

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Store operations and their results, as counted by the host functions.
const (
	opGet = iota
	opSet
	opSetIfAbsent
	numOps
)

const (
	resOK      = iota // get: found; set: written
	resMiss           // get: absent
	resStored         // set_if_absent: written
	resPresent        // set_if_absent: the key was present
	resError          // the store failed (Redis down, timeout, circuit open)
	resBusy           // MaxStoreCalls were in flight: failed fast
	numResults
)

var (
	opNames     = [numOps]string{"get", "set", "set_if_absent"}
	resultNames = [numResults]string{"ok", "miss", "stored", "present", "error", "busy"}
	// validResults are the (op, result) pairs that can happen.
	validResults = [numOps][]int{
		opGet:         {resOK, resMiss, resError, resBusy},
		opSet:         {resOK, resError, resBusy},
		opSetIfAbsent: {resStored, resPresent, resError, resBusy},
	}
	storeCounts   [numOps][numResults]atomic.Uint64
	storeInFlight atomic.Int64
)

func countStore(op, result int) { storeCounts[op][result].Add(1) }

// StoreCount is how many store host-function calls of one operation ended with one result.
// Op is "get" (TykGetData), "set" (TykStoreData) or "set_if_absent"
// (CoProcessStoreDataIfAbsent); Result is "ok", "miss" (get: absent), "stored", "present"
// (set_if_absent), "error" (the store failed) or "busy" (MaxStoreCalls in flight).
type StoreCount struct {
	Op, Result string
	Count      uint64
}

// StoreStats is a snapshot of the process's store host-function calls since it started,
// every possible (op, result) pair, zero counts included, in a fixed order.
func StoreStats() []StoreCount {
	var out []StoreCount
	for op := 0; op < numOps; op++ {
		for _, res := range validResults[op] {
			out = append(out, StoreCount{Op: opNames[op], Result: resultNames[res], Count: storeCounts[op][res].Load()})
		}
	}
	return out
}

// StoreCallsInFlight is the number of store host-function calls running now.
func StoreCallsInFlight() int64 { return storeInFlight.Load() }

// rateLimiter lets one event through per interval and counts the others; an interval <= 0
// lets every one through.
type rateLimiter struct {
	interval   time.Duration
	mu         sync.Mutex
	last       time.Time
	suppressed uint64
}

// allow reports whether to log now and, when some were suppressed since the last line, a
// suffix saying how many.
func (r *rateLimiter) allow(now time.Time) (suffix string, ok bool) {
	if r.interval <= 0 {
		return "", true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.last.IsZero() && now.Sub(r.last) < r.interval {
		r.suppressed++
		return "", false
	}
	if r.suppressed > 0 {
		suffix = fmt.Sprintf(" (%d more store failures not logged since %s)", r.suppressed, r.last.Format(time.RFC3339))
	}
	r.last, r.suppressed = now, 0
	return suffix, true
}
