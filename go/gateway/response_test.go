package gateway

// Response hooks (docs/gateway-model.md, "Response hooks").

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"coprocess/go/pb"
)

// respAPI: keyless, two Response hooks (InjectHeaders removing Server, then an empty one).
const respAPI = `{"api_id": "resp", "org_id": "org1", "use_keyless": true,
  "proxy": {"listen_path": "/resp/", "strip_listen_path": true, "target_url": "{{UPSTREAM}}"},
  "custom_middleware": {"driver": "native", "response": [{"name": "InjectHeaders"}, {"name": "InjectHeaders:second"}]},
  "config_data": {"InjectHeaders": {"add": {"X-Resp": "resp"}, "remove": ["Server"]}, "InjectHeaders:second": {}}}`

// An answer without a response is 500 "Middleware error"; so is a failed dispatch.
func TestResponseHookWithoutResponse(t *testing.T) {
	e := newEnv(t, map[string]string{"resp": respAPI})
	e.edit(editHook(pb.HookType_Response, func(ans *pb.Object) { ans.Response = nil }))
	isError(t, "no response", e.do("GET", "/resp/x", nil, ""), 500, msgMiddlewareError)
	_, _, traces := e.rec.take()
	if len(traces) != 1 {
		t.Errorf("the chain went on: %v", hooksOf(traces))
	}
}

// The response headers are cleared and rebuilt from multivalue_headers; the built-in keeps
// both in step (InjectHeaders removes Server and adds X-Resp in both).
func TestResponseHookHeadersFromMultivalue(t *testing.T) {
	e := newEnv(t, map[string]string{"resp": respAPI})
	r := e.do("GET", "/resp/x", nil, "")
	if r.status != 200 || r.header.Get("Server") != "" || r.header.Get("X-Resp") != "resp" || r.header.Get("X-Upstream") != "echo" {
		t.Fatalf("%d %v", r.status, r.header)
	}
	_, _, traces := e.rec.take()
	second := traces[1].Sent.Response
	if _, ok := second.Headers["Server"]; ok || second.Headers["X-Resp"] != "resp" {
		t.Errorf("the second hook saw headers %v", second.Headers)
	}
	// A plugin answering a new header set in multivalue_headers only (headers as sent): that
	// set is the response's, every value kept.
	e.edit(editHook(pb.HookType_Response, func(ans *pb.Object) {
		if ans.HookName == "InjectHeaders:second" {
			ans.Response.MultivalueHeaders = []*pb.Header{{Key: "Set-Cookie", Values: []string{"a=1", "b=2"}}, {Key: "x-lower", Values: []string{"v"}}}
		}
	}))
	r = e.do("GET", "/resp/x", nil, "")
	delete(r.header, "Date") // net/http's own, as is the sniffed Content-Type
	want := http.Header{"Set-Cookie": {"a=1", "b=2"}, "X-Lower": {"v"}, "Content-Length": {r.header.Get("Content-Length")}, "Content-Type": {"text/plain; charset=utf-8"}}
	if !reflect.DeepEqual(r.header, want) {
		t.Errorf("headers %v", r.header)
	}
}

// When the answer's `headers` differ from what was sent, they are synced into
// multivalue_headers first: a changed or added key replaces the first value (or adds the
// header), a key removed from headers is removed.
func TestResponseHookHeadersSync(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		w.Header().Set("Server", "up")
		w.Header().Set("X-Drop", "1")
		w.Write([]byte("ok"))
	}))
	defer up.Close()
	e := newEnv(t, map[string]string{"resp": strings.Replace(respAPI, "{{UPSTREAM}}", up.URL, 1)})
	e.edit(editHook(pb.HookType_Response, func(ans *pb.Object) {
		if ans.HookName != "InjectHeaders:second" {
			return
		}
		h := ans.Response.Headers
		h["Set-Cookie"] = "c=3"
		h["X-New"] = "n"
		delete(h, "X-Drop")
	}))
	r := e.do("GET", "/resp/x", nil, "")
	if got := r.header["Set-Cookie"]; !reflect.DeepEqual(got, []string{"c=3", "b=2"}) {
		t.Errorf("Set-Cookie %v", got)
	}
	if r.header.Get("X-New") != "n" || r.header.Get("X-Drop") != "" || r.header.Get("X-Resp") != "resp" || r.header.Get("Server") != "" {
		t.Errorf("headers %v", r.header)
	}
}

// The body becomes raw_body (editing `body` has no effect), Content-Length is recomputed,
// and the status becomes status_code exactly as returned; the next hook sees the result.
func TestResponseHookBodyAndStatus(t *testing.T) {
	e := newEnv(t, map[string]string{"resp": respAPI})
	e.edit(editHook(pb.HookType_Response, func(ans *pb.Object) {
		if ans.HookName == "InjectHeaders" {
			ans.Response.RawBody, ans.Response.Body, ans.Response.StatusCode = []byte("new body"), "ignored", 418
		}
	}))
	r := e.do("GET", "/resp/x", nil, "")
	if r.status != 418 || r.body != "new body" || r.header.Get("Content-Length") != "8" {
		t.Errorf("%d %q %v", r.status, r.body, r.header)
	}
	_, _, traces := e.rec.take()
	if s := traces[1].Sent.Response; s.StatusCode != 418 || string(s.RawBody) != "new body" || s.Headers["Content-Length"] != "8" {
		t.Errorf("the second hook saw %v", s)
	}
	e.edit(editHook(pb.HookType_Response, func(ans *pb.Object) { ans.Response.Body = "only body" }))
	if r := e.do("GET", "/resp/x", nil, ""); r.status != 200 || !strings.Contains(r.body, `"request_uri"`) {
		t.Errorf("body-only edit: %d %q", r.status, r.body)
	}
	// A status net/http cannot write (the gateway would panic writing it): 500.
	e.edit(editHook(pb.HookType_Response, func(ans *pb.Object) { ans.Response.StatusCode = 0 }))
	isError(t, "status 0", e.do("GET", "/resp/x", nil, ""), 500, msgMiddlewareError)
}

// The upstream's hop-by-hop response headers reach the Response hooks and are removed after
// them.
func TestResponseHopByHopAfterHooks(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "X-Up-Hop")
		w.Header().Set("X-Up-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-Kept", "k")
		w.Write([]byte("ok"))
	}))
	defer up.Close()
	e := newEnv(t, map[string]string{"resp": strings.Replace(respAPI, "{{UPSTREAM}}", up.URL, 1)})
	r := e.do("GET", "/resp/x", nil, "")
	if r.status != 200 || r.header.Get("X-Up-Hop") != "" || r.header.Get("Keep-Alive") != "" || r.header.Get("X-Kept") != "k" {
		t.Errorf("client got %d %v", r.status, r.header)
	}
	_, _, traces := e.rec.take()
	if h := traces[0].Sent.Response.Headers; h["X-Up-Hop"] != "1" || h["Keep-Alive"] != "timeout=5" || h["Connection"] != "X-Up-Hop" {
		t.Errorf("the Response hook saw %v", h)
	}
}
