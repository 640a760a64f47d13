package main

import (
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
	"testing"
	"time"

	"coprocess/go/internal/echo"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func httpGet(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// promQuery runs an instant query through Prometheus' HTTP API; ok is false when the
// result is empty.
func promQuery(t *testing.T, prom, query string) (float64, bool) {
	t.Helper()
	code, body := httpGet(t, "http://"+prom+"/api/v1/query?query="+url.QueryEscape(query))
	var r struct {
		Status string
		Data   struct {
			Result []struct {
				Value [2]interface{}
			}
		}
	}
	if code != 200 || json.Unmarshal([]byte(body), &r) != nil || r.Status != "success" {
		t.Fatalf("query %s: %d %s", query, code, body)
	}
	if len(r.Data.Result) == 0 {
		return 0, false
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil
}

// A real Prometheus server (Debian's prometheus) scrapes the gateway process's metrics
// listener (-metrics-listen); after a known number of requests its HTTP API reports the
// same counts, from the gateway's counters and from the library's; promtool accepts the
// whole exposition.
func TestPrometheusScrapesTheGateway(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("SKIP: prometheus is not installed (Debian package prometheus; scripts/setup.sh installs it)")
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("SKIP: promtool is not installed (Debian package prometheus)")
	}
	r := startTestRedis(t)
	upstream := httptest.NewServer(echo.Handler())
	defer upstream.Close()
	metricsAddr := freeAddr(t)
	g := startGateway(t, "-apps "+storeApps(t)+" -redis "+r.Addr+" -redis-prefix gw-test: -metrics-listen "+metricsAddr, "TEST_UPSTREAM="+upstream.URL)

	// The metrics are on their own listener only.
	if code, _ := g.do("GET", "/metrics", nil); code != 404 {
		t.Errorf("/metrics on the API listener with -metrics-listen: %d, want 404", code)
	}

	dir := t.TempDir()
	promAddr := freeAddr(t)
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: gateway
    static_configs:
      - targets: ['%s']
`, metricsAddr)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "config", filepath.Join(dir, "prometheus.yml")).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
	prom := exec.Command(promBin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	promLog, _ := os.Create(filepath.Join(dir, "prometheus.log"))
	prom.Stdout, prom.Stderr = promLog, promLog
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		prom.Process.Kill()
		prom.Wait()
	})
	ready := false
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get("http://" + promAddr + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				ready = true
				break
			}
		}
	}
	if !ready {
		b, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
		t.Fatalf("prometheus did not become ready:\n%s", b)
	}

	const injects, statics, denied = 37, 11, 5
	for i := 0; i < injects; i++ {
		if code, body := g.do("GET", "/inject/x", nil); code != 200 {
			t.Fatalf("inject: %d %s", code, body)
		}
	}
	for i := 0; i < statics; i++ {
		if code, body := g.do("GET", "/static/x", map[string]string{"Authorization": "tok-1"}); code != 200 {
			t.Fatalf("static: %d %s", code, body)
		}
	}
	for i := 0; i < denied; i++ {
		g.do("GET", "/static/x", map[string]string{"Authorization": "nope"})
	}
	want := map[string]float64{
		`coprocess_gateway_requests_total{job="gateway",api="inject",code="200"}`:                                   injects,
		`coprocess_gateway_requests_total{job="gateway",api="static",code="200"}`:                                   statics,
		`coprocess_gateway_requests_total{job="gateway",api="static",code="403"}`:                                   denied,
		`coprocess_gateway_hook_dispatches_total{job="gateway",api="inject",hook="Pre",middleware="InjectHeaders"}`: injects,
		`coprocess_gateway_hook_dispatches_total{job="gateway",api="static",hook="CustomKeyCheck"}`:                 statics + denied,
		`coprocess_dispatch_total{job="gateway",middleware="InjectHeaders",hook="Pre",outcome="passed"}`:            injects,
		`sum(coprocess_dispatch_total{job="gateway",middleware="StaticTokenAuth",hook="CustomKeyCheck"})`:           statics + denied,
		`coprocess_dispatch_duration_seconds_count{job="gateway",middleware="InjectHeaders"}`:                       injects,
		`coprocess_gateway_store_breaker_state{job="gateway",state="closed"}`:                                       1,
		`up{job="gateway"}`: 1,
	}
	start := time.Now()
	var last map[string]float64
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		last = map[string]float64{}
		match := true
		for q, v := range want {
			got, ok := promQuery(t, promAddr, q)
			if ok {
				last[q] = got
			}
			match = match && ok && got == v
		}
		if match {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus never reported the counts sent: got %v, want %v", last, want)
		}
	}
	t.Logf("FIGURES prometheus: %d InjectHeaders + %d StaticTokenAuth passes + %d denials; Prometheus reported them %v after the last request: %v",
		injects, statics, denied, time.Since(start).Round(time.Millisecond), last)

	// promtool accepts what Prometheus scraped, byte for byte as served.
	_, text := httpGet(t, "http://"+metricsAddr+"/metrics")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s\n--- exposition:\n%s", err, out, text)
	}
}
