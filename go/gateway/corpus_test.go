package gateway

// The corpus of Objects (tests/fixtures/objects): realistic requests through the gateway,
// every Object it dispatches (one per hook) written as binary protobuf, with index.json
// describing each. `make fixtures` regenerates it; TestObjectCorpus fails when the committed
// corpus is stale. What varies per run is made fixed (gateway and upstream host names, the
// upstream's Date, the clients' Date, ReqHub timestamps and nonces); what cannot be (a
// session's last_updated and id_extractor_deadline that HMACSignatureAuth sets from the
// clock) is ignored in the comparison.

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"coprocess/go/coprocess"
	"coprocess/go/internal/echo"
	"coprocess/go/internal/httpsig"
	"coprocess/go/internal/reqhub"
	"coprocess/go/pb"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

var updateFixtures = flag.Bool("update-fixtures", false, "regenerate tests/fixtures/objects (make fixtures)")

const fixturesDir = "../../tests/fixtures/objects"

// CorpusEntry is one entry of index.json.
type CorpusEntry struct {
	File     string `json:"file"`
	HookType string `json:"hook_type"`
	HookName string `json:"hook_name"`
	API      string `json:"api"`
	Request  string `json:"request"` // "METHOD /path?query"
	Case     string `json:"case"`    // the request's name
	About    string `json:"about"`   // what the request is
}

const (
	corpusDate      = "Fri, 03 May 2024 12:00:42 GMT"
	corpusDeadline  = 4102444800 // 2100-01-01: the ID extractor's cached session never expires here
	corpusReqHubKey = "corpus-client-public-key"
	corpusReqHubPrv = "corpus-client-private-key"
)

