package gateway

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"coprocess/go/coprocess"
	"coprocess/go/internal/httpsig"
	"coprocess/go/internal/reqhub"
	"coprocess/go/pb"
)

// The test RSA key pair of the demo (go/demo/keys): the gateway signs with the private key,
// the echo upstream verifies with the public key.
var (
	rsaPrivatePEM string // PKCS#8 "PRIVATE KEY"
	rsaPKCS1PEM   string // the same key as PKCS#1 "RSA PRIVATE KEY"
	upstreamKeys  map[string]httpsig.Key
)

const upstreamSecret = "upstream-shared-secret"

func init() {
	b, err := os.ReadFile("../demo/keys/upstream-rsa-test.key.pem")
	if err != nil {
		panic(err)
	}
	rsaPrivatePEM = string(b)
	block, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		panic(err)
	}
	priv := k.(*rsa.PrivateKey)
	rsaPKCS1PEM = string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(priv)}))
	upstreamKeys = map[string]httpsig.Key{
		"gw-hmac":  {Secret: upstreamSecret},
		"gw-rsa":   {PublicKey: &priv.PublicKey},
		"gw-store": {PublicKey: &priv.PublicKey},
	}
}

// ---- HMACSignatureAuth as the API's auth_check.

const hmacAPI = `{
  "name": "HMAC", "api_id": "hmac", "org_id": "org1", "enable_coprocess_auth": true,
  "proxy": {"listen_path": "/hmac/", "strip_listen_path": true, "target_url": "{{UPSTREAM}}"},
  "custom_middleware": {"driver": "native",
    "auth_check": {"name": "HMACSignatureAuth"},
    "post_key_auth": [{"name": "InjectHeaders"}]},
  "config_data": {
    "HMACSignatureAuth": {"keys": {"mobile-app": "app-secret-1"}, "allowed_algorithms": ["hmac-sha256", "hmac-sha512"],
      "clock_skew_ms": 300000, "session": {"rate": 50, "per": 1, "quota_max": -1, "tags": ["hmac"]}},
    "InjectHeaders": {"add": {"X-Authenticated": "hmac"}}
  },
  "event_handlers": {"events": {"AuthFailure": [{"handler_name": "cp_dynamic_handler", "handler_meta": {"name": "RelayEvent"}}]}}
}`

// The same middleware with the clock-skew check off, so the fixed-Date vector of
// docs/builtins/hmac-signature-auth.md passes.
const hmacVectorAPI = `{
  "api_id": "hmac-vector", "org_id": "org1", "enable_coprocess_auth": true,
  "proxy": {"listen_path": "/hmac-vector/", "strip_listen_path": true, "target_url": "{{UPSTREAM}}"},
  "custom_middleware": {"driver": "native", "auth_check": {"name": "HMACSignatureAuth"}},
  "config_data": {"HMACSignatureAuth": {"keys": {"vector": "c2VjcmV0"}}}
}`

// signedHeaders signs a request for HMACSignatureAuth with Go's crypto/hmac.
func signedHeaders(t *testing.T, method, path, keyID, secret, alg string, date time.Time, names ...string) map[string]string {
	t.Helper()
	h := http.Header{}
	h.Set("Date", date.UTC().Format(http.TimeFormat))
	s, err := httpsig.SigningString(method, path, h, names)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := httpsig.SignHMAC(alg, secret, s)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"Date": h.Get("Date"), "Authorization": httpsig.Params{KeyID: keyID, Algorithm: alg, Headers: names, Signature: sig}.String()}
}

