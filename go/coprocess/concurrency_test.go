package coprocess

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"coprocess/go/internal/httpsig"
	"coprocess/go/internal/reqhub"
	"coprocess/go/pb"
)

// builtinsConfigTemplate configures the signing and verifying built-ins for the concurrency
// test (the RSA key is the demo's test key, filled in by loadBuiltinsConfig).
const builtinsConfigTemplate = `{
  "HMACSignatureAuth": {"keys": {"conc-key": "conc-secret"}, "clock_skew_ms": 300000,
    "session": {"rate": 3, "per": 1, "tags": ["hmac"]}},
  "UpstreamRequestSigning": {"algorithm": "hmac-sha256", "keyId": "gw-hmac", "secret": "up-secret"},
  "UpstreamRequestSigning:sha512": {"algorithm": "hmac-sha512", "keyId": "gw-512", "secret": "up-secret-512",
    "headers": ["(request-target)", "date", "x-worker"]},
  "UpstreamRequestSigning:rsa": {"algorithm": "rsa-sha256", "keyId": "gw-rsa", "signatureHeader": "Signature", "privateKey": %s},
  "ReqHubMerchant": {"mode": "local", "api": "conc-api", "window_ms": 60000,
    "clients": {"conc-client": {"private_key": "conc-client-secret", "api": "conc-api"}}}
}`

type builtinsFixture struct {
	configData string
	rsaPublic  *rsa.PublicKey
}

func loadBuiltinsFixture(t testing.TB) *builtinsFixture {
	b, err := os.ReadFile("../demo/keys/upstream-rsa-test.key.pem")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pemJSON, _ := json.Marshal(string(b))
	return &builtinsFixture{configData: fmt.Sprintf(builtinsConfigTemplate, pemJSON), rsaPublic: &k.(*rsa.PrivateKey).PublicKey}
}

// workerState is what one worker remembers between calls (its last ReqHub headers, to
// replay them).
type workerState struct {
	lastReqHub map[string]string
}

