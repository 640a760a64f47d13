package gateway

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestHealthNotFoundTooLargeAndUpstreamDown(t *testing.T) {
	e := newEnv(t, map[string]string{"keyless": keylessAPI, "down": `{"api_id": "down", "use_keyless": true,
	  "proxy": {"listen_path": "/down", "target_url": "http://127.0.0.1:1"}}`,
		"pre-only": `{"api_id": "pre-only", "use_keyless": true, "proxy": {"listen_path": "/pre-only/", "target_url": "{{UPSTREAM}}"},
	  "custom_middleware": {"driver": "native", "pre": [{"name": "InjectHeaders"}]}}`}, func(o *Options) { o.MaxBodyBytes = 64 })
	r := e.do("GET", "/hello", nil, "")
	var hello map[string]interface{}
	if json.Unmarshal([]byte(r.body), &hello); r.status != 200 || hello["status"] != "pass" || hello["apis"] != 3.0 || hello["abi"] != "coprocess-abi/1" {
		t.Errorf("/hello %d %s", r.status, r.body)
	}
	isError(t, "unknown path", e.do("GET", "/nothing/here", nil, ""), 404, "no API listens on this path")
	isError(t, "large body", e.do("POST", "/pre-only/x", nil, strings.Repeat("b", 65)), 413, "Request is too large")
	if r := e.do("POST", "/pre-only/x", nil, strings.Repeat("b", 64)); r.status != 200 || r.seen.BodyBytes != 64 {
		t.Errorf("body at the limit %d", r.status)
	}
	// An upstream response larger than the limit cannot go through response hooks.
	isError(t, "large response", e.do("GET", "/k/x", nil, ""), 502, "Upstream response too large for the response hooks")
	isError(t, "upstream down", e.do("GET", "/down/x", nil, ""), 500, "There was a problem proxying the request")
	// The bare listen path (no trailing slash) belongs to the API; a longer prefix does not.
	if r := e.do("GET", "/pre-only", nil, ""); r.status != 200 || r.seen.Path != "/pre-only" {
		t.Errorf("/pre-only: %d %+v", r.status, r.seen)
	}
	if r := e.do("GET", "/pre-onlyx/y", nil, ""); r.status != 404 {
		t.Errorf("/pre-onlyx/y: %d", r.status)
	}
}

// Hostile input: a body that is not UTF-8 goes as raw_body only; odd but legal header
// values and encoded path characters survive the round trip unchanged. What protobuf
// cannot carry (proto3 strings are UTF-8: a header value or a query parameter that is not)
// fails the dispatch, as it fails the gateway's: 500 "Middleware error".
func TestHostileRequests(t *testing.T) {
	e := newEnv(t, map[string]string{"keyless": keylessAPI})
	body := string([]byte{0xff, 0xfe, 0x00, 'a'})
	r := e.do("PUT", "/k/a%2Fb/%E2%9C%93?q=%00&q=2", map[string]string{"X-Odd": `"quoted" \ ünï`, "X-Empty": ""}, body)
	if r.status != 200 {
		_, logs, _ := e.rec.take()
		t.Fatalf("%d %s %v", r.status, r.body, logs)
	}
	if r.seen.BodyBytes != 4 || r.seen.RequestURI != "/base/a%2Fb/%E2%9C%93?q=%00&q=2" {
		t.Errorf("upstream saw %+v", r.seen)
	}
	if r.seen.Headers["X-Odd"][0] != `"quoted" \ ünï` {
		t.Errorf("header %q", r.seen.Headers["X-Odd"])
	}
	_, _, traces := e.rec.take()
	pre := traces[0].Sent.Request
	if pre.Body != "" || string(pre.RawBody) != body || pre.Url != "/k/a%2Fb/%E2%9C%93?q=%00&q=2" {
		t.Errorf("pre object body %q raw %q url %q", pre.Body, pre.RawBody, pre.Url)
	}
	if pre.Params["q"] != "\x00" {
		t.Errorf("params take the first value: %q", pre.Params["q"])
	}
	isError(t, "non-UTF-8 header", e.do("GET", "/k/x", map[string]string{"X-Bin": "a\xffb"}, ""), 500, msgMiddlewareError)
	isError(t, "non-UTF-8 parameter", e.do("GET", "/k/x?q=%ff", nil, ""), 500, msgMiddlewareError)
	if e.hits.Load() != 1 {
		t.Errorf("upstream hits %d", e.hits.Load())
	}
}

