// Package benchhmac is HMACSignatureAuth written in plain Go over the Object, the logic of the
// Go gRPC peer of `make bench-compare` (go/cmd/grpcpeer): what a gateway user writes as a
// gRPC plugin server when they do not use the library.
//
// It has the semantics of the library's HMACSignatureAuth in its default (strict) mode
// (docs/builtins/hmac-signature-auth.md), with the checks in the library's order: the
// Authorization header parsed strictly, the algorithm against the allow-list, the Date header,
// the signing string, the Date's clock-skew window (when configured), the key look-up,
// URL-unescaping and base64 of the signature, HMAC and a constant-time compare; success
// answers the configured session template with hmac_enabled, hmac_secret and last_updated
// (and id_extractor_deadline when configured) and metadata["token"] = keyId; refusals are
// return_overrides 400/401 with the library's messages.
//
// Configuration is the `HMACSignatureAuth[:instance]` section of spec["config_data"], parsed
// once per distinct (hook name, config_data). Keyed HMAC states are pooled per key and
// algorithm: crypto/hmac's Reset returns a used state to its keyed state without rehashing the
// key, so no request pays a key schedule (the library and the Python peer do the same with
// their own means). There is no host store: a keyId outside `keys` is unknown (401), as with
// the gRPC server's empty in-process store.
package benchhmac

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"coprocess/go/pb"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Name is the middleware's name, the hook name the gateway sends (or Name:instance).
const Name = "HMACSignatureAuth"

// The library's refusal messages.
const (
	BadRequest           = "Custom middleware: Bad request"
	UnsupportedAlgorithm = "Bad HMAC request, unsupported algorithm"
	NotAuthorized        = "Custom middleware: Not authorized"
)

const (
	maxKeyIDLen      = 1024
	maxSignedHeaders = 64
	// base64 of an HMAC-SHA512 is 88 characters; a longer decoded signature cannot match.
	maxSignatureLen = 96
)

// ErrNoMiddleware: the Object's hook is not this middleware's.
var ErrNoMiddleware = errors.New("no middleware for this hook")

// ConfigError is an invalid section (the library answers it with its configuration error code).
type ConfigError struct{ msg string }

func (e *ConfigError) Error() string { return "HMACSignatureAuth configuration: " + e.msg }

var algorithms = []struct {
	name string
	new  func() hash.Hash
}{
	{"hmac-sha1", sha1.New}, {"hmac-sha256", sha256.New}, {"hmac-sha384", sha512.New384}, {"hmac-sha512", sha512.New},
}

func algorithmIndex(name string) int {
	for i, a := range algorithms {
		if strings.EqualFold(a.name, name) {
			return i
		}
	}
	return -1
}

// keyed is one secret with a pool of keyed HMAC states per allowed algorithm.
type keyed struct {
	secret string
	pools  [4]*sync.Pool
}

func newKeyed(secret string, allowed [4]bool) *keyed {
	k := &keyed{secret: secret}
	for i := range algorithms {
		if allowed[i] {
			newHash := algorithms[i].new
			k.pools[i] = &sync.Pool{New: func() interface{} { return hmac.New(newHash, []byte(secret)) }}
		}
	}
	return k
}

// verify computes the HMAC of msg and compares it with sig in constant time.
func (k *keyed) verify(alg int, msg, sig []byte) bool {
	mac := k.pools[alg].Get().(hash.Hash)
	mac.Write(msg)
	var buf [64]byte
	ok := hmac.Equal(mac.Sum(buf[:0]), sig)
	mac.Reset()
	k.pools[alg].Put(mac)
	return ok
}

type config struct {
	keys           map[string]*keyed
	allowed        [4]bool
	clockSkewMs    int64
	session        *pb.SessionState
	idExtractorTTL int64
}

// section is the JSON of the middleware's configuration, the library's key names.
type section struct {
	Keys              map[string]string `json:"keys"`
	StorePrefix       *string           `json:"store_prefix"`
	AllowedAlgorithms *[]string         `json:"allowed_algorithms"`
	ClockSkewMs       uint64            `json:"clock_skew_ms"`
	Session           json.RawMessage   `json:"session"`
	StoreCacheMs      uint64            `json:"store_cache_ms"`
	IDExtractorTTLs   uint64            `json:"id_extractor_ttl_s"`
	Compat            string            `json:"compat"`
}