// corpusAPIs are the APIs of the corpus; upstream.test is the echo service.
var corpusAPIs = map[string]string{
	// Keyless, listen path stripped, target path, Pre/Post/Response hooks, a config_data with
	// keys to sort and characters to escape, a bundle.
	"catalog": `{"name": "Catalog", "api_id": "catalog", "org_id": "org-corpus", "use_keyless": true,
	  "custom_middleware_bundle": "catalog-bundle.zip",
	  "proxy": {"listen_path": "/catalog/", "strip_listen_path": true, "target_url": "http://upstream.test/base"},
	  "custom_middleware": {"driver": "native",
	    "pre": [{"name": "InjectHeaders"}],
	    "post": [{"name": "InjectHeaders:post"}, {"name": "InjectHeaders:raw", "raw_body_only": true}],
	    "response": [{"name": "InjectHeaders:resp"}]},
	  "config_data": {"zone": "<eu&west>", "InjectHeaders": {"add": {"X-Pre": "pre"}, "remove": ["Cookie"]},
	    "InjectHeaders:post": {"add": {"X-Post": "post"}}, "InjectHeaders:raw": {},
	    "InjectHeaders:resp": {"add": {"X-Resp": "resp"}, "remove": ["Server"]}}}`,
	// Coprocess auth (StaticTokenAuth), listen path kept, every hook type.
	"orders": `{"name": "Orders", "api_id": "orders", "org_id": "org-corpus", "enable_coprocess_auth": true,
	  "proxy": {"listen_path": "/orders/", "strip_listen_path": false, "target_url": "http://upstream.test/v1/"},
	  "custom_middleware": {"driver": "native",
	    "pre": [{"name": "InjectHeaders:pre"}],
	    "auth_check": {"name": "StaticTokenAuth"},
	    "post_key_auth": [{"name": "InjectHeaders:pka"}],
	    "post": [{"name": "InjectHeaders:post"}],
	    "response": [{"name": "InjectHeaders:resp"}]},
	  "config_data": {
	    "StaticTokenAuth": {"header": "Authorization", "strip_prefix": "Bearer ",
	      "tokens": {"corpus-token": {"rate": 100, "per": 60, "quota_max": 1000, "tags": ["gold", "corpus"],
	        "metadata": {"plan": "gold"}, "access_rights": {"orders": {"api_id": "orders", "api_name": "Orders", "versions": ["Default"]}}}}},
	    "InjectHeaders:pre": {"add": {"X-Request-Source": "corpus"}},
	    "InjectHeaders:pka": {"add": {"X-Authenticated": "yes"}},
	    "InjectHeaders:post": {"add": {"X-Post": "post"}},
	    "InjectHeaders:resp": {"add": {"X-Frame-Options": "DENY"}}}}`,
	// HMAC-signed clients (HMACSignatureAuth, no clock-skew check so a fixed Date passes).
	"mobile": `{"name": "Mobile", "api_id": "mobile", "org_id": "org-corpus", "enable_coprocess_auth": true,
	  "proxy": {"listen_path": "/mobile/", "strip_listen_path": true, "target_url": "http://upstream.test"},
	  "custom_middleware": {"driver": "native", "auth_check": {"name": "HMACSignatureAuth"}, "post_key_auth": [{"name": "InjectHeaders"}]},
	  "config_data": {"HMACSignatureAuth": {"keys": {"mobile-app": "mobile-secret"}, "session": {"rate": 50, "per": 1, "tags": ["hmac"]}},
	    "InjectHeaders": {"add": {"X-Authenticated-By": "hmac"}}}}`,
	// Requests signed for the upstream (HMAC default list, RSA configured list).
	"billing": `{"name": "Billing", "api_id": "billing", "org_id": "org-corpus", "use_keyless": true,
	  "proxy": {"listen_path": "/billing/", "strip_listen_path": true, "target_url": "http://upstream.test/internal"},
	  "custom_middleware": {"driver": "native", "post": [{"name": "UpstreamRequestSigning:hmac"}, {"name": "UpstreamRequestSigning:rsa"}]},
	  "config_data": {
	    "UpstreamRequestSigning:hmac": {"algorithm": "hmac-sha256", "keyId": "gw-hmac", "secret": "upstream-shared-secret",
	      "listen_path": "/billing/", "target_url": "http://upstream.test/internal"},
	    "UpstreamRequestSigning:rsa": {"algorithm": "rsa-sha256", "keyId": "gw-rsa", "signatureHeader": "Signature",
	      "headers": ["(request-target)", "host", "date", "x-request-id"], "privateKey": %RSAKEY%,
	      "listen_path": "/billing/", "target_url": "http://upstream.test/internal"}}}`,
	// ReqHub clients verified locally, as a Pre hook.
	"weather": `{"name": "Weather", "api_id": "weather", "org_id": "org-corpus", "use_keyless": true,
	  "proxy": {"listen_path": "/weather/", "strip_listen_path": true, "target_url": "http://upstream.test/weather"},
	  "custom_middleware": {"driver": "native", "pre": [{"name": "ReqHubMerchant"}]},
	  "config_data": {"ReqHubMerchant": {"mode": "local", "api": "weather-api", "window_ms": 2147483647000, "result_header": "X-ReqHub-Result",
	    "clients": {"` + corpusReqHubKey + `": {"private_key": "` + corpusReqHubPrv + `", "api": "weather-api"}}}}}`,
	// An ID extractor in front of StaticTokenAuth: the second request uses the stored session.
	"cached": `{"name": "Cached", "api_id": "cached", "org_id": "org-corpus", "enable_coprocess_auth": true,
	  "proxy": {"listen_path": "/cached/", "strip_listen_path": true, "target_url": "http://upstream.test"},
	  "custom_middleware": {"driver": "native", "auth_check": {"name": "StaticTokenAuth"}, "post": [{"name": "InjectHeaders"}],
	    "id_extractor": {"extract_from": "header", "extract_with": "value", "extractor_config": {"header_name": "X-Api-Key"}}},
	  "config_data": {"StaticTokenAuth": {"header": "X-Api-Key", "tokens": {"cached-key": {"rate": 10, "per": 1, "id_extractor_deadline": ` + fmt.Sprint(corpusDeadline) + `}}},
	    "InjectHeaders": {}}}`,
}

// corpusRequest is one request of the corpus.
type corpusRequest struct {
	name, about  string
	method, path string
	headers      [][2]string // in order; a name may repeat
	body         string
	sign         func(r *corpusRequest) // adds computed headers (signatures)
	status       int
}

