// Package echo is an upstream service that answers every request with a JSON description of
// what it received, so tests and the demo can see what the gateway sent upstream.
package echo

import (
	"encoding/json"
	"io"
	"net/http"
	"unicode/utf8"
)

// Seen is the JSON body the echo service answers with.
type Seen struct {
	Method     string              `json:"method"`
	Path       string              `json:"path"`
	RawQuery   string              `json:"raw_query"`
	RequestURI string              `json:"request_uri"`
	Host       string              `json:"host"`
	Headers    map[string][]string `json:"headers"`
	Body       string              `json:"body"`
	BodyBytes  int                 `json:"body_bytes"`
}

// MaxBody is the most body bytes the echo service reads.
const MaxBody = 1 << 20

// Handler answers 200 with a Seen body, Content-Type application/json and the headers
// Server: echo and X-Upstream: echo (so response hooks have something to edit).
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, MaxBody))
		seen := Seen{
			Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, RequestURI: r.RequestURI,
			Host: r.Host, Headers: r.Header, BodyBytes: len(body),
		}
		if utf8.Valid(body) {
			seen.Body = string(body)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Server", "echo")
		w.Header().Set("X-Upstream", "echo")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(seen)
	})
}
