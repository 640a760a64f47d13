package main

// Gateway processes against a real redis-server that fails: replays decided exactly once
// across two processes, fail-closed answers while Redis is killed, bounded latency, threads
// and descriptors while it hangs (SIGSTOP), and recovery without a gateway restart. Each
// test logs its figures (go test -v).

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"coprocess/go/internal/echo"
	"coprocess/go/internal/httpsig"
	"coprocess/go/internal/promtest"
	"coprocess/go/internal/reqhub"
	"coprocess/go/internal/testredis"

	"github.com/gomodule/redigo/redis"
)

// storeApps writes the APIs of these tests: reqhub (ReqHubMerchant local, nonces in the
// store), hmac (HMACSignatureAuth, secrets in the store), and two store-free ones: inject
// (keyless InjectHeaders) and static (StaticTokenAuth).
func storeApps(t *testing.T) string {
	apps := t.TempDir()
	files := map[string]string{
		"reqhub.json": `{"api_id": "reqhub", "use_keyless": true,
	  "proxy": {"listen_path": "/reqhub/", "strip_listen_path": true, "target_url": "${TEST_UPSTREAM}"},
	  "custom_middleware": {"driver": "native", "pre": [{"name": "ReqHubMerchant"}]},
	  "config_data": {"ReqHubMerchant": {"mode": "local", "api": "weather-api", "window_ms": 120000,
	    "clients": {"` + clientPub + `": {"private_key": "` + clientPriv + `", "api": "weather-api"}}}}}`,
		"hmac.json": `{"api_id": "hmac", "enable_coprocess_auth": true,
	  "proxy": {"listen_path": "/hmac/", "strip_listen_path": true, "target_url": "${TEST_UPSTREAM}"},
	  "custom_middleware": {"driver": "native", "auth_check": {"name": "HMACSignatureAuth"}},
	  "config_data": {"HMACSignatureAuth": {"clock_skew_ms": 300000}}}`,
		"inject.json": `{"api_id": "inject", "use_keyless": true,
	  "proxy": {"listen_path": "/inject/", "strip_listen_path": true, "target_url": "${TEST_UPSTREAM}"},
	  "custom_middleware": {"driver": "native", "pre": [{"name": "InjectHeaders"}]},
	  "config_data": {"InjectHeaders": {"add": {"X-Injected": "1"}}}}`,
		"static.json": `{"api_id": "static", "enable_coprocess_auth": true,
	  "proxy": {"listen_path": "/static/", "strip_listen_path": true, "target_url": "${TEST_UPSTREAM}"},
	  "custom_middleware": {"driver": "native", "auth_check": {"name": "StaticTokenAuth"}},
	  "config_data": {"StaticTokenAuth": {"header": "Authorization", "tokens": {"tok-1": {"rate": 100, "per": 1}}}}}`,
	}
	for name, def := range files {
		if err := os.WriteFile(filepath.Join(apps, name), []byte(def), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return apps
}

// signedReqHub is a ReqHub request with a fresh nonce (or the given headers).
func signedReqHub(t *testing.T, addr, path string, signed map[string]string) *http.Request {
	if signed == nil {
		var err error
		if signed, err = reqhub.SignNow(clientPub, clientPriv, path); err != nil {
			t.Error(err)
		}
	}
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	for k, v := range signed {
		req.Header.Set(k, v)
	}
	return req
}

func signedHMAC(addr, path string) *http.Request {
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	req.Header.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	s, _ := httpsig.SigningString("GET", path, req.Header, []string{"(request-target)", "date"})
	sig, _ := httpsig.SignHMAC("hmac-sha256", "shared-secret", s)
	req.Header.Set("Authorization", httpsig.Params{KeyID: "shared-app", Algorithm: "hmac-sha256", Headers: []string{"(request-target)", "date"}, Signature: sig}.String())
	return req
}

// sample is one request of a load run.
type sample struct {
	kind       string
	start, end time.Time
	code       int // 0: transport error
	body       string
}

func (s sample) latency() time.Duration { return s.end.Sub(s.start) }

type recorderLoad struct {
	mu      sync.Mutex
	samples []sample
}

func (r *recorderLoad) add(s sample) {
	r.mu.Lock()
	r.samples = append(r.samples, s)
	r.mu.Unlock()
}

func (r *recorderLoad) snapshot() []sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sample(nil), r.samples...)
}

