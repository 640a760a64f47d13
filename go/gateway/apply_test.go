package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"coprocess/go/pb"

	"google.golang.org/protobuf/proto"
)

// The built-ins do not yet produce every kind of answer the gateway must apply (url,
// method, params and body edits, direct answers), so these tests apply crafted answers.

func workingRequest(t *testing.T) (*http.Request, *reqState) {
	in := httptest.NewRequest("POST", "http://gw/api/p?keep=1&drop=2", strings.NewReader("orig"))
	st := &reqState{api: &api{def: &APIDefinition{APIID: "a"}}, inbound: in, body: []byte("orig")}
	out := in.Clone(in.Context())
	out.URL = &url.URL{Path: "/p", RawQuery: "keep=1&drop=2"}
	setBody(out, st.body)
	return out, st
}

func answerFor(sent *pb.Object, edit func(r *pb.MiniRequestObject)) *pb.Object {
	ans := proto.Clone(sent).(*pb.Object)
	edit(ans.Request)
	return ans
}

func TestApplyRequestEdits(t *testing.T) {
	g := &Gateway{}
	out, st := workingRequest(t)
	out.Header.Set("X-Old", "1")
	sent := g.requestObject(pb.HookType_Post, "P", out, st)
	ans := answerFor(sent, func(r *pb.MiniRequestObject) {
		r.DeleteHeaders = []string{"x-old"}
		r.SetHeaders = map[string]string{"X-New": "v"}
		r.DeleteParams = []string{"drop"}
		r.AddParams = map[string]string{"add": "a b"}
		r.Url = "/rewritten/path?from=url"
		r.Method = "PUT"
		r.RawBody = []byte("new body")
		r.Body = "new body"
	})
	w := httptest.NewRecorder()
	answered, err := g.applyRequestAnswer(w, out, st, sent, ans)
	if answered || err != nil {
		t.Fatalf("answered %v err %v", answered, err)
	}
	if out.Header.Get("X-Old") != "" || out.Header.Get("X-New") != "v" || out.Method != "PUT" {
		t.Errorf("headers %v method %s", out.Header, out.Method)
	}
	// The new url's own query, then delete_params and add_params on top.
	if out.URL.Path != "/rewritten/path" || out.URL.Query().Get("from") != "url" || out.URL.Query().Get("add") != "a b" || out.URL.Query().Has("keep") {
		t.Errorf("url %v", out.URL)
	}
	b, _ := io.ReadAll(out.Body)
	if string(b) != "new body" || out.ContentLength != 8 || string(st.body) != "new body" {
		t.Errorf("body %q length %d", b, out.ContentLength)
	}

	// Params alone keep the path, and an unchanged answer leaves the query's order alone.
	out, st = workingRequest(t)
	sent = g.requestObject(pb.HookType_Pre, "P", out, st)
	if _, err := g.applyRequestAnswer(w, out, st, sent, proto.Clone(sent).(*pb.Object)); err != nil || out.URL.RawQuery != "keep=1&drop=2" {
		t.Errorf("unchanged answer changed the query: %q %v", out.URL.RawQuery, err)
	}
	ans = answerFor(sent, func(r *pb.MiniRequestObject) { r.DeleteParams = []string{"drop"} })
	if _, err := g.applyRequestAnswer(w, out, st, sent, ans); err != nil || out.URL.RawQuery != "keep=1" || out.URL.Path != "/p" {
		t.Errorf("delete_params: %v %v", out.URL, err)
	}
	// A changed body string with raw_body untouched replaces the body too.
	out, st = workingRequest(t)
	sent = g.requestObject(pb.HookType_Pre, "P", out, st)
	ans = answerFor(sent, func(r *pb.MiniRequestObject) { r.Body = "text" })
	if _, err := g.applyRequestAnswer(w, out, st, sent, ans); err != nil || string(st.body) != "text" {
		t.Errorf("body edit: %q %v", st.body, err)
	}
}

func TestApplyRefusesBrokenAnswers(t *testing.T) {
	g := &Gateway{}
	for name, edit := range map[string]func(r *pb.MiniRequestObject){
		"header name":       func(r *pb.MiniRequestObject) { r.SetHeaders = map[string]string{"Bad Name": "v"} },
		"header value":      func(r *pb.MiniRequestObject) { r.SetHeaders = map[string]string{"X": "a\r\nInjected: 1"} },
		"absolute url":      func(r *pb.MiniRequestObject) { r.Url = "http://evil.example/x" },
		"relative url":      func(r *pb.MiniRequestObject) { r.Url = "no-slash" },
		"method":            func(r *pb.MiniRequestObject) { r.Method = "GET /x" },
		"override code 42":  func(r *pb.MiniRequestObject) { r.ReturnOverrides.ResponseCode = 42 },
		"override code 700": func(r *pb.MiniRequestObject) { r.ReturnOverrides.ResponseCode = 700 },
		"override header": func(r *pb.MiniRequestObject) {
			r.ReturnOverrides = &pb.ReturnOverrides{ResponseCode: 403, Headers: map[string]string{"X": "a\nb"}}
		},
	} {
		out, st := workingRequest(t)
		sent := g.requestObject(pb.HookType_Pre, "P", out, st)
		w := httptest.NewRecorder()
		if _, err := g.applyRequestAnswer(w, out, st, sent, answerFor(sent, edit)); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if w.Body.Len() != 0 {
			t.Errorf("%s: wrote %q", name, w.Body.String())
		}
	}
}

