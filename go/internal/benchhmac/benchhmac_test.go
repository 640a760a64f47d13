package benchhmac

import (
	"strings"
	"testing"
	"time"

	"coprocess/go/pb"
)

// The reference vector (docs/builtins/hmac-signature-auth.md): key c2VjcmV0, hmac-sha512 over
// "date: Fri, 03 May 2024 12:00:42 GMT".
const (
	refDate   = "Fri, 03 May 2024 12:00:42 GMT"
	refSig    = "9kwBK%2FyrjbSHJDI7INAhBmhHLTHRDkIe2uRWHEP8bgQFQvfXRksm6t2MHeLUyk9oosWDZyC17AbGeP8EFqrp%2BA%3D%3D"
	refConfig = `{"HMACSignatureAuth":{"keys":{"client-42":"c2VjcmV0"},"allowed_algorithms":["hmac-sha256","hmac-sha512"],` +
		`"session":{"rate":1000,"per":60,"quota_max":-1,"tags":["hmac"]}}}`
)

func object(auth string, configData string) *pb.Object {
	return &pb.Object{
		HookType: pb.HookType_CustomKeyCheck,
		HookName: Name,
		Request: &pb.MiniRequestObject{
			Headers:         map[string]string{"Authorization": auth, "Date": refDate, "X-Request-Id": "r-1"},
			Method:          "GET",
			RequestUri:      "/v1/items?page=2",
			ReturnOverrides: &pb.ReturnOverrides{ResponseCode: -1},
		},
		Spec: map[string]string{"config_data": configData},
	}
}

func sigHeader(params string) string { return "Signature " + params }

func TestOutcomes(t *testing.T) {
	valid := `keyId="client-42",algorithm="hmac-sha512",signature="` + refSig + `"`
	skew := strings.Replace(refConfig, `"session"`, `"clock_skew_ms":300000,"session"`, 1)
	for _, tc := range []struct {
		name, auth, refConfig string
		code                  int32
		msg                   string
	}{
		{"valid", sigHeader(valid), refConfig, -1, ""},
		{"valid, lower-case escapes and spaces", "  signature " + strings.ReplaceAll(strings.Replace(valid, ",", ", \t", 1), "%2F", "%2f") + " ", refConfig, -1, ""},
		{"unescaped signature", sigHeader(strings.NewReplacer("%2F", "/", "%2B", "+", "%3D", "=").Replace(valid)), refConfig, -1, ""},
		{"no padding", sigHeader(strings.ReplaceAll(valid, "%3D", "")), refConfig, -1, ""},
		{"wrong signature", sigHeader(strings.Replace(valid, "9kw", "8kw", 1)), refConfig, 401, NotAuthorized},
		{"bad escape", sigHeader(strings.Replace(valid, "%2F", "%2G", 1)), refConfig, 401, NotAuthorized},
		{"bad padding", sigHeader(strings.Replace(valid, "%3D%3D", "%3D", 1)), refConfig, 401, NotAuthorized},
		{"unknown key", sigHeader(strings.Replace(valid, "client-42", "client-7", 1)), refConfig, 401, NotAuthorized},
		{"unquoted keyId", `Signature keyId=client-42,algorithm="hmac-sha512",signature="` + refSig + `"`, refConfig, 400, BadRequest},
		{"space before comma", sigHeader(strings.Replace(valid, ",", " ,", 1)), refConfig, 400, BadRequest},
		{"trailing comma", sigHeader(valid + ","), refConfig, 400, BadRequest},
		{"duplicate", sigHeader(valid + `,keyId="x"`), refConfig, 400, BadRequest},
		{"unknown parameter", sigHeader(valid + `,extra="1"`), refConfig, 400, BadRequest},
		{"control character", sigHeader(valid + "\n"), refConfig, 400, BadRequest},
		{"sha1 not allowed", sigHeader(strings.Replace(valid, "sha512", "sha1", 1)), refConfig, 400, UnsupportedAlgorithm},
		{"unknown algorithm", sigHeader(strings.Replace(valid, "hmac-sha512", "rsa-sha256", 1)), refConfig, 400, UnsupportedAlgorithm},
		{"missing signed header", sigHeader(valid + `,headers="date x-missing"`), refConfig, 400, BadRequest},
		{"empty headers", sigHeader(valid + `,headers=" "`), refConfig, 400, BadRequest},
		{"bad header name", sigHeader(valid + `,headers="date x:y"`), refConfig, 400, BadRequest},
		{"skew on, stale date", sigHeader(valid), skew, 401, NotAuthorized},
		{"skew on, date unsigned", sigHeader(valid + `,headers="x-request-id"`), skew, 400, BadRequest},
	} {
		obj := object(tc.auth, tc.refConfig)
		if err := New().Handle(obj); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		ro := obj.Request.ReturnOverrides
		if ro.ResponseCode != tc.code || ro.ResponseError != tc.msg {
			t.Errorf("%s: got %d %q, want %d %q", tc.name, ro.ResponseCode, ro.ResponseError, tc.code, tc.msg)
		}
		if (tc.code == -1) != (obj.Session != nil) {
			t.Errorf("%s: session %v", tc.name, obj.Session)
		}
		if tc.code == -1 && (!obj.Session.HmacEnabled || obj.Session.HmacSecret != "c2VjcmV0" || obj.Metadata["token"] != "client-42" ||
			obj.Session.Rate != 1000 || obj.Session.QuotaMax != -1 || len(obj.Session.Tags) != 1) {
			t.Errorf("%s: session %v metadata %v", tc.name, obj.Session, obj.Metadata)
		}
	}
}

