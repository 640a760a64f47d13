package gateway

// What the gateway does with a request hook's answer (docs/gateway-model.md, "Request hooks'
// answers"). The built-ins do not produce every kind of answer (url, method, params and
// body edits, direct answers), so some tests edit the library's answer as a plugin could
// have answered (env.edit).

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"coprocess/go/pb"
)

// ansAPI: a keyless API whose Pre and Post hooks are InjectHeaders, with AuthFailure relayed.
const ansAPI = `{"api_id": "ans", "org_id": "org1", "use_keyless": true,
  "proxy": {"listen_path": "/ans/", "strip_listen_path": true, "target_url": "{{UPSTREAM}}/base"},
  "custom_middleware": {"driver": "native", "pre": [{"name": "InjectHeaders"}], "post": [{"name": "InjectHeaders:post"}]},
  "config_data": {"InjectHeaders": {"add": {"X-Both": "set", "X-New": "v"}, "remove": ["X-Both", "X-Old"]}, "InjectHeaders:post": {}},
  "event_handlers": {"events": {"AuthFailure": [{"handler_name": "cp_dynamic_handler", "handler_meta": {"name": "RelayEvent"}}]}}}`

// editHook edits the answers of one hook type only.
func editHook(hook pb.HookType, f func(ans *pb.Object)) func(*pb.Object) {
	return func(ans *pb.Object) {
		if ans.HookType == hook {
			f(ans)
		}
	}
}

// A failed Dispatch is 403 "Key not authorised" for CustomKeyCheck and 500 "Middleware
// error" for every other hook; the upstream is not called (Response hooks: it was), and the
// library's reason goes to the log, not the client.
func TestAnswerDispatchErrorStatusPerHook(t *testing.T) {
	base := `{"api_id": "%ID%", "org_id": "o", %AUTH%, "proxy": {"listen_path": "/%ID%/", "target_url": "{{UPSTREAM}}"},
	  "custom_middleware": {"driver": "native", %HOOKS%}, "config_data": %CONFIG%}`
	mk := func(id, auth, hooks, config string) string {
		return strings.NewReplacer("%ID%", id, "%AUTH%", auth, "%HOOKS%", hooks, "%CONFIG%", config).Replace(base)
	}
	keyless, coauth := `"use_keyless": true`, `"enable_coprocess_auth": true`
	cases := []struct {
		id, def string
		status  int
		msg     string
		log     string
	}{
		{"pre-unknown", mk("pre-unknown", keyless, `"pre": [{"name": "NoSuchPlugin"}]`, `{}`), 500, msgMiddlewareError, "NoSuchPlugin"},
		{"auth-unknown", mk("auth-unknown", coauth, `"auth_check": {"name": "NoSuchAuth"}`, `{}`), 403, msgKeyNotAuthorised, "NoSuchAuth"},
		{"wrong-hook", mk("wrong-hook", keyless, `"pre": [{"name": "StaticTokenAuth"}]`, `{}`), 500, msgMiddlewareError, "-3"},
		{"bad-config", mk("bad-config", keyless, `"post": [{"name": "InjectHeaders"}]`, `{"InjectHeaders": {"add": {"Bad Name": "x"}}}`), 500, msgMiddlewareError, "-5"},
		{"auth-bad-config", mk("auth-bad-config", coauth, `"auth_check": {"name": "StaticTokenAuth"}`, `{"StaticTokenAuth": {"reject_code": 500}}`), 403, msgKeyNotAuthorised, "-5"},
		{"pka-unknown", mk("pka-unknown", coauth, `"auth_check": {"name": "StaticTokenAuth"}, "post_key_auth": [{"name": "Nope"}]`, `{"StaticTokenAuth": {"tokens": {"t": {}}}}`), 500, msgMiddlewareError, "Nope"},
		{"resp-unknown", mk("resp-unknown", keyless, `"response": [{"name": "NoSuchResponder"}]`, `{}`), 500, msgMiddlewareError, "NoSuchResponder"},
	}
	defs := map[string]string{}
	for _, c := range cases {
		defs[c.id] = c.def
	}
	e := newEnv(t, defs)
	for _, c := range cases {
		before := e.hits.Load()
		r := e.do("GET", "/"+c.id+"/x", map[string]string{"Authorization": "t"}, "")
		isError(t, c.id, r, c.status, c.msg)
		_, logs, _ := e.rec.take()
		found := false
		for _, l := range logs {
			found = found || (l[0] == "error" && strings.Contains(l[1], c.log))
		}
		if !found {
			t.Errorf("%s: no error log mentioning %q: %v", c.id, c.log, logs)
		}
		if c.id != "resp-unknown" && e.hits.Load() != before {
			t.Errorf("%s: the upstream was called", c.id)
		}
	}
}