// Many goroutines dispatch every kind of call while one goroutine rewrites the global file
// and calls Reload in a loop (valid generations a and b, and broken files that must be
// refused). Every single result is checked: no dispatch may fail or see a mixed state.
func TestConcurrentDispatchDuringReload(t *testing.T) {
	d, rec := newDispatcher(t, nil)
	writeGlobalConfig(t, globalConfig("a"))
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		writeGlobalConfig(t, globalConfig("a"))
		_ = d.Reload()
	})

	const workers = 8
	iterations := 1500
	if testing.Short() {
		iterations = 200
	}
	fx := loadBuiltinsFixture(t)
	var relays, logged atomic.Int64
	var perKind [15]atomic.Int64
	var stop atomic.Bool
	var reloads, refused atomic.Int64
	reloadDone := make(chan error, 1)
	go func() {
		for i := 0; !stop.Load(); i++ {
			if i%5 == 4 {
				writeGlobalConfig(t, `{"RelayEvent": {"event_name": `)
				if err := d.Reload(); !errors.Is(err, ErrConfig) {
					reloadDone <- fmt.Errorf("Reload of a broken file: %v", err)
					return
				}
				refused.Add(1)
				continue
			}
			writeGlobalConfig(t, globalConfig([]string{"a", "b"}[i%2]))
			if err := d.Reload(); err != nil {
				reloadDone <- fmt.Errorf("Reload: %w", err)
				return
			}
			reloads.Add(1)
		}
		reloadDone <- nil
	}()

	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rnd := rand.New(rand.NewSource(int64(w)))
			st := &workerState{}
			for i := 0; i < iterations; i++ {
				kind := rnd.Intn(len(perKind))
				perKind[kind].Add(1)
				if err := oneCall(d, fx, st, kind, rnd, w, i, &relays, &logged); err != nil {
					errs <- fmt.Errorf("worker %d call %d: %w", w, i, err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	stop.Store(true)
	if err := <-reloadDone; err != nil {
		t.Fatal(err)
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if reloads.Load() < 2 || refused.Load() < 1 {
		t.Errorf("the reloader hardly ran: %d reloads, %d refused", reloads.Load(), refused.Load())
	}
	events, logs := rec.snapshot()
	eventLogs := 0
	for _, l := range logs {
		if l[0] == "warning" && strings.Contains(l[1], "AuthFailure") && strings.Contains(l[1], `"api1"`) {
			eventLogs++
		}
	}
	if int64(eventLogs) != logged.Load() {
		t.Errorf("%d LogEvent lines for %d DispatchEvent calls", eventLogs, logged.Load())
	}
	if int64(len(events)) != relays.Load() {
		t.Errorf("%d relayed events for %d DispatchEvent calls", len(events), relays.Load())
	}
	for _, e := range events {
		if (e[0] != "Relayed-a" && e[0] != "Relayed-b") || e[1] != string(event("RelayEvent")) {
			t.Fatalf("bad relayed event %q", e)
		}
	}
	for k := range perKind {
		if perKind[k].Load() == 0 {
			t.Errorf("call kind %d never ran", k)
		}
	}
	t.Logf("%d calls, %d reloads, %d broken files refused, %d events relayed, %d logged", workers*iterations, reloads.Load(), refused.Load(), len(events), eventLogs)
}

func oneCall(d *Dispatcher, fx *builtinsFixture, st *workerState, kind int, rnd *rand.Rand, w, i int, relays, logged *atomic.Int64) error {
	if kind >= 7 {
		return oneBuiltinCall(d, fx, st, kind, rnd, w, i)
	}
	switch kind {
	case 0: // a known token: exactly its session template
		tok, rate := "tok-gold", 100.0
		if rnd.Intn(2) == 0 {
			tok, rate = "tok-free", 5
		}
		out, err := d.Dispatch(requestObject(pb.HookType_CustomKeyCheck, "StaticTokenAuth", map[string]string{"Authorization": "Bearer " + tok}))
		if err != nil {
			return err
		}
		if out.Session.GetRate() != rate || out.Metadata["token"] != tok {
			return fmt.Errorf("token %s: session %v metadata %v", tok, out.Session, out.Metadata)
		}
	case 1: // an unknown token: no session
		out, err := d.Dispatch(requestObject(pb.HookType_CustomKeyCheck, "StaticTokenAuth", map[string]string{"Authorization": fmt.Sprintf("Bearer bad-%d-%d", w, i)}))
		if err != nil {
			return err
		}
		if out.Session != nil || len(out.Metadata) != 0 || out.Request.ReturnOverrides.GetResponseCode() != -1 {
			return fmt.Errorf("unknown token answered %v", out)
		}
	case 2: // per-API InjectHeaders
		out, err := d.Dispatch(requestObject(pb.HookType_Post, "InjectHeaders", map[string]string{"Cookie": "c"}))
		if err != nil {
			return err
		}
		r := out.Request
		if len(r.SetHeaders) != 2 || r.SetHeaders["X-Plugin"] != "coprocess" || len(r.DeleteHeaders) != 1 {
			return fmt.Errorf("InjectHeaders answered %v", r)
		}
	case 3: // the global file's section: generation a or b, never anything else
		o := requestObject(pb.HookType_Pre, "InjectHeaders:global", nil)
		delete(o.Spec, "config_data")
		out, err := d.Dispatch(o)
		if err != nil {
			return err
		}
		if g := out.Request.SetHeaders["X-Gen"]; (g != "a" && g != "b") || len(out.Request.SetHeaders) != 1 {
			return fmt.Errorf("global section answered %v", out.Request.SetHeaders)
		}
	case 4: // one of many distinct config_data values
		n := rnd.Intn(40)
		o := requestObject(pb.HookType_Pre, "InjectHeaders", nil)
		o.Spec["config_data"] = fmt.Sprintf(`{"InjectHeaders": {"add": {"X-Variant": "%d"}}}`, n)
		out, err := d.Dispatch(o)
		if err != nil {
			return err
		}
		if v := out.Request.SetHeaders["X-Variant"]; v != fmt.Sprint(n) {
			return fmt.Errorf("config_data variant %d answered %q", n, v)
		}
	case 5: // an event in, relayed out
		if err := d.DispatchEvent(event("RelayEvent")); err != nil {
			return err
		}
		relays.Add(1)
	case 6: // an event in, logged through CoProcessLog
		if err := d.DispatchEvent(event("LogEvent")); err != nil {
			return err
		}
		logged.Add(1)
	}
	return nil
}

// builtinObject is a request Object for the signing/verifying built-ins' config_data.
func builtinObject(fx *builtinsFixture, hook pb.HookType, name string, headers map[string]string) *pb.Object {
	o := requestObject(hook, name, headers)
	o.Spec["config_data"] = fx.configData
	return o
}

// checkUpstreamSignature verifies, with Go's crypto, the signature an UpstreamRequestSigning
// answer sets: the signing string is rebuilt from the Object's headers plus the answer's
// set_headers (its Date), with (request-target) over the Object's url.
func checkUpstreamSignature(sent, out *pb.Object, header string, key httpsig.Key) error {
	h := http.Header{}
	for k, v := range sent.Request.Headers {
		h.Set(k, v)
	}
	for k, v := range out.Request.SetHeaders {
		h.Set(k, v)
	}
	p, err := httpsig.Parse(out.Request.SetHeaders[header])
	if err != nil {
		return fmt.Errorf("%s header %q: %v", header, out.Request.SetHeaders[header], err)
	}
	s, err := httpsig.SigningString(sent.Request.Method, sent.Request.Url, h, p.Headers)
	if err != nil {
		return err
	}
	if err := httpsig.VerifyString(p, key, s); err != nil {
		return fmt.Errorf("%v over %q", err, s)
	}
	return nil
}

func oneBuiltinCall(d *Dispatcher, fx *builtinsFixture, st *workerState, kind int, rnd *rand.Rand, w, i int) error {
	switch kind {
	case 7, 8: // HMACSignatureAuth: signed right (7) or with another secret (8)
		secret := "conc-secret"
		if kind == 8 {
			secret = fmt.Sprintf("wrong-%d-%d", w, i)
		}
		h := http.Header{}
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
		h.Set("X-Worker", fmt.Sprint(w))
		names := []string{"(request-target)", "date", "x-worker"}
		s, _ := httpsig.SigningString("GET", "/api1/get?x=1", h, names)
		alg := []string{"hmac-sha1", "hmac-sha256", "hmac-sha384", "hmac-sha512"}[rnd.Intn(4)]
		sig, _ := httpsig.SignHMAC(alg, secret, s)
		auth := httpsig.Params{KeyID: "conc-key", Algorithm: alg, Headers: names, Signature: sig}.String()
		out, err := d.Dispatch(builtinObject(fx, pb.HookType_CustomKeyCheck, "HMACSignatureAuth",
			map[string]string{"Date": h.Get("Date"), "X-Worker": h.Get("X-Worker"), "Authorization": auth}))
		if err != nil {
			return err
		}
		code := out.Request.ReturnOverrides.GetResponseCode()
		if kind == 7 && (code != -1 || !out.Session.GetHmacEnabled() || out.Session.GetRate() != 3 || out.Metadata["token"] != "conc-key") {
			return fmt.Errorf("HMAC %s signed right: code %d session %v metadata %v", alg, code, out.Session, out.Metadata)
		}
		if kind == 8 && (code != 401 || out.Session != nil || out.Request.ReturnOverrides.GetResponseError() != "Custom middleware: Not authorized") {
			return fmt.Errorf("HMAC wrongly signed: %v", out.Request.ReturnOverrides)
		}
	case 9, 10: // UpstreamRequestSigning, HMAC-SHA256 default list (9) or HMAC-SHA512 configured list (10)
		name, key, keyID := "UpstreamRequestSigning", httpsig.Key{Secret: "up-secret"}, "gw-hmac"
		if kind == 10 {
			name, key, keyID = "UpstreamRequestSigning:sha512", httpsig.Key{Secret: "up-secret-512"}, "gw-512"
		}
		sent := builtinObject(fx, pb.HookType_Post, name, map[string]string{"X-Worker": fmt.Sprint(w), "X-Call": fmt.Sprint(i), "Content-Type": "text/plain"})
		out, err := d.Dispatch(sent)
		if err != nil {
			return err
		}
		if err := checkUpstreamSignature(sent, out, "Authorization", key); err != nil {
			return fmt.Errorf("%s: %v", name, err)
		}
		if !strings.Contains(out.Request.SetHeaders["Authorization"], `keyId="`+keyID+`"`) {
			return fmt.Errorf("%s: %q", name, out.Request.SetHeaders["Authorization"])
		}
	case 11: // UpstreamRequestSigning, RSA-SHA256 into Signature (rarely: ~ms per signature)
		if rnd.Intn(4) != 0 {
			return nil
		}
		sent := builtinObject(fx, pb.HookType_Post, "UpstreamRequestSigning:rsa", map[string]string{"X-Worker": fmt.Sprint(w)})
		out, err := d.Dispatch(sent)
		if err != nil {
			return err
		}
		if err := checkUpstreamSignature(sent, out, "Signature", httpsig.Key{PublicKey: fx.rsaPublic}); err != nil {
			return fmt.Errorf("RSA: %v", err)
		}
	case 12, 13: // ReqHubMerchant local: a fresh request passes; replaying the last one is refused
		headers := st.lastReqHub
		replay := kind == 13 && headers != nil
		if !replay {
			var err error
			if headers, err = reqhub.SignNow("conc-client", "conc-client-secret", "/api1/get?x=1"); err != nil {
				return err
			}
		}
		out, err := d.Dispatch(builtinObject(fx, pb.HookType_Pre, "ReqHubMerchant", headers))
		if err != nil {
			return err
		}
		ro := out.Request.ReturnOverrides
		if replay {
			if ro.GetResponseCode() != 403 || !strings.HasPrefix(ro.GetResponseError(), "merchant_signature_invalid: ") {
				return fmt.Errorf("ReqHub replay answered %v", ro)
			}
		} else if ro.GetResponseCode() != -1 || !strings.Contains(out.Metadata["reqhub"], `"client_key":"conc-client"`) {
			return fmt.Errorf("ReqHub fresh request answered %v metadata %v", ro, out.Metadata)
		}
		st.lastReqHub = headers
	case 14: // StaticTokenAuth:strict answers 401 itself for an unknown key
		out, err := d.Dispatch(requestObject(pb.HookType_CustomKeyCheck, "StaticTokenAuth:strict", map[string]string{"X-Api-Key": fmt.Sprint("unknown-k", w)}))
		if err != nil {
			return err
		}
		if ro := out.Request.ReturnOverrides; ro.GetResponseCode() != 401 || ro.GetResponseError() != "Key not authorised" {
			return fmt.Errorf("StaticTokenAuth:strict answered %v", ro)
		}
	}
	return nil
}