func TestHMACSignatureAuthEndToEnd(t *testing.T) {
	store := coprocess.NewMemoryStore()
	if err := store.Set("hmac-secret-store-app", "store-secret", 0); err != nil {
		t.Fatal(err)
	}
	e := newEnvWithStore(t, map[string]string{"hmac": hmacAPI, "hmac-vector": hmacVectorAPI}, store)
	now := time.Now()
	rt := []string{"(request-target)", "date"}

	// Signed correctly: 200; PostKeyAuth gets the session the middleware built.
	r := e.do("GET", "/hmac/orders?id=7", signedHeaders(t, "GET", "/hmac/orders?id=7", "mobile-app", "app-secret-1", "hmac-sha256", now, rt...), "")
	if r.status != 200 || r.seen == nil || r.seen.Headers["X-Authenticated"][0] != "hmac" || r.seen.RequestURI != "/orders?id=7" {
		t.Fatalf("signed request: %d %s", r.status, r.body)
	}
	if !strings.HasPrefix(r.seen.Headers["Authorization"][0], `Signature keyId="mobile-app"`) {
		t.Errorf("the client's Authorization did not reach the upstream: %v", r.seen.Headers)
	}
	_, _, traces := e.rec.take()
	pka := traceOf(t, traces, pb.HookType_PostKeyAuth).Sent
	if s := pka.Session; !s.GetHmacEnabled() || s.GetHmacSecret() != "app-secret-1" || s.GetRate() != 50 || !reflect.DeepEqual(s.GetTags(), []string{"hmac"}) || pka.Metadata["token"] != "mobile-app" {
		t.Errorf("session %v metadata %v", s, pka.Metadata)
	}
	if last, err := strconv.ParseInt(pka.Session.GetLastUpdated(), 10, 64); err != nil || time.Since(time.Unix(last, 0)).Abs() > time.Minute {
		t.Errorf("last_updated %q", pka.Session.GetLastUpdated())
	}

	// hmac-sha512, default header list (date only), a key held in the host store.
	if r := e.do("POST", "/hmac/x", signedHeaders(t, "POST", "/hmac/x", "store-app", "store-secret", "hmac-sha512", now, "date"), "{}"); r.status != 200 {
		t.Errorf("store key: %d %s", r.status, r.body)
	}
	// The documented vector, through the gateway, on the API without a clock-skew window.
	vector := map[string]string{"Date": "Fri, 03 May 2024 12:00:42 GMT",
		"Authorization": `Signature keyId="vector",algorithm="hmac-sha512",signature="9kwBK%2FyrjbSHJDI7INAhBmhHLTHRDkIe2uRWHEP8bgQFQvfXRksm6t2MHeLUyk9oosWDZyC17AbGeP8EFqrp%2BA%3D%3D"`}
	if r := e.do("GET", "/hmac-vector/", vector, ""); r.status != 200 {
		t.Errorf("documented vector: %d %s", r.status, r.body)
	}
	e.rec.take()

	bad := []struct {
		name    string
		method  string
		path    string
		headers map[string]string
		status  int
		body    string
	}{
		{"wrong secret", "GET", "/hmac/orders", signedHeaders(t, "GET", "/hmac/orders", "mobile-app", "not-the-secret", "hmac-sha256", now, rt...), 401, "Custom middleware: Not authorized"},
		{"signed for another path", "GET", "/hmac/admin", signedHeaders(t, "GET", "/hmac/orders", "mobile-app", "app-secret-1", "hmac-sha256", now, rt...), 401, "Custom middleware: Not authorized"},
		{"signed for another method", "DELETE", "/hmac/orders", signedHeaders(t, "GET", "/hmac/orders", "mobile-app", "app-secret-1", "hmac-sha256", now, rt...), 401, "Custom middleware: Not authorized"},
		{"Date an hour old", "GET", "/hmac/orders", signedHeaders(t, "GET", "/hmac/orders", "mobile-app", "app-secret-1", "hmac-sha256", now.Add(-time.Hour), rt...), 401, "Custom middleware: Not authorized"},
		{"unknown keyId", "GET", "/hmac/orders", signedHeaders(t, "GET", "/hmac/orders", "nobody", "app-secret-1", "hmac-sha256", now, rt...), 401, "Custom middleware: Not authorized"},
		{"algorithm not allowed", "GET", "/hmac/orders", signedHeaders(t, "GET", "/hmac/orders", "mobile-app", "app-secret-1", "hmac-sha1", now, rt...), 400, "Bad HMAC request, unsupported algorithm"},
		{"no Date", "GET", "/hmac/orders", map[string]string{"Authorization": signedHeaders(t, "GET", "/hmac/orders", "mobile-app", "app-secret-1", "hmac-sha256", now, rt...)["Authorization"]}, 400, "Custom middleware: Bad request"},
		{"no Authorization", "GET", "/hmac/orders", map[string]string{"Date": now.UTC().Format(http.TimeFormat)}, 400, "Custom middleware: Bad request"},
		{"garbage Authorization", "GET", "/hmac/orders", map[string]string{"Date": now.UTC().Format(http.TimeFormat), "Authorization": "Signature keyId=\"a\",,,"}, 400, "Custom middleware: Bad request"},
	}
	for _, c := range bad {
		r := e.do(c.method, c.path, c.headers, "")
		if r.seen != nil {
			t.Errorf("%s: reached the upstream", c.name)
		}
		isError(t, c.name, r, c.status, c.body)
		events, logs, _ := e.rec.take()
		if len(events) != 1 || events[0][0] != "AuthFailureRelayed" {
			t.Errorf("%s: AuthFailure not relayed: %v", c.name, events)
		}
		for _, l := range logs {
			if strings.Contains(l[1], "app-secret-1") || strings.Contains(l[1], "not-the-secret") {
				t.Errorf("%s: a secret in the log: %s", c.name, l[1])
			}
		}
	}
	if n := e.hits.Load(); n != 3 {
		t.Errorf("upstream hits %d, want 3 (the refused requests must not reach it)", n)
	}
}

