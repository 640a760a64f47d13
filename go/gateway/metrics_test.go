package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"coprocess/go/internal/promtest"
)

// metricValue finds the sample of name whose labels include every one of labels
// (`k="v"`); -1 when there is none.
func metricValue(text, name string, labels ...string) float64 {
	if v, ok := promtest.Sample(text, name, labels...); ok {
		return v
	}
	return -1
}

func (e *env) metrics() string {
	e.t.Helper()
	resp, err := http.Get(e.front.URL + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != MetricsContentType {
		e.t.Fatalf("/metrics: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	return string(b)
}

// promtoolCheck runs `promtool check metrics` on an exposition (Debian's prometheus package;
// scripts/setup.sh installs it).
func promtoolCheck(t *testing.T, text string) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("SKIP: promtool is not installed (Debian package prometheus; scripts/setup.sh installs it)")
	}
	cmd := exec.Command(bin, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s\n--- exposition:\n%s", err, out, text)
	}
}

// /metrics (Options.MetricsPath) serves the gateway's counters and the library's: requests
// by API and status, hook dispatches and failures, events, store calls, process gauges, then
// coprocess_dispatch_total and the rest; the counts match what was sent, and promtool
// accepts the whole exposition.
func TestMetricsEndpoint(t *testing.T) {
	e := newEnv(t, map[string]string{"keyless": keylessAPI, "static": authAPI}, func(o *Options) { o.MetricsPath = "/metrics" })
	// The library's counters are the process's (every test's dispatches): compared as deltas.
	libBefore := e.metrics()
	for i := 0; i < 5; i++ {
		if r := e.do("GET", "/k/x", nil, ""); r.status != 200 {
			t.Fatalf("keyless: %d %s", r.status, r.body)
		}
	}
	for i := 0; i < 3; i++ {
		e.do("GET", "/static/x", map[string]string{"Authorization": "Bearer wrong"}, "")
	}
	e.do("GET", "/nowhere", nil, "")
	e.do("GET", "/k/x", map[string]string{"X-Bin": "a\xffb"}, "") // a failed dispatch: 500
	text := e.metrics()
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"coprocess_gateway_requests_total", []string{`api="keyless"`, `code="200"`}, 5},
		{"coprocess_gateway_requests_total", []string{`api="keyless"`, `code="500"`}, 1},
		{"coprocess_gateway_requests_total", []string{`api="static"`, `code="403"`}, 3},
		{"coprocess_gateway_requests_total", []string{`api=""`, `code="404"`}, 1},
		{"coprocess_gateway_hook_dispatches_total", []string{`api="keyless"`, `hook="Pre"`, `middleware="InjectHeaders"`}, 6},
		{"coprocess_gateway_hook_failures_total", []string{`api="keyless"`, `hook="Pre"`, `middleware="InjectHeaders"`}, 1},
		{"coprocess_gateway_hook_dispatches_total", []string{`api="keyless"`, `hook="Response"`, `middleware="InjectHeaders:resp"`}, 5},
		{"coprocess_gateway_hook_dispatches_total", []string{`api="static"`, `hook="CustomKeyCheck"`, `middleware="StaticTokenAuth"`}, 3},
		{"coprocess_gateway_events_total", []string{`api="static"`, `event="AuthFailure"`, `handler="RelayEvent"`, `outcome="ok"`}, 3},
		{"coprocess_gateway_request_duration_seconds_count", []string{`api="keyless"`}, 6},
		{"coprocess_gateway_request_duration_seconds_bucket", []string{`api="keyless"`, `le="+Inf"`}, 6},
		{"coprocess_gateway_request_duration_seconds_bucket", []string{`api="keyless"`, `le="10"`}, 6},
		{"coprocess_gateway_events_total", []string{`api="static"`, `event="AuthFailure"`, `handler="LogEvent"`, `outcome="ok"`}, 3},
	}
	for _, c := range checks {
		if got := metricValue(text, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// The library's own exposition, appended: its count of the same dispatches.
	for _, c := range []struct {
		labels []string
		want   float64
	}{
		{[]string{`middleware="StaticTokenAuth"`, `hook="CustomKeyCheck"`, `outcome="passed"`}, 3},
		// The library labels by registered name: InjectHeaders and InjectHeaders:pre alike
		// (5 keyless, 3 static; the failed dispatch failed in Go, before the library).
		{[]string{`middleware="InjectHeaders"`, `hook="Pre"`, `outcome="passed"`}, 8},
		{[]string{`middleware="InjectHeaders"`, `hook="Response"`, `outcome="passed"`}, 5},
	} {
		before := metricValue(libBefore, "coprocess_dispatch_total", c.labels...)
		if before < 0 {
			before = 0
		}
		if got := metricValue(text, "coprocess_dispatch_total", c.labels...) - before; got != c.want {
			t.Errorf("coprocess_dispatch_total%v moved by %v, want %v", c.labels, got, c.want)
		}
	}
	for _, name := range []string{"coprocess_gateway_goroutines", "coprocess_gateway_os_threads", "coprocess_gateway_open_fds", "coprocess_gateway_store_calls_in_flight",
		"coprocess_dispatch_duration_seconds_bucket", "coprocess_reload_total", "coprocess_config_cache_hits_total"} {
		if metricValue(text, name) < 0 {
			t.Errorf("no %s in the exposition", name)
		}
	}
	if !strings.Contains(text, `coprocess_gateway_store_operations_total{op="set_if_absent",result="stored"}`) {
		t.Error("no store operation counters")
	}
	// /metrics is reserved: it is not routed to an API, and is not itself counted.
	if metricValue(e.metrics(), "coprocess_gateway_requests_total", `code="404"`) != 1 {
		t.Error("/metrics counted as a request")
	}
	promtoolCheck(t, text)
}

const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// A request with a valid traceparent: the gateway's log lines about it and the AuthFailure
// event JSON it builds carry trace_id; the library's own lines (LogEvent logging the event)
// carry it too. Invalid traceparents give no trace id.
func TestTraceIDInLogsAndEvents(t *testing.T) {
	e := newEnv(t, map[string]string{"keyless": keylessAPI, "static": authAPI})
	const id = "4bf92f3577b34da6a3ce929d0e0e4736"
	e.do("GET", "/static/x", map[string]string{"Authorization": "Bearer wrong", "traceparent": tp}, "")
	events, logs, traces := e.rec.take()
	relayed := eventsNamed(events, "AuthFailureRelayed")
	if len(relayed) != 1 {
		t.Fatalf("events %v", events)
	}
	var ev map[string]json.RawMessage
	if err := json.Unmarshal([]byte(relayed[0][1]), &ev); err != nil {
		t.Fatal(err)
	}
	if string(ev["trace_id"]) != `"`+id+`"` {
		t.Errorf("AuthFailure event without the trace id: %s", relayed[0][1])
	}
	logEvent := false
	for _, l := range logs {
		logEvent = logEvent || (strings.Contains(l[1], "AuthFailure") && strings.Contains(l[1], id))
	}
	if !logEvent {
		t.Errorf("LogEvent's line has no trace id: %q", logs)
	}
	for _, tr := range traces {
		if tr.TraceID != id {
			t.Errorf("hook trace %s has trace id %q", tr.Sent.HookName, tr.TraceID)
		}
	}

	// A gateway line about a request: a failed dispatch.
	e.do("GET", "/k/x", map[string]string{"X-Bin": "a\xffb", "traceparent": tp}, "")
	_, logs, _ = e.rec.take()
	if len(logs) != 1 || !strings.Contains(logs[0][1], "dispatch error") || !strings.HasSuffix(logs[0][1], " trace_id="+id) {
		t.Errorf("gateway log lines %q", logs)
	}

	for _, bad := range []string{"", "00-" + strings.ToUpper(id) + "-00f067aa0ba902b7-01", "00-" + strings.Repeat("0", 32) + "-00f067aa0ba902b7-01",
		"ff-" + id + "-00f067aa0ba902b7-01", "00-" + id + "-0000000000000000-01", "00-" + id + "-00f067aa0ba902b7-01-x", "garbage"} {
		e.do("GET", "/static/x", map[string]string{"Authorization": "Bearer wrong", "traceparent": bad}, "")
		e.do("GET", "/k/x", map[string]string{"X-Bin": "a\xffb", "traceparent": bad}, "")
		events, logs, _ := e.rec.take()
		for _, x := range append(events, logs...) {
			if strings.Contains(x[1], "trace_id") {
				t.Errorf("traceparent %q: %q carries a trace id", bad, x[1])
			}
		}
	}
}

func TestTraceIDParsing(t *testing.T) {
	id := "4bf92f3577b34da6a3ce929d0e0e4736"
	for in, want := range map[string]string{
		"00-" + id + "-00f067aa0ba902b7-01":         id,
		" 00-" + id + "-00f067aa0ba902b7-00 ":       id,
		"01-" + id + "-00f067aa0ba902b7-01-extra":   id,
		"00-" + id + "-00f067aa0ba902b7-01-extra":   "",
		"00-" + id + "-00f067aa0ba902b7":            "",
		"0-" + id + "-00f067aa0ba902b7-01":          "",
		"00-" + id[:31] + "-00f067aa0ba902b7-01":    "",
		"00-" + id + "-00f067aa0ba902b-01":          "",
		"00-" + id + "-00f067aa0ba902b7-1":          "",
		"00-" + id + "-00f067aa0ba902bg-01":         "",
		"00-" + id + "-00F067AA0BA902B7-01":         "",
		"":                                          "",
		"00-" + id + "-00f067aa0ba902b7-01" + "\n-": "",
	} {
		if got := traceID(in); got != want {
			t.Errorf("traceID(%q) = %q, want %q", in, got, want)
		}
	}
}
