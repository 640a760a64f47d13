// Package httpsig is a small, independent Go implementation of HTTP message signatures as
// draft-cavage-http-signatures-10 describes them, written from the draft with Go's standard
// crypto (crypto/hmac, crypto/rsa). The demo client and the tests use it to sign requests
// for HMACSignatureAuth, and the echo upstream uses it to verify what UpstreamRequestSigning
// signed, so the library is checked against code that shares nothing with it.
package httpsig

import (
	"crypto"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"net/url"
	"strings"
)

// RequestTarget is the pseudo-header naming the method and the path with query.
const RequestTarget = "(request-target)"

// Params are the parameters of a Signature header.
type Params struct {
	KeyID     string
	Algorithm string
	Headers   []string // lower-case; the draft's default is just "date"
	Signature string   // as sent (HMAC signatures may be URL-escaped)
}

// String formats the parameters as the value of an Authorization header
// (`Signature keyId="..",algorithm="..",headers="..",signature=".."`).
func (p Params) String() string {
	return fmt.Sprintf(`Signature keyId=%q,algorithm=%q,headers=%q,signature=%q`, p.KeyID, p.Algorithm, strings.Join(p.Headers, " "), p.Signature)
}

// Parse reads a Signature header value, with or without the leading "Signature " scheme
// (an Authorization header has it, a Signature header need not). Parameter names are
// case-insensitive; unknown parameters are ignored, a duplicate one is an error.
func Parse(value string) (Params, error) {
	v := strings.TrimSpace(value)
	if len(v) >= 10 && strings.EqualFold(v[:10], "signature ") {
		v = strings.TrimLeft(v[10:], " ")
	}
	var p Params
	seen := map[string]bool{}
	for v != "" {
		eq := strings.IndexByte(v, '=')
		if eq <= 0 || len(v) < eq+2 || v[eq+1] != '"' {
			return Params{}, errors.New("malformed parameter")
		}
		name := strings.ToLower(strings.TrimSpace(v[:eq]))
		rest := v[eq+2:]
		end := strings.IndexByte(rest, '"')
		if end < 0 {
			return Params{}, errors.New("unterminated quoted value")
		}
		val := rest[:end]
		if seen[name] {
			return Params{}, fmt.Errorf("duplicate parameter %q", name)
		}
		seen[name] = true
		switch name {
		case "keyid":
			p.KeyID = val
		case "algorithm":
			p.Algorithm = strings.ToLower(val)
		case "headers":
			p.Headers = strings.Fields(strings.ToLower(val))
		case "signature":
			p.Signature = val
		}
		v = strings.TrimLeft(rest[end+1:], " ")
		if v != "" {
			if v[0] != ',' {
				return Params{}, errors.New("parameters must be separated by commas")
			}
			v = strings.TrimLeft(v[1:], " ")
		}
	}
	if p.KeyID == "" || p.Algorithm == "" || p.Signature == "" {
		return Params{}, errors.New("keyId, algorithm and signature are required")
	}
	if !seen["headers"] {
		p.Headers = []string{"date"}
	}
	return p, nil
}

// SigningString builds the string to sign (draft section 2.3): one "name: value" line per
// listed header, name lower-cased, joined by "\n". (request-target) is the lower-case method,
// a space and target (the path and query). Several values of one header are joined by ", "
// in order; values are trimmed. A listed header the request lacks is an error.
func SigningString(method, target string, h http.Header, names []string) (string, error) {
	lines := make([]string, 0, len(names))
	for _, n := range names {
		n = strings.ToLower(n)
		if n == RequestTarget {
			lines = append(lines, fmt.Sprintf("%s: %s %s", RequestTarget, strings.ToLower(method), target))
			continue
		}
		values := h.Values(n)
		if len(values) == 0 {
			return "", fmt.Errorf("header %q is listed but absent", n)
		}
		for i := range values {
			values[i] = strings.TrimSpace(values[i])
		}
		lines = append(lines, n+": "+strings.Join(values, ", "))
	}
	return strings.Join(lines, "\n"), nil
}

func hmacHash(alg string) (func() hash.Hash, error) {
	switch strings.ToLower(alg) {
	case "hmac-sha1":
		return sha1.New, nil
	case "hmac-sha256":
		return sha256.New, nil
	case "hmac-sha384":
		return sha512.New384, nil
	case "hmac-sha512":
		return sha512.New, nil
	}
	return nil, fmt.Errorf("algorithm %q is not an HMAC algorithm", alg)
}

// HMAC is the raw HMAC of the signing string keyed with the secret's bytes.
func HMAC(alg, secret, signingString string) ([]byte, error) {
	h, err := hmacHash(alg)
	if err != nil {
		return nil, err
	}
	m := hmac.New(h, []byte(secret))
	m.Write([]byte(signingString))
	return m.Sum(nil), nil
}

