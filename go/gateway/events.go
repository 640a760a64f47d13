package gateway

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"time"
)

// keyFailureMeta is the gateway's EventKeyFailureMeta (an AuthFailure's Meta). This gateway
// leaves Key and OriginatingRequest empty: the gateway puts the presented key and the whole
// request (base64 of its wire form, Authorization included) there, and the library's
// LogEvent writes the event JSON to the log verbatim (docs/gateway-model.md, differences).
type keyFailureMeta struct {
	Message            string
	OriginatingRequest string
	Path               string
	Origin             string
	Key                string
}

// eventSpec is the event's "spec": the gateway's JSVMContextGlobal.
type eventSpec struct {
	APIID string
	OrgID string
}

// eventWrapper is the gateway's CoProcessEventWrapper, the JSON DispatchEvent gets.
type eventWrapper struct {
	Event struct {
		Type      string
		Meta      interface{}
		TimeStamp string
	} `json:"message"`
	Handler string     `json:"handler_name"`
	Spec    *eventSpec `json:"spec"`
	// TraceID is the request's W3C trace id (from its traceparent header), absent without
	// one. The gateway's wrapper has no such field (docs/gateway-model.md, differences).
	TraceID string `json:"trace_id,omitempty"`
}

// authFailed is the gateway's AuthFailed: an AuthFailure event with the request's path and
// origin.
func (g *Gateway) authFailed(st *reqState) {
	g.fireEvent(st, "AuthFailure", keyFailureMeta{Message: "Auth Failure", Path: st.r.URL.Path, Origin: realIP(st.r)})
}

// fireEvent runs the API's native event handlers for an event type, one DispatchEvent per
// handler, synchronously and in the definition's order.
func (g *Gateway) fireEvent(st *reqState, eventType string, meta interface{}) {
	a := st.api
	for _, handler := range a.handlers[eventType] {
		var ev eventWrapper
		ev.Event.Type, ev.Event.Meta = eventType, meta
		ev.Event.TimeStamp = time.Now().Local().String()
		ev.Handler = handler
		ev.Spec = &eventSpec{APIID: a.def.APIID, OrgID: a.def.OrgID}
		ev.TraceID = st.traceID
		payload, err := json.Marshal(ev)
		if err == nil {
			err = g.opts.Dispatcher.DispatchEvent(payload)
		}
		g.metrics.event(a.def.APIID, eventType, handler, err != nil)
		if err != nil {
			g.logReq(st, "error", "API %s: event %s to handler %s: %v", a.def.APIID, eventType, handler, err)
		}
	}
}

// realIP is the gateway's request.RealIP with its default settings: a valid X-Real-IP,
// else the first X-Forwarded-For entry when it is an IP, else the host of RemoteAddr.
func realIP(r *http.Request) string {
	if v := r.Header.Get("X-Real-IP"); v != "" {
		if ip := net.ParseIP(v); ip != nil {
			return ip.String()
		}
	}
	if fw := r.Header.Get("X-Forwarded-For"); fw != "" {
		if ip := net.ParseIP(strings.TrimSpace(strings.Split(fw, ",")[0])); ip != nil {
			return ip.String()
		}
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	return host
}
