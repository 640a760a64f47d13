package grpcclient

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"coprocess/go/internal/testredis"
	"coprocess/go/pb"

	"github.com/gomodule/redigo/redis"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

const (
	hmacDate      = "Fri, 03 May 2024 12:00:42 GMT"
	hmacSecret    = "c2VjcmV0"
	hmacSignature = "9kwBK/yrjbSHJDI7INAhBmhHLTHRDkIe2uRWHEP8bgQFQvfXRksm6t2MHeLUyk9oosWDZyC17AbGeP8EFqrp+A=="
)

func builtinConfig() map[string]interface{} {
	return map[string]interface{}{
		"InjectHeaders":      map[string]interface{}{"add": map[string]string{"X-Added": "yes"}, "remove": []string{"Cookie"}},
		"InjectHeaders:resp": map[string]interface{}{"add": map[string]string{"X-Resp": "r"}},
		"StaticTokenAuth": map[string]interface{}{"header": "Authorization", "strip_prefix": "Bearer ",
			"tokens": map[string]interface{}{"tok-1": map[string]interface{}{"rate": 5, "per": 1, "tags": []string{"gold"}}}},
		"HMACSignatureAuth": map[string]interface{}{"keys": map[string]string{"k1": hmacSecret}, "clock_skew_ms": 0,
			"session": map[string]interface{}{"rate": 100, "per": 1}},
		"UpstreamRequestSigning": map[string]interface{}{"algorithm": "hmac-sha256", "secret": "s3cret", "keyId": "up-1", "headers": []string{"date"}},
		"ReqHubMerchant": map[string]interface{}{"mode": "local", "public_key": "mpk", "private_key": "msk", "api": "prod-1",
			"clients": map[string]interface{}{"cpk": map[string]string{"private_key": "csk", "api": "prod-1"}}},
		"LogEvent":   map[string]interface{}{"level": "info"},
		"RelayEvent": map[string]interface{}{"event_name": "Relayed"},
	}
}

func hmacObject(signature string) *pb.Object {
	return request(pb.HookType_CustomKeyCheck, "HMACSignatureAuth", map[string]string{
		"Date":          hmacDate,
		"Authorization": fmt.Sprintf(`Signature keyId="k1",algorithm="hmac-sha512",signature="%s"`, signature),
	})
}

