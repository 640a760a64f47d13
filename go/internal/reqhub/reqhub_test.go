package reqhub

import (
	"encoding/base64"
	"testing"
	"time"
)

// Known answer computed with Python's hmac (the same vector the Rust tests use):
// python3 -c "import hmac,hashlib,base64; print(base64.b64encode(hmac.new(('priv-key-1'+'1714737642000'+'AAECAwQFBgcICQoLDA0ODxAREhM='+'/v1/items?id=7').encode(), b'pub-key-1', hashlib.sha256).digest()).decode())"
func TestTokenKnownAnswer(t *testing.T) {
	nonce := make([]byte, 20)
	for i := range nonce {
		nonce[i] = byte(i)
	}
	n := base64.StdEncoding.EncodeToString(nonce)
	if n != "AAECAwQFBgcICQoLDA0ODxAREhM=" {
		t.Fatalf("nonce %s", n)
	}
	h := ClientHeaders("pub-key-1", "priv-key-1", "/v1/items?id=7", time.UnixMilli(1714737642000), n)
	if h["ClientToken"] != "nT461QJJ0PHEkUytQdUIVlNn/X9hMdliCGP0Z9OYc9U=" || h["ClientTimestamp"] != "1714737642000" ||
		h["ClientKey"] != "pub-key-1" || h["ClientUrl"] != "/v1/items?id=7" || h["ClientNonce"] != n {
		t.Fatalf("headers %v", h)
	}
}

func TestSignNowIsFreshEachTime(t *testing.T) {
	a, err := SignNow("p", "s", "/x")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := SignNow("p", "s", "/x")
	raw, err := base64.StdEncoding.DecodeString(a["ClientNonce"])
	if err != nil || len(raw) != 20 || a["ClientNonce"] == b["ClientNonce"] || len(a["ClientTimestamp"]) != 13 {
		t.Fatalf("nonces %q %q", a["ClientNonce"], b["ClientNonce"])
	}
	if a["ClientToken"] != Token("p", "s", a["ClientTimestamp"], a["ClientNonce"], "/x") {
		t.Fatal("token does not match its headers")
	}
}