func parseConfig(hookName, configData string) (*config, error) {
	var sections map[string]json.RawMessage
	if configData != "" {
		if err := json.Unmarshal([]byte(configData), &sections); err != nil {
			return nil, &ConfigError{"config_data is not a JSON object"}
		}
	}
	raw, ok := sections[hookName]
	if !ok {
		raw = sections[Name]
	}
	var s section
	if len(raw) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			return nil, &ConfigError{err.Error()}
		}
	}
	if s.Compat != "" && s.Compat != "default" {
		return nil, &ConfigError{"compat " + strconv.Quote(s.Compat) + " is not supported by this peer"}
	}
	c := &config{keys: map[string]*keyed{}, clockSkewMs: int64(s.ClockSkewMs), idExtractorTTL: int64(s.IDExtractorTTLs), session: new(pb.SessionState)}
	if s.AllowedAlgorithms == nil {
		c.allowed = [4]bool{true, true, true, true}
	} else {
		if len(*s.AllowedAlgorithms) == 0 {
			return nil, &ConfigError{"allowed_algorithms must name at least one algorithm"}
		}
		for _, a := range *s.AllowedAlgorithms {
			i := algorithmIndex(a)
			if i < 0 {
				return nil, &ConfigError{fmt.Sprintf("allowed_algorithms: %q is not an HMAC algorithm", a)}
			}
			c.allowed[i] = true
		}
	}
	for id, secret := range s.Keys {
		if id == "" || len(id) > maxKeyIDLen || secret == "" {
			return nil, &ConfigError{"keys: empty or over-long keyId, or empty secret"}
		}
		c.keys[id] = newKeyed(secret, c.allowed)
	}
	if len(s.Session) > 0 {
		if err := protojson.Unmarshal(s.Session, c.session); err != nil {
			return nil, &ConfigError{"session: " + err.Error()}
		}
	}
	return c, nil
}

type configKey struct{ hookName, configData string }

// Auth is the middleware with its configurations, one per distinct (hook name, config_data).
// Safe for concurrent use.
type Auth struct {
	configs sync.Map // configKey -> *config
	now     func() time.Time
}

// New returns the middleware.
func New() *Auth { return &Auth{now: time.Now} }

func (a *Auth) config(obj *pb.Object) (*config, error) {
	k := configKey{obj.HookName, obj.Spec["config_data"]}
	if c, ok := a.configs.Load(k); ok {
		return c.(*config), nil
	}
	c, err := parseConfig(k.hookName, k.configData)
	if err != nil {
		return nil, err
	}
	actual, _ := a.configs.LoadOrStore(k, c)
	return actual.(*config), nil
}

// Handle runs the middleware on obj in place: a session and metadata["token"] on success,
// return_overrides on a refusal. ErrNoMiddleware when the hook is not CustomKeyCheck
// HMACSignatureAuth[:instance], a *ConfigError for an invalid section.
func (a *Auth) Handle(obj *pb.Object) error {
	base := obj.HookName
	if i := strings.IndexByte(base, ':'); i >= 0 {
		base = base[:i]
	}
	if obj.HookType != pb.HookType_CustomKeyCheck || base != Name {
		return ErrNoMiddleware
	}
	c, err := a.config(obj)
	if err != nil {
		return err
	}
	if obj.Request == nil {
		obj.Request = &pb.MiniRequestObject{}
	}
	now := a.now()
	keyID, k, code, msg := c.check(obj.Request, now)
	if code != 0 {
		ro := obj.Request.ReturnOverrides
		if ro == nil {
			ro = &pb.ReturnOverrides{}
			obj.Request.ReturnOverrides = ro
		}
		ro.ResponseCode, ro.ResponseError, ro.ResponseBody = code, msg, ""
		return nil
	}
	s := proto.Clone(c.session).(*pb.SessionState)
	s.HmacEnabled, s.HmacSecret, s.LastUpdated = true, k.secret, strconv.FormatInt(now.Unix(), 10)
	if c.idExtractorTTL > 0 {
		s.IdExtractorDeadline = now.Unix() + c.idExtractorTTL
	}
	obj.Session = s
	if obj.Metadata == nil {
		obj.Metadata = map[string]string{}
	}
	obj.Metadata["token"] = keyID
	return nil
}

