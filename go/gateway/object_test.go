package gateway

// The Object each hook is sent (docs/gateway-model.md, "The Object").

import (
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"coprocess/go/pb"

	"google.golang.org/protobuf/proto"
)

const objectAPI = `{
  "name": "Objects", "api_id": "obj", "org_id": "org1", "use_keyless": true,
  "custom_middleware_bundle": "bundle-abc",
  "proxy": {"listen_path": "/obj/", "strip_listen_path": true, "target_url": "{{UPSTREAM}}/base"},
  "custom_middleware": {
    "driver": "native",
    "pre": [{"name": "InjectHeaders"}],
    "post": [{"name": "InjectHeaders:post", "raw_body_only": true}],
    "response": [{"name": "InjectHeaders:resp"}]
  },
  "config_data": {
    "Z": 1, "A": {"k": "<a&b>", "n": 1.50}, "big": 12345678901234567890,
    "InjectHeaders": {"add": {"X-Pre": "pre"}},
    "InjectHeaders:post": {"add": {"X-Post": "post"}},
    "InjectHeaders:resp": {"add": {"X-Resp": "resp"}}
  }
}`

// request.headers: the first value of each header, plus Host; request.params: the first
// value of each query key.
func TestObjectHeadersFirstValueAndHost(t *testing.T) {
	e := newEnv(t, map[string]string{"obj": objectAPI})
	req := e.request("GET", "/obj/x?q=1&q=2&r=x", nil, "")
	req.Header.Add("X-Multi", "a")
	req.Header.Add("X-Multi", "b")
	if r := e.send(req); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	_, _, traces := e.rec.take()
	frontHost := strings.TrimPrefix(e.front.URL, "http://")
	for _, tr := range traces {
		h := tr.Sent.Request.Headers
		if h["X-Multi"] != "a" || h["Host"] != frontHost {
			t.Errorf("%s: headers %v", tr.Sent.HookType, h)
		}
		if p := tr.Sent.Request.Params; !reflect.DeepEqual(p, map[string]string{"q": "1", "r": "x"}) {
			t.Errorf("%s: params %v", tr.Sent.HookType, p)
		}
	}
}

// set_headers, add_params, extended_params, delete_headers and delete_params are empty and
// return_overrides.response_code is -1.
func TestObjectEmptyEditFields(t *testing.T) {
	e := newEnv(t, map[string]string{"obj": objectAPI})
	e.do("GET", "/obj/x?a=1", map[string]string{"X-A": "1"}, "")
	_, _, traces := e.rec.take()
	for _, tr := range traces {
		r := tr.Sent.Request
		if len(r.SetHeaders)+len(r.AddParams)+len(r.ExtendedParams)+len(r.DeleteHeaders)+len(r.DeleteParams) != 0 {
			t.Errorf("%s: edit fields not empty: %v", tr.Sent.HookType, r)
		}
		if !proto.Equal(r.ReturnOverrides, &pb.ReturnOverrides{ResponseCode: -1}) {
			t.Errorf("%s: return_overrides %v", tr.Sent.HookType, r.ReturnOverrides)
		}
	}
}

// url is the request URL with the listen path still on it (stripped only when proxying);
// request_uri is what the client sent.
func TestObjectURLKeepsListenPath(t *testing.T) {
	e := newEnv(t, map[string]string{"obj": objectAPI})
	r := e.do("GET", "/obj/items/7?x=1&y=%2F", nil, "")
	if r.status != 200 || r.seen.RequestURI != "/base/items/7?x=1&y=%2F" {
		t.Fatalf("%d %+v", r.status, r.seen)
	}
	_, _, traces := e.rec.take()
	for _, hook := range []pb.HookType{pb.HookType_Pre, pb.HookType_Post} {
		req := traceOf(t, traces, hook).Sent.Request
		if req.Url != "/obj/items/7?x=1&y=%2F" || req.RequestUri != "/obj/items/7?x=1&y=%2F" || req.Method != "GET" {
			t.Errorf("%s: url %q request_uri %q method %q", hook, req.Url, req.RequestUri, req.Method)
		}
	}
}

