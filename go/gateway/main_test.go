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
}

func newEnv(t *testing.T, defs map[string]string, opts ...func(*Options)) *env {
	t.Helper()
	return newEnvWithStore(t, defs, nil, opts...)
}

// newEnvWithStore is newEnv with a given host store (nil: a fresh MemoryStore).
func newEnvWithStore(t *testing.T, defs map[string]string, store coprocess.Store, opts ...func(*Options)) *env {
	t.Helper()
	e := &env{t: t, apps: t.TempDir(), rec: &recorder{}}
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

func (e *env) do(method, path string, headers map[string]string, body string) result {
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
			e.t.Fatalf("upstream body: %v: %s", err, b)
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