// worker sends make() requests one after another, pausing between them, until stop is
// closed; the client timeout (30 s) only guards against a test hang.
func (r *recorderLoad) worker(wg *sync.WaitGroup, stop chan struct{}, client *http.Client, kind string, pause time.Duration, make func() *http.Request) {
	defer wg.Done()
	for {
		select {
		case <-stop:
			return
		default:
		}
		req := make()
		s := sample{kind: kind, start: time.Now()}
		resp, err := client.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			s.code, s.body = resp.StatusCode, string(b)
		} else {
			s.body = err.Error()
		}
		s.end = time.Now()
		r.add(s)
		time.Sleep(pause)
	}
}

func newClient(conns int) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns}}
}

// procStats are a gateway process's OS threads, open descriptors and goroutines.
type procStats struct {
	threads, fds, goroutines int
	rssMB                    float64
}

func (p procStats) String() string {
	return fmt.Sprintf("threads %d, fds %d, goroutines %d, RSS %.1f MB", p.threads, p.fds, p.goroutines, p.rssMB)
}

// status reads a field (its first number) from /proc/<pid>/status.
func (g *gatewayProc) status(field string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", g.cmd.Process.Pid))
	if err != nil {
		g.t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			f := strings.Fields(strings.TrimPrefix(l, field+":"))
			if len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
	}
	return -1
}

// threads reads Threads from /proc/<pid>/status.
func (g *gatewayProc) threads() int { return g.status("Threads") }

// stats reads threads and fds from /proc/<pid> and goroutines from the gateway's /metrics.
func (g *gatewayProc) stats() procStats {
	g.t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", g.cmd.Process.Pid))
	if err != nil {
		g.t.Fatal(err)
	}
	return procStats{threads: g.threads(), fds: len(fds), goroutines: int(g.metric("coprocess_gateway_goroutines")), rssMB: float64(g.status("VmRSS")) / 1024}
}

// metric reads one sample (name plus optional label text) from the gateway's /metrics.
func (g *gatewayProc) metric(name string, labels ...string) float64 {
	g.t.Helper()
	resp, err := http.Get("http://" + g.addr + "/metrics")
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	v, ok := promtest.Sample(string(b), name, labels...)
	if !ok {
		g.t.Fatalf("no %s%v in /metrics", name, labels)
	}
	return v
}

func reqhubCode(body string) string {
	var e map[string]string
	_ = json.Unmarshal([]byte(body), &e)
	c, _, _ := strings.Cut(e["error"], ": ")
	return c
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[int(float64(len(d)-1)*p)]
}