// reqhubToken: base64(HMAC-SHA256(key = private + timestamp + nonce + url, message = public)).
func reqhubToken(public, private, ts, nonce, u string) string {
	m := hmac.New(sha256.New, []byte(private+ts+nonce+u))
	m.Write([]byte(public))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func freshNonce(t *testing.T) string {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func reqhubObject(nonce string) *pb.Object {
	ts := strconv.FormatInt(time.Now().UnixNano()/1e6, 10)
	o := request(pb.HookType_Pre, "ReqHubMerchant", map[string]string{
		"ClientToken": reqhubToken("cpk", "csk", ts, nonce, "/pay"), "ClientKey": "cpk",
		"ClientTimestamp": ts, "ClientNonce": nonce, "ClientUrl": "/pay",
	})
	o.Request.Method, o.Request.Url, o.Request.RequestUri = "POST", "/pay", "/pay"
	return o
}

// checkReqHubPassed: no denial, and the local verification result in metadata["reqhub"].
func checkReqHubPassed(t *testing.T, label string, out *pb.Object) {
	t.Helper()
	if code, msg := overrides(out); code != -1 {
		t.Fatalf("%s: answered %d %s, want the request to pass (-1)", label, code, msg)
	}
	var result map[string]interface{}
	if err := json.Unmarshal([]byte(out.Metadata["reqhub"]), &result); err != nil || result["client_key"] != "cpk" || result["mode"] != "local" {
		t.Fatalf("%s: metadata reqhub %q (%v)", label, out.Metadata["reqhub"], err)
	}
}

func checkReplayDenied(t *testing.T, label string, out *pb.Object) {
	t.Helper()
	code, msg := overrides(out)
	if code != 403 || !strings.Contains(msg, "merchant_signature_invalid") {
		t.Fatalf("%s: replay answered %d %q, want 403 merchant_signature_invalid", label, code, msg)
	}
}

// webhook collects event POSTs on loopback.
type webhook struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies []map[string]interface{}
}

func newWebhook(t *testing.T) *webhook {
	w := &webhook{}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var v map[string]interface{}
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(b, &v) != nil {
			t.Errorf("webhook got %s %q %q", r.Method, r.Header.Get("Content-Type"), b)
		}
		w.mu.Lock()
		w.bodies = append(w.bodies, v)
		w.mu.Unlock()
		rw.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhook) waitFor(t *testing.T, n int) []map[string]interface{} {
	t.Helper()
	for i := 0; i < 500; i++ {
		w.mu.Lock()
		got := append([]map[string]interface{}(nil), w.bodies...)
		w.mu.Unlock()
		if len(got) >= n {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("webhook did not get %d events", n)
	return nil
}

func TestEveryBuiltinOverTCPAndUnix(t *testing.T) {
	dir := t.TempDir()
	writeJSON(t, filepath.Join(dir, "coprocess.json"), builtinConfig())
	hook := newWebhook(t)
	s := startServer(t, serverArgs(dir, "--event-sink", hook.srv.URL+"/events")...)
	events := 0
	for _, transport := range []string{"tcp", "unix"} {
		conn := s.conns(t)[transport]
		label := func(s string) string { return transport + ": " + s }

		out, err := dispatch(conn, request(pb.HookType_Pre, "InjectHeaders", map[string]string{"Cookie": "a=1"}))
		if err != nil || out.Request.SetHeaders["X-Added"] != "yes" || len(out.Request.DeleteHeaders) != 1 || out.Request.DeleteHeaders[0] != "Cookie" {
			t.Fatalf("%s: %v %v", label("InjectHeaders pre"), err, out)
		}
		resp := request(pb.HookType_Response, "InjectHeaders:resp", nil)
		resp.Response = &pb.ResponseObject{StatusCode: 200, Body: "ok", Headers: map[string]string{"Content-Type": "text/plain"}}
		out, err = dispatch(conn, resp)
		if err != nil || out.Response.Headers["X-Resp"] != "r" || out.Response.Headers["Content-Type"] != "text/plain" || out.Response.Body != "ok" {
			t.Fatalf("%s: %v %v", label("InjectHeaders response"), err, out)
		}

		out, err = dispatch(conn, request(pb.HookType_CustomKeyCheck, "StaticTokenAuth", map[string]string{"Authorization": "Bearer tok-1"}))
		if err != nil || out.Session.GetRate() != 5 || out.Metadata["token"] != "tok-1" || len(out.Session.GetTags()) != 1 {
			t.Fatalf("%s: %v %v", label("StaticTokenAuth ok"), err, out)
		}
		out, err = dispatch(conn, request(pb.HookType_CustomKeyCheck, "StaticTokenAuth", map[string]string{"Authorization": "Bearer nope"}))
		if err != nil || out.Session != nil || out.Metadata["token"] != "" {
			t.Fatalf("%s: %v %v", label("StaticTokenAuth bad"), err, out)
		}

		out, err = dispatch(conn, hmacObject(hmacSignature))
		if err != nil || !out.Session.GetHmacEnabled() || out.Session.GetHmacSecret() != hmacSecret || out.Metadata["token"] != "k1" || out.Session.GetRate() != 100 {
			t.Fatalf("%s: %v %v", label("HMACSignatureAuth ok"), err, out)
		}
		out, err = dispatch(conn, hmacObject(url.QueryEscape(hmacSignature)))
		if err != nil || out.Metadata["token"] != "k1" {
			t.Fatalf("%s: %v %v", label("HMACSignatureAuth url-encoded"), err, out)
		}
		out, err = dispatch(conn, hmacObject("AAAA"+hmacSignature[4:]))
		if code, msg := overrides(out); err != nil || code != 401 || msg != "Custom middleware: Not authorized" || out.Session != nil {
			t.Fatalf("%s: %v %d %q", label("HMACSignatureAuth bad"), err, code, msg)
		}

		up := request(pb.HookType_Post, "UpstreamRequestSigning", map[string]string{"Date": hmacDate})
		out, err = dispatch(conn, up)
		if err != nil {
			t.Fatal(label("UpstreamRequestSigning"), err)
		}
		m := hmac.New(sha256.New, []byte("s3cret"))
		m.Write([]byte("date: " + hmacDate))
		want := fmt.Sprintf(`Signature keyId="up-1",algorithm="hmac-sha256",headers="date",signature="%s"`,
			url.QueryEscape(base64.StdEncoding.EncodeToString(m.Sum(nil))))
		if got := out.Request.SetHeaders["Authorization"]; got != want {
			t.Fatalf("%s: Authorization %q, want %q", label("UpstreamRequestSigning"), got, want)
		}

		nonce := freshNonce(t)
		out, err = dispatch(conn, reqhubObject(nonce))
		if err != nil {
			t.Fatal(label("ReqHubMerchant"), err)
		}
		checkReqHubPassed(t, label("ReqHubMerchant"), out)
		out, err = dispatch(conn, reqhubObject(nonce))
		if err != nil {
			t.Fatal(label("ReqHubMerchant replay"), err)
		}
		checkReplayDenied(t, label("ReqHubMerchant replay"), out)

		logEvent := fmt.Sprintf(`{"message":{"Type":"AuthFailure","Meta":{"via":%q},"TimeStamp":"t"},"handler_name":"LogEvent","spec":{"APIID":"api-1"}}`, transport)
		if err := dispatchEvent(conn, logEvent); err != nil {
			t.Fatal(label("LogEvent"), err)
		}
		s.waitLog("from LogEvent over "+transport, func(l map[string]interface{}) bool {
			msg, _ := l["msg"].(string)
			return l["source"] == "middleware" && l["level"] == "info" && containsAll(msg, "AuthFailure", fmt.Sprintf(`"via":%q`, transport))
		})
		relay := fmt.Sprintf(`{"message":{"Type":"QuotaExceeded","Meta":{"via":%q},"TimeStamp":"t"},"handler_name":"RelayEvent","spec":{"APIID":"api-1"}}`, transport)
		if err := dispatchEvent(conn, relay); err != nil {
			t.Fatal(label("RelayEvent"), err)
		}
		events++
		got := hook.waitFor(t, events)[events-1]
		payload, _ := got["payload"].(map[string]interface{})
		if got["event"] != "Relayed" || payload["handler_name"] != "RelayEvent" || payload["message"].(map[string]interface{})["Meta"].(map[string]interface{})["via"] != transport {
			t.Fatalf("%s: webhook got %v", label("RelayEvent"), got)
		}

		// Errors are gRPC statuses with the library's code in the trailer.
		st, code := dispatchRaw(conn, []byte{0xff, 0xff, 0xff, 0x0f})
		if st.Code() != codes.InvalidArgument || code != "-2" || !strings.Contains(st.Message(), "not a valid coprocess.Object") {
			t.Errorf("%s: garbage got %v %q", transport, st, code)
		}
		_, err = dispatch(conn, request(pb.HookType_Pre, "NoSuchMiddleware", nil))
		expectCode(t, label("unknown hook"), err, codes.NotFound)
		_, err = dispatch(conn, request(pb.HookType_Pre, "HMACSignatureAuth", nil))
		expectCode(t, label("wrong hook type"), err, codes.NotFound)
		bad := request(pb.HookType_Pre, "InjectHeaders", nil)
		bad.Spec["config_data"] = `{"InjectHeaders": {"add": "not a map"}}`
		_, err = dispatch(conn, bad)
		expectCode(t, label("invalid config_data"), err, codes.FailedPrecondition)
		expectCode(t, label("bad event JSON"), dispatchEvent(conn, "{"), codes.InvalidArgument)
		expectCode(t, label("unknown handler"), dispatchEvent(conn, `{"message":{"Type":"X"},"handler_name":"Nope"}`), codes.NotFound)
	}
	// Every stderr line is one JSON object with the four standard fields.
	for _, l := range s.logLines() {
		if _, bad := l["unparsed"]; bad || l["time"] == nil || l["level"] == nil || l["source"] == nil || l["msg"] == nil {
			t.Errorf("log line is not structured: %v", l)
		}
	}
	if err := s.stop(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "grpc.sock")); !os.IsNotExist(err) {
		t.Errorf("socket file left behind: %v", err)
	}
}

func TestHealthService(t *testing.T) {
	dir := t.TempDir()
	writeJSON(t, filepath.Join(dir, "coprocess.json"), map[string]interface{}{})
	s := startServer(t, serverArgs(dir)...)
	for transport, conn := range s.conns(t) {
		client := healthpb.NewHealthClient(conn)
		for _, service := range []string{"", "coprocess.Dispatcher"} {
			r, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
			if err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("%s: health of %q: %v %v", transport, service, r, err)
			}
		}
	}
}

func TestTLS(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("SKIPPED: openssl is not installed (scripts/setup.sh installs it)")
	}
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	out, err := exec.Command("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
		"-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl: %v %s", err, out)
	}
	writeJSON(t, filepath.Join(dir, "coprocess.json"), builtinConfig())
	s := startServer(t, "--listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key, "--middleware-config", filepath.Join(dir, "coprocess.json"))
	creds, err := credentials.NewClientTLSFromFile(cert, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	conn := dial(t, "tcp", s.tcp, grpc.WithTransportCredentials(creds))
	o, err := dispatch(conn, hmacObject(hmacSignature))
	if err != nil || o.Metadata["token"] != "k1" {
		t.Fatalf("over TLS: %v %v", err, o)
	}
	// A plaintext client gets no answer from the TLS listener.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	plain, err := grpc.DialContext(ctx, "passthrough:///tcp", grpc.WithInsecure(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", s.tcp)
		}))
	if err == nil {
		defer plain.Close()
		if _, err := dispatch(plain, hmacObject(hmacSignature)); err == nil {
			t.Fatal("plaintext call to the TLS listener succeeded")
		}
	}
}