// The body always becomes the answer's raw_body (Content-Length follows); editing `body` has
// no effect.
func TestAnswerBodyIsRawBody(t *testing.T) {
	e := newEnv(t, map[string]string{"ans": ansAPI})
	cases := []struct {
		name string
		edit func(r *pb.MiniRequestObject)
		want string
	}{
		{"unchanged", func(r *pb.MiniRequestObject) {}, "orig body"},
		{"body edited, raw_body not", func(r *pb.MiniRequestObject) { r.Body = "edited" }, "orig body"},
		{"raw_body edited", func(r *pb.MiniRequestObject) { r.RawBody = []byte("new raw"); r.Body = "ignored" }, "new raw"},
		{"raw_body cleared", func(r *pb.MiniRequestObject) { r.RawBody = nil }, ""},
	}
	for _, c := range cases {
		e.edit(editHook(pb.HookType_Pre, func(ans *pb.Object) { c.edit(ans.Request) }))
		r := e.do("POST", "/ans/x", nil, "orig body")
		if r.status != 200 || r.seen.Body != c.want || r.seen.BodyBytes != len(c.want) {
			t.Errorf("%s: %d upstream body %q", c.name, r.status, r.seen.Body)
		}
		if cl := r.seen.Headers["Content-Length"]; len(c.want) > 0 && (len(cl) != 1 || cl[0] != itoa(len(c.want))) {
			t.Errorf("%s: Content-Length %v", c.name, cl)
		}
		_, _, traces := e.rec.take()
		if post := traceOf(t, traces, pb.HookType_Post).Sent.Request; string(post.RawBody) != c.want {
			t.Errorf("%s: the Post hook got raw_body %q", c.name, post.RawBody)
		}
	}
}

// delete_headers, then set_headers (a header both deleted and set keeps the set value).
func TestAnswerHeadersDeleteThenSet(t *testing.T) {
	e := newEnv(t, map[string]string{"ans": ansAPI})
	r := e.do("GET", "/ans/x", map[string]string{"X-Both": "client", "X-Old": "1", "X-Keep": "k"}, "")
	h := r.seen.Headers
	if h["X-Both"][0] != "set" || len(h["X-Both"]) != 1 || h["X-Old"] != nil || h["X-New"][0] != "v" || h["X-Keep"][0] != "k" {
		t.Errorf("upstream headers %v", h)
	}
	_, _, traces := e.rec.take()
	if ph := traceOf(t, traces, pb.HookType_Post).Sent.Request.Headers; ph["X-Both"] != "set" || ph["X-Old"] != "" {
		t.Errorf("the Post hook saw %v", ph)
	}
}