// SignHMAC is the signature parameter for an HMAC algorithm: base64 of the HMAC, then
// URL-query-escaped (what HMACSignatureAuth expects and UpstreamRequestSigning emits).
func SignHMAC(alg, secret, signingString string) (string, error) {
	mac, err := HMAC(alg, secret, signingString)
	if err != nil {
		return "", err
	}
	return url.QueryEscape(base64.StdEncoding.EncodeToString(mac)), nil
}

// Key is what a verifier knows about a keyId: an HMAC secret or an RSA public key.
type Key struct {
	Secret    string
	PublicKey *rsa.PublicKey
}

// decodeSignature URL-unescapes (when escaped) and base64-decodes a signature parameter.
// '+' is never read as a space: escaped signatures carry it as %2B.
func decodeSignature(sig string) ([]byte, error) {
	if strings.Contains(sig, "%") {
		u, err := url.PathUnescape(sig)
		if err != nil {
			return nil, fmt.Errorf("signature is not URL-escaped base64: %v", err)
		}
		sig = u
	}
	b, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return nil, fmt.Errorf("signature is not base64: %v", err)
	}
	return b, nil
}

// VerifyString checks a signature parameter over a signing string with key.
func VerifyString(p Params, key Key, signingString string) error {
	sig, err := decodeSignature(p.Signature)
	if err != nil {
		return err
	}
	switch {
	case p.Algorithm == "rsa-sha256":
		if key.PublicKey == nil {
			return fmt.Errorf("keyId %q has no RSA public key", p.KeyID)
		}
		digest := sha256.Sum256([]byte(signingString))
		if err := rsa.VerifyPKCS1v15(key.PublicKey, crypto.SHA256, digest[:], sig); err != nil {
			return errors.New("RSA signature does not verify")
		}
		return nil
	case strings.HasPrefix(p.Algorithm, "hmac-"):
		if key.Secret == "" {
			return fmt.Errorf("keyId %q has no HMAC secret", p.KeyID)
		}
		want, err := HMAC(p.Algorithm, key.Secret, signingString)
		if err != nil {
			return err
		}
		if !hmac.Equal(want, sig) {
			return errors.New("HMAC signature does not verify")
		}
		return nil
	}
	return fmt.Errorf("unsupported algorithm %q", p.Algorithm)
}

// Result is what Verify found.
type Result struct {
	Header        string   `json:"header"`
	KeyID         string   `json:"key_id,omitempty"`
	Algorithm     string   `json:"algorithm,omitempty"`
	Headers       []string `json:"headers,omitempty"`
	SigningString string   `json:"signing_string,omitempty"`
	Verified      bool     `json:"verified"`
	Reason        string   `json:"reason,omitempty"`
}

// Verify checks the signature a server received in header (Authorization or Signature):
// it rebuilds the signing string from the request as received (method, the request URI the
// client sent, the received header values, host = the Host it was sent to) and verifies it
// with keys[keyId].
func Verify(r *http.Request, header string, keys map[string]Key) Result {
	res := Result{Header: header}
	value := r.Header.Get(header)
	if value == "" {
		res.Reason = "no " + header + " header"
		return res
	}
	p, err := Parse(value)
	if err != nil {
		res.Reason = err.Error()
		return res
	}
	res.KeyID, res.Algorithm, res.Headers = p.KeyID, p.Algorithm, p.Headers
	key, ok := keys[p.KeyID]
	if !ok {
		res.Reason = fmt.Sprintf("unknown keyId %q", p.KeyID)
		return res
	}
	target := r.RequestURI
	if target == "" {
		target = r.URL.RequestURI()
	}
	// A server's r.Header never holds Host (net/http keeps it in r.Host).
	h := r.Header
	if r.Host != "" {
		h = r.Header.Clone()
		h.Set("Host", r.Host)
	}
	s, err := SigningString(r.Method, target, h, p.Headers)
	if err != nil {
		res.Reason = err.Error()
		return res
	}
	res.SigningString = s
	if err := VerifyString(p, key, s); err != nil {
		res.Reason = err.Error()
		return res
	}
	res.Verified = true
	return res
}

// ParsePublicKey reads an RSA public key from PEM: "PUBLIC KEY" (PKIX) or "RSA PUBLIC KEY"
// (PKCS#1).
func ParsePublicKey(pemText string) (*rsa.PublicKey, error) {
	block, _ := pem.Decode([]byte(pemText))
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	switch block.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		rk, ok := k.(*rsa.PublicKey)
		if !ok {
			return nil, errors.New("not an RSA public key")
		}
		return rk, nil
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(block.Bytes)
	}
	return nil, fmt.Errorf("PEM block %q is not a public key", block.Type)
}