// N copies of one signed ReqHub request sent at once, split across two gateway processes
// sharing one redis-server: exactly one passes, in every round (CoProcessStoreDataIfAbsent:
// SET NX EX in Redis decides the replay in one step).
func TestReqHubReplayExactlyOnceAcrossTwoGatewayProcesses(t *testing.T) {
	r := testredis.ForTest(t)
	upstream := httptest.NewServer(echo.Handler())
	defer upstream.Close()
	args := "-apps " + storeApps(t) + " -redis " + r.Addr + " -redis-prefix gw-test:"
	env := "TEST_UPSTREAM=" + upstream.URL
	gws := []*gatewayProc{startGateway(t, args, env), startGateway(t, args, env)}
	const rounds, copies = 20, 20
	client := newClient(copies)
	total := map[int]int{}
	for round := 0; round < rounds; round++ {
		path := fmt.Sprintf("/reqhub/forecast?round=%d", round)
		signed, err := reqhub.SignNow(clientPub, clientPriv, path)
		if err != nil {
			t.Fatal(err)
		}
		reqs := make([]*http.Request, copies)
		for i := range reqs {
			reqs[i] = signedReqHub(t, gws[i%2].addr, path, signed)
		}
		codes := make([]int, copies)
		bodies := make([]string, copies)
		var ready, wg sync.WaitGroup
		ready.Add(copies)
		start := make(chan struct{})
		for i := range reqs {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				ready.Done()
				<-start
				resp, err := client.Do(reqs[i])
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				codes[i], bodies[i] = resp.StatusCode, string(b)
			}(i)
		}
		ready.Wait()
		close(start)
		wg.Wait()
		passed, passedOn := 0, map[int]int{}
		for i, c := range codes {
			total[c]++
			switch {
			case c == 200:
				passed++
				passedOn[i%2]++
			case c == 403 && reqhubCode(bodies[i]) == "merchant_signature_invalid":
			default:
				t.Errorf("round %d copy %d: %d %s", round, i, c, bodies[i])
			}
		}
		if passed != 1 {
			t.Fatalf("round %d: %d of %d copies passed, want exactly 1 (per gateway: %v)", round, passed, copies, passedOn)
		}
	}
	t.Logf("FIGURES replay: %d rounds x %d copies (half to each of 2 gateway processes): exactly 1 passed per round; answers %v", rounds, copies, total)
	for i, g := range gws {
		if n := g.metric("coprocess_gateway_store_operations_total", `op="set_if_absent"`, `result="stored"`); n < 1 {
			t.Errorf("gateway %d: no set_if_absent stored counted", i)
		}
	}
}

