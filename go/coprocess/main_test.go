package coprocess

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"coprocess/go/pb"
)

// The library reads COPROCESS_CONFIG at first use, so the global file is in place before
// any test runs. Event handlers take their configuration only from this file.
var globalConfigPath string

func globalConfig(gen string) string {
	return fmt.Sprintf(`{
  "LogEvent": {"level": "warning"},
  "RelayEvent": {"event_name": "Relayed-%s"},
  "InjectHeaders:global": {"add": {"X-Gen": "%s"}}
}`, gen, gen)
}

// writeGlobalConfig replaces the file atomically (write + rename), so a concurrent Reload
// reads either the old or the new content, never half of it.
func writeGlobalConfig(t testing.TB, content string) {
	tmp := globalConfigPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, globalConfigPath); err != nil {
		t.Fatal(err)
	}
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "coprocess-go-test")
	if err != nil {
		panic(err)
	}
	globalConfigPath = filepath.Join(dir, "coprocess.json")
	if err := os.WriteFile(globalConfigPath, []byte(globalConfig("a")), 0o600); err != nil {
		panic(err)
	}
	os.Setenv("COPROCESS_CONFIG", globalConfigPath)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// recorder is a Host recording every event and log line.
type recorder struct {
	mu     sync.Mutex
	events [][2]string
	logs   [][2]string
}

func (r *recorder) TriggerEvent(name, payload string) {
	r.mu.Lock()
	r.events = append(r.events, [2]string{name, payload})
	r.mu.Unlock()
}

func (r *recorder) Log(level, msg string) {
	r.mu.Lock()
	r.logs = append(r.logs, [2]string{level, msg})
	r.mu.Unlock()
}

func (r *recorder) snapshot() (events, logs [][2]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][2]string(nil), r.events...), append([][2]string(nil), r.logs...)
}

func (r *recorder) reset() {
	r.mu.Lock()
	r.events, r.logs = nil, nil
	r.mu.Unlock()
}

// newDispatcher installs a fresh recorder (and a MemoryStore unless store is given).
func newDispatcher(t testing.TB, store Store) (*Dispatcher, *recorder) {
	t.Helper()
	rec := &recorder{}
	d, err := New(Host{Events: rec, Logger: rec, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	return d, rec
}

const apiConfigData = `{
  "StaticTokenAuth": {"header": "Authorization", "strip_prefix": "Bearer ",
    "tokens": {"tok-gold": {"rate": 100, "per": 60, "quota_max": -1, "tags": ["gold"],
                            "access_rights": {"api1": {"api_id": "api1", "versions": ["Default"]}}},
               "tok-free": {"rate": 5, "per": 1, "quota_max": 10}}},
  "StaticTokenAuth:strict": {"header": "X-Api-Key", "tokens": {"k1": {"rate": 1}}, "reject_code": 401},
  "InjectHeaders": {"add": {"X-Plugin": "coprocess", "X-Api": "api1"}, "remove": ["Cookie"]}
}`

// requestObject is what the gateway sends for a request hook (docs/gateway-model.md).
func requestObject(hook pb.HookType, name string, headers map[string]string) *pb.Object {
	return &pb.Object{
		HookType: hook,
		HookName: name,
		Request: &pb.MiniRequestObject{
			Headers:         headers,
			Url:             "/get?x=1",
			Params:          map[string]string{"x": "1"},
			Method:          "GET",
			RequestUri:      "/api1/get?x=1",
			Scheme:          "http",
			ReturnOverrides: &pb.ReturnOverrides{ResponseCode: -1},
		},
		Spec: map[string]string{"OrgID": "org1", "APIID": "api1", "bundle_hash": "", "config_data": apiConfigData},
	}
}