func TestDefinitionsAreValidated(t *testing.T) {
	ok := `{"api_id": "a", "use_keyless": true, "proxy": {"listen_path": "/a/", "target_url": "http://127.0.0.1:9"}}`
	bad := map[string]string{
		"broken JSON":       `{"api_id": `,
		"no api_id":         `{"use_keyless": true, "proxy": {"listen_path": "/a/", "target_url": "http://x"}}`,
		"relative listen":   `{"api_id": "a", "use_keyless": true, "proxy": {"listen_path": "a/", "target_url": "http://x"}}`,
		"bad target":        `{"api_id": "a", "use_keyless": true, "proxy": {"listen_path": "/a/", "target_url": "ftp://x"}}`,
		"no auth mode":      `{"api_id": "a", "proxy": {"listen_path": "/a/", "target_url": "http://x"}}`,
		"both auth modes":   `{"api_id": "a", "use_keyless": true, "enable_coprocess_auth": true, "custom_middleware": {"driver": "native", "auth_check": {"name": "X"}}, "proxy": {"listen_path": "/a/", "target_url": "http://x"}}`,
		"no auth_check":     `{"api_id": "a", "enable_coprocess_auth": true, "custom_middleware": {"driver": "native"}, "proxy": {"listen_path": "/a/", "target_url": "http://x"}}`,
		"other driver":      `{"api_id": "a", "use_keyless": true, "custom_middleware": {"driver": "python", "pre": [{"name": "X"}]}, "proxy": {"listen_path": "/a/", "target_url": "http://x"}}`,
		"nameless hook":     `{"api_id": "a", "use_keyless": true, "custom_middleware": {"driver": "native", "pre": [{"path": "x"}]}, "proxy": {"listen_path": "/a/", "target_url": "http://x"}}`,
		"config_data array": `{"api_id": "a", "use_keyless": true, "config_data": [1], "proxy": {"listen_path": "/a/", "target_url": "http://x"}}`,
		"webhook handler":   `{"api_id": "a", "use_keyless": true, "event_handlers": {"events": {"AuthFailure": [{"handler_name": "eh_web_hook_handler"}]}}, "proxy": {"listen_path": "/a/", "target_url": "http://x"}}`,
		"handler no name":   `{"api_id": "a", "use_keyless": true, "event_handlers": {"events": {"AuthFailure": [{"handler_name": "cp_dynamic_handler"}]}}, "proxy": {"listen_path": "/a/", "target_url": "http://x"}}`,
	}
	for name, def := range bad {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "ok.json"), []byte(ok), 0o600)
		os.WriteFile(filepath.Join(dir, "z.json"), []byte(def), 0o600)
		if _, err := LoadDir(dir); err == nil || !strings.Contains(err.Error(), "z.json") {
			t.Errorf("%s: %v", name, err)
		}
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.json"), []byte(ok), 0o600)
	os.WriteFile(filepath.Join(dir, "b.json"), []byte(strings.Replace(ok, `"api_id": "a"`, `"api_id": "b"`, 1)), 0o600)
	if _, err := LoadDir(dir); err == nil || !strings.Contains(err.Error(), "listen_path") {
		t.Errorf("duplicate listen path: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "b.json"), []byte(strings.Replace(ok, `"listen_path": "/a/"`, `"listen_path": "/b/"`, 1)), 0o600)
	if _, err := LoadDir(dir); err == nil || !strings.Contains(err.Error(), "api_id") {
		t.Errorf("duplicate api_id: %v", err)
	}
	// Inactive definitions are skipped; ${VAR} in target_url is expanded; non-JSON files ignored.
	os.Setenv("COPROCESS_TEST_UPSTREAM", "http://127.0.0.1:9999/base")
	os.WriteFile(filepath.Join(dir, "b.json"), []byte(`{"api_id": "b", "active": false}`), 0o600)
	os.WriteFile(filepath.Join(dir, "c.json"), []byte(`{"api_id": "c", "use_keyless": true, "proxy": {"listen_path": "/a/c", "target_url": "${COPROCESS_TEST_UPSTREAM}"}}`), 0o600)
	os.WriteFile(filepath.Join(dir, "README.md"), []byte("not a definition"), 0o600)
	apis, err := LoadDir(dir)
	if err != nil || len(apis) != 2 || apis[0].def.APIID != "c" || apis[0].target.String() != "http://127.0.0.1:9999/base" {
		t.Fatalf("%v %v", apis, err)
	}
}

// Reload swaps the API set whole (a broken set is refused and the old one kept) and reloads
// the library's global configuration (a broken file is reported, the last good kept).
func TestReload(t *testing.T) {
	e := newEnv(t, map[string]string{"keyless": keylessAPI})
	if r := e.do("GET", "/new/x", nil, ""); r.status != 404 {
		t.Fatalf("new API before reload: %d", r.status)
	}
	e.writeAPI("new", `{"api_id": "new", "use_keyless": true, "proxy": {"listen_path": "/new/", "target_url": "{{UPSTREAM}}"}}`)
	if err := e.gw.Reload(); err != nil {
		t.Fatal(err)
	}
	if r := e.do("GET", "/new/x", nil, ""); r.status != 200 {
		t.Fatalf("new API after reload: %d", r.status)
	}
	e.writeAPI("broken", `{"api_id": `)
	err := e.gw.Reload()
	if err == nil || !strings.Contains(err.Error(), "broken.json") || !strings.Contains(err.Error(), "2 APIs kept") {
		t.Fatalf("broken definition: %v", err)
	}
	if r := e.do("GET", "/new/x", nil, ""); r.status != 200 {
		t.Fatalf("APIs lost after a refused reload: %d", r.status)
	}
	os.Remove(filepath.Join(e.apps, "broken.json"))

	os.WriteFile(globalConfigPath, []byte(`{"RelayEvent": {}}`), 0o600)
	defer os.WriteFile(globalConfigPath, []byte(globalConfig), 0o600)
	if err := e.gw.Reload(); err == nil || !strings.Contains(err.Error(), "plugin configuration not reloaded") {
		t.Fatalf("broken global file: %v", err)
	}
	os.WriteFile(globalConfigPath, []byte(globalConfig), 0o600)
	if err := e.gw.Reload(); err != nil {
		t.Fatal(err)
	}
}

// Many clients through the gateway while it reloads in a loop: every answer is checked.
func TestConcurrentRequestsDuringReload(t *testing.T) {
	e := newEnv(t, map[string]string{"keyless": keylessAPI, "static": authAPI}, func(o *Options) { o.Trace = nil })
	var stop atomic.Bool
	var reloads atomic.Int64
	done := make(chan error, 1)
	go func() {
		for !stop.Load() {
			if err := e.gw.Reload(); err != nil {
				done <- err
				return
			}
			reloads.Add(1)
			time.Sleep(time.Millisecond)
		}
		done <- nil
	}()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rnd := rand.New(rand.NewSource(int64(w)))
			for i := 0; i < 60; i++ {
				path, tok, want := "/static/x", "Bearer good-token", 200
				switch rnd.Intn(3) {
				case 0:
					tok, want = "Bearer bad", 403
				case 1:
					path, tok = "/k/x", ""
				}
				req, _ := http.NewRequest("GET", e.front.URL+path, nil)
				if tok != "" {
					req.Header.Set("Authorization", tok)
				}
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
				if resp.StatusCode != want || (want == 200 && resp.Header.Get("X-Resp") != "resp") {
					errs <- fmt.Errorf("%s %s: %d %v", path, tok, resp.StatusCode, resp.Header)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	stop.Store(true)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if reloads.Load() == 0 {
		t.Error("no reload ran")
	}
}
