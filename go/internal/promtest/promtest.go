// Package promtest runs a real Prometheus server (Debian's prometheus package) for tests:
// it scrapes the targets a test names, answers queries through its HTTP API, and promtool
// checks expositions.
package promtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Tools are the prometheus and promtool binaries.
type Tools struct{ Prometheus, Promtool string }

// Find returns the installed binaries, or skips the test when they are missing.
func Find(t *testing.T) Tools {
	t.Helper()
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("SKIP: prometheus is not installed (Debian package prometheus; scripts/setup.sh installs it)")
	}
	tool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("SKIP: promtool is not installed (Debian package prometheus)")
	}
	return Tools{prom, tool}
}

// FreeAddr is a free loopback TCP address.
func FreeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Get fetches u: status, headers and body.
func Get(t *testing.T, u string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// Start runs prometheus on a free loopback port scraping every target (job name to address)
// each second, once promtool accepted the configuration, and waits until it is ready; it is
// stopped when the test ends. Returns its address.
func (tools Tools) Start(t *testing.T, targets map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	config := "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n"
	for job, addr := range targets {
		config += fmt.Sprintf("  - job_name: %s\n    static_configs:\n      - targets: ['%s']\n", job, addr)
	}
	file := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(file, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(tools.Promtool, "check", "config", file).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
	addr := FreeAddr(t)
	prom := exec.Command(tools.Prometheus, "--config.file="+file, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	logFile, _ := os.Create(filepath.Join(dir, "prometheus.log"))
	prom.Stdout, prom.Stderr = logFile, logFile
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		prom.Process.Kill()
		prom.Wait()
	})
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get("http://" + addr + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return addr
			}
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
	t.Fatalf("prometheus did not become ready:\n%s", b)
	return ""
}

// Query runs an instant query through Prometheus' HTTP API; ok is false when the result is
// empty.
func Query(t *testing.T, prom, query string) (float64, bool) {
	t.Helper()
	code, _, body := Get(t, "http://"+prom+"/api/v1/query?query="+url.QueryEscape(query))
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

// CheckMetrics fails the test unless promtool accepts the exposition text.
func (tools Tools) CheckMetrics(t *testing.T, text string) {
	t.Helper()
	cmd := exec.Command(tools.Promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s\n--- exposition:\n%s", err, out, text)
	}
}

// Await polls Prometheus until every query in want reports its value, failing the test when
// that has not happened within the timeout; returns how long it took.
func Await(t *testing.T, prom string, want map[string]float64, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for deadline := start.Add(timeout); ; time.Sleep(250 * time.Millisecond) {
		last := map[string]float64{}
		match := true
		for q, v := range want {
			got, ok := Query(t, prom, q)
			if ok {
				last[q] = got
			}
			match = match && ok && got == v
		}
		if match {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus never reported the counts sent: got %v, want %v", last, want)
		}
	}
}

// Sample finds, in an exposition, the sample of name whose labels include every one of
// labels (`k="v"`); ok is false when there is none.
func Sample(text, name string, labels ...string) (v float64, ok bool) {
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		all := true
		for _, l := range labels {
			all = all && strings.Contains(line, l)
		}
		if all {
			v, err := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
			return v, err == nil
		}
	}
	return 0, false
}
