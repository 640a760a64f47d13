package coprocess

/*
#cgo pkg-config: coprocess
#include <stdlib.h>
#include <string.h>
#include "api.h"

// One C call per library call: the export and, on failure, CoProcessLastError() happen on
// the same OS thread (the message is per thread and valid until that thread's next call),
// and the message is copied to a malloc'd string the Go side frees.
static char *cp_last_error_copy(void) {
	const char *e = CoProcessLastError();
	return strdup(e ? e : "");
}

static char cp_empty[1];

static int cp_dispatch(void *data, int length, void **out, int *out_len, char **err) {
	struct CoProcessMessage in = { data ? data : (void *)cp_empty, length };
	struct CoProcessMessage res = { NULL, 0 };
	int rc = Dispatch(&in, &res);
	if (rc != 0) {
		*err = cp_last_error_copy();
		return rc;
	}
	*out = res.p_data;
	*out_len = res.length;
	return 0;
}

static int cp_dispatch_event(void *data, int length, char **err) {
	struct CoProcessMessage in = { data ? data : (void *)cp_empty, length };
	int rc = DispatchEvent(&in);
	if (rc != 0) *err = cp_last_error_copy();
	return rc;
}

// The ABI this package is built for: the header's COPROCESS_ABI_VERSION.
static const char *cp_expected_abi(void) { return COPROCESS_ABI_VERSION; }

static int cp_metrics(void **out, int *out_len, char **err) {
	struct CoProcessMessage res = { NULL, 0 };
	int rc = CoProcessMetrics(&res);
	if (rc != 0) {
		*err = cp_last_error_copy();
		return rc;
	}
	*out = res.p_data;
	*out_len = res.length;
	return 0;
}

static int cp_reload(char **err) {
	int rc = Reload();
	if (rc != 0) *err = cp_last_error_copy();
	return rc;
}
*/
import "C"

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"unsafe"

	"coprocess/go/pb"

	"google.golang.org/protobuf/proto"
)

// ABIVersion is the library ABI this package implements: COPROCESS_ABI_VERSION of the
// include/api.h it was compiled against. New refuses a library that reports another one.
var ABIVersion = C.GoString(C.cp_expected_abi())

// Dispatcher calls the library. It is safe for concurrent use by any number of goroutines;
// Reload may run while dispatches are in flight (each finishes on the state it started with).
type Dispatcher struct {
	version string
}

// New checks the library's ABI version and installs host as the receiver of the library's
// host-function calls (nil fields get defaults: see Host). It fails, and installs nothing,
// when the library implements an ABI this package does not know.
func New(host Host) (*Dispatcher, error) {
	v := LibraryABIVersion()
	if err := checkABI(v); err != nil {
		return nil, err
	}
	installHost(host)
	return &Dispatcher{version: v}, nil
}

// LibraryABIVersion is what the loaded library's CoProcessAbiVersion() returns.
func LibraryABIVersion() string {
	p := C.CoProcessAbiVersion()
	if p == nil {
		return ""
	}
	return C.GoString(p)
}

func checkABI(v string) error {
	if v != ABIVersion {
		return fmt.Errorf("coprocess: the loaded library implements ABI %q, this host only knows %q: refusing to use it", v, ABIVersion)
	}
	return nil
}

// ABIVersion is the library's ABI version, checked by New.
func (d *Dispatcher) ABIVersion() string { return d.version }

func libError(op string, rc C.int, msg *C.char) error {
	text := ""
	if msg != nil {
		text = C.GoString(msg)
		C.free(unsafe.Pointer(msg))
	}
	return &Error{Op: op, Code: int(rc), Message: text}
}

// ErrTooLarge is returned for an input longer than the ABI's int length can describe.
var ErrTooLarge = errors.New("coprocess: message longer than 2 GiB")

func goBytesPointer(b []byte) (unsafe.Pointer, C.int, error) {
	if len(b) > math.MaxInt32 {
		return nil, 0, ErrTooLarge
	}
	if len(b) == 0 {
		// The library reads a non-NULL buffer of length 0 as an empty Object.
		return nil, 0, nil
	}
	return unsafe.Pointer(&b[0]), C.int(len(b)), nil
}

// withAnswer calls Dispatch on object and hands f the library's answer, a view of the
// library's malloc'd buffer valid only during f (freed after it returns).
func withAnswer(object []byte, f func(answer []byte) error) error {
	data, n, err := goBytesPointer(object)
	if err != nil {
		return err
	}
	var out unsafe.Pointer
	var outLen C.int
	var msg *C.char
	rc := C.cp_dispatch(data, n, &out, &outLen, &msg)
	if rc != 0 {
		return libError("Dispatch", rc, msg)
	}
	if out == nil {
		// The library never answers 0 without a buffer; treat it as the empty Object.
		return f([]byte{})
	}
	defer C.free(out)
	return f(unsafe.Slice((*byte)(out), int(outLen)))
}

