package coprocess

/*
#include "api.h"
*/
import "C"

import "fmt"

// Codes returned by the library's exports: the COPROCESS_* macros of include/api.h, read
// through cgo (so they cannot drift from the header).
const (
	CodeOK         = C.COPROCESS_OK
	CodeNull       = C.COPROCESS_ERR_NULL       // a null pointer or a negative length
	CodeInvalid    = C.COPROCESS_ERR_INVALID    // bytes are not a valid Object / event JSON
	CodeNotFound   = C.COPROCESS_ERR_NOT_FOUND  // no middleware or event handler under that name, or not for that hook type
	CodeMiddleware = C.COPROCESS_ERR_MIDDLEWARE // the middleware or event handler failed or panicked
	CodeConfig     = C.COPROCESS_ERR_CONFIG     // invalid configuration
)

// Error is a failed call into the library: the export, the library's code and the reason
// CoProcessLastError gave on the thread that made the call.
type Error struct {
	Op      string // "Dispatch", "DispatchEvent" or "Reload"
	Code    int
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("coprocess: %s failed with %d (%s): %s", e.Op, e.Code, CodeName(e.Code), e.Message)
}

// Is makes errors.Is(err, ErrNotFound) (and the other sentinels) match any *Error with
// the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Op == "" && t.Message == "" && t.Code == e.Code
}

// Sentinels for errors.Is: they match every *Error with their code.
var (
	ErrNull       = &Error{Code: CodeNull}
	ErrInvalid    = &Error{Code: CodeInvalid}
	ErrNotFound   = &Error{Code: CodeNotFound}
	ErrMiddleware = &Error{Code: CodeMiddleware}
	ErrConfig     = &Error{Code: CodeConfig}
)

// CodeName is the header's name for a code.
func CodeName(code int) string {
	switch code {
	case CodeOK:
		return "COPROCESS_OK"
	case CodeNull:
		return "COPROCESS_ERR_NULL"
	case CodeInvalid:
		return "COPROCESS_ERR_INVALID"
	case CodeNotFound:
		return "COPROCESS_ERR_NOT_FOUND"
	case CodeMiddleware:
		return "COPROCESS_ERR_MIDDLEWARE"
	case CodeConfig:
		return "COPROCESS_ERR_CONFIG"
	}
	return "unknown code"
}
