package gateway

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"coprocess/go/coprocess"
)

// MetricsContentType is the Content-Type of the Prometheus text exposition format 0.0.4.
const MetricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// StoreHealth is what a store can tell the metrics about itself (coprocess.RedisStore does).
type StoreHealth interface {
	Breaker() coprocess.BreakerStatus
	OpenConns() int
}

// metrics are the gateway's own counters (docs/gateway-model.md, "Metrics").
type metrics struct {
	mu       sync.Mutex
	requests map[[2]string]uint64 // api, code
	hooks    map[[3]string]*hookCount
	events   map[[4]string]uint64 // api, event, handler, outcome
	duration map[string]*histogram
}

type hookCount struct{ dispatches, failures uint64 }

// durationBuckets are the upper bounds (seconds) of coprocess_gateway_request_duration_seconds.
var durationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

type histogram struct {
	counts []uint64 // per bucket (not cumulative), then +Inf
	sum    float64
	n      uint64
}

func newMetrics() *metrics {
	return &metrics{requests: map[[2]string]uint64{}, hooks: map[[3]string]*hookCount{}, events: map[[4]string]uint64{}, duration: map[string]*histogram{}}
}

func (m *metrics) request(api string, code int, took time.Duration) {
	secs := took.Seconds()
	i := sort.SearchFloat64s(durationBuckets, secs) // first bound >= secs
	m.mu.Lock()
	m.requests[[2]string{api, strconv.Itoa(code)}]++
	h := m.duration[api]
	if h == nil {
		h = &histogram{counts: make([]uint64, len(durationBuckets)+1)}
		m.duration[api] = h
	}
	h.counts[i]++
	h.sum += secs
	h.n++
	m.mu.Unlock()
}

func (m *metrics) hook(api, hookType, name string, failed bool) {
	m.mu.Lock()
	k := [3]string{api, hookType, name}
	c := m.hooks[k]
	if c == nil {
		c = &hookCount{}
		m.hooks[k] = c
	}
	c.dispatches++
	if failed {
		c.failures++
	}
	m.mu.Unlock()
}

func (m *metrics) event(api, event, handler string, failed bool) {
	outcome := "ok"
	if failed {
		outcome = "error"
	}
	m.mu.Lock()
	m.events[[4]string{api, event, handler, outcome}]++
	m.mu.Unlock()
}

// statusWriter remembers the status written through it (200 when only the body was).
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		if s.code == 0 {
			s.code = http.StatusOK
		}
		f.Flush()
	}
}

// labelValue escapes a label value for the text format.
func labelValue(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

func header(w io.Writer, name, kind, help string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, kind)
}