// Eight clients (four per transport) call every kind of middleware while the configuration is
// rewritten and reloaded with SIGHUP (including a broken file, which must keep the last good
// one). Every answer is checked; per client the configuration version never goes backwards.
func TestConcurrentLoadWithReload(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "coprocess.json")
	config := func(version int) map[string]interface{} {
		c := builtinConfig()
		c["InjectHeaders"] = map[string]interface{}{"add": map[string]string{"X-Version": strconv.Itoa(version)}}
		return c
	}
	writeJSON(t, cfgPath, config(1))
	s := startServer(t, serverArgs(dir)...)
	conns := s.conns(t)

	// Clients keep calling until the reloader is done (at least `calls` each, at most `maxCalls`).
	const clients, calls, maxCalls, reloads = 8, 400, 20000, 40
	stop := make(chan struct{})
	reloaderDone := make(chan struct{})
	finished := func() bool {
		select {
		case <-reloaderDone:
			return true
		default:
			return false
		}
	}
	var total int64
	var totalMu sync.Mutex
	var written int64 = 1
	var writtenMu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, clients*calls)
	for c := 0; c < clients; c++ {
		transport := []string{"tcp", "unix"}[c%2]
		conn := conns[transport]
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			last := 0
			i := 0
			defer func() { totalMu.Lock(); total += int64(i); totalMu.Unlock() }()
			for ; i < maxCalls && (i < calls || !finished()); i++ {
				switch i % 4 {
				case 0:
					out, err := dispatch(conn, request(pb.HookType_Pre, "InjectHeaders", nil))
					if err != nil {
						errs <- fmt.Errorf("client %d call %d InjectHeaders: %v", c, i, err)
						continue
					}
					v, err := strconv.Atoi(out.Request.SetHeaders["X-Version"])
					writtenMu.Lock()
					max := int(written)
					writtenMu.Unlock()
					if err != nil || v < last || v > max {
						errs <- fmt.Errorf("client %d call %d: version %q after %d (max written %d)", c, i, out.Request.SetHeaders["X-Version"], last, max)
					}
					last = v
				case 1:
					out, err := dispatch(conn, hmacObject(hmacSignature))
					if err != nil || out.Metadata["token"] != "k1" || !out.Session.GetHmacEnabled() {
						errs <- fmt.Errorf("client %d call %d HMAC ok: %v %v", c, i, err, out)
					}
				case 2:
					out, err := dispatch(conn, hmacObject("BBBB"+hmacSignature[4:]))
					if code, _ := overrides(out); err != nil || code != 401 {
						errs <- fmt.Errorf("client %d call %d HMAC bad: %v %d", c, i, err, code)
					}
				case 3:
					out, err := dispatch(conn, reqhubObject(freshNonce(t)))
					if err != nil {
						errs <- fmt.Errorf("client %d call %d ReqHub: %v", c, i, err)
						continue
					}
					if code, msg := overrides(out); code != -1 || !strings.Contains(out.Metadata["reqhub"], `"client_key":"cpk"`) {
						errs <- fmt.Errorf("client %d call %d ReqHub: %d %s %v", c, i, code, msg, out.Metadata)
					}
				}
			}
		}(c)
	}
	failedReloads := func() int {
		n := 0
		for _, l := range s.logLines() {
			if l["msg"] == "reload failed, previous configuration kept" {
				n++
			}
		}
		return n
	}
	go func() {
		defer close(reloaderDone)
		for r := 2; r <= reloads; r++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if r == reloads/2 {
				// A broken file: the reload fails and the last good configuration stays
				// (wait for the failure, or a later write would hide it).
				if err := os.WriteFile(cfgPath, []byte(`{"InjectHeaders": {"add": 1}}`), 0o600); err != nil {
					t.Error(err)
				}
				s.signal(syscall.SIGHUP)
				for deadline := time.Now().Add(10 * time.Second); failedReloads() == 0 && time.Now().Before(deadline); {
					time.Sleep(5 * time.Millisecond)
				}
				continue
			}
			writtenMu.Lock()
			writeJSON(t, cfgPath, config(r))
			written = int64(r)
			writtenMu.Unlock()
			s.signal(syscall.SIGHUP)
		}
	}()
	wg.Wait()
	close(stop)
	close(errs)
	n := 0
	for err := range errs {
		if n < 10 {
			t.Error(err)
		}
		n++
	}
	if n > 0 {
		t.Fatalf("%d of %d answers were wrong", n, total)
	}
	if failedReloads() != 1 {
		t.Fatalf("%d failed reloads logged, want 1", failedReloads())
	}
	// After a last reload every client sees the last version.
	writtenMu.Lock()
	final := int(written) + 1
	writeJSON(t, cfgPath, config(final))
	writtenMu.Unlock()
	s.signal(syscall.SIGHUP)
	for transport, conn := range conns {
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, err := dispatch(conn, request(pb.HookType_Pre, "InjectHeaders", nil))
			if err == nil && out.Request.SetHeaders["X-Version"] == strconv.Itoa(final) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: final version %d not seen: %v %v", transport, final, err, out)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	reloaded := 0
	for _, l := range s.logLines() {
		if l["msg"] == "configuration reloaded" {
			reloaded++
		}
	}
	t.Logf("%d calls checked, %d reloads logged", total, reloaded)
	if err := s.stop(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}

// Two replicas share one Redis: a ReqHub nonce used on one is a replay on the other. Two
// replicas with in-memory stores do not share, which is what Redis is for.
func TestRedisSharedReplayAcrossReplicas(t *testing.T) {
	addr := testredis.ForTest(t).Addr
	rc, err := redis.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()

	replica := func(name string, extra ...string) *grpc.ClientConn {
		dir := t.TempDir()
		writeJSON(t, filepath.Join(dir, "coprocess.json"), builtinConfig())
		s := startServer(t, serverArgs(dir, extra...)...)
		return dial(t, "unix", s.unix)
	}
	a := replica("a", "--redis-url", "redis://"+addr+"/", "--redis-prefix", "test:")
	b := replica("b", "--redis-url", "redis://"+addr+"/", "--redis-prefix", "test:")

	nonce := freshNonce(t)
	object := reqhubObject(nonce)
	out, err := dispatch(a, object)
	if err != nil {
		t.Fatal(err)
	}
	checkReqHubPassed(t, "first use on replica a", out)
	out, err = dispatch(b, object)
	if err != nil {
		t.Fatal(err)
	}
	checkReplayDenied(t, "replay on replica b", out)
	out, err = dispatch(b, reqhubObject(freshNonce(t)))
	if err != nil {
		t.Fatal(err)
	}
	checkReqHubPassed(t, "fresh nonce on replica b", out)

	key := "test:reqhub-nonce-cpk:" + nonce
	ttl, err := redis.Int(rc.Do("TTL", key))
	if err != nil || ttl <= 0 || ttl > 300 {
		t.Fatalf("TTL of %s: %d %v (want 1..300, the default 300000 ms window)", key, ttl, err)
	}
	keys, err := redis.Strings(rc.Do("KEYS", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "test:") {
			t.Errorf("key %q outside the prefix", k)
		}
	}

	// The same with in-memory stores: each replica only knows its own nonces.
	m1, m2 := replica("m1"), replica("m2")
	object = reqhubObject(freshNonce(t))
	for i, conn := range []*grpc.ClientConn{m1, m2} {
		out, err := dispatch(conn, object)
		if err != nil {
			t.Fatal(err)
		}
		checkReqHubPassed(t, fmt.Sprintf("in-memory replica %d", i+1), out)
	}
}

// SIGTERM while a call waits on a slow remote verifier: the call completes, then the server
// exits 0 and removes its socket. New connections are refused after shutdown.
func TestGracefulShutdownFinishesInFlightCalls(t *testing.T) {
	entered := make(chan struct{}, 1)
	verifier := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		time.Sleep(700 * time.Millisecond)
		rw.WriteHeader(http.StatusOK)
		io.WriteString(rw, `{"ok":true}`)
	}))
	defer verifier.Close()
	dir := t.TempDir()
	writeJSON(t, filepath.Join(dir, "coprocess.json"), map[string]interface{}{
		"ReqHubMerchant": map[string]interface{}{"mode": "remote", "public_key": "mpk", "private_key": "msk", "api": "prod-1",
			"verify_url": verifier.URL + "/verify", "timeout_ms": 5000},
	})
	s := startServer(t, serverArgs(dir)...)
	conn := dial(t, "unix", s.unix)
	result := make(chan error, 1)
	var out *pb.Object
	go func() {
		var err error
		out, err = dispatch(conn, reqhubObject(freshNonce(t)))
		result <- err
	}()
	<-entered
	s.signal(syscall.SIGTERM)
	if err := <-result; err != nil {
		t.Fatalf("in-flight call failed during shutdown: %v", err)
	}
	if code, msg := overrides(out); code >= 400 || out.Metadata["reqhub"] != `{"ok":true}` {
		t.Fatalf("in-flight call answered %d %q, metadata %v", code, msg, out.Metadata)
	}
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		t.Fatal("server did not exit after SIGTERM")
	}
	if s.err != nil {
		t.Fatalf("exit status: %v", s.err)
	}
	if _, err := os.Stat(s.unix); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
	if c, err := net.Dial("unix", s.unix); err == nil {
		c.Close()
		t.Error("socket still accepts connections")
	}
}