// ---- UpstreamRequestSigning on the Post hook, verified by the upstream.

const signingAPI = `{
  "name": "Signed upstream", "api_id": "signed", "org_id": "org1", "use_keyless": true,
  "proxy": {"listen_path": "/signed/", "strip_listen_path": true, "target_url": "{{UPSTREAM}}/internal"},
  "custom_middleware": {"driver": "native",
    "pre": [{"name": "InjectHeaders"}],
    "post": [{"name": "UpstreamRequestSigning"}]},
  "config_data": {
    "InjectHeaders": {"add": {"X-Request-Id": "req-42"}},
    "UpstreamRequestSigning": {"algorithm": "hmac-sha256", "keyId": "gw-hmac", "secret": "` + upstreamSecret + `",
      "listen_path": "/signed/", "target_url": "{{UPSTREAM}}/internal"}
  }
}`

func rsaSigningAPI(t *testing.T) string {
	return `{
  "api_id": "signed-rsa", "org_id": "org1", "use_keyless": true,
  "proxy": {"listen_path": "/signed-rsa/", "strip_listen_path": true, "target_url": "{{UPSTREAM}}"},
  "custom_middleware": {"driver": "native", "post": [{"name": "UpstreamRequestSigning:inline"}, {"name": "UpstreamRequestSigning:store"}]},
  "config_data": {
    "UpstreamRequestSigning:inline": {"algorithm": "rsa-sha256", "keyId": "gw-rsa", "signatureHeader": "Signature",
      "headers": ["(request-target)", "date", "x-request-id", "content-type"], "privateKey": ` + mustJSON(t, rsaPrivatePEM) + `,
      "listen_path": "/signed-rsa/", "target_url": "{{UPSTREAM}}"},
    "UpstreamRequestSigning:store": {"algorithm": "rsa-sha256", "keyId": "gw-store", "certificateId": "upstream-signing-key",
      "listen_path": "/signed-rsa/", "target_url": "{{UPSTREAM}}"}
  }
}`
}

// signatureOf is the upstream verifier's result for one header.
func signatureOf(t *testing.T, r result, header string) httpsig.Result {
	t.Helper()
	if r.seen == nil {
		t.Fatalf("the upstream was not reached: %d %s", r.status, r.body)
	}
	for _, s := range r.seen.Signatures {
		if s.Header == header {
			return s
		}
	}
	t.Fatalf("no %s signature reached the upstream: %v", header, r.seen.Headers)
	return httpsig.Result{}
}