// The query is the original query minus delete_params plus add_params, re-encoded (sorted)
// only when it changed; an answer that changes nothing leaves the query byte for byte.
func TestAnswerQueryRebuilt(t *testing.T) {
	e := newEnv(t, map[string]string{"ans": ansAPI})
	if r := e.do("GET", "/ans/x?y=2&x=1&x=0", nil, ""); r.seen.RawQuery != "y=2&x=1&x=0" {
		t.Errorf("unchanged: %q", r.seen.RawQuery)
	}
	e.rec.take()
	e.edit(editHook(pb.HookType_Pre, func(ans *pb.Object) {
		ans.Request.DeleteParams = []string{"drop"}
		ans.Request.AddParams = map[string]string{"add": "a b", "keep": "2"}
	}))
	if r := e.do("GET", "/ans/x?keep=1&drop=2&z=%2F", nil, ""); r.seen.RawQuery != "add=a+b&keep=2&z=%2F" {
		t.Errorf("params edited: %q", r.seen.RawQuery)
	}
	_, _, traces := e.rec.take()
	if post := traceOf(t, traces, pb.HookType_Post).Sent.Request; post.Url != "/ans/x?add=a+b&keep=2&z=%2F" || post.Params["add"] != "a b" {
		t.Errorf("the Post hook got url %q params %v", post.Url, post.Params)
	}
}

// url becomes the request URL (it must pass url.ParseRequestURI, else 500 Middleware error);
// a query changed only inside url is replaced by the rebuilt one when the two differ.
func TestAnswerURL(t *testing.T) {
	e := newEnv(t, map[string]string{"ans": ansAPI})
	cases := []struct {
		name, url, want string
		params          map[string]string
	}{
		{"new path, same query", "/ans/rewritten?keep=1&drop=2", "/base/rewritten?keep=1&drop=2", nil},
		{"new path and query: the query is the original's, re-encoded", "/ans/rewritten?from=url", "/base/rewritten?drop=2&keep=1", nil},
		{"url query and add_params: the original plus add_params", "/ans/r?from=url", "/base/r?add=1&drop=2&keep=1", map[string]string{"add": "1"}},
		{"without the listen path: nothing to strip", "/elsewhere?keep=1&drop=2", "/base/elsewhere?keep=1&drop=2", nil},
		{"absolute: scheme and host are replaced by the target's", "http://evil.example/abs?keep=1&drop=2", "/base/abs?keep=1&drop=2", nil},
	}
	for _, c := range cases {
		e.edit(editHook(pb.HookType_Pre, func(ans *pb.Object) { ans.Request.Url, ans.Request.AddParams = c.url, c.params }))
		r := e.do("GET", "/ans/x?keep=1&drop=2", nil, "")
		if r.status != 200 || r.seen.RequestURI != c.want || r.seen.Host != strings.TrimPrefix(e.upstream.URL, "http://") {
			t.Errorf("%s: %d upstream %q host %q, want %q", c.name, r.status, r.seen.RequestURI, r.seen.Host, c.want)
		}
	}
	for _, bad := range []string{"no-slash", "", "http://[::1"} {
		e.edit(editHook(pb.HookType_Pre, func(ans *pb.Object) { ans.Request.Url = bad }))
		isError(t, "url "+bad, e.do("GET", "/ans/x", nil, ""), 500, msgMiddlewareError)
	}
	if e.hits.Load() != int64(len(cases)) {
		t.Errorf("upstream hits %d", e.hits.Load())
	}
}

