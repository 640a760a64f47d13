package coprocess

import (
	"errors"
	"strings"
	"testing"

	"coprocess/go/pb"

	"google.golang.org/protobuf/proto"
)

func TestNewChecksTheABIVersion(t *testing.T) {
	d, _ := newDispatcher(t, nil)
	if d.ABIVersion() != ABIVersion || LibraryABIVersion() != "coprocess-abi/1" {
		t.Fatalf("ABI version %q / %q", d.ABIVersion(), LibraryABIVersion())
	}
	for _, v := range []string{"coprocess-abi/2", "", "coprocess-abi/1 "} {
		err := checkABI(v)
		if err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("checkABI(%q) = %v, want a refusal", v, err)
		}
	}
	if checkABI(ABIVersion) != nil {
		t.Error("the known version is refused")
	}
}

func TestStaticTokenAuthThroughTheLibrary(t *testing.T) {
	d, _ := newDispatcher(t, nil)
	in := requestObject(pb.HookType_CustomKeyCheck, "StaticTokenAuth", map[string]string{"Authorization": "Bearer tok-gold"})
	before := proto.Clone(in)
	out, err := d.Dispatch(in)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(in, before) {
		t.Error("Dispatch modified its input")
	}
	s := out.GetSession()
	if s == nil || s.Rate != 100 || s.Per != 60 || s.QuotaMax != -1 || len(s.Tags) != 1 || s.Tags[0] != "gold" {
		t.Fatalf("session %v", s)
	}
	if s.AccessRights["api1"].GetVersions()[0] != "Default" {
		t.Errorf("access rights %v", s.AccessRights)
	}
	if out.Metadata["token"] != "tok-gold" {
		t.Errorf("metadata %v", out.Metadata)
	}
	if rc := out.Request.GetReturnOverrides().GetResponseCode(); rc != -1 {
		t.Errorf("return_overrides.response_code %d", rc)
	}
	// The rest of the Object comes back as sent.
	if out.Spec["APIID"] != "api1" || out.Request.Headers["Authorization"] != "Bearer tok-gold" || out.Request.Url != "/get?x=1" {
		t.Errorf("answer lost request data: %v", out)
	}

	for _, h := range []string{"Bearer tok-nope", "tok-gold", "Bearer tok-gold ", ""} {
		out, err := d.Dispatch(requestObject(pb.HookType_CustomKeyCheck, "StaticTokenAuth", map[string]string{"Authorization": h}))
		if err != nil {
			t.Fatal(err)
		}
		if out.Session != nil || out.Metadata["token"] != "" {
			t.Errorf("%q authenticated: %v", h, out)
		}
	}

	out, err = d.Dispatch(requestObject(pb.HookType_CustomKeyCheck, "StaticTokenAuth:strict", map[string]string{"X-Api-Key": "k2"}))
	if err != nil {
		t.Fatal(err)
	}
	ro := out.Request.ReturnOverrides
	if ro.ResponseCode != 401 || ro.ResponseError != "Key not authorised" || out.Session != nil {
		t.Errorf("strict instance: %v", ro)
	}
}

func TestInjectHeadersThroughTheLibrary(t *testing.T) {
	d, _ := newDispatcher(t, nil)
	out, err := d.Dispatch(requestObject(pb.HookType_Pre, "InjectHeaders", map[string]string{"Cookie": "a=1", "Accept": "*/*"}))
	if err != nil {
		t.Fatal(err)
	}
	r := out.Request
	if r.SetHeaders["X-Plugin"] != "coprocess" || r.SetHeaders["X-Api"] != "api1" || len(r.SetHeaders) != 2 {
		t.Errorf("set_headers %v", r.SetHeaders)
	}
	if len(r.DeleteHeaders) != 1 || r.DeleteHeaders[0] != "Cookie" {
		t.Errorf("delete_headers %v", r.DeleteHeaders)
	}
	if r.Headers["Cookie"] != "a=1" {
		t.Error("headers is the gateway's read-only copy and must come back unchanged")
	}

	// Response hook: the response headers themselves are edited.
	resp := requestObject(pb.HookType_Response, "InjectHeaders", nil)
	resp.Session = &pb.SessionState{Rate: 1}
	resp.Metadata = map[string]string{"token": "tok-gold"}
	resp.Response = &pb.ResponseObject{StatusCode: 200, Headers: map[string]string{"Cookie": "x", "Content-Type": "text/plain"},
		MultivalueHeaders: []*pb.Header{{Key: "Cookie", Values: []string{"x"}}, {Key: "Content-Type", Values: []string{"text/plain"}}},
		RawBody:           []byte("hello"), Body: "hello"}
	out, err = d.Dispatch(resp)
	if err != nil {
		t.Fatal(err)
	}
	h := out.Response.Headers
	if h["X-Plugin"] != "coprocess" || h["Cookie"] != "" || h["Content-Type"] != "text/plain" || out.Response.Body != "hello" {
		t.Errorf("response headers %v", h)
	}
	keys := map[string]bool{}
	for _, mv := range out.Response.MultivalueHeaders {
		keys[mv.Key] = true
	}
	if !keys["X-Plugin"] || keys["Cookie"] || !keys["Content-Type"] {
		t.Errorf("multivalue_headers %v", out.Response.MultivalueHeaders)
	}
}