func TestReturnOverrides(t *testing.T) {
	g := &Gateway{}
	cases := []struct {
		name   string
		ro     *pb.ReturnOverrides
		status int
		body   string
		ctype  string
	}{
		{"rejection uses response_error", &pb.ReturnOverrides{ResponseCode: 418, ResponseError: "teapot", ResponseBody: "ignored", Headers: map[string]string{"X-Why": "tea"}}, 418, "teapot", "text/plain; charset=utf-8"},
		{"rejection falls back to response_body", &pb.ReturnOverrides{ResponseCode: 403, ResponseBody: `{"error":"denied"}`}, 403, `{"error":"denied"}`, "application/json"},
		{"direct answer uses response_body", &pb.ReturnOverrides{ResponseCode: 200, ResponseBody: "cached", ResponseError: "x", Headers: map[string]string{"Content-Type": "text/html"}}, 200, "cached", "text/html"},
		{"redirect", &pb.ReturnOverrides{ResponseCode: 302, Headers: map[string]string{"Location": "/elsewhere"}}, 302, "", "text/plain; charset=utf-8"},
		{"override_error answers directly", &pb.ReturnOverrides{ResponseCode: 503, OverrideError: true, ResponseBody: "later", ResponseError: "e"}, 503, "later", "text/plain; charset=utf-8"},
	}
	for _, c := range cases {
		out, st := workingRequest(t)
		sent := g.requestObject(pb.HookType_Pre, "P", out, st)
		ans := answerFor(sent, func(r *pb.MiniRequestObject) {
			r.ReturnOverrides = c.ro
			r.SetHeaders = map[string]string{"X-Not": "applied"}
		})
		w := httptest.NewRecorder()
		answered, err := g.applyRequestAnswer(w, out, st, sent, ans)
		if !answered || err != nil {
			t.Fatalf("%s: answered %v err %v", c.name, answered, err)
		}
		if w.Code != c.status || w.Body.String() != c.body || w.Header().Get("Content-Type") != c.ctype {
			t.Errorf("%s: %d %q %q", c.name, w.Code, w.Body.String(), w.Header().Get("Content-Type"))
		}
		for k, v := range c.ro.Headers {
			if w.Header().Get(k) != v {
				t.Errorf("%s: header %s missing", c.name, k)
			}
		}
		if out.Header.Get("X-Not") != "" {
			t.Errorf("%s: edits applied although the plugin answered", c.name)
		}
	}
}

func TestApplyResponseEdits(t *testing.T) {
	resp := &http.Response{StatusCode: 200, Header: http.Header{"Server": {"echo"}, "Set-Cookie": {"a=1", "b=2"}}}
	body := []byte("upstream")
	sent := responseObject(resp, body)
	if len(sent.MultivalueHeaders) != 2 || sent.MultivalueHeaders[0].Key != "Server" || len(sent.MultivalueHeaders[1].Values) != 2 {
		t.Fatalf("multivalue %v", sent.MultivalueHeaders)
	}
	ans := proto.Clone(sent).(*pb.ResponseObject)
	ans.StatusCode = 201
	ans.MultivalueHeaders = []*pb.Header{{Key: "Set-Cookie", Values: []string{"a=1", "b=2"}}, {Key: "X-New", Values: []string{"n"}}}
	ans.Body = "edited"
	got, err := applyResponseAnswer(resp, sent, ans, body)
	if err != nil || string(got) != "edited" || resp.StatusCode != 201 {
		t.Fatalf("%q %d %v", got, resp.StatusCode, err)
	}
	if resp.Header.Get("Server") != "" || len(resp.Header["Set-Cookie"]) != 2 || resp.Header.Get("X-New") != "n" {
		t.Errorf("headers %v", resp.Header)
	}
	// Without multivalue_headers the headers map is the header set.
	resp = &http.Response{StatusCode: 200, Header: http.Header{"Server": {"echo"}}}
	sent = responseObject(resp, body)
	ans = &pb.ResponseObject{StatusCode: 200, Headers: map[string]string{"X-Only": "1"}, RawBody: []byte("raw"), Body: sent.Body}
	got, err = applyResponseAnswer(resp, sent, ans, body)
	if err != nil || string(got) != "raw" || len(resp.Header) != 1 || resp.Header.Get("X-Only") != "1" {
		t.Errorf("%q %v %v", got, resp.Header, err)
	}
	for _, bad := range []*pb.ResponseObject{{StatusCode: 99}, {StatusCode: 200, Headers: map[string]string{"X": "\r\n"}}} {
		resp = &http.Response{StatusCode: 200, Header: http.Header{}}
		if _, err := applyResponseAnswer(resp, responseObject(resp, nil), bad, nil); err == nil {
			t.Errorf("accepted %v", bad)
		}
	}
}
