package gateway

// The CustomKeyCheck ID extractor (docs/gateway-model.md, "Request hooks' answers", row 1).

import (
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"coprocess/go/pb"
)

// extractorAPI: StaticTokenAuth behind a value ID extractor on the Authorization header;
// the token's session template carries id_extractor_deadline = deadline.
func extractorAPI(t *testing.T, deadline int64) string {
	return extractorAPIWith(t, "ext", deadline, `"extract_from": "header", "extract_with": "value", "extractor_config": {"header_name": "Authorization"}`)
}

func extractorAPIWith(t *testing.T, id string, deadline int64, extractor string) string {
	return fmt.Sprintf(`{
  "api_id": %q, "org_id": "org1", "enable_coprocess_auth": true,
  "proxy": {"listen_path": "/%s/", "strip_listen_path": true, "target_url": "{{UPSTREAM}}"},
  "custom_middleware": {"driver": "native",
    "auth_check": {"name": "StaticTokenAuth"},
    "post": [{"name": "InjectHeaders"}],
    "id_extractor": {%s}},
  "config_data": {
    "StaticTokenAuth": {"header": "Authorization", "strip_prefix": "Bearer ",
      "tokens": {"good-token": {"rate": 5, "per": 1, "id_extractor_deadline": %d}, "other-token": {"rate": 6, "per": 1}}},
    "InjectHeaders": {"add": {"X-Post": "post"}}
  },
  "event_handlers": {"events": {"AuthFailure": [{"handler_name": "cp_dynamic_handler", "handler_meta": {"name": "RelayEvent"}}]}}
}`, id, id, extractor, deadline)
}

// fakeClock is Options.Now for tests.
type fakeClock struct{ unix atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(c.unix.Load(), 0) }
func (c *fakeClock) set(unix int64)          { c.unix.Store(unix) }
func (c *fakeClock) opt(o *Options)          { o.Now = c.now }
func dispatched(traces []HookTrace) []string { return hooksOf(traces) }

// The session id is the API's org id followed by the hex MD5 of the extracted value; the
// plugin's session is stored under it, and while its id_extractor_deadline is in the future
// the plugin is not called and the stored session is the request's.
func TestIDExtractorSkipsPluginUntilDeadline(t *testing.T) {
	base := time.Now().Unix()
	clock := &fakeClock{}
	clock.set(base)
	e := newEnv(t, map[string]string{"ext": extractorAPI(t, base+10)}, clock.opt)
	auth := map[string]string{"Authorization": "Bearer good-token"}
	id := "org1" + md5hex("Bearer good-token")

	if r := e.do("GET", "/ext/x", auth, ""); r.status != 200 {
		t.Fatalf("first request: %d %s", r.status, r.body)
	}
	_, _, traces := e.rec.take()
	if got := dispatched(traces); !reflect.DeepEqual(got, []string{"CustomKeyCheck:StaticTokenAuth", "Post:InjectHeaders"}) {
		t.Fatalf("first request ran %v", got)
	}
	stored, ok := e.gw.Sessions().Get(id)
	if !ok || stored.KeyID != id || stored.OrgID != "org1" || stored.Rate != 5 || stored.IdExtractorDeadline != base+10 || stored.MetaData["token"] != "good-token" {
		t.Fatalf("stored session under %s: %v %+v", id, ok, stored)
	}
	firstPost := traceOf(t, traces, pb.HookType_Post).Sent.Session

	for i, at := range []int64{base + 1, base + 9} {
		clock.set(at)
		if r := e.do("GET", "/ext/x", auth, ""); r.status != 200 || r.seen.Headers["X-Post"][0] != "post" {
			t.Fatalf("cached request %d: %d %s", i, r.status, r.body)
		}
		_, _, traces = e.rec.take()
		if got := dispatched(traces); !reflect.DeepEqual(got, []string{"Post:InjectHeaders"}) {
			t.Fatalf("before the deadline the plugin ran: %v", got)
		}
		if s := traceOf(t, traces, pb.HookType_Post).Sent.Session; s.GetKeyId() != id || s.GetRate() != 5 || !reflect.DeepEqual(s, firstPost) {
			t.Errorf("cached session %v, first %v", s, firstPost)
		}
	}
	// Another value is another session id: the plugin runs (and this token's session has no
	// deadline, so it runs every time).
	for i := 0; i < 2; i++ {
		e.do("GET", "/ext/x", map[string]string{"Authorization": "Bearer other-token"}, "")
		if _, _, traces = e.rec.take(); traces[0].Sent.HookType != pb.HookType_CustomKeyCheck {
			t.Errorf("other token, request %d: %v", i, dispatched(traces))
		}
	}
	// At the deadline (not after it: "deadline > now") the plugin runs again.
	clock.set(base + 10)
	e.do("GET", "/ext/x", auth, "")
	if _, _, traces = e.rec.take(); dispatched(traces)[0] != "CustomKeyCheck:StaticTokenAuth" {
		t.Errorf("at the deadline: %v", dispatched(traces))
	}
	// A value the plugin refuses is refused as before; nothing is stored for it.
	e.do("GET", "/ext/x", map[string]string{"Authorization": "Bearer nope"}, "")
	if _, ok := e.gw.Sessions().Get("org1" + md5hex("Bearer nope")); ok {
		t.Error("a session was stored for a refused key")
	}
}