func corpusRequests() []*corpusRequest {
	signHMAC := func(r *corpusRequest) {
		h := http.Header{"Date": {corpusDate}}
		names := []string{"(request-target)", "date"}
		s, _ := httpsig.SigningString(r.method, r.path, h, names)
		sig, _ := httpsig.SignHMAC("hmac-sha256", "mobile-secret", s)
		r.headers = append(r.headers, [2]string{"Authorization", httpsig.Params{KeyID: "mobile-app", Algorithm: "hmac-sha256", Headers: names, Signature: sig}.String()})
	}
	reqhubHeaders := func(r *corpusRequest) {
		h := reqhub.ClientHeaders(corpusReqHubKey, corpusReqHubPrv, r.path, time.Date(2024, 5, 3, 12, 0, 42, 0, time.UTC), "Y29ycHVzLW5vbmNlLTIwYnl0ZXM=")
		for _, k := range []string{"ClientToken", "ClientKey", "ClientTimestamp", "ClientNonce", "ClientUrl"} {
			r.headers = append(r.headers, [2]string{k, h[k]})
		}
	}
	return []*corpusRequest{
		{name: "catalog-get-query", about: "keyless GET: repeated query keys, repeated headers, a cookie the Pre hook removes",
			method: "GET", path: "/catalog/items/7?lang=en&tag=a&tag=b&empty=",
			headers: [][2]string{{"Accept", "application/json"}, {"X-Multi", "one"}, {"X-Multi", "two"}, {"Cookie", "session=abc"}, {"X-Forwarded-For", "203.0.113.9"}}, status: 200},
		{name: "catalog-post-json", about: "keyless POST with a JSON body and hop-by-hop headers",
			method: "POST", path: "/catalog/items", headers: [][2]string{{"Content-Type", "application/json"}, {"Connection", "keep-alive, X-Hop"}, {"X-Hop", "1"}},
			body: `{"name": "lamp", "price": 12.5, "tags": ["<home>", "&light"]}`, status: 200},
		{name: "catalog-put-binary", about: "keyless PUT with a body that is not UTF-8 (raw_body only)",
			method: "PUT", path: "/catalog/blobs/1", headers: [][2]string{{"Content-Type", "application/octet-stream"}},
			body: string([]byte{0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0xff, 0xfe}), status: 200},
		{name: "catalog-cookies", about: "keyless GET whose upstream answers two Set-Cookie headers (Response hook multivalue_headers)",
			method: "GET", path: "/catalog/cookies", status: 200},
		{name: "orders-good-token", about: "StaticTokenAuth with a known token: every hook type, listen path kept, target path /v1/",
			method: "GET", path: "/orders/list?status=open&page=2", headers: [][2]string{{"Authorization", "Bearer corpus-token"}}, status: 200},
		{name: "orders-form", about: "StaticTokenAuth, a url-encoded form body",
			method: "POST", path: "/orders/new", headers: [][2]string{{"Authorization", "Bearer corpus-token"}, {"Content-Type", "application/x-www-form-urlencoded"}},
			body: "item=42&qty=1&note=a+b%26c", status: 200},
		{name: "orders-bad-token", about: "StaticTokenAuth with an unknown token: Pre and CustomKeyCheck only, then 403",
			method: "GET", path: "/orders/list", headers: [][2]string{{"Authorization", "Bearer stolen"}}, status: 403},
		{name: "mobile-signed", about: "HMACSignatureAuth: a request signed over (request-target) and date",
			method: "GET", path: "/mobile/profile?fields=name", headers: [][2]string{{"Date", corpusDate}}, sign: signHMAC, status: 200},
		{name: "mobile-unsigned", about: "HMACSignatureAuth: no Authorization",
			method: "GET", path: "/mobile/profile", headers: [][2]string{{"Date", corpusDate}}, status: 400},
		{name: "billing-signed", about: "UpstreamRequestSigning twice on the Post hook (HMAC default list, RSA configured list)",
			method: "POST", path: "/billing/invoices?month=2024-05", headers: [][2]string{{"Date", corpusDate}, {"Content-Type", "application/json"}, {"X-Request-Id", "req-7"}},
			body: `{"amount": 42}`, status: 200},
		{name: "weather-reqhub", about: "ReqHubMerchant (local) as a Pre hook with the five client headers",
			method: "GET", path: "/weather/forecast?city=Oslo", sign: reqhubHeaders, status: 200},
		{name: "cached-first", about: "ID extractor: the first request runs StaticTokenAuth and stores the session",
			method: "GET", path: "/cached/a", headers: [][2]string{{"X-Api-Key", "cached-key"}}, status: 200},
		{name: "cached-second", about: "ID extractor: the second request skips the plugin (only the Post hook runs)",
			method: "GET", path: "/cached/b", headers: [][2]string{{"X-Api-Key", "cached-key"}}, status: 200},
	}
}

