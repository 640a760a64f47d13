// Package demo runs the demo requests of go/demo/requests against a gateway and prints
// what happened: the status, what the upstream echo service saw, and chosen response
// headers. A requests file is a JSON array of Request; files run in name order.
package demo

import (
	"bytes"
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
	"coprocess/go/internal/httpsig"
	"coprocess/go/internal/reqhub"
)

// Request is one demo request. Files are named NN-<api>.json and run in name order.
type Request struct {
	Title   string            `json:"title"`
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
	// Sign makes the client sign the request for HMACSignatureAuth when it is sent.
	Sign *Sign `json:"sign,omitempty"`
	// ReqHub makes the client add the five ReqHub client headers when it is sent.
	ReqHub *ReqHubClient `json:"reqhub,omitempty"`
	// Replay sends the previous request's headers again exactly (Date, signature, nonce).
	Replay bool `json:"replay,omitempty"`
	// Expect is the status the request must get.
	Expect int `json:"expect"`
	// ExpectBody, when set, must appear in the answer's body.
	ExpectBody string `json:"expect_body,omitempty"`
	// ExpectVerified lists headers (Authorization, Signature) whose HTTP signature the
	// upstream must have verified.
	ExpectVerified []string `json:"expect_verified,omitempty"`
	// Show lists response headers to print (present or absent).
	Show []string `json:"show"`
}

// Sign is how the demo client signs a request for HMACSignatureAuth (draft-cavage HTTP
// signatures, computed with Go's crypto/hmac when the request is sent).
type Sign struct {
	KeyID     string `json:"keyId"`
	Secret    string `json:"secret"`
	Algorithm string `json:"algorithm"`
	// Headers to sign (default: date); "(request-target)" is the method and path.
	Headers []string `json:"headers"`
	// DateOffset shifts the Date header from now (a Go duration, "-1h": an old request).
	DateOffset string `json:"date_offset,omitempty"`
	// OmitDate sends no Date header (the signature covers the other headers).
	OmitDate bool `json:"omit_date,omitempty"`
}

