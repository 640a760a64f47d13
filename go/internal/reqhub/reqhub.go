// Package reqhub computes the ReqHub client (and merchant) headers in Go, independently of
// the library:
//
//	Token = base64(HMAC-SHA256(key = privateKey + timestamp + nonce + url, message = publicKey))
//
// The demo client and the tests use it to sign requests for ReqHubMerchant.
package reqhub

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"time"
)

// Token is the ReqHub token of one request.
func Token(publicKey, privateKey, timestamp, nonce, url string) string {
	m := hmac.New(sha256.New, []byte(privateKey+timestamp+nonce+url))
	m.Write([]byte(publicKey))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// NewNonce is 20 bytes from crypto/rand, base64-encoded.
func NewNonce() (string, error) {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// Millis is t as the 13-digit UNIX time in milliseconds ReqHub uses.
func Millis(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// ClientHeaders are the five client headers for a request to url (path and query, exactly
// as sent) at time t with nonce.
func ClientHeaders(publicKey, privateKey, url string, t time.Time, nonce string) map[string]string {
	ts := Millis(t)
	return map[string]string{
		"ClientToken":     Token(publicKey, privateKey, ts, nonce, url),
		"ClientKey":       publicKey,
		"ClientTimestamp": ts,
		"ClientNonce":     nonce,
		"ClientUrl":       url,
	}
}

// SignNow is ClientHeaders with the current time and a fresh nonce.
func SignNow(publicKey, privateKey, url string) (map[string]string, error) {
	nonce, err := NewNonce()
	if err != nil {
		return nil, err
	}
	return ClientHeaders(publicKey, privateKey, url, time.Now(), nonce), nil
}