// scheme is https only when the inbound connection is TLS.
func TestObjectScheme(t *testing.T) {
	e := newEnv(t, map[string]string{"obj": objectAPI})
	e.do("GET", "/obj/x", nil, "")
	_, _, traces := e.rec.take()
	if s := traceOf(t, traces, pb.HookType_Pre).Sent.Request.Scheme; s != "http" {
		t.Errorf("plain connection: scheme %q", s)
	}
	tlsFront := httptest.NewTLSServer(e.gw)
	defer tlsFront.Close()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Get(tlsFront.URL + "/obj/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, _, traces = e.rec.take()
	if s := traceOf(t, traces, pb.HookType_Pre).Sent.Request.Scheme; s != "https" {
		t.Errorf("TLS connection: scheme %q", s)
	}
}

// raw_body is always the whole body; body only when it is UTF-8 and the hook is not
// raw_body_only (the Post hook here is).
func TestObjectBodyAndRawBodyOnly(t *testing.T) {
	e := newEnv(t, map[string]string{"obj": objectAPI})
	e.do("POST", "/obj/x", nil, "héllo")
	_, _, traces := e.rec.take()
	pre, post := traceOf(t, traces, pb.HookType_Pre).Sent.Request, traceOf(t, traces, pb.HookType_Post).Sent.Request
	if pre.Body != "héllo" || string(pre.RawBody) != "héllo" {
		t.Errorf("Pre: body %q raw %q", pre.Body, pre.RawBody)
	}
	if post.Body != "" || string(post.RawBody) != "héllo" {
		t.Errorf("raw_body_only Post: body %q raw %q", post.Body, post.RawBody)
	}
	resp := traceOf(t, traces, pb.HookType_Response).Sent
	if resp.Request.Body != "héllo" || resp.Response.Body == "" {
		t.Errorf("Response hook: request body %q, response body %q", resp.Request.Body, resp.Response.Body)
	}
	bin := string([]byte{0xff, 0xfe, 0x00, 'a'})
	if r := e.do("PUT", "/obj/x", nil, bin); r.status != 200 || r.seen.BodyBytes != 4 {
		t.Fatalf("binary body: %d %s", r.status, r.body)
	}
	_, _, traces = e.rec.take()
	pre = traceOf(t, traces, pb.HookType_Pre).Sent.Request
	if pre.Body != "" || string(pre.RawBody) != bin {
		t.Errorf("binary: body %q raw %q", pre.Body, pre.RawBody)
	}
}

// spec: OrgID, APIID, bundle_hash = hex MD5 of custom_middleware_bundle (MD5 of "" without
// one), config_data = json.Marshal of the parsed object (keys sorted, numbers as float64,
// <>& escaped), absent when empty or disabled.
func TestObjectSpec(t *testing.T) {
	disabled := strings.Replace(objectAPI, `"api_id": "obj"`, `"api_id": "obj-disabled", "config_data_disabled": true`, 1)
	disabled = strings.NewReplacer(`"listen_path": "/obj/"`, `"listen_path": "/obj-disabled/"`, `"custom_middleware_bundle": "bundle-abc",`, "").Replace(disabled)
	empty := keylessWith("obj-empty", `"pre": [{"name": "InjectHeaders"}]`, `{}`)
	e := newEnv(t, map[string]string{"obj": objectAPI, "obj-disabled": disabled, "obj-empty": empty})
	sum := md5.Sum([]byte("bundle-abc"))
	wantConfig := `{"A":{"k":"\u003ca\u0026b\u003e","n":1.5},` +
		`"InjectHeaders":{"add":{"X-Pre":"pre"}},"InjectHeaders:post":{"add":{"X-Post":"post"}},"InjectHeaders:resp":{"add":{"X-Resp":"resp"}},` +
		`"Z":1,"big":12345678901234567000}`
	cases := []struct {
		path string
		want map[string]string
	}{
		{"/obj/x", map[string]string{"OrgID": "org1", "APIID": "obj", "bundle_hash": hex.EncodeToString(sum[:]), "config_data": wantConfig}},
		{"/obj-disabled/x", map[string]string{"OrgID": "org1", "APIID": "obj-disabled", "bundle_hash": "d41d8cd98f00b204e9800998ecf8427e"}},
		{"/obj-empty/x", map[string]string{"OrgID": "org1", "APIID": "obj-empty", "bundle_hash": "d41d8cd98f00b204e9800998ecf8427e"}},
	}
	for _, c := range cases {
		if r := e.do("GET", c.path, nil, ""); r.status != 200 {
			t.Fatalf("%s: %d %s", c.path, r.status, r.body)
		}
		_, _, traces := e.rec.take()
		for _, tr := range traces {
			if !reflect.DeepEqual(tr.Sent.Spec, c.want) {
				t.Errorf("%s %s: spec\n%v\nwant\n%v", c.path, tr.Sent.HookType, tr.Sent.Spec, c.want)
			}
		}
	}
}

// session and metadata (a copy of session.metadata) only for PostKeyAuth, Post and Response,
// and only with a session; the session is the gateway's round trip of the auth_check's.
func TestObjectSessionPerHook(t *testing.T) {
	e := newEnv(t, map[string]string{"static": authAPI})
	if r := e.do("GET", "/static/x", map[string]string{"Authorization": "Bearer good-token"}, ""); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	_, _, traces := e.rec.take()
	for _, hook := range []pb.HookType{pb.HookType_Pre, pb.HookType_CustomKeyCheck} {
		if s := traceOf(t, traces, hook).Sent; s.Session != nil || s.Metadata != nil {
			t.Errorf("%s got session %v metadata %v", hook, s.Session, s.Metadata)
		}
	}
	want := &pb.SessionState{Rate: 100, Per: 60, QuotaMax: -1, Tags: []string{"demo"}, OrgId: "org1", KeyId: "good-token",
		Metadata: map[string]string{"token": "good-token"}, BasicAuthData: &pb.BasicAuthData{}, JwtData: &pb.JWTData{}, Monitor: &pb.Monitor{}}
	for _, hook := range []pb.HookType{pb.HookType_PostKeyAuth, pb.HookType_Post, pb.HookType_Response} {
		s := traceOf(t, traces, hook).Sent
		if !proto.Equal(s.Session, want) {
			t.Errorf("%s: session\n%v\nwant\n%v", hook, s.Session, want)
		}
		if !reflect.DeepEqual(s.Metadata, map[string]string{"token": "good-token"}) {
			t.Errorf("%s: metadata %v", hook, s.Metadata)
		}
	}
}

// Response hooks always get a session: an empty one (as the gateway encodes an empty
// SessionState) for a keyless API, and then no metadata.
func TestObjectResponseHookSessionForKeyless(t *testing.T) {
	e := newEnv(t, map[string]string{"obj": objectAPI})
	e.do("GET", "/obj/x", nil, "")
	_, _, traces := e.rec.take()
	if s := traceOf(t, traces, pb.HookType_Post).Sent; s.Session != nil {
		t.Errorf("keyless Post hook got a session: %v", s.Session)
	}
	resp := traceOf(t, traces, pb.HookType_Response).Sent
	empty := &pb.SessionState{BasicAuthData: &pb.BasicAuthData{}, JwtData: &pb.JWTData{}, Monitor: &pb.Monitor{}}
	if !proto.Equal(resp.Session, empty) || resp.Metadata != nil {
		t.Errorf("keyless Response hook: session %v metadata %v", resp.Session, resp.Metadata)
	}
}

// Session metadata values that are not strings arrive JSON-encoded. (Only the gateway's own
// sessions hold them: here one in the session store, used through the ID extractor.)
func TestObjectMetadataNonStringJSON(t *testing.T) {
	e := newEnv(t, map[string]string{"ext": extractorAPI(t, time.Now().Add(time.Hour).Unix())})
	id := "org1" + md5hex("Bearer stored-token")
	e.gw.Sessions().Put(id, &Session{KeyID: id, OrgID: "org1", IdExtractorDeadline: time.Now().Add(time.Hour).Unix(),
		MetaData: map[string]interface{}{"name": "x", "tier": 3, "flags": map[string]interface{}{"beta": true}, "list": []interface{}{"a", 1.5}}})
	if r := e.do("GET", "/ext/x", map[string]string{"Authorization": "Bearer stored-token"}, ""); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	_, _, traces := e.rec.take()
	want := map[string]string{"name": "x", "tier": "3", "flags": `{"beta":true}`, "list": `["a",1.5]`}
	post := traceOf(t, traces, pb.HookType_Post).Sent
	if !reflect.DeepEqual(post.Session.GetMetadata(), want) || !reflect.DeepEqual(post.Metadata, want) {
		t.Errorf("session metadata %v, metadata %v", post.Session.GetMetadata(), post.Metadata)
	}
}

// Response hooks: response.headers = first values, multivalue_headers = every header with
// all its values, status_code, raw_body, and body when UTF-8.
func TestObjectResponse(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Date", "Fri, 03 May 2024 12:00:42 GMT")
		w.WriteHeader(201)
		if r.URL.Query().Get("bin") != "" {
			w.Write([]byte{0xff, 0x00})
			return
		}
		w.Write([]byte("created"))
	}))
	defer up.Close()
	def := strings.Replace(keylessWith("resp", `"response": [{"name": "InjectHeaders"}]`, `{"InjectHeaders": {}}`), "{{UPSTREAM}}/base", up.URL, 1)
	e := newEnv(t, map[string]string{"resp": def})
	if r := e.do("GET", "/resp/x", nil, ""); r.status != 201 || r.body != "created" || len(r.header["Set-Cookie"]) != 2 {
		t.Fatalf("%d %q %v", r.status, r.body, r.header)
	}
	_, _, traces := e.rec.take()
	got := traceOf(t, traces, pb.HookType_Response).Sent.Response
	want := &pb.ResponseObject{StatusCode: 201, RawBody: []byte("created"), Body: "created",
		Headers: map[string]string{"Set-Cookie": "a=1", "Content-Type": "text/plain", "Date": "Fri, 03 May 2024 12:00:42 GMT", "Content-Length": "7"},
		MultivalueHeaders: []*pb.Header{{Key: "Content-Length", Values: []string{"7"}}, {Key: "Content-Type", Values: []string{"text/plain"}},
			{Key: "Date", Values: []string{"Fri, 03 May 2024 12:00:42 GMT"}}, {Key: "Set-Cookie", Values: []string{"a=1", "b=2"}}}}
	if !proto.Equal(got, want) {
		t.Errorf("response object\n%v\nwant\n%v", got, want)
	}
	e.do("GET", "/resp/x?bin=1", nil, "")
	_, _, traces = e.rec.take()
	if got := traceOf(t, traces, pb.HookType_Response).Sent.Response; got.Body != "" || string(got.RawBody) != "\xff\x00" {
		t.Errorf("binary response: body %q raw %q", got.Body, got.RawBody)
	}
}

