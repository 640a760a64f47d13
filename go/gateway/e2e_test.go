package gateway

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"coprocess/go/internal/reqhub"
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

// A keyless API through Pre, Post and Response hooks: the Objects sent are what the gateway
// sends (docs/gateway-model.md), and every answer is applied to the real upstream
// request/response.
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
	wantSpec := map[string]string{"OrgID": "org1", "APIID": "keyless", "bundle_hash": md5hex("bundle-abc"),
		"config_data": marshalledJSON(t, keylessAPI, "config_data")}
	if !reflect.DeepEqual(pre.Spec, wantSpec) {
		t.Errorf("spec %v\nwant %v", pre.Spec, wantSpec)
	}
	req := pre.Request
	if req.Url != "/k/items?y=2&x=1" || req.RequestUri != "/k/items?y=2&x=1" || req.Method != "POST" || req.Scheme != "http" {
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

// marshalledJSON is what the gateway sends as config_data: json.Marshal of the definition's
// field decoded into a map (keys sorted).
func marshalledJSON(t *testing.T, def, field string) string {
	var m map[string]json.RawMessage
	var v map[string]interface{}
	if err := json.Unmarshal([]byte(def), &m); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(m[field], &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Every built-in at every hook it serves, through the gateway with the real library: the
// outcome the client and the upstream see.
func TestEveryBuiltinAtEveryHook(t *testing.T) {
	api := func(id, auth, hooks, config string) string {
		return `{"api_id": "` + id + `", "org_id": "org1", ` + auth + `,
		  "proxy": {"listen_path": "/` + id + `/", "strip_listen_path": true, "target_url": "{{UPSTREAM}}/up"},
		  "custom_middleware": {"driver": "native", ` + hooks + `}, "config_data": ` + config + `}`
	}
	keyless, coauth := `"use_keyless": true`, `"enable_coprocess_auth": true`
	static := `"StaticTokenAuth": {"strip_prefix": "Bearer ", "tokens": {"tok": {"rate": 3, "per": 1}}}`
	reqhubConf := `"ReqHubMerchant": {"mode": "local", "api": "weather-api", "result_header": "X-ReqHub-Result", "session": {"rate": 9, "per": 1},
	  "clients": {"` + reqhubClientPub + `": {"private_key": "` + reqhubClientPriv + `", "api": "weather-api"}}}`
	signing := func(name string) string {
		return `"` + name + `": {"algorithm": "hmac-sha256", "keyId": "gw-hmac", "secret": "` + upstreamSecret + `", "headers": ["date", "x-request-id"]}`
	}
	type check func(t *testing.T, e *env, r result)
	upstreamHas := func(h, v string) check {
		return func(t *testing.T, e *env, r result) {
			if r.status != 200 || r.seen == nil || len(r.seen.Headers[h]) != 1 || r.seen.Headers[h][0] != v {
				t.Errorf("upstream %s: %d %s", h, r.status, r.body)
			}
		}
	}
	verified := func(t *testing.T, e *env, r result) {
		if sig := signatureOf(t, r, "Authorization"); !sig.Verified || sig.KeyID != "gw-hmac" {
			t.Errorf("signature %+v", sig)
		}
	}
	reqhubPassed := func(t *testing.T, e *env, r result) {
		if r.status != 200 || r.seen == nil || !strings.Contains(strings.Join(r.seen.Headers["X-Reqhub-Result"], ""), `"mode":"local"`) {
			t.Errorf("ReqHub: %d %s", r.status, r.body)
		}
	}
	cases := []struct {
		builtin string
		hook    pb.HookType
		def     string
		headers func(path string) map[string]string
		check   check
	}{
		{"InjectHeaders", pb.HookType_Pre, api("ih-pre", keyless, `"pre": [{"name": "InjectHeaders"}]`, `{"InjectHeaders": {"add": {"X-Ih": "pre"}}}`),
			nil, upstreamHas("X-Ih", "pre")},
		{"InjectHeaders", pb.HookType_CustomKeyCheck, api("ih-ckc", coauth, `"auth_check": {"name": "InjectHeaders"}`, `{"InjectHeaders": {"add": {"X-Ih": "ckc"}}}`),
			nil, func(t *testing.T, e *env, r result) { isError(t, "no session", r, 403, "Forbidden") }},
		{"InjectHeaders", pb.HookType_PostKeyAuth, api("ih-pka", coauth, `"auth_check": {"name": "StaticTokenAuth"}, "post_key_auth": [{"name": "InjectHeaders"}]`, `{`+static+`, "InjectHeaders": {"add": {"X-Ih": "pka"}}}`),
			nil, upstreamHas("X-Ih", "pka")},
		{"InjectHeaders", pb.HookType_Post, api("ih-post", keyless, `"post": [{"name": "InjectHeaders"}]`, `{"InjectHeaders": {"add": {"X-Ih": "post"}}}`),
			nil, upstreamHas("X-Ih", "post")},
		{"InjectHeaders", pb.HookType_Response, api("ih-resp", keyless, `"response": [{"name": "InjectHeaders"}]`, `{"InjectHeaders": {"add": {"X-Ih": "resp"}, "remove": ["X-Upstream"]}}`),
			nil, func(t *testing.T, e *env, r result) {
				if r.status != 200 || r.header.Get("X-Ih") != "resp" || r.header.Get("X-Upstream") != "" {
					t.Errorf("%d %v", r.status, r.header)
				}
			}},
		{"StaticTokenAuth", pb.HookType_CustomKeyCheck, api("sta", coauth, `"auth_check": {"name": "StaticTokenAuth"}`, `{`+static+`}`),
			nil, upstreamHas("Authorization", "Bearer tok")},
		{"HMACSignatureAuth", pb.HookType_CustomKeyCheck, api("hmac-ckc", coauth, `"auth_check": {"name": "HMACSignatureAuth"}`, `{"HMACSignatureAuth": {"keys": {"app": "s3cret"}, "clock_skew_ms": 300000}}`),
			func(path string) map[string]string {
				return signedHeaders(t, "GET", path, "app", "s3cret", "hmac-sha256", time.Now(), "(request-target)", "date")
			}, func(t *testing.T, e *env, r result) {
				if r.status != 200 {
					t.Errorf("%d %s", r.status, r.body)
				}
			}},
		{"ReqHubMerchant", pb.HookType_Pre, api("rh-pre", keyless, `"pre": [{"name": "ReqHubMerchant"}]`, `{`+reqhubConf+`}`), reqhubSigned(t), reqhubPassed},
		{"ReqHubMerchant", pb.HookType_CustomKeyCheck, api("rh-ckc", coauth, `"auth_check": {"name": "ReqHubMerchant"}`, `{`+reqhubConf+`}`), reqhubSigned(t), reqhubPassed},
		{"ReqHubMerchant", pb.HookType_PostKeyAuth, api("rh-pka", coauth, `"auth_check": {"name": "StaticTokenAuth"}, "post_key_auth": [{"name": "ReqHubMerchant"}]`, `{`+static+`, `+reqhubConf+`}`),
			reqhubSigned(t), reqhubPassed},
		{"UpstreamRequestSigning", pb.HookType_Pre, api("urs-pre", keyless, `"pre": [{"name": "UpstreamRequestSigning"}]`, `{`+signing("UpstreamRequestSigning")+`}`), nil, verified},
		{"UpstreamRequestSigning", pb.HookType_PostKeyAuth, api("urs-pka", coauth, `"auth_check": {"name": "StaticTokenAuth"}, "post_key_auth": [{"name": "UpstreamRequestSigning"}]`,
			`{`+static+`, `+signing("UpstreamRequestSigning")+`}`), nil, verified},
		{"UpstreamRequestSigning", pb.HookType_Post, api("urs-post", keyless, `"post": [{"name": "UpstreamRequestSigning"}]`, `{`+signing("UpstreamRequestSigning")+`}`), nil, verified},
	}
	idOf := func(def string) string {
		id := def[strings.Index(def, `"api_id": "`)+len(`"api_id": "`):]
		return id[:strings.IndexByte(id, '"')]
	}
	defs := map[string]string{}
	for _, c := range cases {
		defs[idOf(c.def)] = c.def
	}
	e := newEnv(t, defs)
	for _, c := range cases {
		id := idOf(c.def)
		path := "/" + id + "/x?q=1"
		headers := map[string]string{"Authorization": "Bearer tok", "X-Request-Id": "r-1"}
		if c.headers != nil {
			for k, v := range c.headers(path) {
				headers[k] = v
			}
		}
		r := e.do("GET", path, headers, "")
		t.Run(c.builtin+"@"+c.hook.String(), func(t *testing.T) { c.check(t, e, r) })
		_, _, traces := e.rec.take()
		found := false
		for _, tr := range traces {
			found = found || (tr.Sent.HookType == c.hook && strings.HasPrefix(tr.Sent.HookName, c.builtin) && tr.Err == nil)
		}
		if !found {
			t.Errorf("%s at %s was not dispatched (or failed): %v", c.builtin, c.hook, hooksOf(traces))
		}
	}
}

// reqhubSigned adds fresh ReqHub client headers for the path.
func reqhubSigned(t *testing.T) func(path string) map[string]string {
	return func(path string) map[string]string {
		h, err := reqhub.SignNow(reqhubClientPub, reqhubClientPriv, path)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
}
