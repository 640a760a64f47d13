package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"coprocess/go/internal/echo"
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

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "RUN_GATEWAY_MAIN=1", "TEST_UPSTREAM="+upstream.URL,
		"GATEWAY_ARGS=-listen "+addr+" -apps "+apps+" -config "+config+" -trace -log-level debug")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1000)
	go func() {
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	defer cmd.Process.Kill()
	waitFor := func(sub string) string {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("the gateway exited before logging %q", sub)
				}
				if strings.Contains(l, sub) {
					return l
				}
			case <-timeout:
				t.Fatalf("no log line with %q", sub)
			}
		}
	}
	waitFor("listening on http://" + addr + ": 1 APIs")

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/one/x"); code != 200 || !strings.Contains(body, `"X-Api": [`) {
		t.Fatalf("one: %d %s", code, body)
	}
	waitFor("hook Pre InjectHeaders: set_headers 1")
	if code, _ := get("/two/x"); code != 404 {
		t.Fatalf("two before reload: %d", code)
	}

	os.WriteFile(filepath.Join(apps, "two.json"), []byte(def("two")), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor("reload: 2 APIs loaded")
	if code, _ := get("/two/x"); code != 200 {
		t.Fatalf("two after reload: %d", code)
	}

	os.WriteFile(filepath.Join(apps, "three.json"), []byte(`{"api_id": `), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor("three.json")
	if code, _ := get("/two/x"); code != 200 {
		t.Fatalf("two after a refused reload: %d", code)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	waitFor("shutting down")
	done := make(chan error, 1)
	go func() {
		for range lines {
		}
		done <- cmd.Wait()
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
