// Package echo is an upstream service that answers every request with a JSON description of
// what it received, so tests and the demo can see what the gateway sent upstream.
package echo

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"coprocess/go/internal/httpsig"
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
	// Signatures: for each Authorization or Signature header carrying an HTTP signature,
	// what the echo service's own verifier (package httpsig, Go's standard crypto) found,
	// when it was given keys.
	Signatures []httpsig.Result `json:"signatures,omitempty"`
}

// Options configure the echo service.
type Options struct {
	// VerifyKeys, when non-nil, makes the service verify the draft-cavage signatures it
	// receives in Authorization or Signature against these keys (by keyId). Signatures with
	// a keyId it has no key for are not reported (they were meant for someone else).
	VerifyKeys map[string]httpsig.Key
}

// MaxBody is the most body bytes the echo service reads.
const MaxBody = 1 << 20

// Handler answers 200 with a Seen body, Content-Type application/json and the headers
// Server: echo and X-Upstream: echo (so response hooks have something to edit).
func Handler() http.Handler { return NewHandler(Options{}) }

// NewHandler is Handler with options.
func NewHandler(opts Options) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, MaxBody))
		seen := Seen{
			Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, RequestURI: r.RequestURI,
			Host: r.Host, Headers: r.Header, BodyBytes: len(body),
		}
		if utf8.Valid(body) {
			seen.Body = string(body)
		}
		if opts.VerifyKeys != nil {
			for _, h := range []string{"Authorization", "Signature"} {
				if v := r.Header.Get(h); strings.Contains(strings.ToLower(v), "signature=") {
					// Only signatures meant for this service: a keyId it holds a key for
					// (a client's own signature to the gateway may be forwarded too).
					if res := httpsig.Verify(r, h, opts.VerifyKeys); opts.VerifyKeys[res.KeyID] != (httpsig.Key{}) || res.KeyID == "" {
						seen.Signatures = append(seen.Signatures, res)
					}
				}
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Server", "echo")
		w.Header().Set("X-Upstream", "echo")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(seen)
	})
}