func TestUpstreamRequestSigningVerifiedByTheUpstream(t *testing.T) {
	store := coprocess.NewMemoryStore()
	if err := store.Set("upstream-signing-key", rsaPKCS1PEM, 0); err != nil {
		t.Fatal(err)
	}
	e := newEnvWithStore(t, map[string]string{"signed": signingAPI, "signed-rsa": rsaSigningAPI(t)}, store)

	// HMAC-SHA256 with the default header list: (request-target) plus every header, Date
	// added by the middleware. The client sends hop-by-hop headers and its own
	// X-Forwarded-For: the Post hook sees them (the proxy removes or rewrites them after the
	// hooks), and the signer leaves them out, with Host; (request-target) is the path the
	// upstream receives (listen_path and target_url in its configuration).
	r := e.do("POST", "/signed/orders/7?b=2&a=1", map[string]string{"Content-Type": "application/json", "X-Client": "c1",
		"X-Forwarded-For": "203.0.113.9", "Connection": "keep-alive, X-Hop", "X-Hop": "dropped", "Keep-Alive": "timeout=5"}, `{"qty": 1}`)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	sig := signatureOf(t, r, "Authorization")
	if !sig.Verified {
		t.Fatalf("the upstream could not verify the signature: %s\nsigning string:\n%s\nheaders %v", sig.Reason, sig.SigningString, r.seen.Headers)
	}
	if sig.KeyID != "gw-hmac" || sig.Algorithm != "hmac-sha256" {
		t.Errorf("params %+v", sig)
	}
	want := []string{"(request-target)", "content-type", "date", "x-client", "x-request-id"}
	got := append([]string(nil), sig.Headers...)
	if got[0] != "(request-target)" || !sort.StringsAreSorted(got[1:]) {
		t.Errorf("header list not (request-target) then sorted: %v", got)
	}
	for _, h := range want {
		found := false
		for _, g := range got {
			found = found || g == h
		}
		if !found {
			t.Errorf("%s not signed: %v", h, got)
		}
	}
	for _, g := range got {
		if g == "connection" || g == "keep-alive" || g == "x-hop" || g == "authorization" || g == "host" || g == "x-forwarded-for" {
			t.Errorf("%s was signed: %v", g, got)
		}
	}
	if !strings.HasPrefix(sig.SigningString, "(request-target): post /internal/orders/7?b=2&a=1\n") {
		t.Errorf("signing string %q", sig.SigningString)
	}
	if xff := r.seen.Headers["X-Forwarded-For"]; len(xff) != 1 || xff[0] != "203.0.113.9, 127.0.0.1" {
		t.Errorf("X-Forwarded-For upstream %v", xff)
	}
	if d, err := http.ParseTime(r.seen.Headers["Date"][0]); err != nil || time.Since(d) > time.Minute {
		t.Errorf("Date %v %v", r.seen.Headers["Date"], err)
	}
	// An independent second check, without the echo's verifier: rebuild the signing string
	// from the headers the upstream reported and verify with crypto/hmac.
	p, err := httpsig.Parse(r.seen.Headers["Authorization"][0])
	if err != nil {
		t.Fatal(err)
	}
	s, err := httpsig.SigningString(r.seen.Method, r.seen.RequestURI, http.Header(r.seen.Headers), p.Headers)
	if err != nil {
		t.Fatal(err)
	}
	if err := httpsig.VerifyString(p, httpsig.Key{Secret: upstreamSecret}, s); err != nil {
		t.Errorf("re-verification: %v", err)
	}
	if err := httpsig.VerifyString(p, httpsig.Key{Secret: upstreamSecret}, strings.Replace(s, "post", "get", 1)); err == nil {
		t.Error("the verifier accepts a tampered signing string")
	}
	// A Date the client sent is kept and signed as sent.
	date := "Fri, 03 May 2024 12:00:42 GMT"
	r = e.do("GET", "/signed/x", map[string]string{"Date": date}, "")
	if sig := signatureOf(t, r, "Authorization"); !sig.Verified || r.seen.Headers["Date"][0] != date {
		t.Errorf("client Date: %+v %v", sig, r.seen.Headers["Date"])
	}

	// RSA-SHA256 twice on one request: an inline PKCS#8 key into Signature with a configured
	// list, and a PKCS#1 key from the host store (certificateId) into Authorization with the
	// default list, which therefore also signs the first hook's Signature header.
	r = e.do("PUT", "/signed-rsa/items/9", map[string]string{"Content-Type": "text/plain", "X-Request-Id": "r-1"}, "body")
	if r.status != 200 {
		t.Fatalf("rsa: %d %s", r.status, r.body)
	}
	inline := signatureOf(t, r, "Signature")
	if !inline.Verified || !reflect.DeepEqual(inline.Headers, []string{"(request-target)", "date", "x-request-id", "content-type"}) {
		t.Errorf("inline RSA key: %+v", inline)
	}
	fromStore := signatureOf(t, r, "Authorization")
	if !fromStore.Verified || fromStore.KeyID != "gw-store" {
		t.Errorf("store RSA key: %+v", fromStore)
	}
	signsSignature := false
	for _, h := range fromStore.Headers {
		signsSignature = signsSignature || h == "signature"
	}
	if !signsSignature {
		t.Errorf("the second signature does not cover the first: %v", fromStore.Headers)
	}

	// A certificateId the store does not hold: 500 with the library's message, nothing
	// reaches the upstream. (Another id than above: the library keeps a key it has loaded
	// for as long as the configuration lives, and the library outlives this test's env.)
	e2 := newEnvWithStore(t, map[string]string{"signed-rsa": strings.Replace(rsaSigningAPI(t), `"upstream-signing-key"`, `"no-such-key"`, 1)}, store)
	isError(t, "missing certificate", e2.do("GET", "/signed-rsa/x", nil, ""), 500, "Certificate not found")
	if e2.hits.Load() != 0 {
		t.Error("missing certificate: the upstream was called")
	}
	_, logs, _ := e2.rec.take()
	for _, l := range logs {
		if strings.Contains(l[1], "PRIVATE KEY") {
			t.Errorf("key material logged: %s", l[1])
		}
	}
}

// ---- ReqHubMerchant in local mode, as a Pre hook and as the auth_check.

