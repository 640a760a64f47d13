package grpcclient

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"coprocess/go/internal/echo"
	"coprocess/go/internal/promtest"
	"coprocess/go/pb"

	"google.golang.org/grpc/codes"
)

// gatewayProc is the Go gateway (go/cmd/gateway, built here) serving one keyless API with
// InjectHeaders through the library in-process, its metrics on a listener of their own.
type gatewayProc struct {
	addr, metrics string
}

func startGateway(t *testing.T, upstream string) *gatewayProc {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "gateway")
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatal("no go tool in PATH to build the gateway")
	}
	build := exec.Command(goTool, "build", "-o", bin, "coprocess/go/cmd/gateway")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the gateway: %v\n%s", err, out)
	}
	apps := filepath.Join(dir, "apps")
	os.Mkdir(apps, 0o700)
	def := `{"api_id": "inject", "use_keyless": true,
	  "proxy": {"listen_path": "/inject/", "strip_listen_path": true, "target_url": "` + upstream + `"},
	  "custom_middleware": {"driver": "native", "pre": [{"name": "InjectHeaders"}]},
	  "config_data": {"InjectHeaders": {"add": {"X-Injected": "1"}}}}`
	if err := os.WriteFile(filepath.Join(apps, "inject.json"), []byte(def), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &gatewayProc{addr: promtest.FreeAddr(t), metrics: promtest.FreeAddr(t)}
	cmd := exec.Command(bin, "-listen", g.addr, "-apps", apps, "-metrics-listen", g.metrics)
	cmd.Env = append(os.Environ(), "COPROCESS_CONFIG=")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	listening := make(chan struct{})
	var once sync.Once
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening on http://"+g.addr) {
				once.Do(func() { close(listening) })
			}
		}
	}()
	select {
	case <-listening:
	case <-time.After(20 * time.Second):
		t.Fatal("the gateway did not start listening within 20 s")
	}
	return g
}

// A real Prometheus server (Debian's prometheus) scrapes the gRPC server's metrics listener
// (--metrics-listen) beside the Go gateway's: after a known number of Dispatch calls (passing,
// rejected and failing) and of gateway requests, its HTTP API reports coprocess_dispatch_total
// of each job as sent (the same metric names from both hosts, told apart by the job), and
// the server's own coprocess_grpc_calls_total by gRPC code; promtool accepts the server's
// whole exposition.
func TestPrometheusScrapesTheServer(t *testing.T) {
	tools := promtest.Find(t)
	dir := t.TempDir()
	writeJSON(t, filepath.Join(dir, "coprocess.json"), map[string]interface{}{
		"InjectHeaders":   map[string]interface{}{"add": map[string]string{"X-Added": "yes"}},
		"StaticTokenAuth": map[string]interface{}{"header": "Authorization", "tokens": map[string]interface{}{"tok-1": map[string]interface{}{}}, "reject_code": 403},
	})
	s := startServer(t, serverArgs(dir, "--metrics-listen", "127.0.0.1:0")...)
	if s.metrics == "" {
		t.Fatal("the serving line names no metrics address")
	}
	upstream := httptest.NewServer(echo.Handler())
	defer upstream.Close()
	g := startGateway(t, upstream.URL)
	prom := tools.Start(t, map[string]string{"coprocess-grpc": s.metrics, "gateway": g.metrics})

	// Over both transports, as the gateway's gRPC driver would dial.
	const passed, rejected, invalid, unknown, viaGateway = 23, 9, 3, 2, 13
	conns := s.conns(t)
	for i := 0; i < passed; i++ {
		conn := conns[[]string{"tcp", "unix"}[i%2]]
		if out, err := dispatch(conn, request(pb.HookType_Pre, "InjectHeaders", nil)); err != nil || out.Request.SetHeaders["X-Added"] != "yes" {
			t.Fatalf("InjectHeaders: %v %v", err, out)
		}
	}
	for i := 0; i < rejected; i++ {
		out, err := dispatch(conns["unix"], request(pb.HookType_CustomKeyCheck, "StaticTokenAuth", map[string]string{"Authorization": "nope"}))
		if code, _ := overrides(out); err != nil || code != 403 {
			t.Fatalf("StaticTokenAuth bad token: %v %d", err, code)
		}
	}
	for i := 0; i < invalid; i++ {
		st, lib := dispatchRaw(conns["tcp"], []byte{0xff, 0xff, 0xff})
		if st.Code() != codes.InvalidArgument || lib != "-2" {
			t.Fatalf("bytes that are not an Object: %v %s", st, lib)
		}
	}
	for i := 0; i < unknown; i++ {
		_, err := dispatch(conns["tcp"], request(pb.HookType_Pre, "Nope", nil))
		expectCode(t, "unknown middleware", err, codes.NotFound)
	}
	for i := 0; i < viaGateway; i++ {
		resp, err := http.Get("http://" + g.addr + "/inject/x")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("gateway: %d", resp.StatusCode)
		}
	}

	grpcJob := `job="coprocess-grpc"`
	want := map[string]float64{
		`coprocess_dispatch_total{` + grpcJob + `,middleware="InjectHeaders",hook="Pre",outcome="passed"}`:                passed,
		`coprocess_dispatch_total{` + grpcJob + `,middleware="StaticTokenAuth",hook="CustomKeyCheck",outcome="rejected"}`: rejected,
		`coprocess_dispatch_total{` + grpcJob + `,middleware="unregistered",hook="Unknown",outcome="error"}`:              invalid,
		`coprocess_dispatch_total{` + grpcJob + `,middleware="unregistered",hook="Pre",outcome="error"}`:                  unknown,
		`sum(coprocess_dispatch_total{` + grpcJob + `})`:                                                                  passed + rejected + invalid + unknown,
		`coprocess_grpc_calls_total{` + grpcJob + `,method="Dispatch",code="OK"}`:                                         passed + rejected,
		`coprocess_grpc_calls_total{` + grpcJob + `,method="Dispatch",code="INVALID_ARGUMENT"}`:                           invalid,
		`coprocess_grpc_calls_total{` + grpcJob + `,method="Dispatch",code="NOT_FOUND"}`:                                  unknown,
		`coprocess_grpc_call_duration_seconds_count{` + grpcJob + `,method="Dispatch"}`:                                   passed + rejected + invalid + unknown,
		`coprocess_grpc_connections_open{` + grpcJob + `}`:                                                                2,
		`coprocess_dispatch_total{job="gateway",middleware="InjectHeaders",hook="Pre",outcome="passed"}`:                  viaGateway,
		// The gateway dispatches InjectHeaders once per request and nothing else for this API.
		`sum(coprocess_dispatch_total{job="gateway"})`: viaGateway,
		`up{` + grpcJob + `}`:                          1,
		`up{job="gateway"}`:                            1,
	}
	took := promtest.Await(t, prom, want, 30*time.Second)
	t.Logf("FIGURES prometheus: %d passing, %d rejected, %d invalid, %d unknown Dispatch calls to coprocess-grpc and %d gateway requests; "+
		"Prometheus reported them %v after the last one", passed, rejected, invalid, unknown, viaGateway, took.Round(time.Millisecond))

	// promtool accepts the exposition Prometheus scraped, byte for byte as served.
	code, header, text := promtest.Get(t, "http://"+s.metrics+"/metrics")
	if code != 200 || header.Get("Content-Type") != "text/plain; version=0.0.4; charset=utf-8" {
		t.Fatalf("/metrics: %d %q", code, header.Get("Content-Type"))
	}
	tools.CheckMetrics(t, text)
}