// The order of the hooks: Pre, CustomKeyCheck, PostKeyAuth, Post, the upstream, Response;
// keyless APIs have no CustomKeyCheck or PostKeyAuth; disabled hooks are skipped;
// require_session is ignored.
func TestHookOrder(t *testing.T) {
	def := strings.Replace(authAPI, `"post": [{"name": "InjectHeaders:post"}]`,
		`"post": [{"name": "InjectHeaders:post", "require_session": true}, {"name": "InjectHeaders:off", "disabled": true}]`, 1)
	keyless := keylessWith("kl", `"pre": [{"name": "InjectHeaders"}], "post": [{"name": "InjectHeaders:p", "require_session": true}], "response": [{"name": "InjectHeaders:r"}]`, `{}`)
	e := newEnv(t, map[string]string{"static": def, "kl": keyless})
	e.do("GET", "/static/x", map[string]string{"Authorization": "Bearer good-token"}, "")
	_, _, traces := e.rec.take()
	want := []string{"Pre:InjectHeaders:pre", "CustomKeyCheck:StaticTokenAuth", "PostKeyAuth:InjectHeaders:pka", "Post:InjectHeaders:post", "Response:InjectHeaders:resp"}
	if got := hooksOf(traces); !reflect.DeepEqual(got, want) {
		t.Errorf("coprocess auth API: %v", got)
	}
	if r := e.do("GET", "/kl/x", nil, ""); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	_, _, traces = e.rec.take()
	if got := hooksOf(traces); !reflect.DeepEqual(got, []string{"Pre:InjectHeaders", "Post:InjectHeaders:p", "Response:InjectHeaders:r"}) {
		t.Errorf("keyless API: %v", got)
	}
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}