// header is a case-insensitive look-up (the gateway sends canonical names: tried first).
func header(h map[string]string, name string) (string, bool) {
	if v, ok := h[name]; ok {
		return v, true
	}
	if v, ok := h[http.CanonicalHeaderKey(name)]; ok {
		return v, true
	}
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

func (c *config) check(req *pb.MiniRequestObject, now time.Time) (keyID string, k *keyed, code int32, msg string) {
	bad := func() (string, *keyed, int32, string) { return "", nil, 400, BadRequest }
	unauthorized := func() (string, *keyed, int32, string) { return "", nil, 401, NotAuthorized }
	authorization, _ := header(req.Headers, "Authorization")
	if authorization == "" {
		return bad()
	}
	p, ok := ParseSignature(authorization)
	if !ok || p.KeyID == "" || p.Algorithm == "" || p.Signature == "" {
		return bad()
	}
	alg := algorithmIndex(p.Algorithm)
	if alg < 0 || !c.allowed[alg] {
		return "", nil, 400, UnsupportedAlgorithm
	}
	date, _ := header(req.Headers, "Date")
	if date == "" {
		return bad()
	}
	list := "date"
	if p.HasHeaders {
		list = p.Headers
	}
	signing, hasDate, ok := signingString(req, list, date)
	if !ok || (c.clockSkewMs > 0 && !hasDate) {
		return bad()
	}
	if c.clockSkewMs > 0 {
		sent, err := parseHTTPDate(date)
		if err != nil {
			return unauthorized()
		}
		d := now.Sub(sent).Milliseconds()
		if d < 0 {
			d = -d
		}
		if d > c.clockSkewMs {
			return unauthorized()
		}
	}
	k = c.keys[p.KeyID]
	if k == nil {
		return unauthorized()
	}
	raw, ok := percentDecode(p.Signature)
	if !ok {
		return unauthorized()
	}
	sig, ok := decodeBase64(raw)
	if !ok || !k.verify(alg, signing, sig) {
		return unauthorized()
	}
	return p.KeyID, k, 0, ""
}

// signingString builds the lines for the headers= list: (request-target), date (the Date
// header's value) or a request header, names lower-cased, values trimmed of spaces and tabs,
// joined by '\n'. ok is false for an empty or over-long list, a name that is not a header-name
// token, or a listed header the request lacks.
func signingString(req *pb.MiniRequestObject, list, date string) (out []byte, hasDate, ok bool) {
	out = make([]byte, 0, 128)
	n := 0
	for _, name := range strings.FieldsFunc(list, func(r rune) bool { return r == ' ' || r == '\t' }) {
		if n == maxSignedHeaders {
			return nil, false, false
		}
		if n > 0 {
			out = append(out, '\n')
		}
		n++
		switch {
		case strings.EqualFold(name, "(request-target)"):
			out = append(out, "(request-target): "...)
			out = append(out, strings.ToLower(req.Method)...)
			out = append(out, ' ')
			out = append(out, req.RequestUri...)
		case strings.EqualFold(name, "date"):
			hasDate = true
			out = append(out, "date: "...)
			out = append(out, strings.Trim(date, " \t")...)
		default:
			if !isToken(name) {
				return nil, false, false
			}
			v, found := header(req.Headers, name)
			if !found {
				return nil, false, false
			}
			out = append(out, strings.ToLower(name)...)
			out = append(out, ": "...)
			out = append(out, strings.Trim(v, " \t")...)
		}
	}
	return out, hasDate, n > 0
}

// parseHTTPDate reads the three HTTP-date forms (net/http) and IMF-fixdate with a UTC, UT, Z or
// numeric zone.
func parseHTTPDate(s string) (time.Time, error) {
	if t, err := http.ParseTime(s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC1123Z, s); err == nil {
		return t, nil
	}
	for _, zone := range []string{"UTC", "UT", "Z"} {
		if strings.HasSuffix(s, " "+zone) {
			return time.Parse("Mon, 02 Jan 2006 15:04:05", strings.TrimSuffix(s, " "+zone))
		}
	}
	return time.Time{}, errors.New("not an HTTP date")
}

func isTchar(b byte) bool {
	switch {
	case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return false
		}
	}
	return true
}

