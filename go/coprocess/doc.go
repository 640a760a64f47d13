// Package coprocess runs the coprocess library (libcoprocess.so, the native plugin
// middleware written in Rust) inside a Go process through cgo.
//
// The library is process-wide: there is one set of loaded middleware, one global
// configuration (the JSON file named by COPROCESS_CONFIG, read at first use and on Reload)
// and one set of host functions. A Dispatcher is a handle on it:
//
//	d, err := coprocess.New(coprocess.Host{Events: sink, Logger: logger, Store: store})
//	out, err := d.Dispatch(obj) // *pb.Object in, the middleware's answer out
//
// New checks the library's ABI version (CoProcessAbiVersion) and refuses a library built
// for an ABI this package does not know. It also installs the Host whose EventSink, Logger
// and Store receive the library's calls to the four host functions this package exports
// with //export (TykTriggerEvent, CoProcessLog, TykStoreData, TykGetData); the most recent
// New wins, since the library has only one set.
//
// Ownership follows include/api.h: inputs are Go memory borrowed by the library for the
// duration of the call; every buffer the library returns is copied into Go memory and
// released with free(3) before the call returns. Failures become *Error values carrying
// the library's code and its CoProcessLastError text, read on the same OS thread as the
// failing call (both happen inside one C helper, so goroutine migration cannot mix
// threads up). errors.Is(err, ErrNotFound) and friends match on the code.
//
// Link flags come from pkg-config (`#cgo pkg-config: coprocess`): build with
// PKG_CONFIG_PATH pointing at a directory holding coprocess.pc (`make pc` writes one for
// the in-tree build, `make install` a system-wide one).
package coprocess
