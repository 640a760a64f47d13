package demo

import (
	"bytes"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"coprocess/go/coprocess"
	"coprocess/go/gateway"
	"coprocess/go/internal/echo"
)

// The demo's API definitions and requests, run in-process: every demo request gets its
// expected status, and every API of the demo directory has demo requests. A new API is
// covered by dropping its definition in go/demo/apps and its requests in go/demo/requests.
func TestDemoDirectory(t *testing.T) {
	dir := filepath.Join("..", "..", "demo")
	os.Setenv("COPROCESS_CONFIG", filepath.Join(dir, "coprocess.json"))
	keys, err := UpstreamKeys(filepath.Join(dir, "upstream-keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	upstream := httptest.NewServer(echo.NewHandler(echo.Options{VerifyKeys: keys}))
	defer upstream.Close()
	os.Setenv("DEMO_UPSTREAM", upstream.URL)

	var mu sync.Mutex
	var events []string
	var logs []string
	d, err := coprocess.New(coprocess.Host{
		Events: coprocess.EventFunc(func(name, payload string) { mu.Lock(); events = append(events, name); mu.Unlock() }),
		Logger: coprocess.LogFunc(func(level, msg string) { mu.Lock(); logs = append(logs, level+" "+msg); mu.Unlock() }),
	})
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(gateway.Options{AppsDir: filepath.Join(dir, "apps"), Dispatcher: d, Logger: coprocess.LogFunc(func(string, string) {})})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(g)
	defer front.Close()

	groups, err := Load(filepath.Join(dir, "requests"))
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for _, grp := range groups {
		for _, r := range grp.Requests {
			for id, lp := range g.APIs() {
				if strings.HasPrefix(r.Path, lp) {
					covered[id] = true
				}
			}
		}
	}
	for id := range g.APIs() {
		if !covered[id] {
			t.Errorf("API %s has no demo request", id)
		}
	}
	var out bytes.Buffer
	if failures := Run(front.URL, groups, &out); failures != 0 {
		t.Errorf("%d demo requests did not get their expected status:\n%s", failures, out.String())
	}
	// What the demo shows must be true: the upstream saw the injected headers and not the
	// removed ones, and the AuthFailure events went through both handlers.
	text := out.String()
	for _, want := range []string{"X-Request-Source: coprocess-gateway", "X-Authenticated-By: StaticTokenAuth", "X-Upstream-Auth: internal",
		"client got X-Frame-Options: DENY", "client got Server: (absent)", "X-Plugin: coprocess", "client got X-Upstream: (absent)",
		`answered by the gateway: {"error":"Forbidden"}`, `answered by the gateway: {"error":"Key not authorised"}`,
		"X-Authenticated-By: HMACSignatureAuth", `answered by the gateway: {"error":"Custom middleware: Bad request"}`,
		`upstream checked the Authorization signature itself (Go crypto, keyId "demo-gateway-hmac", hmac-sha256): VALID`,
		`upstream checked the Signature signature itself (Go crypto, keyId "demo-gateway-rsa", rsa-sha256): VALID`,
		"(request-target): put /ledger/entries/7", `X-Reqhub-Result: {"api":"weather-api"`,
		`answered by the gateway: {"error":"merchant_signature_invalid: ClientNonce was already used`} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "      Cookie:") {
		t.Errorf("a removed Cookie reached the upstream:\n%s", text)
	}
	if strings.Contains(text, "NOT VALID") || strings.Count(text, ": VALID\n") != 2 {
		t.Errorf("the upstream's signature checks:\n%s", text)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 2 || events[0] != "DemoAuthFailure" {
		t.Errorf("relayed events %v", events)
	}
	authLogs := 0
	for _, l := range logs {
		if strings.Contains(l, "AuthFailure") {
			authLogs++
		}
	}
	if authLogs != 6 { // static-token 2, partner-key 1, hmac-auth 3
		t.Errorf("LogEvent lines %d: %v", authLogs, logs)
	}
}