// No value to extract: 400 "Authorization field missing", the plugin is not called and no
// AuthFailure is fired (the extractor's refusal is not the plugin's).
func TestIDExtractorMissingValue(t *testing.T) {
	e := newEnv(t, map[string]string{
		"ext":   extractorAPI(t, 0),
		"regex": extractorAPIWith(t, "regex", 0, `"extract_from": "header", "extract_with": "regex", "extractor_config": {"header_name": "Authorization", "regex_expression": "tok-[0-9]+"}`),
		"bad":   extractorAPIWith(t, "bad", 0, `"extract_from": "header", "extract_with": "regex", "extractor_config": {"header_name": "Authorization", "regex_expression": "("}`),
	})
	for _, c := range []struct {
		path    string
		headers map[string]string
	}{
		{"/ext/x", nil},
		{"/regex/x", map[string]string{"Authorization": "Bearer good-token"}}, // no match
		{"/bad/x", map[string]string{"Authorization": "Bearer good-token"}},   // invalid expression
	} {
		isError(t, c.path, e.do("GET", c.path, c.headers, ""), 400, "Authorization field missing")
		events, _, traces := e.rec.take()
		if len(traces) != 0 || len(events) != 0 {
			t.Errorf("%s: hooks %v events %v", c.path, dispatched(traces), events)
		}
	}
	if e.hits.Load() != 0 {
		t.Error("the upstream was called")
	}
}

// The regex extractor takes the regex_match_index-th match of the header (or body); the form
// extractor joins the values of a form parameter (the query's here).
func TestIDExtractorRegexAndForm(t *testing.T) {
	deadline := time.Now().Add(time.Hour).Unix()
	e := newEnv(t, map[string]string{
		"regex": extractorAPIWith(t, "regex", deadline, `"extract_from": "header", "extract_with": "regex",
		  "extractor_config": {"header_name": "Authorization", "regex_expression": "[a-z]+", "regex_match_index": 1}`),
		"form": extractorAPIWith(t, "form", deadline, `"extract_from": "form", "extract_with": "value", "extractor_config": {"param_name": "client"}`),
	})
	auth := map[string]string{"Authorization": "Bearer good-token"}
	for _, c := range []struct{ path, value string }{{"/regex/x", "good"}, {"/form/x?client=a&client=b", "ab"}} {
		for i := 0; i < 2; i++ {
			if r := e.do("GET", c.path, auth, ""); r.status != 200 {
				t.Fatalf("%s: %d %s", c.path, r.status, r.body)
			}
		}
		_, _, traces := e.rec.take()
		if got := dispatched(traces); !reflect.DeepEqual(got, []string{"CustomKeyCheck:StaticTokenAuth", "Post:InjectHeaders", "Post:InjectHeaders"}) {
			t.Errorf("%s: %v", c.path, got)
		}
		if _, ok := e.gw.Sessions().Get("org1" + md5hex(c.value)); !ok {
			t.Errorf("%s: no session under the id of %q", c.path, c.value)
		}
	}
	if _, err := parseDefinition([]byte(strings.Replace(extractorAPIWith(t, "x", 0, `"extract_with": "xpath"`), "{{UPSTREAM}}", "http://u", 1))); err == nil || !strings.Contains(err.Error(), "xpath") {
		t.Errorf("xpath extractor: %v", err)
	}
}

// HMACSignatureAuth's id_extractor_ttl_s sets the session's id_extractor_deadline to now +
// ttl: behind an ID extractor on Authorization, the same signed request within the TTL is
// served from the stored session, and the plugin verifies again once the deadline passed.
func TestIDExtractorWithHMACSignatureAuthTTL(t *testing.T) {
	clock := &fakeClock{}
	now := time.Now()
	clock.set(now.Unix())
	def := `{"api_id": "hmac-ext", "org_id": "org1", "enable_coprocess_auth": true,
	  "proxy": {"listen_path": "/hmac-ext/", "strip_listen_path": true, "target_url": "{{UPSTREAM}}"},
	  "custom_middleware": {"driver": "native", "auth_check": {"name": "HMACSignatureAuth"}, "post": [{"name": "InjectHeaders"}],
	    "id_extractor": {"extract_from": "header", "extract_with": "value", "extractor_config": {"header_name": "Authorization"}}},
	  "config_data": {"HMACSignatureAuth": {"keys": {"app": "s3cret"}, "clock_skew_ms": 300000, "id_extractor_ttl_s": 60}, "InjectHeaders": {}}}`
	e := newEnv(t, map[string]string{"hmac-ext": def}, clock.opt)
	signed := signedHeaders(t, "GET", "/hmac-ext/x", "app", "s3cret", "hmac-sha256", now, "(request-target)", "date")
	run := func() []string {
		t.Helper()
		if r := e.do("GET", "/hmac-ext/x", signed, ""); r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		_, _, traces := e.rec.take()
		return dispatched(traces)
	}
	if got := run(); got[0] != "CustomKeyCheck:HMACSignatureAuth" {
		t.Fatalf("first request: %v", got)
	}
	stored, ok := e.gw.Sessions().Get("org1" + md5hex(signed["Authorization"]))
	if !ok || stored.IdExtractorDeadline < now.Unix()+59 || stored.IdExtractorDeadline > now.Unix()+61 || !stored.HMACEnabled {
		t.Fatalf("stored session: %v %+v", ok, stored)
	}
	clock.set(now.Unix() + 30)
	if got := run(); !reflect.DeepEqual(got, []string{"Post:InjectHeaders"}) {
		t.Errorf("within the TTL the plugin ran: %v", got)
	}
	clock.set(stored.IdExtractorDeadline)
	if got := run(); got[0] != "CustomKeyCheck:HMACSignatureAuth" {
		t.Errorf("after the deadline: %v", got)
	}
}