// WriteMetrics writes the gateway's metrics (coprocess_gateway_*) followed by the
// library's (Dispatcher.Metrics, coprocess_*) in the Prometheus text format 0.0.4.
func (g *Gateway) WriteMetrics(w io.Writer) error {
	var b bytes.Buffer
	m := g.metrics
	m.mu.Lock()
	reqKeys := make([][2]string, 0, len(m.requests))
	for k := range m.requests {
		reqKeys = append(reqKeys, k)
	}
	sort.Slice(reqKeys, func(i, j int) bool {
		return reqKeys[i][0] < reqKeys[j][0] || reqKeys[i][0] == reqKeys[j][0] && reqKeys[i][1] < reqKeys[j][1]
	})
	header(&b, "coprocess_gateway_requests_total", "counter", "Requests answered, by API (\"\" when no API listens on the path) and HTTP status.")
	for _, k := range reqKeys {
		fmt.Fprintf(&b, "coprocess_gateway_requests_total{api=\"%s\",code=\"%s\"} %d\n", labelValue(k[0]), k[1], m.requests[k])
	}
	apis := make([]string, 0, len(m.duration))
	for a := range m.duration {
		apis = append(apis, a)
	}
	sort.Strings(apis)
	header(&b, "coprocess_gateway_request_duration_seconds", "histogram", "Time from the request's arrival to its answer, by API.")
	for _, a := range apis {
		h := m.duration[a]
		var cum uint64
		for i, le := range durationBuckets {
			cum += h.counts[i]
			fmt.Fprintf(&b, "coprocess_gateway_request_duration_seconds_bucket{api=\"%s\",le=\"%s\"} %d\n", labelValue(a), strconv.FormatFloat(le, 'g', -1, 64), cum)
		}
		fmt.Fprintf(&b, "coprocess_gateway_request_duration_seconds_bucket{api=\"%s\",le=\"+Inf\"} %d\n", labelValue(a), h.n)
		fmt.Fprintf(&b, "coprocess_gateway_request_duration_seconds_sum{api=\"%s\"} %s\n", labelValue(a), strconv.FormatFloat(h.sum, 'g', -1, 64))
		fmt.Fprintf(&b, "coprocess_gateway_request_duration_seconds_count{api=\"%s\"} %d\n", labelValue(a), h.n)
	}
	hookKeys := make([][3]string, 0, len(m.hooks))
	for k := range m.hooks {
		hookKeys = append(hookKeys, k)
	}
	sort.Slice(hookKeys, func(i, j int) bool { return less3(hookKeys[i], hookKeys[j]) })
	header(&b, "coprocess_gateway_hook_dispatches_total", "counter", "Hook dispatches through the library, by API, hook type and middleware.")
	for _, k := range hookKeys {
		fmt.Fprintf(&b, "coprocess_gateway_hook_dispatches_total{api=\"%s\",hook=\"%s\",middleware=\"%s\"} %d\n", labelValue(k[0]), k[1], labelValue(k[2]), m.hooks[k].dispatches)
	}
	header(&b, "coprocess_gateway_hook_failures_total", "counter", "Hook dispatches that failed (the library returned an error), by API, hook type and middleware.")
	for _, k := range hookKeys {
		fmt.Fprintf(&b, "coprocess_gateway_hook_failures_total{api=\"%s\",hook=\"%s\",middleware=\"%s\"} %d\n", labelValue(k[0]), k[1], labelValue(k[2]), m.hooks[k].failures)
	}
	evKeys := make([][4]string, 0, len(m.events))
	for k := range m.events {
		evKeys = append(evKeys, k)
	}
	sort.Slice(evKeys, func(i, j int) bool { return strings.Join(evKeys[i][:], "\x00") < strings.Join(evKeys[j][:], "\x00") })
	header(&b, "coprocess_gateway_events_total", "counter", "Events the gateway gave native event handlers (one DispatchEvent each), by API, event type, handler and outcome.")
	for _, k := range evKeys {
		fmt.Fprintf(&b, "coprocess_gateway_events_total{api=\"%s\",event=\"%s\",handler=\"%s\",outcome=\"%s\"} %d\n", labelValue(k[0]), labelValue(k[1]), labelValue(k[2]), k[3], m.events[k])
	}
	m.mu.Unlock()

	header(&b, "coprocess_gateway_store_operations_total", "counter",
		"Store host-function calls by operation (get, set, set_if_absent) and result (ok, miss, stored, present, error, busy).")
	for _, c := range coprocess.StoreStats() {
		fmt.Fprintf(&b, "coprocess_gateway_store_operations_total{op=\"%s\",result=\"%s\"} %d\n", c.Op, c.Result, c.Count)
	}
	header(&b, "coprocess_gateway_store_calls_in_flight", "gauge", "Store host-function calls running now (bounded by -store-max-calls).")
	fmt.Fprintf(&b, "coprocess_gateway_store_calls_in_flight %d\n", coprocess.StoreCallsInFlight())
	if sh, ok := g.opts.Store.(StoreHealth); ok {
		st := sh.Breaker()
		header(&b, "coprocess_gateway_store_breaker_state", "gauge", "The Redis store's circuit breaker: 1 for its current state, 0 for the others.")
		for _, s := range []string{"closed", "open", "half-open"} {
			v := 0
			if s == st.State {
				v = 1
			}
			fmt.Fprintf(&b, "coprocess_gateway_store_breaker_state{state=\"%s\"} %d\n", s, v)
		}
		header(&b, "coprocess_gateway_store_breaker_opens_total", "counter", "Times the Redis store's circuit breaker opened.")
		fmt.Fprintf(&b, "coprocess_gateway_store_breaker_opens_total %d\n", st.Opens)
		header(&b, "coprocess_gateway_store_connections", "gauge", "Connections the Redis store holds open (idle or in use).")
		fmt.Fprintf(&b, "coprocess_gateway_store_connections %d\n", sh.OpenConns())
	}
	threads, rss := procStatus()
	header(&b, "coprocess_gateway_goroutines", "gauge", "Goroutines in the gateway process.")
	fmt.Fprintf(&b, "coprocess_gateway_goroutines %d\n", runtime.NumGoroutine())
	if threads >= 0 {
		header(&b, "coprocess_gateway_os_threads", "gauge", "OS threads of the gateway process (/proc/self/status Threads).")
		fmt.Fprintf(&b, "coprocess_gateway_os_threads %d\n", threads)
	}
	if rss >= 0 {
		header(&b, "coprocess_gateway_resident_memory_bytes", "gauge", "Resident memory of the gateway process (/proc/self/status VmRSS).")
		fmt.Fprintf(&b, "coprocess_gateway_resident_memory_bytes %d\n", rss)
	}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		header(&b, "coprocess_gateway_open_fds", "gauge", "Open file descriptors of the gateway process (/proc/self/fd).")
		fmt.Fprintf(&b, "coprocess_gateway_open_fds %d\n", len(fds)-1) // less the one reading the directory
	}
	lib, err := g.opts.Dispatcher.Metrics()
	if err != nil {
		return err
	}
	b.Write(lib)
	_, err = w.Write(b.Bytes())
	return err
}

func less3(a, b [3]string) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// procStatus reads Threads and VmRSS (bytes) from /proc/self/status; -1 when unknown.
func procStatus() (threads int, rss int64) {
	threads, rss = -1, -1
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		switch k {
		case "Threads":
			threads, _ = strconv.Atoi(fields[0])
		case "VmRSS":
			kb, _ := strconv.ParseInt(fields[0], 10, 64)
			rss = kb * 1024
		}
	}
	return
}

// MetricsHandler serves WriteMetrics (for a listener of its own; Options.MetricsPath serves
// it on the gateway's).
func (g *Gateway) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b bytes.Buffer
		if err := g.WriteMetrics(&b); err != nil {
			g.log.Log("error", "metrics: "+err.Error())
			http.Error(w, "metrics unavailable", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", MetricsContentType)
		_, _ = w.Write(b.Bytes())
	})
}