const (
	reqhubClientPub  = "K+mE4RjP4ZqDgq7mxfydILlmXQe9CYFPCgkjYaeW6/e1/vyRUOD0/p7IQY1jNq3boD7HJlABUUdtOzydsCCrgw=="
	reqhubClientPriv = "client-private-key-for-tests"
	reqhubOtherPub   = "other-product-client"
)

const reqhubAPI = `{
  "name": "ReqHub local", "api_id": "reqhub", "org_id": "org1", "use_keyless": true,
  "proxy": {"listen_path": "/reqhub/", "strip_listen_path": true, "target_url": "{{UPSTREAM}}"},
  "custom_middleware": {"driver": "native", "pre": [{"name": "ReqHubMerchant"}]},
  "config_data": {"ReqHubMerchant": {"mode": "local", "api": "weather-api", "window_ms": 60000, "result_header": "X-ReqHub-Result",
    "clients": {"` + reqhubClientPub + `": {"private_key": "` + reqhubClientPriv + `", "api": "weather-api"},
                "` + reqhubOtherPub + `": {"private_key": "other-private", "api": "maps-api"}}}}
}`

const reqhubAuthAPI = `{
  "api_id": "reqhub-auth", "org_id": "org1", "enable_coprocess_auth": true,
  "proxy": {"listen_path": "/reqhub-auth/", "strip_listen_path": true, "target_url": "{{UPSTREAM}}"},
  "custom_middleware": {"driver": "native", "auth_check": {"name": "ReqHubMerchant"}, "post": [{"name": "InjectHeaders"}]},
  "config_data": {
    "ReqHubMerchant": {"mode": "local", "api": "weather-api", "session": {"rate": 7, "per": 1, "tags": ["reqhub"]},
      "clients": {"` + reqhubClientPub + `": {"private_key": "` + reqhubClientPriv + `", "api": "weather-api"}}},
    "InjectHeaders": {"add": {"X-Post": "ran"}}
  }
}`

// reqhubDenial is the code of a ReqHub denial: the rejection text is "<code>: <message>",
// which the client gets through the gateway's error template.
func reqhubDenial(t *testing.T, r result) string {
	t.Helper()
	code, message := denialOf(t, r, 403)
	if message == "" {
		t.Fatalf("not a ReqHub denial: %d %q %v", r.status, r.body, r.header)
	}
	return code
}

// denialOf splits the error template's message "<code>: <message>" of a rejection.
func denialOf(t *testing.T, r result, status int) (code, message string) {
	t.Helper()
	var body map[string]string
	err := json.Unmarshal([]byte(r.body), &body)
	code, message, ok := strings.Cut(body["error"], ": ")
	if err != nil || r.status != status || !ok || strings.ContainsAny(code, " {\"") || r.body != errorBody(body["error"]) {
		t.Fatalf("not a %d \"<code>: <message>\" rejection: %d %q %v", status, r.status, r.body, r.header)
	}
	return code, message
}