func TestErrorCodesBecomeGoErrors(t *testing.T) {
	d, _ := newDispatcher(t, nil)
	cases := []struct {
		name     string
		obj      *pb.Object
		raw      []byte
		sentinel error
		code     int
		text     string
	}{
		{name: "unknown hook name", obj: requestObject(pb.HookType_Pre, "NoSuchPlugin", nil), sentinel: ErrNotFound, code: -3, text: "NoSuchPlugin"},
		{name: "wrong hook type", obj: requestObject(pb.HookType_Pre, "StaticTokenAuth", nil), sentinel: ErrNotFound, code: -3},
		{name: "garbage bytes", raw: []byte{0xff, 0xff, 0xff, 0x07}, sentinel: ErrInvalid, code: -2},
		{name: "empty input", raw: []byte{}, sentinel: ErrNotFound, code: -3},
		{name: "nil input", raw: nil, sentinel: ErrNotFound, code: -3},
		{name: "broken config_data", obj: func() *pb.Object {
			o := requestObject(pb.HookType_Pre, "InjectHeaders", nil)
			o.Spec["config_data"] = `{"InjectHeaders": {"add": `
			return o
		}(), sentinel: ErrConfig, code: -5},
		{name: "unknown config key", obj: func() *pb.Object {
			o := requestObject(pb.HookType_Pre, "InjectHeaders", nil)
			o.Spec["config_data"] = `{"InjectHeaders": {"addd": {}}}`
			return o
		}(), sentinel: ErrConfig, code: -5, text: "addd"},
	}
	for _, c := range cases {
		var err error
		if c.obj != nil {
			_, err = d.Dispatch(c.obj)
		} else {
			_, err = d.DispatchRaw(c.raw)
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%s: %v is not an *Error", c.name, err)
			continue
		}
		if !errors.Is(err, c.sentinel) || e.Code != c.code || e.Op != "Dispatch" {
			t.Errorf("%s: got %#v", c.name, e)
		}
		if e.Message == "" || !strings.Contains(e.Message, c.text) || !strings.Contains(err.Error(), e.Message) {
			t.Errorf("%s: CoProcessLastError text missing: %q", c.name, e.Message)
		}
		for _, other := range []error{ErrNull, ErrInvalid, ErrNotFound, ErrMiddleware, ErrConfig} {
			if other != c.sentinel && errors.Is(err, other) {
				t.Errorf("%s: also matches %v", c.name, other)
			}
		}
	}

	// A failure leaves nothing behind: the next call on any thread succeeds cleanly.
	if _, err := d.Dispatch(requestObject(pb.HookType_Pre, "InjectHeaders", nil)); err != nil {
		t.Fatal(err)
	}

	err := d.DispatchEvent([]byte(`{"message": `))
	if !errors.Is(err, ErrInvalid) || err.(*Error).Op != "DispatchEvent" {
		t.Errorf("broken event JSON: %v", err)
	}
	err = d.DispatchEvent([]byte(`{"message":{"Type":"AuthFailure"},"handler_name":"NoSuchHandler"}`))
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "NoSuchHandler") {
		t.Errorf("unknown handler: %v", err)
	}
}

func TestDispatchRawMatchesDispatch(t *testing.T) {
	d, _ := newDispatcher(t, nil)
	in := requestObject(pb.HookType_CustomKeyCheck, "StaticTokenAuth", map[string]string{"Authorization": "Bearer tok-free"})
	raw, err := proto.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	answer, err := d.DispatchRaw(raw)
	if err != nil {
		t.Fatal(err)
	}
	fromRaw := new(pb.Object)
	if err := proto.Unmarshal(answer, fromRaw); err != nil {
		t.Fatal(err)
	}
	out, err := d.Dispatch(in)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(fromRaw, out) || out.Session.GetQuotaMax() != 10 {
		t.Errorf("DispatchRaw %v != Dispatch %v", fromRaw, out)
	}
}

// DispatchInto must leave obj exactly as Dispatch's answer, whichever way it got there:
// merging the appended edits (additive answers) or a full unmarshal (rewrites).
func TestDispatchIntoEqualsDispatch(t *testing.T) {
	d, _ := newDispatcher(t, nil)
	response := requestObject(pb.HookType_Response, "InjectHeaders", nil)
	response.Session = &pb.SessionState{Rate: 1}
	response.Metadata = map[string]string{"token": "tok-gold"}
	response.Response = &pb.ResponseObject{StatusCode: 200, Headers: map[string]string{"Cookie": "x"},
		MultivalueHeaders: []*pb.Header{{Key: "Cookie", Values: []string{"x"}}}, Body: "hello"}
	cases := []struct {
		name   string
		obj    *pb.Object
		merged bool
	}{
		{"authenticated", requestObject(pb.HookType_CustomKeyCheck, "StaticTokenAuth", map[string]string{"Authorization": "Bearer tok-free"}), true},
		{"unknown token", requestObject(pb.HookType_CustomKeyCheck, "StaticTokenAuth", map[string]string{"Authorization": "Bearer nope"}), true},
		{"request headers", requestObject(pb.HookType_Pre, "InjectHeaders", map[string]string{"Cookie": "a=1"}), true},
		{"hmac", hmacBenchObject(t, false), true},
		{"hmac rejected", hmacBenchObject(t, true), true},
		{"response headers rewritten", response, false},
	}
	for _, c := range cases {
		want, err := d.Dispatch(c.obj)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got := proto.Clone(c.obj).(*pb.Object)
		merged, err := d.dispatchInto(got)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if merged != c.merged {
			t.Errorf("%s: merged = %v, want %v", c.name, merged, c.merged)
		}
		if !proto.Equal(got, want) {
			t.Errorf("%s: DispatchInto gave\n%v\nDispatch gave\n%v", c.name, got, want)
		}
	}
	// A failed dispatch leaves obj unchanged.
	bad := requestObject(pb.HookType_Pre, "NoSuchMiddleware", nil)
	before := proto.Clone(bad)
	if err := d.DispatchInto(bad); err == nil || !proto.Equal(bad, before) {
		t.Errorf("failed DispatchInto: err %v, obj changed: %v", err, !proto.Equal(bad, before))
	}
}
