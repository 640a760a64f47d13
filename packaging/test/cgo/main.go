// Built by make deb-test against the installed libcoprocess, the way the gateway's binding
// package (go/coprocess) finds it: `#cgo pkg-config: coprocess` and `#include "api.h"`.
package main

/*
#cgo pkg-config: coprocess
#include <stdlib.h>
#include "api.h"
*/
import "C"

import (
	"fmt"
	"os"
)

func main() {
	v := C.GoString(C.CoProcessAbiVersion())
	if v != C.COPROCESS_ABI_VERSION {
		fmt.Fprintf(os.Stderr, "library ABI %q, header %q\n", v, C.COPROCESS_ABI_VERSION)
		os.Exit(1)
	}
	// An empty Object names no middleware: Dispatch must fail with NOT_FOUND, not crash.
	var in, out C.struct_CoProcessMessage
	in.p_data = C.malloc(1)
	defer C.free(in.p_data)
	if rc := C.Dispatch(&in, &out); rc != C.COPROCESS_ERR_NOT_FOUND {
		fmt.Fprintf(os.Stderr, "Dispatch(empty Object) = %d, want %d\n", rc, C.COPROCESS_ERR_NOT_FOUND)
		os.Exit(1)
	}
	fmt.Printf("cgo: %s; Dispatch(empty Object) = COPROCESS_ERR_NOT_FOUND: %s\n", v, C.GoString(C.CoProcessLastError()))
}