func TestReqHubMerchantLocalEndToEnd(t *testing.T) {
	e := newEnv(t, map[string]string{"reqhub": reqhubAPI, "reqhub-auth": reqhubAuthAPI})
	path := "/reqhub/forecast?city=Oslo"
	signed, err := reqhub.SignNow(reqhubClientPub, reqhubClientPriv, path)
	if err != nil {
		t.Fatal(err)
	}
	r := e.do("GET", path, signed, "")
	if r.status != 200 || r.seen == nil {
		t.Fatalf("signed request: %d %s", r.status, r.body)
	}
	var result map[string]string
	if err := json.Unmarshal([]byte(r.seen.Headers["X-Reqhub-Result"][0]), &result); err != nil ||
		result["mode"] != "local" || result["client_key"] != reqhubClientPub || result["api"] != "weather-api" {
		t.Errorf("X-ReqHub-Result %v (%v)", r.seen.Headers["X-Reqhub-Result"], err)
	}
	for name, v := range signed {
		if got := r.seen.Headers[http.CanonicalHeaderKey(name)]; len(got) != 1 || got[0] != v {
			t.Errorf("the upstream got %s = %v, want %q", name, got, v)
		}
	}
	// The same request again: the nonce is in the store.
	if code := reqhubDenial(t, e.do("GET", path, signed, "")); code != "merchant_signature_invalid" {
		t.Errorf("replay: %s", code)
	}

	fresh := func(mod func(h map[string]string)) map[string]string {
		h, err := reqhub.SignNow(reqhubClientPub, reqhubClientPriv, path)
		if err != nil {
			t.Fatal(err)
		}
		mod(h)
		return h
	}
	stale := func() map[string]string {
		n, _ := reqhub.NewNonce()
		return reqhub.ClientHeaders(reqhubClientPub, reqhubClientPriv, path, time.Now().Add(-2*time.Minute), n)
	}
	otherNonce, _ := reqhub.NewNonce()
	cases := []struct {
		name    string
		path    string
		headers map[string]string
		code    string
	}{
		{"signed with another private key", path, fresh(func(h map[string]string) {
			h["ClientToken"] = reqhub.Token(reqhubClientPub, "wrong", h["ClientTimestamp"], h["ClientNonce"], path)
		}), "client_signature_invalid"},
		{"ClientUrl for another path", "/reqhub/forecast?city=Bergen", fresh(func(map[string]string) {}), "url_mismatch"},
		{"a header missing", path, fresh(func(h map[string]string) { delete(h, "ClientNonce") }), "headers_missing"},
		{"an unknown client", path, fresh(func(h map[string]string) { h["ClientKey"] = "nobody" }), "client_not_found"},
		{"a client of another product", path, reqhub.ClientHeaders(reqhubOtherPub, "other-private", path, time.Now(), otherNonce), "product_mismatch"},
		{"a timestamp outside the window", path, stale(), "merchant_signature_invalid"},
		{"a short nonce", path, fresh(func(h map[string]string) { h["ClientNonce"] = "c2hvcnQ=" }), "merchant_signature_invalid"},
	}
	for _, c := range cases {
		if code := reqhubDenial(t, e.do("GET", c.path, c.headers, "")); code != c.code {
			t.Errorf("%s: %s, want %s", c.name, code, c.code)
		}
	}
	if e.hits.Load() != 1 {
		t.Errorf("upstream hits %d, want 1", e.hits.Load())
	}

	// As the auth_check: a pass authenticates with the ClientKey as token.
	e.rec.take()
	authPath := "/reqhub-auth/forecast"
	signed, _ = reqhub.SignNow(reqhubClientPub, reqhubClientPriv, authPath)
	r = e.do("GET", authPath, signed, "")
	if r.status != 200 || r.seen.Headers["X-Post"][0] != "ran" {
		t.Fatalf("auth_check pass: %d %s", r.status, r.body)
	}
	_, _, traces := e.rec.take()
	post := traceOf(t, traces, pb.HookType_Post).Sent
	if post.Metadata["token"] != reqhubClientPub || post.Session.GetRate() != 7 || !strings.Contains(post.Metadata["reqhub"], `"mode":"local"`) {
		t.Errorf("session %v metadata %v", post.Session, post.Metadata)
	}
	if code := reqhubDenial(t, e.do("GET", authPath, signed, "")); code != "merchant_signature_invalid" {
		t.Errorf("auth_check replay: %s", code)
	}
}

// ---- ReqHubMerchant in remote mode against a ReqHub stand-in written in Go.

const (
	merchantPub  = "merchant-public-key-for-tests"
	merchantPriv = "merchant-private-key-for-tests"
)

// reqhubVerifier is a ReqHub /req stand-in: it checks the merchant set the middleware signed
// and the client set with Go's crypto/hmac, and answers like ReqHub.
type reqhubVerifier struct {
	mu   sync.Mutex
	seen []http.Header
}