// method is taken as returned: an empty one goes upstream as GET (Go's client), one the
// client refuses fails the proxying (500, the gateway's message).
func TestAnswerMethodAsReturned(t *testing.T) {
	e := newEnv(t, map[string]string{"ans": ansAPI})
	for _, c := range []struct{ method, want string }{{"PUT", "PUT"}, {"", "GET"}, {"PATCH", "PATCH"}} {
		e.edit(editHook(pb.HookType_Pre, func(ans *pb.Object) { ans.Request.Method = c.method }))
		if r := e.do("POST", "/ans/x", nil, "b"); r.status != 200 || r.seen.Method != c.want {
			t.Errorf("method %q: %d upstream %+v", c.method, r.status, r.seen)
		}
		_, _, traces := e.rec.take()
		if m := traceOf(t, traces, pb.HookType_Post).Sent.Request.Method; m != c.method {
			t.Errorf("method %q: the Post hook got %q", c.method, m)
		}
	}
	e.edit(editHook(pb.HookType_Post, func(ans *pb.Object) { ans.Request.Method = "GET /x" }))
	isError(t, "invalid method", e.do("GET", "/ans/x", nil, ""), 500, msgProxyProblem)
	// Headers are set as returned too: the upstream request is refused by Go's client.
	for _, h := range []map[string]string{{"Bad Name": "v"}, {"X-Split": "a\r\nInjected: 1"}} {
		e.edit(editHook(pb.HookType_Post, func(ans *pb.Object) { ans.Request.SetHeaders = h }))
		isError(t, "invalid header", e.do("GET", "/ans/x", nil, ""), 500, msgProxyProblem)
	}
}

// The token: object.metadata is merged into session.metadata (object wins), and the token is
// session.metadata["token"]; metadata without a session is no token.
func TestAnswerTokenFromMergedMetadata(t *testing.T) {
	e := newEnv(t, map[string]string{"static": authAPI})
	cases := []struct {
		name    string
		session *pb.SessionState
		meta    map[string]string
		status  int
		key     string
	}{
		{"object metadata only", &pb.SessionState{Rate: 1}, map[string]string{"token": "from-object"}, 200, "from-object"},
		{"both: object wins", &pb.SessionState{Rate: 1, Metadata: map[string]string{"token": "from-session", "k": "v"}}, map[string]string{"token": "from-object"}, 200, "from-object"},
		{"session metadata only", &pb.SessionState{Rate: 1, Metadata: map[string]string{"token": "from-session"}}, nil, 200, "from-session"},
		{"no session", nil, map[string]string{"token": "from-object"}, 403, ""},
		{"empty token", &pb.SessionState{Rate: 1}, map[string]string{"token": ""}, 403, ""},
	}
	for _, c := range cases {
		e.edit(editHook(pb.HookType_CustomKeyCheck, func(ans *pb.Object) { ans.Session, ans.Metadata = c.session, c.meta }))
		r := e.do("GET", "/static/x", map[string]string{"Authorization": "Bearer good-token"}, "")
		if r.status != c.status {
			t.Errorf("%s: %d %s", c.name, r.status, r.body)
			continue
		}
		_, _, traces := e.rec.take()
		if c.status != 200 {
			isError(t, c.name, r, 403, "Forbidden")
			continue
		}
		pka := traceOf(t, traces, pb.HookType_PostKeyAuth).Sent
		if pka.Session.GetKeyId() != c.key || pka.Metadata["token"] != c.key {
			t.Errorf("%s: key %q metadata %v", c.name, pka.Session.GetKeyId(), pka.Metadata)
		}
	}
}

// A non-empty response_error is copied over response_body, for rejections and direct
// answers alike.
func TestAnswerResponseErrorOverResponseBody(t *testing.T) {
	e := newEnv(t, map[string]string{"ans": ansAPI})
	e.edit(editHook(pb.HookType_Pre, func(ans *pb.Object) {
		ans.Request.ReturnOverrides = &pb.ReturnOverrides{ResponseCode: 403, ResponseError: "the error", ResponseBody: "the body"}
	}))
	isError(t, "rejection", e.do("GET", "/ans/x", nil, ""), 403, "the error")
	e.edit(editHook(pb.HookType_Pre, func(ans *pb.Object) {
		ans.Request.ReturnOverrides = &pb.ReturnOverrides{ResponseCode: 200, ResponseError: "the error", ResponseBody: "the body"}
	}))
	if r := e.do("GET", "/ans/x", nil, ""); r.status != 200 || r.body != "the error" {
		t.Errorf("direct answer: %d %q", r.status, r.body)
	}
	e.edit(editHook(pb.HookType_Pre, func(ans *pb.Object) {
		ans.Request.ReturnOverrides = &pb.ReturnOverrides{ResponseCode: 200, ResponseBody: "the body"}
	}))
	if r := e.do("GET", "/ans/x", nil, ""); r.status != 200 || r.body != "the body" {
		t.Errorf("direct answer without response_error: %d %q", r.status, r.body)
	}
}

