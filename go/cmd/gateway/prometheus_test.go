package main

import (
	"net/http/httptest"
	"testing"
	"time"

	"coprocess/go/internal/echo"
	"coprocess/go/internal/promtest"
	"coprocess/go/internal/testredis"
)

// A real Prometheus server (Debian's prometheus) scrapes the gateway process's metrics
// listener (-metrics-listen); after a known number of requests its HTTP API reports the
// same counts, from the gateway's counters and from the library's; promtool accepts the
// whole exposition.
func TestPrometheusScrapesTheGateway(t *testing.T) {
	tools := promtest.Find(t)
	r := testredis.ForTest(t)
	upstream := httptest.NewServer(echo.Handler())
	defer upstream.Close()
	metricsAddr := promtest.FreeAddr(t)
	g := startGateway(t, "-apps "+storeApps(t)+" -redis "+r.Addr+" -redis-prefix gw-test: -metrics-listen "+metricsAddr, "TEST_UPSTREAM="+upstream.URL)

	// The metrics are on their own listener only.
	if code, _ := g.do("GET", "/metrics", nil); code != 404 {
		t.Errorf("/metrics on the API listener with -metrics-listen: %d, want 404", code)
	}

	promAddr := tools.Start(t, map[string]string{"gateway": metricsAddr})

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
	took := promtest.Await(t, promAddr, want, 30*time.Second)
	t.Logf("FIGURES prometheus: %d InjectHeaders + %d StaticTokenAuth passes + %d denials; Prometheus reported them %v after the last request",
		injects, statics, denied, took.Round(time.Millisecond))

	// promtool accepts what Prometheus scraped, byte for byte as served.
	_, _, text := promtest.Get(t, "http://"+metricsAddr+"/metrics")
	tools.CheckMetrics(t, text)
}