func (v *reqhubVerifier) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	v.mu.Lock()
	v.seen = append(v.seen, r.Header.Clone())
	v.mu.Unlock()
	h := r.Header
	if r.Method != "POST" || r.URL.Path != "/req" {
		http.Error(w, `{"error":"api_not_found"}`, 404)
		return
	}
	if h.Get("MerchantKey") != merchantPub ||
		h.Get("MerchantToken") != reqhub.Token(merchantPub, merchantPriv, h.Get("MerchantTimestamp"), h.Get("MerchantNonce"), h.Get("MerchantUrl")) {
		w.WriteHeader(403)
		io.WriteString(w, `{"error":"merchant_signature_invalid","message":"stand-in"}`)
		return
	}
	if h.Get("MerchantUrl") != h.Get("ClientUrl") {
		w.WriteHeader(403)
		io.WriteString(w, `{"error":"url_mismatch"}`)
		return
	}
	if h.Get("ClientToken") != reqhub.Token(h.Get("ClientKey"), reqhubClientPriv, h.Get("ClientTimestamp"), h.Get("ClientNonce"), h.Get("ClientUrl")) {
		w.WriteHeader(403)
		io.WriteString(w, `{"error":"client_signature_invalid","message":"stand-in"}`)
		return
	}
	if h.Get("ClientKey") == "slow" {
		time.Sleep(600 * time.Millisecond)
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"client":"`+h.Get("ClientKey")+`","plan":"gold"}`)
}

func TestReqHubMerchantRemoteEndToEnd(t *testing.T) {
	v := &reqhubVerifier{}
	verifier := httptest.NewServer(v)
	defer verifier.Close()
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close() // a refused connection
	def := func(id, verifyURL string) string {
		return `{"api_id": "` + id + `", "org_id": "org1", "use_keyless": true,
		  "proxy": {"listen_path": "/` + id + `/", "strip_listen_path": true, "target_url": "{{UPSTREAM}}"},
		  "custom_middleware": {"driver": "native", "pre": [{"name": "ReqHubMerchant"}]},
		  "config_data": {"ReqHubMerchant": {"public_key": "` + merchantPub + `", "private_key": "` + merchantPriv + `",
		    "verify_url": "` + verifyURL + `", "timeout_ms": 300, "result_header": "X-ReqHub-Result"}}}`
	}
	e := newEnv(t, map[string]string{"remote": def("remote", verifier.URL+"/req"), "remote-down": def("remote-down", down.URL+"/req")})
	sign := func(key, path string) map[string]string {
		h, err := reqhub.SignNow(key, reqhubClientPriv, path)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}

	path := "/remote/forecast?city=Oslo"
	r := e.do("GET", path, sign(reqhubClientPub, path), "")
	if r.status != 200 || r.seen == nil {
		t.Fatalf("remote pass: %d %s", r.status, r.body)
	}
	if got := r.seen.Headers["X-Reqhub-Result"]; len(got) != 1 || got[0] != `{"client":"`+reqhubClientPub+`","plan":"gold"}` {
		t.Errorf("X-ReqHub-Result %v", got)
	}
	v.mu.Lock()
	seen := v.seen[len(v.seen)-1]
	v.mu.Unlock()
	if seen.Get("MerchantUrl") != path || len(seen.Get("MerchantTimestamp")) != 13 || seen.Get("MerchantNonce") == seen.Get("ClientNonce") {
		t.Errorf("merchant set %v", seen)
	}
	for _, name := range []string{"MerchantToken", "MerchantKey", "MerchantTimestamp", "MerchantNonce"} {
		if len(r.seen.Headers[http.CanonicalHeaderKey(name)]) != 0 {
			t.Errorf("%s reached the upstream", name)
		}
	}

	// The verifier's denial reaches the client with its code.
	bad := sign(reqhubClientPub, path)
	bad["ClientToken"] = reqhub.Token(reqhubClientPub, "wrong", bad["ClientTimestamp"], bad["ClientNonce"], path)
	if code := reqhubDenial(t, e.do("GET", path, bad, "")); code != "client_signature_invalid" {
		t.Errorf("verifier denial: %s", code)
	}
	// No verifier (refused) or a slow one (over timeout_ms): 503 and the event.
	e.rec.take()
	for _, c := range []struct{ path, key string }{{"/remote-down/x", reqhubClientPub}, {"/remote/slow", "slow"}} {
		h := sign(c.key, c.path)
		if c.key == "slow" {
			h["ClientToken"] = reqhub.Token("slow", reqhubClientPriv, h["ClientTimestamp"], h["ClientNonce"], c.path)
		}
		if code, _ := denialOf(t, e.do("GET", c.path, h, ""), 503); code != "verification_unavailable" {
			t.Errorf("%s: %s", c.path, code)
		}
		events, _, _ := e.rec.take()
		if len(events) != 1 || events[0][0] != "ReqHubVerificationUnavailable" || strings.Contains(events[0][1], merchantPriv) {
			t.Errorf("%s: events %v", c.path, events)
		}
	}
	if e.hits.Load() != 1 {
		t.Errorf("upstream hits %d, want 1", e.hits.Load())
	}
}

// Signatures made on the Post hook verify at the upstream for an API that strips its listen
// path and has a target path (and query): HMAC and RSA, each with the default header list
// and with a configured list naming (request-target) and host. The Post hook sees the
// inbound request (listen path on, inbound Host, hop-by-hop headers, the client's
// X-Forwarded-For); listen_path and target_url in the signer's configuration give it the
// (request-target) the upstream receives, and the default list leaves out what the proxy
// removes or rewrites.
func TestUpstreamRequestSigningThroughTheProxy(t *testing.T) {
	def := `{"api_id": "sp", "org_id": "org1", "use_keyless": true,
	  "proxy": {"listen_path": "/sp/", "strip_listen_path": true, "target_url": "{{UPSTREAM}}/internal/v2?t=1"},
	  "custom_middleware": {"driver": "native", "post": [
	    {"name": "UpstreamRequestSigning:hmac-default"}, {"name": "UpstreamRequestSigning:hmac-list"},
	    {"name": "UpstreamRequestSigning:rsa-default"}, {"name": "UpstreamRequestSigning:rsa-list"}]},
	  "config_data": {
	    "UpstreamRequestSigning:hmac-default": {"algorithm": "hmac-sha512", "keyId": "gw-hmac", "secret": "` + upstreamSecret + `",
	      "signatureHeader": "X-Sig-Hmac-Default", %TARGET%},
	    "UpstreamRequestSigning:hmac-list": {"algorithm": "hmac-sha256", "keyId": "gw-hmac", "secret": "` + upstreamSecret + `",
	      "signatureHeader": "X-Sig-Hmac-List", "headers": ["(request-target)", "host", "date", "x-request-id"], %TARGET%},
	    "UpstreamRequestSigning:rsa-default": {"algorithm": "rsa-sha256", "keyId": "gw-rsa", "privateKey": ` + mustJSON(t, rsaPrivatePEM) + `,
	      "signatureHeader": "X-Sig-Rsa-Default", %TARGET%},
	    "UpstreamRequestSigning:rsa-list": {"algorithm": "rsa-sha256", "keyId": "gw-rsa", "privateKey": ` + mustJSON(t, rsaPrivatePEM) + `,
	      "signatureHeader": "Signature", "headers": ["(request-target)", "host", "date", "content-type"], %TARGET%}}}`
	def = strings.ReplaceAll(def, "%TARGET%", `"listen_path": "/sp/", "target_url": "{{UPSTREAM}}/internal/v2?t=1"`)
	e := newEnv(t, map[string]string{"sp": def})
	r := e.do("PUT", "/sp/items/9?b=2&a=1", map[string]string{"Content-Type": "application/json", "X-Request-Id": "r-9",
		"X-Forwarded-For": "203.0.113.9", "Connection": "keep-alive, X-Hop", "X-Hop": "1", "Keep-Alive": "timeout=5"}, `{"n": 1}`)
	if r.status != 200 || r.seen.RequestURI != "/internal/v2/items/9?t=1&b=2&a=1" {
		t.Fatalf("%d %s", r.status, r.body)
	}
	// The echo verifies the Authorization and Signature headers; the X-Sig-* ones are checked
	// here with the same verifier against what the upstream received.
	check := func(header string, wantHost bool) {
		t.Helper()
		p, err := httpsig.Parse(r.seen.Headers[http.CanonicalHeaderKey(header)][0])
		if err != nil {
			t.Fatalf("%s: %v", header, err)
		}
		upstreamHeaders := http.Header(r.seen.Headers).Clone()
		upstreamHeaders.Set("Host", r.seen.Host)
		s, err := httpsig.SigningString(r.seen.Method, r.seen.RequestURI, upstreamHeaders, p.Headers)
		if err != nil {
			t.Fatalf("%s: %v (headers %v)", header, err, p.Headers)
		}
		key := upstreamKeys[p.KeyID]
		if err := httpsig.VerifyString(p, key, s); err != nil {
			t.Errorf("%s does not verify at the upstream: %v\n%s", header, err, s)
		}
		if !strings.HasPrefix(s, "(request-target): put /internal/v2/items/9?t=1&b=2&a=1\n") {
			t.Errorf("%s: signing string %q", header, s)
		}
		hasHost := false
		for _, h := range p.Headers {
			hasHost = hasHost || h == "host"
			if h == "x-forwarded-for" || h == "connection" || h == "x-hop" || h == "keep-alive" {
				t.Errorf("%s signs %s: %v", header, h, p.Headers)
			}
		}
		if hasHost != wantHost {
			t.Errorf("%s: host signed %v: %v", header, hasHost, p.Headers)
		}
	}
	check("X-Sig-Hmac-Default", false)
	check("X-Sig-Hmac-List", true)
	check("X-Sig-Rsa-Default", false)
	check("Signature", true)
	if sig := signatureOf(t, r, "Signature"); !sig.Verified {
		t.Errorf("the echo's own verifier: %+v", sig)
	}
	_, _, traces := e.rec.take()
	post := traceOf(t, traces, pb.HookType_Post).Sent.Request
	if post.Url != "/sp/items/9?b=2&a=1" || post.Headers["X-Hop"] != "1" || post.Headers["X-Forwarded-For"] != "203.0.113.9" || post.Headers["Host"] != strings.TrimPrefix(e.front.URL, "http://") {
		t.Errorf("the Post hook saw %q %v", post.Url, post.Headers)
	}
}