// response_code >= 400 without override_error: the override headers are set, AuthFailure
// fires, and the client gets the error template with response_body (or "Key not
// authorised"), Content-Type application/json whatever the plugin set. The rest of the
// answer was applied first.
func TestAnswerRejectionErrorTemplate(t *testing.T) {
	e := newEnv(t, map[string]string{"ans": ansAPI})
	e.edit(editHook(pb.HookType_Pre, func(ans *pb.Object) {
		ans.Request.ReturnOverrides = &pb.ReturnOverrides{ResponseCode: 418, ResponseBody: `teapot "quoted" \ tab	end`,
			Headers: map[string]string{"X-Why": "tea", "Content-Type": "text/plain"}}
	}))
	r := e.do("GET", "/ans/x", nil, "")
	isError(t, "418", r, 418, `teapot "quoted" \ tab	end`)
	if r.header.Get("X-Why") != "tea" || r.body != "{\n    \"error\": \"teapot \\\"quoted\\\" \\\\ tab\\tend\"\n}" {
		t.Errorf("headers %v body %q", r.header, r.body)
	}
	events, _, _ := e.rec.take()
	if len(eventsNamed(events, "AuthFailureRelayed")) != 1 {
		t.Errorf("AuthFailure events %v", events)
	}
	e.edit(editHook(pb.HookType_Pre, func(ans *pb.Object) { ans.Request.ReturnOverrides = &pb.ReturnOverrides{ResponseCode: 401} }))
	isError(t, "no body", e.do("GET", "/ans/x", nil, ""), 401, msgKeyNotAuthorised)
	// The rejecting answer's own edits are applied before: its Content-Type makes the
	// request an XML one, which gets templates/error.xml.
	e.edit(editHook(pb.HookType_Pre, func(ans *pb.Object) {
		ans.Request.SetHeaders = map[string]string{"Content-Type": "text/xml"}
		ans.Request.ReturnOverrides = &pb.ReturnOverrides{ResponseCode: 403, ResponseBody: `<a & "b">`}
	}))
	r = e.do("GET", "/ans/x", nil, "")
	if r.status != 403 || r.header.Get("Content-Type") != "text/xml" ||
		r.body != "<?xml version = \"1.0\" encoding = \"UTF-8\"?>\n<error>&lt;a &amp; &#34;b&#34;&gt;</error>\n" {
		t.Errorf("XML: %d %q %q", r.status, r.header.Get("Content-Type"), r.body)
	}
	if e.hits.Load() != 0 {
		t.Error("the upstream was called")
	}
}

// A request whose Content-Type is XML (application/xml, text/xml, application/soap+xml,
// parameters ignored) gets the XML template; anything else the JSON one.
func TestAnswerRejectionXMLTemplate(t *testing.T) {
	e := newEnv(t, map[string]string{"ans": ansAPI})
	e.edit(editHook(pb.HookType_Pre, func(ans *pb.Object) {
		ans.Request.ReturnOverrides = &pb.ReturnOverrides{ResponseCode: 403, ResponseBody: "no"}
	}))
	for ct, want := range map[string]string{"application/xml; charset=utf-8": "application/xml", "text/xml": "text/xml", "application/soap+xml": "application/soap+xml",
		"Application/XML": "application/json", "application/json": "application/json", "": "application/json"} {
		r := e.do("POST", "/ans/x", map[string]string{"Content-Type": ct}, "x")
		if r.status != 403 || r.header.Get("Content-Type") != want || (want == "application/json") != (r.body == errorBody("no")) {
			t.Errorf("Content-Type %q: %d %q %q", ct, r.status, r.header.Get("Content-Type"), r.body)
		}
	}
}