// SignatureParams are the parameters of a Signature Authorization header.
type SignatureParams struct {
	KeyID, Algorithm, Signature, Headers string
	HasHeaders                           bool
}

// ParseSignature reads `Signature name="value",name="value"` strictly: no control character
// but tab anywhere; spaces and tabs around the value ignored; the scheme in any case and one or
// more spaces; parameter names keyId, algorithm, signature, headers in any case, each at most
// once; values without escapes; optional spaces or tabs after a comma only; no trailing comma.
func ParseSignature(v string) (SignatureParams, bool) {
	var p SignatureParams
	for i := 0; i < len(v); i++ {
		if (v[i] < 0x20 && v[i] != '\t') || v[i] == 0x7f {
			return p, false
		}
	}
	v = strings.Trim(v, " \t")
	const scheme = "signature"
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) || v[len(scheme)] != ' ' {
		return p, false
	}
	v = strings.TrimLeft(v[len(scheme):], " ")
	if v == "" {
		return p, false
	}
	var seen [4]bool
	for {
		i := 0
		for i < len(v) && isTchar(v[i]) {
			i++
		}
		if i == 0 || i+1 >= len(v) || v[i] != '=' || v[i+1] != '"' {
			return p, false
		}
		name := v[:i]
		end := strings.IndexByte(v[i+2:], '"')
		if end < 0 {
			return p, false
		}
		val := v[i+2 : i+2+end]
		var slot *string
		var n int
		switch {
		case strings.EqualFold(name, "keyId"):
			slot, n = &p.KeyID, 0
		case strings.EqualFold(name, "algorithm"):
			slot, n = &p.Algorithm, 1
		case strings.EqualFold(name, "signature"):
			slot, n = &p.Signature, 2
		case strings.EqualFold(name, "headers"):
			slot, n = &p.Headers, 3
			p.HasHeaders = true
		default:
			return p, false
		}
		if seen[n] {
			return p, false
		}
		seen[n], *slot = true, val
		v = v[i+3+end:]
		if v == "" {
			return p, true
		}
		if v[0] != ',' {
			return p, false
		}
		v = strings.TrimLeft(v[1:], " \t")
		if v == "" {
			return p, false
		}
	}
}

func unhex(b byte) (byte, bool) {
	switch {
	case b >= '0' && b <= '9':
		return b - '0', true
	case b >= 'a' && b <= 'f':
		return b - 'a' + 10, true
	case b >= 'A' && b <= 'F':
		return b - 'A' + 10, true
	}
	return 0, false
}

// percentDecode decodes %XX escapes (either case; '+' stays '+'); false on a bad escape or a
// result longer than any HMAC's base64.
func percentDecode(s string) ([]byte, bool) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			out = append(out, s[i])
		} else {
			if i+2 >= len(s) {
				return nil, false
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return nil, false
			}
			out = append(out, hi<<4|lo)
			i += 2
		}
		if len(out) > maxSignatureLen {
			return nil, false
		}
	}
	return out, true
}

// decodeBase64 reads standard-alphabet base64, padding optional (but correct when present),
// trailing bits zero.
func decodeBase64(b []byte) ([]byte, bool) {
	enc := base64.RawStdEncoding.Strict()
	if bytes.HasSuffix(b, []byte("=")) {
		enc = base64.StdEncoding.Strict()
	}
	out := make([]byte, enc.DecodedLen(len(b)))
	n, err := enc.Decode(out, b)
	if err != nil {
		return nil, false
	}
	return out[:n], true
}
