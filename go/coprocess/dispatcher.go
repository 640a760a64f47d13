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

static int cp_reload(char **err) {
	int rc = Reload();
	if (rc != 0) *err = cp_last_error_copy();
	return rc;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
	"unsafe"

	"coprocess/go/pb"

	"google.golang.org/protobuf/proto"
)

// ABIVersion is the library ABI this package implements.
const ABIVersion = "coprocess-abi/1"

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

// DispatchRaw runs the middleware named by the serialised Object's hook_name and returns
// the serialised answer (a Go copy: the library's buffer is freed before returning). The
// input is borrowed by the library for the call only.
func (d *Dispatcher) DispatchRaw(object []byte) ([]byte, error) {
	data, n, err := goBytesPointer(object)
	if err != nil {
		return nil, err
	}
	var out unsafe.Pointer
	var outLen C.int
	var msg *C.char
	rc := C.cp_dispatch(data, n, &out, &outLen, &msg)
	if rc != 0 {
		return nil, libError("Dispatch", rc, msg)
	}
	if out == nil {
		// The library never answers 0 without a buffer; treat it as the empty Object.
		return []byte{}, nil
	}
	answer := C.GoBytes(out, outLen)
	C.free(out)
	return answer, nil
}

// Dispatch serialises obj, runs the middleware named by obj.HookName and decodes the answer
// into a new Object. obj is not modified.
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

// DispatchEvent runs the event handler named by the event JSON's handler_name
// (SPEC section 4: {"message":{"Type":..,"Meta":..,"TimeStamp":..},"handler_name":..,"spec":{..}}).
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
