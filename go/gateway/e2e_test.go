package gateway

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"coprocess/go/pb"
)

const keylessAPI = `{
  "name": "Keyless", "api_id": "keyless", "org_id": "org1", "use_keyless": true,
  "custom_middleware_bundle": "bundle-abc",
  "proxy": {"listen_path": "/k/", "strip_listen_path": true, "target_url": "{{UPSTREAM}}/base"},
  "custom_middleware": {
    "driver": "native",
    "pre": [{"name": "InjectHeaders"}],
    "post": [{"name": "InjectHeaders:post"}],
    "response": [{"name": "InjectHeaders:resp"}]
  },
  "config_data": {
    "InjectHeaders": {"add": {"X-Pre": "pre"}, "remove": ["Cookie"]},
    "InjectHeaders:post": {"add": {"X-Post": "post"}},
    "InjectHeaders:resp": {"add": {"X-Resp": "resp"}, "remove": ["Server"]}
  }
}`

// A keyless API through Pre, Post and Response hooks: the Objects sent are what SPEC
// section 3 describes, and every answer is applied to the real upstream request/response.
func TestKeylessAPIThroughPrePostAndResponseHooks(t *testing.T) {
	e := newEnv(t, map[string]string{"keyless": keylessAPI})
	r := e.do("POST", "/k/items?y=2&x=1", map[string]string{"Cookie": "secret=1", "X-Client": "c1", "Content-Type": "text/plain"}, "héllo body")
	if r.status != 200 || r.seen == nil {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	s := r.seen
	if s.Method != "POST" || s.Path != "/base/items" || s.RawQuery != "y=2&x=1" || s.Body != "héllo body" {
		t.Errorf("upstream saw %s %s ? %s body %q", s.Method, s.Path, s.RawQuery, s.Body)
	}
	if s.Headers["X-Pre"][0] != "pre" || s.Headers["X-Post"][0] != "post" || s.Headers["X-Client"][0] != "c1" || s.Headers["Cookie"] != nil {
		t.Errorf("upstream headers %v", s.Headers)
	}
	if r.header.Get("X-Resp") != "resp" || r.header.Get("Server") != "" || r.header.Get("X-Upstream") != "echo" {
		t.Errorf("client got headers %v", r.header)
	}

	_, _, traces := e.rec.take()
	if got := hooksOf(traces); !reflect.DeepEqual(got, []string{"Pre:InjectHeaders", "Post:InjectHeaders:post", "Response:InjectHeaders:resp"}) {
		t.Fatalf("hooks %v", got)
	}
	pre := traceOf(t, traces, pb.HookType_Pre).Sent
	wantSpec := map[string]string{"OrgID": "org1", "APIID": "keyless", "bundle_hash": "bundle-abc",
		"config_data": compactJSON(t, keylessAPI, "config_data")}
	if !reflect.DeepEqual(pre.Spec, wantSpec) {
		t.Errorf("spec %v\nwant %v", pre.Spec, wantSpec)
	}
	req := pre.Request
	if req.Url != "/base/items?y=2&x=1" || req.RequestUri != "/k/items?y=2&x=1" || req.Method != "POST" || req.Scheme != "http" {
		t.Errorf("pre request %v", req)
	}
	if req.Body != "héllo body" || string(req.RawBody) != "héllo body" || req.Params["x"] != "1" || req.Params["y"] != "2" {
		t.Errorf("pre body/params %q %v", req.Body, req.Params)
	}
	if req.Headers["Cookie"] != "secret=1" || req.Headers["X-Client"] != "c1" || req.ReturnOverrides.GetResponseCode() != -1 {
		t.Errorf("pre headers %v overrides %v", req.Headers, req.ReturnOverrides)
	}
	if pre.Session != nil || pre.Metadata != nil || pre.Response != nil {
		t.Error("a Pre hook got session, metadata or response")
	}
	post := traceOf(t, traces, pb.HookType_Post).Sent
	if post.Request.Headers["X-Pre"] != "pre" || post.Request.Headers["Cookie"] != "" {
		t.Errorf("the Post hook does not see the Pre hook's edits: %v", post.Request.Headers)
	}
	if post.Session != nil || post.Response != nil {
		t.Error("keyless Post hook got a session or a response")
	}
	resp := traceOf(t, traces, pb.HookType_Response).Sent
	if resp.Response.GetStatusCode() != 200 || resp.Response.Headers["Server"] != "echo" || !strings.Contains(resp.Response.Body, `"/base/items"`) {
		t.Errorf("response object %v", resp.Response)
	}
	if len(resp.Response.MultivalueHeaders) == 0 || string(resp.Response.RawBody) != resp.Response.Body {
		t.Error("response object lacks multivalue_headers or raw_body")
	}
	if resp.Request.Headers["X-Post"] != "post" || resp.Spec["APIID"] != "keyless" {
		t.Errorf("response hook request %v", resp.Request.Headers)
	}
}

func compactJSON(t *testing.T, def, field string) string {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(def), &m); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, m[field]); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}
