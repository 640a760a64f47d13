package gateway

import (
	"fmt"
	"strings"
)

// traceID is the trace id of a W3C traceparent value (version-traceid-parentid-flags,
// lower-case hex), "" when it is not a valid one: a 2-digit version other than ff, a
// non-zero 32-digit trace id, a non-zero 16-digit parent id and 2-digit flags; version 00
// has exactly these four fields, a later version may have more. The same rule as the
// library's (src/context.rs traceparent_trace_id), so the gateway's lines and the library's
// lines about one request carry the same id.
func traceID(traceparent string) string {
	parts := strings.Split(strings.TrimSpace(traceparent), "-")
	if len(parts) < 4 {
		return ""
	}
	version, trace, parent, flags := parts[0], parts[1], parts[2], parts[3]
	if !lowerHex(version, 2) || version == "ff" || !lowerHex(trace, 32) || allZero(trace) ||
		!lowerHex(parent, 16) || allZero(parent) || !lowerHex(flags, 2) || (version == "00" && len(parts) != 4) {
		return ""
	}
	return trace
}

func lowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func allZero(s string) bool { return strings.Trim(s, "0") == "" }

// logReq logs a line about a request: " trace_id=<id>" is appended when the request carried a
// valid traceparent (the library appends the same to its own lines).
func (g *Gateway) logReq(st *reqState, level, format string, args ...interface{}) {
	msg := fmt.Sprintf(format, args...)
	if st != nil && st.traceID != "" {
		msg += " trace_id=" + st.traceID
	}
	g.log.Log(level, msg)
}
