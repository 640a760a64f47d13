package coprocess

/*
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include "api.h"

// Call the host functions the way the library does: through the process's dynamic symbol
// table (the library's weak imports resolve there), with C strings, freeing what
// TykGetData returns with free(3). Used by CallHost* (tests, diagnostics).
typedef void (*cp_store_fn)(char *, char *, int);
typedef char *(*cp_get_fn)(char *);

static int cp_call_store(char *key, char *value, int ttl) {
	cp_store_fn f = (cp_store_fn)dlsym(RTLD_DEFAULT, "TykStoreData");
	if (!f) return 0;
	f(key, value, ttl);
	return 1;
}

typedef int (*cp_store_if_absent_fn)(char *, char *, int);

static int cp_call_store_if_absent(char *key, char *value, int ttl, int *rc) {
	cp_store_if_absent_fn f = (cp_store_if_absent_fn)dlsym(RTLD_DEFAULT, "CoProcessStoreDataIfAbsent");
	if (!f) return 0;
	*rc = f(key, value, ttl);
	return 1;
}

static int cp_call_get(char *key, char **out) {
	cp_get_fn f = (cp_get_fn)dlsym(RTLD_DEFAULT, "TykGetData");
	if (!f) return 0;
	*out = f(key);
	return 1;
}
*/
import "C"

import (
	"errors"
	"unsafe"
)

// errNoSymbol: the process does not export the host function in its dynamic symbol table,
// so the library's weak import would not find it either.
var errNoSymbol = errors.New("coprocess: host function not found in the process's dynamic symbol table")

// CallHostStore calls TykStoreData as the library does (looked up with dlsym in the process's
// dynamic symbol table).
func CallHostStore(key, value string, ttlSeconds int) error {
	k, v := C.CString(key), C.CString(value)
	defer C.free(unsafe.Pointer(k))
	defer C.free(unsafe.Pointer(v))
	if C.cp_call_store(k, v, C.int(ttlSeconds)) == 0 {
		return errNoSymbol
	}
	return nil
}

// CallHostGet calls TykGetData as the library does and frees the answer with free(3);
// ok is false for NULL or "" (absent, per the ABI).
func CallHostGet(key string) (value string, ok bool, err error) {
	k := C.CString(key)
	defer C.free(unsafe.Pointer(k))
	var out *C.char
	if C.cp_call_get(k, &out) == 0 {
		return "", false, errNoSymbol
	}
	if out == nil {
		return "", false, nil
	}
	value = C.GoString(out)
	C.free(unsafe.Pointer(out))
	return value, value != "", nil
}

// CallHostStoreIfAbsent calls CoProcessStoreDataIfAbsent as the library does and returns its
// answer: 1 stored, 0 present, negative unavailable.
func CallHostStoreIfAbsent(key, value string, ttlSeconds int) (int, error) {
	k, v := C.CString(key), C.CString(value)
	defer C.free(unsafe.Pointer(k))
	defer C.free(unsafe.Pointer(v))
	var rc C.int
	if C.cp_call_store_if_absent(k, v, C.int(ttlSeconds), &rc) == 0 {
		return 0, errNoSymbol
	}
	return int(rc), nil
}