// ReqHubClient is a ReqHub client key pair: the client headers are computed with Go's
// crypto/hmac, a fresh nonce and the current time when the request is sent.
type ReqHubClient struct {
	PublicKey  string `json:"public_key"`
	PrivateKey string `json:"private_key"`
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
			if r.Replay && (i == 0 || r.Sign != nil || r.ReqHub != nil) {
				return nil, fmt.Errorf("%s: request %d: replay repeats the previous request of the file, alone", filepath.Base(f), i)
			}
			if r.Sign != nil {
				if _, err := httpsig.HMAC(r.Sign.Algorithm, "", ""); err != nil || r.Sign.KeyID == "" {
					return nil, fmt.Errorf("%s: request %d: sign needs keyId and an hmac-* algorithm", filepath.Base(f), i)
				}
				if r.Sign.DateOffset != "" {
					if _, err := time.ParseDuration(r.Sign.DateOffset); err != nil {
						return nil, fmt.Errorf("%s: request %d: date_offset: %v", filepath.Base(f), i, err)
					}
				}
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

// Prepare computes the headers r is sent with: its own headers plus, when the request is
// sent, the HMAC signature (Sign) or the ReqHub client headers (ReqHub); a replay gets
// exactly prev, the headers of the request before it.
func Prepare(r Request, prev map[string]string) (map[string]string, error) {
	if r.Replay {
		if prev == nil {
			return nil, fmt.Errorf("nothing to replay")
		}
		return prev, nil
	}
	h := map[string]string{}
	for k, v := range r.Headers {
		h[k] = v
	}
	if s := r.Sign; s != nil {
		hdr := http.Header{}
		for k, v := range h {
			hdr.Set(k, v)
		}
		names := s.Headers
		if len(names) == 0 {
			names = []string{"date"}
		}
		if s.OmitDate {
			var kept []string
			for _, n := range names {
				if !strings.EqualFold(n, "date") {
					kept = append(kept, n)
				}
			}
			names = kept
		} else {
			var offset time.Duration
			if s.DateOffset != "" {
				offset, _ = time.ParseDuration(s.DateOffset)
			}
			hdr.Set("Date", time.Now().Add(offset).UTC().Format(http.TimeFormat))
			h["Date"] = hdr.Get("Date")
		}
		ss, err := httpsig.SigningString(r.Method, r.Path, hdr, names)
		if err != nil {
			return nil, err
		}
		sig, err := httpsig.SignHMAC(s.Algorithm, s.Secret, ss)
		if err != nil {
			return nil, err
		}
		h["Authorization"] = httpsig.Params{KeyID: s.KeyID, Algorithm: s.Algorithm, Headers: names, Signature: sig}.String()
	}
	if c := r.ReqHub; c != nil {
		signed, err := reqhub.SignNow(c.PublicKey, c.PrivateKey, r.Path)
		if err != nil {
			return nil, err
		}
		for k, v := range signed {
			h[k] = v
		}
	}
	return h, nil
}

// Send sends r to the gateway at base ("http://host:port").
func Send(base string, r Request) (Outcome, error) {
	h, err := Prepare(r, nil)
	if err != nil {
		return Outcome{}, err
	}
	return SendHeaders(base, r, h)
}

// SendHeaders sends r with exactly the headers h.
func SendHeaders(base string, r Request, h map[string]string) (Outcome, error) {
	var body io.Reader
	if r.Body != "" {
		body = strings.NewReader(r.Body)
	}
	req, err := http.NewRequest(r.Method, base+r.Path, body)
	if err != nil {
		return Outcome{}, err
	}
	req.Header.Set("User-Agent", "coprocess-demo")
	for k, v := range h {
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
// what they expect.
func Run(base string, groups []Group, w io.Writer) int {
	failures := 0
	for _, g := range groups {
		var prev map[string]string
		for _, r := range g.Requests {
			fmt.Fprintf(w, "\n== %s: %s\n", g.Name, r.Title)
			h, err := Prepare(r, prev)
			if err != nil {
				fmt.Fprintf(w, "   FAILED: %v\n", err)
				failures++
				continue
			}
			prev = h
			fmt.Fprintf(w, "   %s %s%s\n", r.Method, r.Path, headerLine(r.Headers))
			printAdded(w, r, h)
			o, err := SendHeaders(base, r, h)
			if err != nil {
				fmt.Fprintf(w, "   FAILED: %v\n", err)
				failures++
				continue
			}
			Print(w, r, o)
			if problems := Check(r, o); len(problems) > 0 {
				for _, p := range problems {
					fmt.Fprintf(w, "   UNEXPECTED: %s\n", p)
				}
				failures++
			}
		}
	}
	return failures
}

// Check lists how an outcome differs from what the request expects.
func Check(r Request, o Outcome) []string {
	var problems []string
	if o.Status != r.Expect {
		problems = append(problems, fmt.Sprintf("status %d, wanted %d", o.Status, r.Expect))
	}
	if r.ExpectBody != "" && !strings.Contains(o.Body, r.ExpectBody) {
		problems = append(problems, fmt.Sprintf("the answer lacks %q", r.ExpectBody))
	}
	for _, h := range r.ExpectVerified {
		ok := false
		if o.Seen != nil {
			for _, s := range o.Seen.Signatures {
				ok = ok || (strings.EqualFold(s.Header, h) && s.Verified)
			}
		}
		if !ok {
			problems = append(problems, fmt.Sprintf("the upstream did not verify a signature in %s", h))
		}
	}
	return problems
}

// printAdded shows the headers the client computed (signature, ReqHub, replay).
func printAdded(w io.Writer, r Request, h map[string]string) {
	var keys []string
	for k := range h {
		if _, static := r.Headers[k]; !static {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return
	}
	sort.Strings(keys)
	label := "client computed:"
	switch {
	case r.Replay:
		label = "the same headers again:"
	case r.Sign != nil:
		label = fmt.Sprintf("client signed (%s, Go crypto/hmac):", r.Sign.Algorithm)
	case r.ReqHub != nil:
		label = "client ReqHub headers (Go crypto/hmac, fresh nonce):"
	}
	fmt.Fprintf(w, "   %s\n", label)
	for _, k := range keys {
		fmt.Fprintf(w, "      %s: %s\n", k, h[k])
	}
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
		for _, s := range o.Seen.Signatures {
			verdict := "VALID"
			if !s.Verified {
				verdict = "NOT VALID: " + s.Reason
			}
			fmt.Fprintf(w, "   upstream checked the %s signature itself (Go crypto, keyId %q, %s): %s\n", s.Header, s.KeyID, s.Algorithm, verdict)
			if s.SigningString != "" {
				fmt.Fprintf(w, "      signing string it rebuilt from what it received:\n")
				for _, line := range strings.Split(s.SigningString, "\n") {
					fmt.Fprintf(w, "         %s\n", shorten(line, 110))
				}
			}
		}
	} else {
		fmt.Fprintf(w, "   answered by the gateway: %s\n", oneLine(o.Body))
	}
	for _, h := range r.Show {
		v := o.Header.Get(h)
		if v == "" {
			v = "(absent)"
		}
		fmt.Fprintf(w, "   client got %s: %s\n", h, v)
	}
}

// oneLine is a body on one line: JSON compacted (the gateway's error template spans lines).
func oneLine(body string) string {
	var b bytes.Buffer
	if json.Compact(&b, []byte(body)) == nil {
		return b.String()
	}
	return strings.TrimSpace(body)
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
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

// UpstreamKeys reads the keys the demo's echo upstream verifies signatures with: a JSON
// object {"<keyId>": {"secret": "<HMAC secret>"} or {"public_key": "<RSA public key PEM>"}}.
func UpstreamKeys(file string) (map[string]httpsig.Key, error) {
	text, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var raw map[string]struct {
		Secret    string `json:"secret"`
		PublicKey string `json:"public_key"`
	}
	if err := json.Unmarshal(text, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(file), err)
	}
	keys := map[string]httpsig.Key{}
	for id, k := range raw {
		switch {
		case k.Secret != "" && k.PublicKey == "":
			keys[id] = httpsig.Key{Secret: k.Secret}
		case k.PublicKey != "" && k.Secret == "":
			pub, err := httpsig.ParsePublicKey(k.PublicKey)
			if err != nil {
				return nil, fmt.Errorf("%s: key %q: %w", filepath.Base(file), id, err)
			}
			keys[id] = httpsig.Key{PublicKey: pub}
		default:
			return nil, fmt.Errorf("%s: key %q needs exactly one of secret and public_key", filepath.Base(file), id)
		}
	}
	return keys, nil
}