// Redis killed under load: every ReqHub request is refused 503 verification_unavailable
// (none passes), none takes longer than the store timeout plus a margin, and when
// redis-server is started again on the same port the gateways recover by themselves, with
// threads, descriptors and goroutines back where they were.
func TestReqHubFailsClosedWhileRedisIsDownAndRecovers(t *testing.T) {
	r := testredis.ForTest(t)
	upstream := httptest.NewServer(echo.Handler())
	defer upstream.Close()
	const timeout = 500 * time.Millisecond
	args := "-apps " + storeApps(t) + " -redis " + r.Addr + " -redis-prefix gw-test: -redis-timeout " + timeout.String() +
		" -redis-breaker-failures 5 -redis-breaker-backoff 500ms -store-error-log-interval 1s"
	env := "TEST_UPSTREAM=" + upstream.URL
	gws := []*gatewayProc{startGateway(t, args, env), startGateway(t, args, env)}
	const workersPerGateway = 8
	client := newClient(2 * workersPerGateway)
	load := &recorderLoad{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, g := range gws {
		for i := 0; i < workersPerGateway; i++ {
			wg.Add(1)
			addr := g.addr
			n := 0
			go load.worker(&wg, stop, client, addr, 5*time.Millisecond, func() *http.Request {
				n++
				return signedReqHub(t, addr, fmt.Sprintf("/reqhub/x?n=%d", n), nil)
			})
		}
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	time.Sleep(2 * time.Second) // warm up and steady state with Redis up
	before := []procStats{gws[0].stats(), gws[1].stats()}
	killedAt := time.Now()
	r.Kill()
	time.Sleep(2500 * time.Millisecond)
	during := []procStats{gws[0].stats(), gws[1].stats()}
	time.Sleep(500 * time.Millisecond)
	restartBegan := time.Now() // redis-server may answer before Restart returns
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	restartedAt := time.Now()
	time.Sleep(4 * time.Second)
	after := []procStats{gws[0].stats(), gws[1].stats()}
	close(stop)
	wg.Wait()
	time.Sleep(time.Second)
	idle := []procStats{gws[0].stats(), gws[1].stats()}

	samples := load.snapshot()
	var outage, beforeKill, afterRecovery int
	var outageLat []time.Duration
	codes := map[int]int{}
	// recovered: the start of the first request of the final run of 200s after the restart.
	sort.Slice(samples, func(i, j int) bool { return samples[i].start.Before(samples[j].start) })
	recovered := time.Time{}
	for _, s := range samples {
		if !s.start.After(restartBegan) {
			continue
		}
		if s.code != 200 {
			recovered = time.Time{}
		} else if recovered.IsZero() {
			recovered = s.start
		}
	}
	for _, s := range samples {
		switch {
		case s.end.Before(killedAt):
			beforeKill++
			if s.code != 200 {
				t.Errorf("before the kill: %d %s", s.code, s.body)
			}
		case s.start.After(killedAt.Add(100*time.Millisecond)) && s.end.Before(restartBegan):
			outage++
			codes[s.code]++
			outageLat = append(outageLat, s.latency())
			if s.code != 503 || reqhubCode(s.body) != "verification_unavailable" {
				t.Errorf("with Redis down: %d %s (want 503 verification_unavailable)", s.code, s.body)
			}
			if s.latency() > timeout+1500*time.Millisecond {
				t.Errorf("with Redis down a request took %v (store timeout %v)", s.latency(), timeout)
			}
		case !recovered.IsZero() && !s.start.Before(recovered):
			afterRecovery++
		}
	}
	if outage < 50 {
		t.Errorf("only %d requests during the outage", outage)
	}
	if recovered.IsZero() {
		t.Fatalf("no recovery: the requests after the restart never all passed")
	}
	recovery := recovered.Sub(restartBegan)
	if recovery > 3*time.Second || afterRecovery < 50 {
		t.Errorf("recovery took %v (%d requests after it)", recovery, afterRecovery)
	}
	for i := range gws {
		if after[i].threads > before[i].threads+8 || after[i].fds > before[i].fds+8 || after[i].goroutines > before[i].goroutines+30 ||
			during[i].threads > before[i].threads+8 || during[i].fds > before[i].fds+8 {
			t.Errorf("gateway %d grew: before %v, during %v, after %v", i, before[i], during[i], after[i])
		}
		if n := gws[i].count("circuit open after"); n != 1 {
			t.Errorf("gateway %d: %d circuit-open lines, want 1", i, n)
		}
		if n := gws[i].count("circuit closed"); n != 1 {
			t.Errorf("gateway %d: %d circuit-closed lines, want 1", i, n)
		}
	}
	t.Logf("FIGURES redis-kill: 2 gateways x %d workers; %d requests before the kill (all 200); outage %v: %d ReqHub requests, answers %v, latency p50 %v p99 %v max %v; recovery %v after the restart began (redis-server answered PING after %v), then %d requests all 200",
		workersPerGateway, beforeKill, restartBegan.Sub(killedAt).Round(time.Millisecond), outage, codes,
		percentile(outageLat, 0.5), percentile(outageLat, 0.99), percentile(outageLat, 1), recovery.Round(time.Millisecond),
		restartedAt.Sub(restartBegan).Round(time.Millisecond), afterRecovery)
	for i := range gws {
		t.Logf("FIGURES redis-kill gateway %d: before {%v}, during {%v}, after {%v}, idle after {%v}; store-error log lines %d",
			i, before[i], during[i], after[i], idle[i], gws[i].count("store failed"))
	}
}

// Redis hung (SIGSTOP) for 3 s under load: store-free APIs keep a small latency, every
// store-using request is answered within its timeout (plus a margin) with its fail-closed
// answer (ReqHub 503, HMAC 401), OS threads stay bounded by -store-max-calls, the breaker
// logs one open and one close, and everything passes again after SIGCONT.
func TestHungRedisBoundedAndIsolated(t *testing.T) {
	r := testredis.ForTest(t)
	raw, err := redis.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Do("SET", "gw-test:hmac-secret-shared-app", "shared-secret"); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	upstream := httptest.NewServer(echo.Handler())
	defer upstream.Close()
	const timeout = 500 * time.Millisecond
	// HUNG_STORE_MAX_CALLS=-1 runs the gateway without the bound, to see the test fail
	// without it (threads grow with the clients stuck in the store).
	maxCalls := 32
	if v := os.Getenv("HUNG_STORE_MAX_CALLS"); v != "" {
		maxCalls, _ = strconv.Atoi(v)
	}
	args := fmt.Sprintf("-apps %s -redis %s -redis-prefix gw-test: -redis-timeout %v -redis-breaker-failures 5 -redis-breaker-backoff 1s -store-max-calls %d -store-error-log-interval 1s",
		storeApps(t), r.Addr, timeout, maxCalls)
	g := startGateway(t, args, "TEST_UPSTREAM="+upstream.URL)

	const storeWorkers, freeWorkers = 100, 4
	client := newClient(storeWorkers + freeWorkers)
	load := &recorderLoad{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < storeWorkers; i++ {
		wg.Add(1)
		if i%2 == 0 {
			n := 0
			i := i
			go load.worker(&wg, stop, client, "reqhub", 250*time.Millisecond, func() *http.Request {
				n++
				return signedReqHub(t, g.addr, fmt.Sprintf("/reqhub/x?w=%d&n=%d", i, n), nil)
			})
		} else {
			go load.worker(&wg, stop, client, "hmac", 250*time.Millisecond, func() *http.Request { return signedHMAC(g.addr, "/hmac/x") })
		}
	}
	for i := 0; i < freeWorkers; i++ {
		wg.Add(1)
		if i%2 == 0 {
			go load.worker(&wg, stop, client, "inject", 20*time.Millisecond, func() *http.Request {
				req, _ := http.NewRequest("GET", "http://"+g.addr+"/inject/x", nil)
				return req
			})
		} else {
			go load.worker(&wg, stop, client, "static", 20*time.Millisecond, func() *http.Request {
				req, _ := http.NewRequest("GET", "http://"+g.addr+"/static/x", nil)
				req.Header.Set("Authorization", "tok-1")
				return req
			})
		}
	}
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	defer stopLoad()

	// Threads sampled every 50 ms for the whole run.
	var maxThreads int
	var threadsMu sync.Mutex
	sampling := make(chan struct{})
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		for {
			select {
			case <-sampling:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if n := g.threads(); n > 0 {
				threadsMu.Lock()
				if n > maxThreads {
					maxThreads = n
				}
				threadsMu.Unlock()
			}
		}
	}()

	time.Sleep(2 * time.Second)
	before := g.stats()
	threadsMu.Lock()
	maxThreads = before.threads
	threadsMu.Unlock()
	if err := r.Pause(); err != nil {
		t.Fatal(err)
	}
	pausedAt := time.Now()
	time.Sleep(2 * time.Second)
	during := g.stats()
	time.Sleep(time.Second)
	if err := r.Resume(); err != nil {
		t.Fatal(err)
	}
	resumedAt := time.Now()
	threadsMu.Lock()
	maxDuring := maxThreads
	threadsMu.Unlock()
	time.Sleep(3 * time.Second)
	after := g.stats()
	stopLoad()
	close(sampling)
	<-samplerDone
	time.Sleep(time.Second)
	idle := g.stats()

	samples := load.snapshot()
	type agg struct {
		n     int
		codes map[int]int
		lat   []time.Duration
	}
	hung := map[string]*agg{}
	for _, k := range []string{"reqhub", "hmac", "inject", "static"} {
		hung[k] = &agg{codes: map[int]int{}}
	}
	allPassAfter := map[string]int{}
	// With Redis up, the last second before the hang: store-free requests all pass; a
	// store-using one may be refused "busy" when the loaded machine stalls long enough for
	// -store-max-calls calls to be in flight at once (fail closed), but only rarely.
	beforeFails, beforeStore := map[string]int{}, 0
	for _, s := range samples {
		if s.end.Before(pausedAt) && s.start.After(pausedAt.Add(-time.Second)) {
			if s.kind == "reqhub" || s.kind == "hmac" {
				beforeStore++
			}
			if s.code != 200 {
				beforeFails[s.kind]++
			}
		}
	}
	if beforeFails["inject"]+beforeFails["static"] > 0 || (beforeFails["reqhub"]+beforeFails["hmac"])*100 > 3*beforeStore {
		t.Errorf("in the last second before the hang, with Redis up, requests failed: %v of %d store-using", beforeFails, beforeStore)
	}
	var lastFail time.Time
	for _, s := range samples {
		inHang := s.end.After(pausedAt) && s.start.Before(resumedAt)
		if inHang {
			a := hung[s.kind]
			a.n++
			a.codes[s.code]++
			a.lat = append(a.lat, s.latency())
			store := s.kind == "reqhub" || s.kind == "hmac"
			if store && s.latency() > timeout+1500*time.Millisecond {
				t.Errorf("%s request took %v during the hang (store timeout %v)", s.kind, s.latency(), timeout)
			}
			if !store && s.code != 200 {
				t.Errorf("store-free %s answered %d %s during the hang", s.kind, s.code, s.body)
			}
			want := map[string]int{"reqhub": 503, "hmac": 401}[s.kind]
			if store && s.code != 200 && s.code != want {
				t.Errorf("%s answered %d %s during the hang, want 200 or %d", s.kind, s.code, s.body, want)
			}
			if s.kind == "reqhub" && s.code == 503 && reqhubCode(s.body) != "verification_unavailable" {
				t.Errorf("reqhub 503 body %s", s.body)
			}
		}
		if s.start.After(resumedAt) && s.code != 200 && s.end.After(lastFail) {
			lastFail = s.end
			if testing.Verbose() {
				t.Logf("after SIGCONT +%v: %s %d %.80s", s.start.Sub(resumedAt), s.kind, s.code, s.body)
			}
		}
	}
	for _, s := range samples {
		if s.start.After(resumedAt) && s.start.After(lastFail) {
			allPassAfter[s.kind]++
		}
	}
	// A store-free request that waited on the hung store would take the whole 3 s hang; a
	// loaded 2-core machine (and the race detector) can stall any request for a second.
	for _, k := range []string{"inject", "static"} {
		if max := percentile(hung[k].lat, 1); max > 2*time.Second {
			t.Errorf("store-free %s: max latency %v during the hang", k, max)
		}
	}
	for _, k := range []string{"reqhub", "hmac"} {
		refused := hung[k].codes[503] + hung[k].codes[401]
		if refused < 20 {
			t.Errorf("%s: only %d refused during the hang: %v", k, refused, hung[k].codes)
		}
	}
	recovery := lastFail.Sub(resumedAt)
	if lastFail.IsZero() {
		recovery = 0
	}
	if recovery > 3*time.Second || allPassAfter["reqhub"] < 20 || allPassAfter["hmac"] < 20 {
		t.Errorf("no recovery after SIGCONT: last failure %v after, then %v passes", recovery, allPassAfter)
	}
	if bound := before.threads + maxCalls + 24; maxDuring > bound {
		t.Errorf("threads rose from %d to %d during the hang (bound %d)", before.threads, maxDuring, bound)
	}
	if after.threads > before.threads+maxCalls+24 || idle.fds > before.fds+8 {
		t.Errorf("after the hang: %v (before %v)", after, before)
	}
	if n := g.count("circuit open after"); n != 1 {
		t.Errorf("%d circuit-open lines, want 1: %q", n, g.matching("circuit"))
	}
	if n := g.count("circuit closed"); n != 1 {
		t.Errorf("%d circuit-closed lines, want 1: %q", n, g.matching("circuit"))
	}
	storeErrLines := g.count("store failed")
	for _, k := range []string{"reqhub", "hmac", "inject", "static"} {
		a := hung[k]
		t.Logf("FIGURES hang %s: %d requests during the 3 s hang, answers %v, latency p50 %v p99 %v max %v",
			k, a.n, a.codes, percentile(a.lat, 0.5), percentile(a.lat, 0.99), percentile(a.lat, 1))
	}
	t.Logf("FIGURES hang before: in the last second before the hang %d store-using requests, refused %v", beforeStore, beforeFails)
	t.Logf("FIGURES hang: %d store-using + %d store-free workers, -store-max-calls %d, timeout %v; threads before %d, max during %d, after %d, idle %d; before {%v} during {%v} after {%v} idle {%v}; recovered %v after SIGCONT (then %v passes); breaker %q; store-error log lines %d",
		storeWorkers, freeWorkers, maxCalls, timeout, before.threads, maxDuring, after.threads, idle.threads, before, during, after, idle,
		recovery.Round(time.Millisecond), allPassAfter, g.matching("circuit"), storeErrLines)
	if testing.Verbose() {
		t.Logf("store error lines: %q", g.matching("store failed"))
	}
}
