package coprocess

import (
	"crypto/hmac"
	"crypto/sha512"
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"coprocess/go/internal/benchhmac"
	"coprocess/go/pb"

	"google.golang.org/protobuf/proto"
)

// hmacBenchConfigData is an API's config_data for HMACSignatureAuth: two keys, two allowed
// algorithms, a 5-minute clock-skew window and a realistic session template.
const hmacBenchConfigData = `{"HMACSignatureAuth":{"keys":{"mobile-app-7f3a":"9b1d5c0e7a2f4c8e9d3b6a1f0e7c2d5a",` +
	`"partner-batch":"2c7e9a1b3d5f7e9c1a3b5d7f9e1c3a5b"},"allowed_algorithms":["hmac-sha256","hmac-sha512"],` +
	`"clock_skew_ms":300000,"session":{"rate":1000,"per":60,"quota_max":100000,"quota_renewal_rate":3600,` +
	`"org_id":"5e9d9544a1dcd60001d0ed20","tags":["mobile","eu-west"],"metadata":{"plan":"gold"},` +
	`"access_rights":{"orders-api":{"api_id":"orders-api","api_name":"Orders","versions":["Default"]}}}}}`

const (
	hmacBenchKeyID  = "mobile-app-7f3a"
	hmacBenchSecret = "9b1d5c0e7a2f4c8e9d3b6a1f0e7c2d5a"
	hmacBenchURI    = "/orders-api/orders/12345/items?include=details&limit=50"
)

// hmacBenchObject is a realistic CustomKeyCheck Object of about 1.3 KB: browser-like headers,
// a Date and an hmac-sha512 Authorization over (request-target), date and x-request-id,
// signed now with Go's crypto/hmac, and the API's spec with config_data. wrong flips the
// signature's first character.
func hmacBenchObject(t testing.TB, wrong bool) *pb.Object {
	date := time.Now().UTC().Format(http.TimeFormat)
	const reqID = "3f1e2d4c-5b6a-4798-8a9b-0c1d2e3f4a5b"
	signing := "(request-target): get " + hmacBenchURI + "\ndate: " + date + "\nx-request-id: " + reqID
	m := hmac.New(sha512.New, []byte(hmacBenchSecret))
	m.Write([]byte(signing))
	sig := base64.StdEncoding.EncodeToString(m.Sum(nil))
	if wrong {
		sig = string(sig[0]^1) + sig[1:]
	}
	return &pb.Object{
		HookType: pb.HookType_CustomKeyCheck,
		HookName: "HMACSignatureAuth",
		Request: &pb.MiniRequestObject{
			Headers: map[string]string{
				"User-Agent":      "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
				"Accept":          "application/json, text/plain, */*",
				"Accept-Encoding": "gzip, deflate, br",
				"Accept-Language": "en-GB,en;q=0.9",
				"Date":            date,
				"Authorization": `Signature keyId="` + hmacBenchKeyID + `",algorithm="hmac-sha512",headers="(request-target) date x-request-id",signature="` +
					url.QueryEscape(sig) + `"`,
				"X-Request-Id":    reqID,
				"X-Forwarded-For": "203.0.113.17, 198.51.100.4",
			},
			Url:             "/orders/12345/items?include=details&limit=50",
			Params:          map[string]string{"include": "details", "limit": "50"},
			Method:          "GET",
			RequestUri:      hmacBenchURI,
			Scheme:          "https",
			ReturnOverrides: &pb.ReturnOverrides{ResponseCode: -1},
		},
		Spec: map[string]string{"OrgID": "5e9d9544a1dcd60001d0ed20", "APIID": "orders-api", "bundle_hash": "", "config_data": hmacBenchConfigData},
	}
}

// The HMAC benchmark's Object is the ~1 KB it claims, and the library and the Go baseline
// answer it (and a wrongly signed copy, and some malformed ones) identically.
func TestHMACBenchmarkObjectAndBaselineAgree(t *testing.T) {
	n := proto.Size(hmacBenchObject(t, false))
	if n < 1000 || n > 1400 {
		t.Fatalf("benchmark Object is %d bytes, want about 1.3 KB", n)
	}
	t.Logf("benchmark Object: %d bytes, config_data %d bytes", n, len(hmacBenchConfigData))
	d, _ := newDispatcher(t, nil)
	variants := map[string]func(*pb.Object){
		"valid":           func(*pb.Object) {},
		"wrong signature": func(o *pb.Object) { o.Request = hmacBenchObject(t, true).Request },
		"no date":         func(o *pb.Object) { delete(o.Request.Headers, "Date") },
		"old date":        func(o *pb.Object) { o.Request.Headers["Date"] = "Fri, 03 May 2024 12:00:42 GMT" },
		"sha1": func(o *pb.Object) {
			o.Request.Headers["Authorization"] = strings.Replace(o.Request.Headers["Authorization"], "sha512", "sha1", 1)
		},
		"unknown key": func(o *pb.Object) {
			o.Request.Headers["Authorization"] = strings.Replace(o.Request.Headers["Authorization"], "mobile-app", "tablet-app", 1)
		},
		"unknown param": func(o *pb.Object) { o.Request.Headers["Authorization"] += `,extra="1"` },
		"absent header": func(o *pb.Object) { delete(o.Request.Headers, "X-Request-Id") },
		"lower-case name": func(o *pb.Object) {
			o.Request.Headers["authorization"] = o.Request.Headers["Authorization"]
			delete(o.Request.Headers, "Authorization")
		},
	}
	for name, mod := range variants {
		obj := hmacBenchObject(t, false)
		mod(obj)
		viaLib, err := d.Dispatch(obj)
		if err != nil {
			t.Fatal(name, err)
		}
		native := proto.Clone(obj).(*pb.Object)
		if err := benchhmac.New().Handle(native); err != nil {
			t.Fatal(name, err)
		}
		// last_updated is "now" in seconds on both sides: equal unless a second ticked.
		if viaLib.Session != nil && native.Session != nil {
			if a, _ := strconv.ParseInt(viaLib.Session.LastUpdated, 10, 64); time.Since(time.Unix(a, 0)) > 2*time.Second {
				t.Errorf("%s: last_updated %q", name, viaLib.Session.LastUpdated)
			}
			viaLib.Session.LastUpdated, native.Session.LastUpdated = "", ""
		}
		if !proto.Equal(viaLib, native) {
			t.Errorf("%s: library and Go baseline differ:\n%v\n%v", name, viaLib, native)
		}
		want := map[string]int32{"valid": -1, "lower-case name": -1, "wrong signature": 401, "old date": 401, "unknown key": 401, "sha1": 400, "no date": 400, "unknown param": 400, "absent header": 400}[name]
		if got := viaLib.Request.ReturnOverrides.GetResponseCode(); got != want {
			t.Errorf("%s: response code %d, want %d", name, got, want)
		}
		if name == "valid" && (!viaLib.Session.GetHmacEnabled() || viaLib.Metadata["token"] != hmacBenchKeyID || viaLib.Session.GetQuotaMax() != 100000) {
			t.Errorf("valid: session %v metadata %v", viaLib.Session, viaLib.Metadata)
		}
	}
}

// BenchmarkHMACSignatureAuth: HMACSignatureAuth on the ~1.3 KB signed hmacBenchObject (the
// library verifies the hmac-sha512 signature and answers with the session), the five ways of
// benchHook; the Go native plugin is benchhmac, the Go gRPC peer's logic.
func BenchmarkHMACSignatureAuth(b *testing.B) {
	benchHook(b, func() *pb.Object { return hmacBenchObject(b, false) }, benchhmac.New().Handle)
}