// DispatchRaw runs the middleware named by the serialised Object's hook_name and returns
// the serialised answer (a Go copy: the library's buffer is freed before returning). The
// input is borrowed by the library for the call only.
func (d *Dispatcher) DispatchRaw(object []byte) ([]byte, error) {
	var answer []byte
	err := withAnswer(object, func(a []byte) error {
		answer = append(make([]byte, 0, len(a)), a...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return answer, nil
}

// Dispatch serialises obj, runs the middleware named by obj.HookName and decodes the answer
// into a new Object. obj is not modified. DispatchInto does the same work in place, and
// decodes only what the middleware changed when it can.
func (d *Dispatcher) Dispatch(obj *pb.Object) (*pb.Object, error) {
	in, err := proto.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("coprocess: marshal Object: %w", err)
	}
	answer, err := d.DispatchRaw(in)
	if err != nil {
		return nil, err
	}
	out := new(pb.Object)
	if err := proto.Unmarshal(answer, out); err != nil {
		return nil, fmt.Errorf("coprocess: the library answered bytes that are not an Object: %w", err)
	}
	return out, nil
}

// DispatchInto runs the middleware named by obj.HookName and leaves the resulting Object in
// obj, exactly as unmarshalling the library's answer would give it.
//
// When the library answered on its additive path (docs/abi.md, "The additive path": the
// bytes it was sent, unchanged, followed by the encoded edits), only the appended bytes are
// unmarshalled, merged into obj as protobuf merges them (proto.UnmarshalOptions{Merge:
// true}): the Go-side decode then costs what the edits cost, not a whole Object. Any other answer replaces obj's
// contents with a full unmarshal. When Dispatch fails obj is unchanged; an answer that does
// not decode (never from this library, which validates what it appends to) is an error and
// may leave obj partly merged.
func (d *Dispatcher) DispatchInto(obj *pb.Object) error {
	_, err := d.dispatchInto(obj)
	return err
}

// dispatchInto is DispatchInto, also telling whether the edits were merged (tests).
func (d *Dispatcher) dispatchInto(obj *pb.Object) (merged bool, err error) {
	in, err := proto.Marshal(obj)
	if err != nil {
		return false, fmt.Errorf("coprocess: marshal Object: %w", err)
	}
	err = withAnswer(in, func(answer []byte) error {
		if len(answer) >= len(in) && bytes.Equal(answer[:len(in)], in) {
			// obj is what `in` decodes to, so merging the tail into obj gives what
			// decoding in+tail gives. Unmarshal copies what it keeps from the buffer.
			if err := (proto.UnmarshalOptions{Merge: true}).Unmarshal(answer[len(in):], obj); err != nil {
				return fmt.Errorf("coprocess: the library answered bytes that are not an Object: %w", err)
			}
			merged = true
			return nil
		}
		out := new(pb.Object)
		if err := proto.Unmarshal(answer, out); err != nil {
			return fmt.Errorf("coprocess: the library answered bytes that are not an Object: %w", err)
		}
		proto.Reset(obj)
		proto.Merge(obj, out)
		return nil
	})
	return merged, err
}

// DispatchEvent runs the event handler named by the event JSON's handler_name
// ({"message":{"Type":..,"Meta":..,"TimeStamp":..},"handler_name":..,"spec":{..}}, docs/abi.md
// "Event JSON").
func (d *Dispatcher) DispatchEvent(eventJSON []byte) error {
	data, n, err := goBytesPointer(eventJSON)
	if err != nil {
		return err
	}
	var msg *C.char
	if rc := C.cp_dispatch_event(data, n, &msg); rc != 0 {
		return libError("DispatchEvent", rc, msg)
	}
	return nil
}

// Reload re-reads the global configuration file (COPROCESS_CONFIG), drops cached per-API
// configuration and notifies every middleware. A broken file returns an error with
// CodeConfig and keeps the last good state.
func (d *Dispatcher) Reload() error {
	var msg *C.char
	if rc := C.cp_reload(&msg); rc != 0 {
		return libError("Reload", rc, msg)
	}
	return nil
}

// Metrics returns the library's metrics in the Prometheus text exposition format (0.0.4):
// coprocess_dispatch_total{middleware,hook,outcome}, coprocess_dispatch_duration_seconds
// (a histogram by middleware), coprocess_event_total{handler,outcome},
// coprocess_reload_total{result}, coprocess_config_cache_hits_total and
// coprocess_config_cache_misses_total (CoProcessMetrics; docs/operations.md). The bytes are
// a Go copy; the library's buffer is freed before returning.
func (d *Dispatcher) Metrics() ([]byte, error) {
	var out unsafe.Pointer
	var outLen C.int
	var msg *C.char
	if rc := C.cp_metrics(&out, &outLen, &msg); rc != 0 {
		return nil, libError("CoProcessMetrics", rc, msg)
	}
	if out == nil {
		return []byte{}, nil
	}
	defer C.free(out)
	return C.GoBytes(out, outLen), nil
}