// generateCorpus runs the corpus requests through a gateway and writes every Object into dir.
func generateCorpus(t *testing.T, dir string) []CorpusEntry {
	t.Helper()
	// The upstream: the echo service with a fixed Date, two cookies on /cookies.
	echoH := echo.NewHandler(echo.Options{VerifyKeys: upstreamKeys})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", corpusDate)
		if strings.HasSuffix(r.URL.Path, "/cookies") {
			w.Header().Add("Set-Cookie", "a=1; Path=/")
			w.Header().Add("Set-Cookie", "b=2; HttpOnly")
		}
		echoH.ServeHTTP(w, r)
	}))
	defer up.Close()
	upAddr := strings.TrimPrefix(up.URL, "http://")
	transport := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, upAddr)
	}}
	defer transport.CloseIdleConnections()

	apps := t.TempDir()
	for name, def := range corpusAPIs {
		def = strings.Replace(def, "%RSAKEY%", mustJSON(t, rsaPrivatePEM), 1)
		if err := os.WriteFile(filepath.Join(apps, name+".json"), []byte(def), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rec := &recorder{}
	d, err := coprocess.New(coprocess.Host{Events: rec, Logger: rec, Store: coprocess.NewMemoryStore()})
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(Options{AppsDir: apps, Dispatcher: d, Logger: rec, Trace: rec.trace, Transport: transport})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(g)
	defer front.Close()

	var entries []CorpusEntry
	safe := regexp.MustCompile(`[^A-Za-z0-9]+`)
	for _, c := range corpusRequests() {
		if c.sign != nil {
			c.sign(c)
		}
		var body io.Reader
		if c.body != "" {
			body = strings.NewReader(c.body)
		}
		req, err := http.NewRequest(c.method, front.URL+c.path, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "gateway.test"
		req.Header.Set("User-Agent", "corpus-client/1.0")
		for _, h := range c.headers {
			req.Header.Add(h[0], h[1])
		}
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status {
			_, logs, _ := rec.take()
			t.Fatalf("corpus request %s: %d %s (want %d)\n%v", c.name, resp.StatusCode, answer, c.status, logs)
		}
		_, _, traces := rec.take()
		if len(traces) == 0 {
			t.Fatalf("corpus request %s dispatched nothing", c.name)
		}
		for i, tr := range traces {
			o := tr.Sent
			file := fmt.Sprintf("%s.%d-%s-%s.bin", c.name, i+1, o.HookType, strings.Trim(safe.ReplaceAllString(o.HookName, "-"), "-"))
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(o)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, file), b, 0o644); err != nil {
				t.Fatal(err)
			}
			entries = append(entries, CorpusEntry{File: file, HookType: o.HookType.String(), HookName: o.HookName, API: tr.APIID,
				Request: c.method + " " + c.path, Case: c.name, About: c.about})
		}
	}
	index, err := json.MarshalIndent(entries, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), append(index, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	return entries
}

// normalized clears what the clock sets (HMACSignatureAuth's last_updated and
// id_extractor_deadline).
func normalized(t *testing.T, b []byte) *pb.Object {
	t.Helper()
	o := new(pb.Object)
	if err := proto.Unmarshal(b, o); err != nil {
		t.Fatal(err)
	}
	if s := o.Session; s != nil && o.Spec["APIID"] == "mobile" {
		s.LastUpdated, s.IdExtractorDeadline = "", 0
	}
	return o
}

// The committed corpus is what the gateway dispatches today (regenerate with make fixtures).
func TestObjectCorpus(t *testing.T) {
	dir := t.TempDir()
	entries := generateCorpus(t, dir)
	if *updateFixtures {
		if err := os.MkdirAll(fixturesDir, 0o755); err != nil {
			t.Fatal(err)
		}
		old, _ := filepath.Glob(filepath.Join(fixturesDir, "*.bin"))
		for _, f := range old {
			os.Remove(f)
		}
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(fixturesDir, filepath.Base(f)), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("wrote %d Objects and index.json to %s", len(entries), fixturesDir)
		return
	}
	stale := "the committed corpus tests/fixtures/objects is stale: run make fixtures (and check the diff)"
	want, err := os.ReadFile(filepath.Join(fixturesDir, "index.json"))
	if err != nil {
		t.Fatalf("%v: %s", err, stale)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	if !bytes.Equal(got, want) {
		t.Errorf("index.json differs: %s", stale)
	}
	committed, _ := filepath.Glob(filepath.Join(fixturesDir, "*.bin"))
	names := map[string]bool{}
	for _, e := range entries {
		names[e.File] = true
	}
	var extra []string
	for _, f := range committed {
		if !names[filepath.Base(f)] {
			extra = append(extra, filepath.Base(f))
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		t.Errorf("committed Objects no longer generated %v: %s", extra, stale)
	}
	for _, e := range entries {
		w, err := os.ReadFile(filepath.Join(fixturesDir, e.File))
		if err != nil {
			t.Errorf("%s: %v: %s", e.File, err, stale)
			continue
		}
		g, _ := os.ReadFile(filepath.Join(dir, e.File))
		if a, b := normalized(t, g), normalized(t, w); !proto.Equal(a, b) {
			t.Errorf("%s differs: %s\n%s", e.File, stale, textDiff(prototext.Format(b), prototext.Format(a)))
		}
	}
}

// textDiff lists the lines only in the committed (-) or only in the generated (+) text.
func textDiff(committed, generated string) string {
	count := map[string]int{}
	for _, l := range strings.Split(committed, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(generated, "\n") {
		count[l]--
	}
	var out []string
	for _, l := range strings.Split(committed, "\n") {
		if count[l] > 0 {
			out = append(out, "- "+l)
		}
	}
	for _, l := range strings.Split(generated, "\n") {
		if count[l] < 0 {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}
