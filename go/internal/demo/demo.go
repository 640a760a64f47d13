// Package demo runs the demo requests of go/demo/requests against a gateway and prints
// what happened: the status, what the upstream echo service saw, and chosen response
// headers. A requests file is a JSON array of Request; files run in name order.
package demo

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"coprocess/go/internal/echo"
)

// Request is one demo request. Files are named NN-<api>.json and run in name order.
type Request struct {
	Title   string            `json:"title"`
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
	// Expect is the status the request must get.
	Expect int `json:"expect"`
	// Show lists response headers to print (present or absent).
	Show []string `json:"show"`
}

// Group is the requests of one file.
type Group struct {
	Name     string
	Requests []Request
}

// Load reads every *.json file of dir.
func Load(dir string) ([]Group, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var groups []Group
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var reqs []Request
		if err := json.Unmarshal(text, &reqs); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Base(f), err)
		}
		for i, r := range reqs {
			if r.Method == "" || !strings.HasPrefix(r.Path, "/") || r.Expect == 0 {
				return nil, fmt.Errorf("%s: request %d needs method, path and expect", filepath.Base(f), i)
			}
		}
		groups = append(groups, Group{Name: groupName(f), Requests: reqs})
	}
	return groups, nil
}

// groupName is the file name without ".json" and without an ordering prefix ("10-").
func groupName(file string) string {
	name := strings.TrimSuffix(filepath.Base(file), ".json")
	if i := strings.IndexByte(name, '-'); i > 0 && strings.Trim(name[:i], "0123456789") == "" {
		name = name[i+1:]
	}
	return name
}

// Outcome is what one request got.
type Outcome struct {
	Status int
	Header http.Header
	Body   string
	Seen   *echo.Seen // nil when the upstream did not answer
}

var client = &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// Send sends r to the gateway at base ("http://host:port").
func Send(base string, r Request) (Outcome, error) {
	var body io.Reader
	if r.Body != "" {
		body = strings.NewReader(r.Body)
	}
	req, err := http.NewRequest(r.Method, base+r.Path, body)
	if err != nil {
		return Outcome{}, err
	}
	req.Header.Set("User-Agent", "coprocess-demo")
	for k, v := range r.Headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return Outcome{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Outcome{}, err
	}
	out := Outcome{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		var seen echo.Seen
		if json.Unmarshal(b, &seen) == nil && seen.RequestURI != "" {
			out.Seen = &seen
		}
	}
	return out, nil
}

// Run sends every request, prints each outcome to w and returns how many did not get
// their expected status.
func Run(base string, groups []Group, w io.Writer) int {
	failures := 0
	for _, g := range groups {
		for _, r := range g.Requests {
			fmt.Fprintf(w, "\n== %s: %s\n", g.Name, r.Title)
			fmt.Fprintf(w, "   %s %s%s\n", r.Method, r.Path, headerLine(r.Headers))
			o, err := Send(base, r)
			if err != nil {
				fmt.Fprintf(w, "   FAILED: %v\n", err)
				failures++
				continue
			}
			Print(w, r, o)
			if o.Status != r.Expect {
				failures++
			}
		}
	}
	return failures
}

// Print describes an outcome.
func Print(w io.Writer, r Request, o Outcome) {
	mark := "ok"
	if o.Status != r.Expect {
		mark = fmt.Sprintf("UNEXPECTED, wanted %d", r.Expect)
	}
	fmt.Fprintf(w, "   -> %d %s (%s)\n", o.Status, http.StatusText(o.Status), mark)
	if o.Seen != nil {
		fmt.Fprintf(w, "   upstream saw %s %s\n", o.Seen.Method, o.Seen.RequestURI)
		keys := make([]string, 0, len(o.Seen.Headers))
		for k := range o.Seen.Headers {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "      %s: %s\n", k, strings.Join(o.Seen.Headers[k], ", "))
		}
	} else {
		fmt.Fprintf(w, "   answered by the gateway: %s\n", strings.TrimSpace(o.Body))
	}
	for _, h := range r.Show {
		v := o.Header.Get(h)
		if v == "" {
			v = "(absent)"
		}
		fmt.Fprintf(w, "   client got %s: %s\n", h, v)
	}
}

func headerLine(h map[string]string) string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  [%s: %s]", k, h[k])
	}
	return b.String()
}