// AuthFailure fires for a >= 400 rejection by any hook type, not only auth.
func TestAnswerRejectionFiresAuthFailureForEveryHookType(t *testing.T) {
	e := newEnv(t, map[string]string{"static": authAPI})
	for _, hook := range []pb.HookType{pb.HookType_Pre, pb.HookType_CustomKeyCheck, pb.HookType_PostKeyAuth, pb.HookType_Post} {
		e.edit(editHook(hook, func(ans *pb.Object) {
			ans.Request.ReturnOverrides = &pb.ReturnOverrides{ResponseCode: 429, ResponseBody: "slow down"}
		}))
		isError(t, hook.String(), e.do("GET", "/static/x", map[string]string{"Authorization": "Bearer good-token"}, ""), 429, "slow down")
		events, _, _ := e.rec.take()
		if len(eventsNamed(events, "AuthFailureRelayed")) != 1 {
			t.Errorf("%s: events %v", hook, events)
		}
	}
}

// response_code > 0 otherwise (1..399, or >= 400 with override_error): headers, status and
// response_body are written as they are, no template, no event, the chain stops.
func TestAnswerDirect(t *testing.T) {
	e := newEnv(t, map[string]string{"ans": ansAPI})
	cases := []struct {
		ro     *pb.ReturnOverrides
		status int
		body   string
		ctype  string
	}{
		{&pb.ReturnOverrides{ResponseCode: 200, ResponseBody: `{"cached":true}`, Headers: map[string]string{"Content-Type": "application/json", "X-Cache": "hit"}}, 200, `{"cached":true}`, "application/json"},
		{&pb.ReturnOverrides{ResponseCode: 200, ResponseBody: "plain"}, 200, "plain", "text/plain; charset=utf-8"}, // sniffed by net/http
		{&pb.ReturnOverrides{ResponseCode: 302, Headers: map[string]string{"Location": "/elsewhere"}}, 302, "", ""},
		{&pb.ReturnOverrides{ResponseCode: 503, OverrideError: true, ResponseBody: "later"}, 503, "later", "text/plain; charset=utf-8"},
	}
	for _, c := range cases {
		e.edit(editHook(pb.HookType_Pre, func(ans *pb.Object) { ans.Request.ReturnOverrides = c.ro }))
		r := e.do("GET", "/ans/x", nil, "")
		if r.status != c.status || r.body != c.body || r.header.Get("Content-Type") != c.ctype || r.header.Get("X-Generator") != "" {
			t.Errorf("%v: %d %q %q", c.ro, r.status, r.body, r.header)
		}
		for k, v := range c.ro.Headers {
			if r.header.Get(k) != v {
				t.Errorf("%v: header %s missing", c.ro, k)
			}
		}
		events, _, traces := e.rec.take()
		if len(events) != 0 || len(traces) != 1 {
			t.Errorf("%v: events %v hooks %v", c.ro, events, hooksOf(traces))
		}
	}
	if e.hits.Load() != 0 {
		t.Error("the upstream was called")
	}
}