func TestClockSkewWindow(t *testing.T) {
	skew := strings.Replace(refConfig, `"session"`, `"clock_skew_ms":300000,"session"`, 1)
	auth := sigHeader(`keyId="client-42",algorithm="hmac-sha512",signature="` + refSig + `"`)
	sent, _ := time.Parse(time.RFC1123, refDate)
	for offset, want := range map[time.Duration]int32{4 * time.Minute: -1, -4 * time.Minute: -1, 6 * time.Minute: 401} {
		a := New()
		a.now = func() time.Time { return sent.Add(offset) }
		obj := object(auth, skew)
		if err := a.Handle(obj); err != nil {
			t.Fatal(err)
		}
		if got := obj.Request.ReturnOverrides.ResponseCode; got != want {
			t.Errorf("Date %v from now: %d, want %d", -offset, got, want)
		}
	}
}

func TestConfigAndHooks(t *testing.T) {
	obj := object("", refConfig)
	obj.HookType = pb.HookType_Pre
	if err := New().Handle(obj); err != ErrNoMiddleware {
		t.Errorf("Pre hook: %v", err)
	}
	for _, bad := range []string{`{"HMACSignatureAuth":{"unknown":1}}`, `{"HMACSignatureAuth":{"allowed_algorithms":[]}}`,
		`{"HMACSignatureAuth":{"allowed_algorithms":["md5"]}}`, `{"HMACSignatureAuth":{"keys":{"k":""}}}`, `not json`} {
		if _, ok := New().Handle(object("", bad)).(*ConfigError); !ok {
			t.Errorf("%s: not a ConfigError", bad)
		}
	}
	// An instance section wins over the plain one.
	inst := object(sigHeader(`keyId="client-42",algorithm="hmac-sha512",signature="`+refSig+`"`),
		`{"HMACSignatureAuth:x":{"keys":{"client-42":"other"}},"HMACSignatureAuth":{"keys":{"client-42":"c2VjcmV0"}}}`)
	inst.HookName = Name + ":x"
	if err := New().Handle(inst); err != nil || inst.Request.ReturnOverrides.ResponseCode != 401 {
		t.Errorf("instance section: %v %v", err, inst.Request.ReturnOverrides)
	}
}
