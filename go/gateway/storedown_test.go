package gateway

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"coprocess/go/internal/reqhub"
)

// downStore is a store that always fails, SetIfAbsent included (Redis down, timeout, circuit
// open all look like this to the host functions).
type downStore struct{}

var errDown = errors.New("store down")

func (downStore) Set(string, string, time.Duration) error                 { return errDown }
func (downStore) Get(string) (string, bool, error)                        { return "", false, errDown }
func (downStore) SetIfAbsent(string, string, time.Duration) (bool, error) { return false, errDown }

// With the store down the built-ins fail closed: ReqHubMerchant (local mode: its nonce
// check is one CoProcessStoreDataIfAbsent) answers 503 verification_unavailable, logs a
// warning and fires ReqHubVerificationUnavailable, all carrying the request's trace id; an
// HMAC key that lives in the store is unknown: 401; UpstreamRequestSigning without its
// store-held RSA key answers 500 Certificate not found (nothing goes upstream unsigned); keys
// in the configuration still work, and so does a store-free API.
func TestBuiltinsFailClosedWithTheStoreDown(t *testing.T) {
	e := newEnvWithStore(t, map[string]string{"reqhub": reqhubAPI, "hmac": hmacAPI, "keyless": keylessAPI, "signed-rsa": rsaSigningAPI(t)}, downStore{})
	const id = "4bf92f3577b34da6a3ce929d0e0e4736"
	h, err := reqhub.SignNow(reqhubClientPub, reqhubClientPriv, "/reqhub/forecast")
	if err != nil {
		t.Fatal(err)
	}
	h["traceparent"] = tp
	r := e.do("GET", "/reqhub/forecast", h, "")
	if code, _ := denialOf(t, r, 503); code != "verification_unavailable" {
		t.Errorf("ReqHub with the store down: %d %s", r.status, r.body)
	}
	if r.seen != nil {
		t.Error("a ReqHub request reached the upstream with the store down")
	}
	events, logs, _ := e.rec.take()
	unavailable := eventsNamed(events, "ReqHubVerificationUnavailable")
	if len(unavailable) != 1 {
		t.Fatalf("events %v", events)
	}
	var payload map[string]interface{}
	if err := json.Unmarshal([]byte(unavailable[0][1]), &payload); err != nil || payload["trace_id"] != id {
		t.Errorf("ReqHubVerificationUnavailable payload %s", unavailable[0][1])
	}
	warned := false
	for _, l := range logs {
		warned = warned || (l[0] == "warning" && strings.Contains(l[1], "unavailable") && strings.HasSuffix(l[1], "trace_id="+id))
	}
	if !warned {
		t.Errorf("no warning with the trace id: %q", logs)
	}

	now := time.Now()
	rt := []string{"(request-target)", "date"}
	if r := e.do("GET", "/hmac/x", signedHeaders(t, "GET", "/hmac/x", "store-app", "store-secret", "hmac-sha256", now, rt...), ""); r.status != 401 {
		t.Errorf("HMAC with its key in the store, store down: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/hmac/x", signedHeaders(t, "GET", "/hmac/x", "mobile-app", "app-secret-1", "hmac-sha256", now, rt...), ""); r.status != 200 {
		t.Errorf("HMAC with a configured key, store down: %d %s", r.status, r.body)
	}
	// UpstreamRequestSigning with its RSA key in the store (fetched at first use): the
	// request is not sent unsigned.
	if r := e.do("GET", "/signed-rsa/x", nil, ""); r.status != 500 || r.seen != nil || !strings.Contains(r.body, "Certificate not found") {
		t.Errorf("UpstreamRequestSigning with its key in the store, store down: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/k/x", nil, ""); r.status != 200 {
		t.Errorf("store-free API: %d %s", r.status, r.body)
	}
}