// CustomKeyCheck: no session or an empty token is 403 Forbidden and AuthFailure; otherwise
// OrgID is forced to the API's, KeyID is the token, a session naming policies is refused
// (this gateway has none, as the gateway refuses policies it cannot find), the quota of a
// stored session of the same key is carried over, and the session becomes the request's
// and is stored when base_identity_provided_by is custom_auth or unset. Sessions returned by
// other hooks are ignored.
func TestAuthCheckSessionRules(t *testing.T) {
	other := strings.NewReplacer(`"api_id": "static"`, `"api_id": "other-base", "base_identity_provided_by": "basic_auth_user"`,
		`"listen_path": "/static/"`, `"listen_path": "/other-base/"`).Replace(authAPI)
	e := newEnv(t, map[string]string{"static": authAPI, "other-base": other})
	good := map[string]string{"Authorization": "Bearer good-token"}

	// No session (unknown token): 403 Forbidden, AuthFailure to both handlers.
	isError(t, "unknown token", e.do("GET", "/static/x", map[string]string{"Authorization": "Bearer wrong"}, ""), 403, "Forbidden")
	if events, _, _ := e.rec.take(); len(eventsNamed(events, "AuthFailureRelayed")) != 1 {
		t.Errorf("events %v", events)
	}

	// OrgID forced, KeyID set, the round trip's quirks (allowed_urls, dropped fields).
	e.edit(editHook(pb.HookType_CustomKeyCheck, func(ans *pb.Object) {
		ans.Session.OrgId, ans.Session.KeyId, ans.Session.MaxQueryDepth, ans.Session.Certificate = "another-org", "another-key", 5, "cert"
		ans.Session.AccessRights = map[string]*pb.AccessDefinition{"static": {ApiId: "static", AllowedUrls: []*pb.AccessSpec{{Url: "/x", Methods: []string{"GET"}}}}}
		ans.Session.Tags = []string{"b", "a", "b"}
	}))
	if r := e.do("GET", "/static/x", good, ""); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	_, _, traces := e.rec.take()
	s := traceOf(t, traces, pb.HookType_PostKeyAuth).Sent.Session
	if s.OrgId != "org1" || s.KeyId != "good-token" || s.MaxQueryDepth != 0 || s.Certificate != "" || !reflect.DeepEqual(s.Tags, []string{"a", "b"}) {
		t.Errorf("session %v", s)
	}
	if urls := s.AccessRights["static"].GetAllowedUrls(); len(urls) != 2 || urls[0].Url != "" || urls[1].Url != "/x" {
		t.Errorf("allowed_urls %v (the gateway's TykSessionState puts one empty entry per real one in front)", urls)
	}
	stored, ok := e.gw.Sessions().Get("good-token")
	if !ok || stored.KeyID != "good-token" || stored.OrgID != "org1" {
		t.Errorf("stored %v %+v", ok, stored)
	}

	// Policies named: refused.
	e.edit(editHook(pb.HookType_CustomKeyCheck, func(ans *pb.Object) { ans.Session.ApplyPolicies = []string{"gold"} }))
	isError(t, "policies", e.do("GET", "/static/x", good, ""), 403, "Forbidden")
	if events, _, _ := e.rec.take(); len(eventsNamed(events, "AuthFailureRelayed")) != 1 {
		t.Errorf("policies: events %v", events)
	}

	// The quota of the stored session is carried over.
	e.gw.Sessions().Put("good-token", &Session{KeyID: "good-token", QuotaRemaining: 42, QuotaRenews: 99})
	e.edit(editHook(pb.HookType_PostKeyAuth, func(ans *pb.Object) { ans.Session.Rate = 999 }))
	if r := e.do("GET", "/static/x", good, ""); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	_, _, traces = e.rec.take()
	if s := traceOf(t, traces, pb.HookType_PostKeyAuth).Sent.Session; s.QuotaRemaining != 42 || s.QuotaRenews != 99 || s.Rate != 100 {
		t.Errorf("carried quota: %v", s)
	}
	// ... and the PostKeyAuth hook's session was ignored.
	if s := traceOf(t, traces, pb.HookType_Post).Sent.Session; s.Rate != 100 {
		t.Errorf("the Post hook got the PostKeyAuth answer's session: %v", s)
	}

	// base_identity_provided_by another auth: authenticated, but no session for the hooks.
	e.edit(nil)
	if r := e.do("GET", "/other-base/x", good, ""); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	_, _, traces = e.rec.take()
	if s := traceOf(t, traces, pb.HookType_PostKeyAuth).Sent; s.Session != nil || s.Metadata != nil {
		t.Errorf("base identity elsewhere: session %v", s.Session)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
