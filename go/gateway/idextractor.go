package gateway

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"mime"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// idExtractor is the gateway's CustomKeyCheck ID extractor (gateway/coprocess_id_extractor.go):
// before the auth_check hook it derives a session id from the request; while the session
// stored under that id has an id_extractor_deadline in the future, the plugin is not called
// and the stored session is the request's. Implemented: extract_with "value" (from header
// or form) and "regex" (from header, body or form). Not implemented: "xpath" (refused at
// load).
type idExtractor struct {
	from       string // "header", "form", "body" (regex only); anything else extracts ""
	with       string // "value" or "regex"
	headerName string
	paramName  string
	regex      *regexp.Regexp // nil: regex_expression empty or invalid (every request is 400)
	regexIndex int
	orgID      string
}

// newIDExtractor mirrors newExtractor: nil when disabled or extract_with is not a known
// extractor. extractor_config is decoded like the gateway's mapstructure.Decode:
// header_name, param_name, regex_expression, regex_match_index.
func newIDExtractor(def IDExtractorDefinition, orgID string) (*idExtractor, error) {
	if def.Disabled {
		return nil, nil
	}
	e := &idExtractor{from: def.ExtractFrom, with: def.ExtractWith, orgID: orgID}
	switch def.ExtractWith {
	case "value", "regex":
	case "xpath":
		return nil, fmt.Errorf("extract_with xpath is not supported by this gateway")
	default:
		return nil, nil
	}
	str := func(key string) (string, error) {
		v, ok := def.ExtractorConfig[key]
		if !ok {
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("extractor_config.%s must be a string", key)
		}
		return s, nil
	}
	var err error
	if e.headerName, err = str("header_name"); err != nil {
		return nil, err
	}
	if e.paramName, err = str("param_name"); err != nil {
		return nil, err
	}
	expr, err := str("regex_expression")
	if err != nil {
		return nil, err
	}
	if v, ok := def.ExtractorConfig["regex_match_index"]; ok {
		f, ok := v.(float64)
		if !ok {
			return nil, fmt.Errorf("extractor_config.regex_match_index must be a number")
		}
		if f < 0 {
			return nil, fmt.Errorf("extractor_config.regex_match_index must not be negative")
		}
		e.regexIndex = int(f)
	}
	if e.with == "regex" && expr != "" {
		// An invalid expression is not a load error in the gateway: every request gets 400.
		e.regex, _ = regexp.Compile(expr)
	}
	return e, nil
}

// errAuthFieldMissing is the extractor's refusal: 400 "Authorization field missing".
var errAuthFieldMissing = fmt.Errorf("Authorization field missing")

// extract is the extractor's input from the request (header, form or body).
func (e *idExtractor) extract(st *reqState) (string, error) {
	r := st.r
	switch e.from {
	case "header":
		v := r.Header.Get(e.headerName)
		if v == "" {
			return "", fmt.Errorf("bad header value")
		}
		return v, nil
	case "form":
		if e.paramName == "" {
			return "", fmt.Errorf("no form param name set")
		}
		values := formValues(st)[e.paramName]
		if len(values) == 0 {
			return "", fmt.Errorf("no form value")
		}
		return strings.Join(values, ""), nil
	case "body":
		if e.with == "regex" {
			return string(st.body), nil
		}
	}
	return "", nil
}

// formValues is what r.ParseForm gives: the url-encoded body's values (POST, PUT, PATCH with
// Content-Type application/x-www-form-urlencoded) first, then the query's.
func formValues(st *reqState) url.Values {
	r := st.r
	form := url.Values{}
	if r.Method == "POST" || r.Method == "PUT" || r.Method == "PATCH" {
		if ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err == nil && ct == "application/x-www-form-urlencoded" {
			if v, err := url.ParseQuery(string(st.body)); err == nil {
				form = v
			}
		}
	}
	if q, err := url.ParseQuery(r.URL.RawQuery); err == nil {
		for k, vs := range q {
			form[k] = append(form[k], vs...)
		}
	}
	return form
}

// sessionID is the gateway's GenerateSessionID with the default (legacy) key format: the
// API's org id followed by the hex MD5 of the extracted value.
func (e *idExtractor) sessionID(value string) string {
	sum := md5.Sum([]byte(value))
	return e.orgID + strings.TrimPrefix(hex.EncodeToString(sum[:]), e.orgID)
}

// extractAndCheck is ExtractAndCheck: the session id and, when the stored session under it
// is still valid for the extractor (deadline in the future), that session (the plugin is
// then skipped). err is the 400 refusal.
func (e *idExtractor) extractAndCheck(st *reqState, store *SessionStore, now time.Time) (id string, cached *Session, err error) {
	var value string
	switch e.with {
	case "value":
		if value, err = e.extract(st); err != nil {
			return "", nil, errAuthFieldMissing
		}
	case "regex":
		if e.regex == nil {
			return "", nil, errAuthFieldMissing
		}
		in, err := e.extract(st)
		if err != nil {
			return "", nil, errAuthFieldMissing
		}
		matches := e.regex.FindAllString(in, -1)
		if e.regexIndex > len(matches)-1 {
			return "", nil, errAuthFieldMissing
		}
		value = matches[e.regexIndex]
	}
	id = e.sessionID(value)
	prev, found := store.Get(id)
	if !found {
		return id, nil, nil
	}
	if err := applyPolicies(prev); err != nil {
		return prev.KeyID, nil, nil // the gateway treats a stored session whose policies fail as not found
	}
	if prev.IdExtractorDeadline > now.Unix() {
		return prev.KeyID, prev, nil
	}
	return prev.KeyID, nil, nil
}
