// Command demo runs the project's demo end to end: a Redis (when redis-server is
// installed), an upstream echo service and the gateway binary on 127.0.0.1 with the API
// definitions of <dir>/apps, then the requests of <dir>/requests, a SIGHUP reload, and
// the events the plugins fired. It stops everything it started and exits 1 when a request
// did not get its expected status.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"coprocess/go/internal/demo"
	"coprocess/go/internal/echo"
	"coprocess/go/internal/testredis"
)

// logTail collects the gateway's log lines.
type logTail struct {
	mu    sync.Mutex
	lines []string
}

func (l *logTail) follow(r io.Reader) {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		l.mu.Lock()
		l.lines = append(l.lines, s.Text())
		l.mu.Unlock()
	}
}

func (l *logTail) matching(sub string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range l.lines {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return out
}

func (l *logTail) all() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func main() {
	dir := flag.String("dir", "go/demo", "demo directory (apps/, requests/, coprocess.json)")
	gatewayBin := flag.String("gateway", "build/go/gateway", "the gateway binary")
	flag.Parse()
	os.Exit(run(*dir, *gatewayBin))
}

func run(dir, gatewayBin string) int {
	start := time.Now()
	fmt.Println("coprocess demo: a Go API gateway running the Rust plugin library in-process through cgo")

	// 1. Redis for the plugin store, when installed.
	var redisArgs []string
	if r, err := testredis.Start(); err == nil {
		defer r.Stop()
		redisArgs = []string{"-redis", r.Addr, "-redis-prefix", "coprocess-demo:"}
		fmt.Printf("   redis-server on %s holds the plugin store (TykStoreData/TykGetData)\n", r.Addr)
	} else if errors.Is(err, testredis.ErrNoServer) {
		fmt.Println("   redis-server is not installed: the plugin store is the gateway's in-memory store")
	} else {
		fmt.Fprintf(os.Stderr, "demo: starting redis-server: %v\n", err)
		return 1
	}

	// 2. The upstream echo service.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	keys, err := demo.UpstreamKeys(filepath.Join(dir, "upstream-keys.json"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	upstream := &http.Server{Handler: echo.NewHandler(echo.Options{VerifyKeys: keys}), ReadHeaderTimeout: 5 * time.Second}
	go upstream.Serve(ln)
	defer upstream.Close()
	upstreamURL := "http://" + ln.Addr().String()
	fmt.Printf("   upstream echo service on %s (answers with what it received, verifies HTTP signatures with %d keys)\n", upstreamURL, len(keys))

	// 3. The gateway, a separate process.
	addr, err := freeAddr()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	args := append([]string{"-listen", addr, "-apps", filepath.Join(dir, "apps"), "-config", filepath.Join(dir, "coprocess.json")}, redisArgs...)
	cmd := exec.Command(gatewayBin, args...)
	cmd.Env = append(os.Environ(), "DEMO_UPSTREAM="+upstreamURL)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	cmd.Stdout = os.Stdout
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "demo: starting %s: %v\n", gatewayBin, err)
		return 1
	}
	logs := &logTail{}
	followed := make(chan struct{})
	go func() { logs.follow(stderr); close(followed) }()
	exited := make(chan error, 1)
	go func() { <-followed; exited <- cmd.Wait() }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	defer stop()

	base := "http://" + addr
	if err := waitHealthy(base, exited); err != nil {
		fmt.Fprintf(os.Stderr, "demo: the gateway did not come up: %v\n%s\n", err, logs.all())
		return 1
	}
	for _, l := range logs.matching("listening on") {
		fmt.Println("   gateway:", trimLog(l))
	}

	// 4. The demo requests.
	groups, err := demo.Load(filepath.Join(dir, "requests"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	failures := demo.Run(base, groups, os.Stdout)

	// 5. SIGHUP: the gateway reloads its API definitions and the library's configuration,
	// and keeps serving.
	fmt.Println("\n== SIGHUP: hot reload")
	_ = cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for len(logs.matching("reload:")) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	for _, l := range logs.matching("reload:") {
		fmt.Println("   gateway:", trimLog(l))
	}
	if len(groups) > 0 && len(groups[0].Requests) > 0 {
		r := groups[0].Requests[0]
		o, err := demo.Send(base, r)
		if err != nil || o.Status != r.Expect {
			fmt.Printf("   after the reload %q got %d (%v)\n", r.Title, o.Status, err)
			failures++
		} else {
			fmt.Printf("   after the reload: %s %s -> %d %s\n", r.Method, r.Path, o.Status, http.StatusText(o.Status))
		}
	}

	// 6. Events: AuthFailure went to the native event handlers (LogEvent logs through
	// CoProcessLog, RelayEvent fires it back through TykTriggerEvent).
	stop()
	fmt.Println("\n== events handled by the plugins (from the gateway's log)")
	evs := logs.matching(" event ")
	for _, l := range evs {
		fmt.Println("  ", shorten(trimLog(l), 160))
	}
	if len(evs) == 0 {
		fmt.Println("   (none)")
	}
	if errs := logs.matching("[error]"); len(errs) > 0 {
		fmt.Println("\n== gateway errors")
		for _, l := range errs {
			fmt.Println("  ", trimLog(l))
		}
	}

	fmt.Printf("\ndemo finished in %.1fs: ", time.Since(start).Seconds())
	if failures > 0 {
		fmt.Printf("%d request(s) did not get the expected status\n", failures)
		return 1
	}
	fmt.Println("every request got the expected status")
	return 0
}

func waitHealthy(base string, exited <-chan error) error {
	deadline := time.Now().Add(15 * time.Second)
	c := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("the gateway exited: %v", err)
		default:
		}
		if resp, err := c.Get(base + "/hello"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("no answer on /hello within 15s")
}

// trimLog drops the log prefix and timestamp ("gateway 2024/05/03 12:00:42.123456 ").
func trimLog(l string) string {
	f := strings.SplitN(l, " ", 4)
	if len(f) == 4 && f[0] == "gateway" {
		return f[3]
	}
	return l
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
