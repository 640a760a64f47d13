package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"coprocess/go/coprocess"
	"coprocess/go/internal/echo"
	"coprocess/go/pb"
)

var globalConfigPath string

const globalConfig = `{"LogEvent": {"level": "info"}, "RelayEvent": {"event_name": "AuthFailureRelayed"}}`

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "coprocess-gateway-test")
	if err != nil {
		panic(err)
	}
	globalConfigPath = filepath.Join(dir, "coprocess.json")
	if err := os.WriteFile(globalConfigPath, []byte(globalConfig), 0o600); err != nil {
		panic(err)
	}
	os.Setenv("COPROCESS_CONFIG", globalConfigPath)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// recorder is the host (events, logs) and the trace of every hook dispatch.
type recorder struct {
	mu     sync.Mutex
	events [][2]string
	logs   [][2]string
	traces []HookTrace
}

func (r *recorder) TriggerEvent(name, payload string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, [2]string{name, payload})
}

func (r *recorder) Log(level, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs = append(r.logs, [2]string{level, msg})
}

func (r *recorder) trace(t HookTrace) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.traces = append(r.traces, t)
}

func (r *recorder) take() (events, logs [][2]string, traces []HookTrace) {
	r.mu.Lock()
	defer r.mu.Unlock()
	events, logs, traces = r.events, r.logs, r.traces
	r.events, r.logs, r.traces = nil, nil, nil
	return
}

// env is an upstream echo service, a gateway over an API directory, and a client.
type env struct {
	t        *testing.T
	apps     string
	upstream *httptest.Server
	hits     atomic.Int64
	gw       *Gateway
	front    *httptest.Server
	rec      *recorder
	d        *coprocess.Dispatcher
	store    coprocess.Store
}

func newEnv(t *testing.T, defs map[string]string, opts ...func(*Options)) *env {
	t.Helper()
	return newEnvWithStore(t, defs, nil, opts...)
}

// newEnvWithStore is newEnv with a given host store (nil: a fresh MemoryStore).
func newEnvWithStore(t *testing.T, defs map[string]string, store coprocess.Store, opts ...func(*Options)) *env {
	t.Helper()
	if store == nil {
		store = coprocess.NewMemoryStore()
	}
	e := &env{t: t, apps: t.TempDir(), rec: &recorder{}, store: store}
	h := echo.NewHandler(echo.Options{VerifyKeys: upstreamKeys})
	e.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.hits.Add(1)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(e.upstream.Close)
	for name, def := range defs {
		e.writeAPI(name, def)
	}
	d, err := coprocess.New(coprocess.Host{Events: e.rec, Logger: e.rec, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	e.d = d
	o := Options{AppsDir: e.apps, Dispatcher: d, Logger: e.rec, Trace: e.rec.trace}
	for _, f := range opts {
		f(&o)
	}
	e.gw, err = New(o)
	if err != nil {
		t.Fatal(err)
	}
	e.front = httptest.NewServer(e.gw)
	t.Cleanup(e.front.Close)
	return e
}

// edit makes every answer go through f after the library gave it (as a plugin answering
// that way would have); nil stops it.
func (e *env) edit(f func(ans *pb.Object)) { e.gw.afterDispatch = f }

// writeAPI writes a definition; {{UPSTREAM}} stands for the echo service's URL.
func (e *env) writeAPI(name, def string) {
	e.t.Helper()
	def = strings.ReplaceAll(def, "{{UPSTREAM}}", e.upstream.URL)
	if err := os.WriteFile(filepath.Join(e.apps, name+".json"), []byte(def), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

type result struct {
	status int
	header http.Header
	body   string
	seen   *echo.Seen // what the upstream saw, when it answered
}

// request builds a request to the gateway.
func (e *env) request(method, path string, headers map[string]string, body string) *http.Request {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.front.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return req
}

func (e *env) do(method, path string, headers map[string]string, body string) result {
	e.t.Helper()
	return e.send(e.request(method, path, headers, body))
}

// send sends req as it is (one round trip, no redirects followed).
func (e *env) send(req *http.Request) result {
	e.t.Helper()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := result{status: resp.StatusCode, header: resp.Header, body: string(b)}
	if resp.Header.Get("X-Upstream") == "echo" || strings.Contains(r.body, `"request_uri"`) {
		r.seen = new(echo.Seen)
		if err := json.Unmarshal(b, r.seen); err != nil {
			r.seen = nil
		}
	}
	return r
}

func mustJSON(t *testing.T, v interface{}) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// hooksOf lists the traced dispatches as "HookType:name".
func hooksOf(traces []HookTrace) []string {
	var out []string
	for _, t := range traces {
		out = append(out, fmt.Sprintf("%s:%s", t.Sent.HookType, t.Sent.HookName))
	}
	return out
}

func traceOf(t *testing.T, traces []HookTrace, hook pb.HookType) HookTrace {
	t.Helper()
	for _, tr := range traces {
		if tr.Sent.HookType == hook {
			return tr
		}
	}
	t.Fatalf("no %s hook in %v", hook, hooksOf(traces))
	return HookTrace{}
}

// errorBody is the gateway's error template (templates/error.json) with msg, as the
// gateway renders it for a JSON request.
func errorBody(msg string) string {
	return "{\n    \"error\": \"" + jsonEscapeString(msg) + "\"\n}"
}

// isError checks that r is the gateway's JSON error answer with code and msg.
func isError(t *testing.T, what string, r result, code int, msg string) {
	t.Helper()
	if r.status != code || r.body != errorBody(msg) || r.header.Get("Content-Type") != "application/json" || r.header.Get("X-Generator") != "tyk.io" {
		t.Errorf("%s: got %d %q (Content-Type %q, X-Generator %q), want %d %q from the error template", what, r.status, r.body,
			r.header.Get("Content-Type"), r.header.Get("X-Generator"), code, errorBody(msg))
	}
}

// eventsNamed keeps the events named name.
func eventsNamed(events [][2]string, name string) [][2]string {
	var out [][2]string
	for _, e := range events {
		if e[0] == name {
			out = append(out, e)
		}
	}
	return out
}

// keylessWith is a keyless API at /<id>/ (strip_listen_path, target {{UPSTREAM}}/base) with
// the given custom_middleware hooks and config_data.
func keylessWith(id, hooks, config string) string {
	return `{"api_id": "` + id + `", "org_id": "org1", "use_keyless": true,
	  "proxy": {"listen_path": "/` + id + `/", "strip_listen_path": true, "target_url": "{{UPSTREAM}}/base"},
	  "custom_middleware": {"driver": "native", ` + hooks + `}, "config_data": ` + config + `}`
}
