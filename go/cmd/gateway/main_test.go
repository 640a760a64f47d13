package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"coprocess/go/internal/echo"
	"coprocess/go/internal/httpsig"
	"coprocess/go/internal/reqhub"
	"coprocess/go/internal/testredis"

	"github.com/gomodule/redigo/redis"
)

// The test binary doubles as the gateway: with RUN_GATEWAY_MAIN=1 it runs main.
func TestMain(m *testing.M) {
	if os.Getenv("RUN_GATEWAY_MAIN") == "1" {
		os.Args = append([]string{"gateway"}, strings.Fields(os.Getenv("GATEWAY_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// gatewayProc is a gateway process (this test binary running main) and its log lines.
type gatewayProc struct {
	t      *testing.T
	addr   string
	cmd    *exec.Cmd
	mu     sync.Mutex
	all    []string // every line
	cursor int      // waitFor looks after this line
	done   chan struct{}
}

// count is the number of log lines so far containing sub.
func (g *gatewayProc) count(sub string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, l := range g.all {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

// matching returns the log lines so far containing sub.
func (g *gatewayProc) matching(sub string) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for _, l := range g.all {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}

// startGateway runs the gateway on a free loopback port with args (after -listen) and env,
// and waits until it listens.
func startGateway(t *testing.T, args string, env ...string) *gatewayProc {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gatewayProc{t: t, addr: ln.Addr().String(), done: make(chan struct{})}
	ln.Close()
	g.cmd = exec.Command(os.Args[0], "-test.run=^$")
	g.cmd.Env = append(append(os.Environ(), env...), "RUN_GATEWAY_MAIN=1", "GATEWAY_ARGS=-listen "+g.addr+" "+args)
	stderr, _ := g.cmd.StderrPipe()
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s := bufio.NewScanner(stderr)
		s.Buffer(make([]byte, 64<<10), 1<<20)
		for s.Scan() {
			l := s.Text()
			g.mu.Lock()
			g.all = append(g.all, l)
			g.mu.Unlock()
			if testing.Verbose() && os.Getenv("GATEWAY_LOG") != "" {
				fmt.Fprintln(os.Stderr, l)
			}
		}
		close(g.done)
	}()
	t.Cleanup(func() { g.cmd.Process.Kill() })
	g.waitFor("listening on http://" + g.addr)
	return g
}

// waitFor waits for a log line containing sub, after the line the previous waitFor
// matched, and returns it.
func (g *gatewayProc) waitFor(sub string) string {
	g.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		g.mu.Lock()
		for i := g.cursor; i < len(g.all); i++ {
			if strings.Contains(g.all[i], sub) {
				g.cursor = i + 1
				l := g.all[i]
				g.mu.Unlock()
				return l
			}
		}
		g.mu.Unlock()
		select {
		case <-g.done:
			g.t.Fatalf("the gateway exited before logging %q", sub)
		default:
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("no log line with %q", sub)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (g *gatewayProc) do(method, path string, headers map[string]string) (int, string) {
	g.t.Helper()
	req, err := http.NewRequest(method, "http://"+g.addr+path, nil)
	if err != nil {
		g.t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The real process: it serves the API directory, reloads it on SIGHUP (a new API appears,
// a broken file is refused and the old set kept), and shuts down cleanly on SIGTERM.
func TestGatewayProcessReloadsOnSIGHUP(t *testing.T) {
	upstream := httptest.NewServer(echo.Handler())
	defer upstream.Close()
	dir := t.TempDir()
	apps := filepath.Join(dir, "apps")
	os.Mkdir(apps, 0o700)
	config := filepath.Join(dir, "coprocess.json")
	os.WriteFile(config, []byte(`{"LogEvent": {"level": "info"}}`), 0o600)
	def := func(id string) string {
		return fmt.Sprintf(`{"api_id": %q, "use_keyless": true, "proxy": {"listen_path": "/%s/", "strip_listen_path": true, "target_url": "${TEST_UPSTREAM}"},
		  "custom_middleware": {"driver": "native", "pre": [{"name": "InjectHeaders"}]}, "config_data": {"InjectHeaders": {"add": {"X-Api": %q}}}}`, id, id, id)
	}
	os.WriteFile(filepath.Join(apps, "one.json"), []byte(def("one")), 0o600)

	g := startGateway(t, "-apps "+apps+" -config "+config+" -trace -log-level debug", "TEST_UPSTREAM="+upstream.URL)
	if code, body := g.do("GET", "/one/x", nil); code != 200 || !strings.Contains(body, `"X-Api": [`) {
		t.Fatalf("one: %d %s", code, body)
	}
	g.waitFor("hook Pre InjectHeaders: set_headers 1")
	if code, _ := g.do("GET", "/two/x", nil); code != 404 {
		t.Fatalf("two before reload: %d", code)
	}

	os.WriteFile(filepath.Join(apps, "two.json"), []byte(def("two")), 0o600)
	g.cmd.Process.Signal(syscall.SIGHUP)
	g.waitFor("reload: 2 APIs loaded")
	if code, _ := g.do("GET", "/two/x", nil); code != 200 {
		t.Fatalf("two after reload: %d", code)
	}

	os.WriteFile(filepath.Join(apps, "three.json"), []byte(`{"api_id": `), 0o600)
	g.cmd.Process.Signal(syscall.SIGHUP)
	g.waitFor("three.json")
	if code, _ := g.do("GET", "/two/x", nil); code != 200 {
		t.Fatalf("two after a refused reload: %d", code)
	}

	g.cmd.Process.Signal(syscall.SIGTERM)
	g.waitFor("shutting down")
	done := make(chan error, 1)
	go func() {
		<-g.done
		done <- g.cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the gateway did not exit on SIGTERM")
	}
}

const (
	clientPub  = "K+mE4RjP4ZqDgq7mxfydILlmXQe9CYFPCgkjYaeW6/e1/vyRUOD0/p7IQY1jNq3boD7HJlABUUdtOzydsCCrgw=="
	clientPriv = "client-private-key-for-tests"
)

// Two gateway processes (two libraries, two Go hosts) share one redis-server through their
// Redis stores: a ReqHub nonce one of them accepted is refused by the other, and an HMAC
// secret put in Redis authenticates on both.
func TestReqHubReplayCaughtAcrossTwoGatewayProcesses(t *testing.T) {
	r, err := testredis.Start()
	if errors.Is(err, testredis.ErrNoServer) {
		t.Skip("SKIP: " + err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	raw, err := redis.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Do("SET", "gw-test:hmac-secret-shared-app", "shared-secret"); err != nil {
		t.Fatal(err)
	}

	upstream := httptest.NewServer(echo.Handler())
	defer upstream.Close()
	apps := t.TempDir()
	os.WriteFile(filepath.Join(apps, "reqhub.json"), []byte(`{"api_id": "reqhub", "use_keyless": true,
	  "proxy": {"listen_path": "/reqhub/", "strip_listen_path": true, "target_url": "${TEST_UPSTREAM}"},
	  "custom_middleware": {"driver": "native", "pre": [{"name": "ReqHubMerchant"}]},
	  "config_data": {"ReqHubMerchant": {"mode": "local", "api": "weather-api", "window_ms": 120000,
	    "clients": {"`+clientPub+`": {"private_key": "`+clientPriv+`", "api": "weather-api"}}}}}`), 0o600)
	os.WriteFile(filepath.Join(apps, "hmac.json"), []byte(`{"api_id": "hmac", "enable_coprocess_auth": true,
	  "proxy": {"listen_path": "/hmac/", "strip_listen_path": true, "target_url": "${TEST_UPSTREAM}"},
	  "custom_middleware": {"driver": "native", "auth_check": {"name": "HMACSignatureAuth"}},
	  "config_data": {"HMACSignatureAuth": {"clock_skew_ms": 300000}}}`), 0o600)
	args := "-apps " + apps + " -redis " + r.Addr + " -redis-prefix gw-test:"
	env := "TEST_UPSTREAM=" + upstream.URL
	gw1 := startGateway(t, args, env)
	gw2 := startGateway(t, args, env)

	// A ReqHub denial is "<code>: <message>" in the gateway's error template.
	denial := func(code int, body string) string {
		var e map[string]string
		err := json.Unmarshal([]byte(body), &e)
		c, _, ok := strings.Cut(e["error"], ": ")
		if code != 403 || err != nil || !ok {
			t.Fatalf("not a ReqHub denial: %d %s", code, body)
		}
		return c
	}
	for i, pair := range [][2]*gatewayProc{{gw1, gw2}, {gw2, gw1}} {
		first, second := pair[0], pair[1]
		path := fmt.Sprintf("/reqhub/forecast?n=%d", i)
		signed, err := reqhub.SignNow(clientPub, clientPriv, path)
		if err != nil {
			t.Fatal(err)
		}
		if code, body := first.do("GET", path, signed); code != 200 {
			t.Fatalf("round %d: first gateway %d %s", i, code, body)
		}
		if code := denial(second.do("GET", path, signed)); code != "merchant_signature_invalid" {
			t.Fatalf("round %d: the replay on the other gateway: %s", i, code)
		}
		if code := denial(first.do("GET", path, signed)); code != "merchant_signature_invalid" {
			t.Fatalf("round %d: the replay on the same gateway: %s", i, code)
		}
		// The nonce lives in the shared Redis under the store prefix, with the window as TTL.
		key := "gw-test:reqhub-nonce-" + clientPub + ":" + signed["ClientNonce"]
		ttl, err := redis.Int(raw.Do("PTTL", key))
		if err != nil || ttl <= 0 || ttl > 121000 {
			t.Errorf("round %d: PTTL %s = %d %v", i, key, ttl, err)
		}
	}

	// A secret only in Redis authenticates HMAC-signed requests on both gateways.
	for _, g := range []*gatewayProc{gw1, gw2} {
		h := http.Header{}
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
		s, _ := httpsig.SigningString("GET", "/hmac/x", h, []string{"(request-target)", "date"})
		sig, _ := httpsig.SignHMAC("hmac-sha256", "shared-secret", s)
		auth := httpsig.Params{KeyID: "shared-app", Algorithm: "hmac-sha256", Headers: []string{"(request-target)", "date"}, Signature: sig}.String()
		if code, body := g.do("GET", "/hmac/x", map[string]string{"Date": h.Get("Date"), "Authorization": auth}); code != 200 {
			t.Errorf("HMAC with the Redis secret on %s: %d %s", g.addr, code, body)
		}
	}
}
