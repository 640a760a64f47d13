package gateway

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"coprocess/go/pb"
)

const authAPI = `{
  "name": "Static token", "api_id": "static", "org_id": "org1", "enable_coprocess_auth": true,
  "proxy": {"listen_path": "/static/", "strip_listen_path": true, "target_url": "{{UPSTREAM}}"},
  "custom_middleware": {
    "driver": "native",
    "pre": [{"name": "InjectHeaders:pre"}],
    "auth_check": {"name": "StaticTokenAuth"},
    "post_key_auth": [{"name": "InjectHeaders:pka"}],
    "post": [{"name": "InjectHeaders:post"}],
    "response": [{"name": "InjectHeaders:resp"}]
  },
  "config_data": {
    "StaticTokenAuth": {"header": "Authorization", "strip_prefix": "Bearer ",
      "tokens": {"good-token": {"rate": 100, "per": 60, "quota_max": -1, "tags": ["demo"]}}},
    "InjectHeaders:pre": {"remove": ["X-Debug"]},
    "InjectHeaders:pka": {"add": {"X-Authenticated": "yes"}},
    "InjectHeaders:post": {"add": {"X-Post": "post"}},
    "InjectHeaders:resp": {"add": {"X-Resp": "resp"}}
  },
  "event_handlers": {"events": {"AuthFailure": [
    {"handler_name": "cp_dynamic_handler", "handler_meta": {"name": "RelayEvent"}},
    {"handler_name": "cp_dynamic_handler", "handler_meta": {"name": "LogEvent"}}
  ]}}
}`

// Every hook type on one API: CustomKeyCheck authenticates, then PostKeyAuth, Post and
// Response hooks get the session and metadata.
func TestCoProcessAuthAPIThroughEveryHookType(t *testing.T) {
	e := newEnv(t, map[string]string{"static": authAPI})
	r := e.do("GET", "/static/anything?a=b", map[string]string{"Authorization": "Bearer good-token", "X-Debug": "1"}, "")
	if r.status != 200 || r.seen == nil {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	h := r.seen.Headers
	if h["X-Authenticated"][0] != "yes" || h["X-Post"][0] != "post" || h["X-Debug"] != nil || h["Authorization"][0] != "Bearer good-token" {
		t.Errorf("upstream headers %v", h)
	}
	if r.seen.Path != "/anything" || r.header.Get("X-Resp") != "resp" {
		t.Errorf("path %q, client headers %v", r.seen.Path, r.header)
	}
	events, _, traces := e.rec.take()
	if len(events) != 0 {
		t.Errorf("events on success: %v", events)
	}
	want := []string{"Pre:InjectHeaders:pre", "CustomKeyCheck:StaticTokenAuth", "PostKeyAuth:InjectHeaders:pka", "Post:InjectHeaders:post", "Response:InjectHeaders:resp"}
	if got := hooksOf(traces); !reflect.DeepEqual(got, want) {
		t.Fatalf("hooks %v", got)
	}
	auth := traceOf(t, traces, pb.HookType_CustomKeyCheck).Sent
	if auth.Session != nil || auth.Metadata != nil || auth.Request.Headers["X-Debug"] != "" {
		t.Errorf("CustomKeyCheck sent session %v metadata %v headers %v", auth.Session, auth.Metadata, auth.Request.Headers)
	}
	for _, hook := range []pb.HookType{pb.HookType_PostKeyAuth, pb.HookType_Post, pb.HookType_Response} {
		sent := traceOf(t, traces, hook).Sent
		if sent.Session.GetRate() != 100 || sent.Session.GetPer() != 60 || sent.Metadata["token"] != "good-token" {
			t.Errorf("%s got session %v metadata %v", hook, sent.Session, sent.Metadata)
		}
		if (sent.Response != nil) != (hook == pb.HookType_Response) {
			t.Errorf("%s: response present = %v", hook, sent.Response != nil)
		}
	}
}

// Failed authentication (the plugin answers no session): 403 Forbidden through the error
// template, no upstream call, and AuthFailure goes to both native event handlers:
// RelayEvent fires it back out through TykTriggerEvent, LogEvent logs it.
func TestAuthFailureIsForbiddenAndFiresEvents(t *testing.T) {
	e := newEnv(t, map[string]string{"static": authAPI})
	for _, hdr := range []map[string]string{{"Authorization": "Bearer wrong"}, {"Authorization": "good-token"}, {}} {
		r := e.do("GET", "/static/x", hdr, "")
		if r.seen != nil {
			t.Fatalf("%v: reached the upstream", hdr)
		}
		isError(t, "unknown key", r, 403, "Forbidden")
		var body map[string]string
		if json.Unmarshal([]byte(r.body), &body); body["error"] != "Forbidden" {
			t.Errorf("body %s", r.body)
		}
		events, logs, traces := e.rec.take()
		if got := hooksOf(traces); !reflect.DeepEqual(got, []string{"Pre:InjectHeaders:pre", "CustomKeyCheck:StaticTokenAuth"}) {
			t.Errorf("hooks after a failed auth: %v", got)
		}
		if len(events) != 1 || events[0][0] != "AuthFailureRelayed" {
			t.Fatalf("events %v", events)
		}
		var ev struct {
			Message struct {
				Type      string
				Meta      map[string]string
				TimeStamp string
			} `json:"message"`
			HandlerName string            `json:"handler_name"`
			Spec        map[string]string `json:"spec"`
		}
		if err := json.Unmarshal([]byte(events[0][1]), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Message.Type != "AuthFailure" || ev.HandlerName != "RelayEvent" || !reflect.DeepEqual(ev.Spec, map[string]string{"APIID": "static", "OrgID": "org1"}) {
			t.Errorf("relayed payload %s", events[0][1])
		}
		if m := ev.Message.Meta; m["Message"] != "Auth Failure" || m["Path"] != "/static/x" || m["Origin"] != "127.0.0.1" || m["Key"] != "" || m["OriginatingRequest"] != "" || ev.Message.TimeStamp == "" {
			t.Errorf("meta %v, timestamp %q", m, ev.Message.TimeStamp)
		}
		if strings.Contains(events[0][1], "wrong") {
			t.Error("the presented key leaked into the event")
		}
		logged := false
		for _, l := range logs {
			logged = logged || (l[0] == "info" && strings.Contains(l[1], "AuthFailure") && strings.Contains(l[1], "static"))
		}
		if !logged {
			t.Errorf("LogEvent did not log: %v", logs)
		}
	}
	if e.hits.Load() != 0 {
		t.Errorf("the upstream was called %d times", e.hits.Load())
	}
}

// reject_code makes the plugin answer itself: its code and message reach the client through
// the error template.
func TestPluginRejectionReachesTheClient(t *testing.T) {
	def := strings.Replace(authAPI, `"strip_prefix": "Bearer ",`, `"strip_prefix": "Bearer ", "reject_code": 401,`, 1)
	e := newEnv(t, map[string]string{"static": def})
	isError(t, "reject_code", e.do("GET", "/static/x", map[string]string{"Authorization": "Bearer nope"}, ""), 401, "Key not authorised")
	if events, _, _ := e.rec.take(); len(events) != 1 {
		t.Errorf("a plugin rejection fires AuthFailure once: %v", events)
	}
	if r := e.do("GET", "/static/x", map[string]string{"Authorization": "Bearer good-token"}, ""); r.status != 200 {
		t.Errorf("good token: %d", r.status)
	}
}
