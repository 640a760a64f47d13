package httpsig

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

const (
	vectorDate = "Fri, 03 May 2024 12:00:42 GMT"
	// The signing string of the RSA and HMAC-SHA256 vectors below.
	vectorString = "(request-target): get /orders/7?x=1\ndate: " + vectorDate + "\nx-request-id: abc"
	// printf '%s' "$S" | openssl dgst -sha256 -sign ../../demo/keys/upstream-rsa-test.key.pem | base64 -w0
	vectorRSA = "N1vvje4wyM5Wo12KCci1+tjBwDa58rZnf8mczsYsqKnmNySiPFOK7hbhMvArOS4+uJ4zxoPZzMERO72az4XtTvoqN5KhYyYWpteQAyq1bewins601/eA5jhHs9kQeVY3kZtImIh4lC2vWrNIFaFwdSJtcAvm4uhpcIb89ruiBwWvqqgz1XnBxEOh6U2y9AKuwPU0xIbFLyVJGcHzq6iCNylpK1X6pkDFq3+vyzePpXkicsVXHysxkgOhbn3RN5oTq1fVvaAxcnb1zJbHo3nQkUZXIHlTktapIJWZHL4MX3/aNEpUsryRw+hmNhjQeO4AsGlQ5De+cMroExazycr/2w=="
	// printf '%s' "$S" | openssl dgst -sha256 -hmac 'upstream-shared-secret' -binary | base64 -w0
	vectorHMAC256 = "ZOqViMrChvQkbbXzXxWRC1U+TbGnxP5DT4vwc1usK9E="
	// The vector of docs/builtins/hmac-signature-auth.md: key c2VjcmV0, "date: <vectorDate>", hmac-sha512.
	vectorHMAC512 = "9kwBK/yrjbSHJDI7INAhBmhHLTHRDkIe2uRWHEP8bgQFQvfXRksm6t2MHeLUyk9oosWDZyC17AbGeP8EFqrp+A=="
)

func vectorRequest(sigHeader, value string) *http.Request {
	r := httptest.NewRequest("GET", "/orders/7?x=1", nil)
	r.Header.Set("Date", vectorDate)
	r.Header.Set("X-Request-Id", " abc ")
	r.Header.Set(sigHeader, value)
	return r
}

func TestKnownAnswers(t *testing.T) {
	s, err := SigningString("GET", "/orders/7?x=1", vectorRequest("X", "").Header, []string{"(request-target)", "Date", "x-request-id"})
	if err != nil || s != vectorString {
		t.Fatalf("signing string %q %v", s, err)
	}
	if sig, _ := SignHMAC("hmac-sha256", "upstream-shared-secret", vectorString); sig != strings.NewReplacer("+", "%2B", "/", "%2F", "=", "%3D").Replace(vectorHMAC256) {
		t.Fatalf("hmac-sha256 %s", sig)
	}
	if sig, _ := SignHMAC("hmac-sha512", "c2VjcmV0", "date: "+vectorDate); sig != strings.NewReplacer("+", "%2B", "/", "%2F", "=", "%3D").Replace(vectorHMAC512) {
		t.Fatalf("hmac-sha512 %s", sig)
	}
	pemText, err := os.ReadFile("../../demo/keys/upstream-rsa-test.pub.pem")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublicKey(string(pemText))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]Key{"rsa": {PublicKey: pub}, "hmac": {Secret: "upstream-shared-secret"}}
	hdrs := `headers="(request-target) date x-request-id"`
	for _, c := range []struct {
		header, value string
		ok            bool
	}{
		{"Authorization", `Signature keyId="rsa",algorithm="rsa-sha256",` + hdrs + `,signature="` + vectorRSA + `"`, true},
		{"Signature", `keyId="rsa", algorithm="RSA-SHA256", ` + hdrs + `, signature="` + vectorRSA + `"`, true},
		{"Authorization", `Signature keyId="hmac",algorithm="hmac-sha256",` + hdrs + `,signature="` + vectorHMAC256 + `"`, true},
		{"Authorization", `Signature keyId="hmac",algorithm="hmac-sha256",` + hdrs + `,signature="` + strings.NewReplacer("+", "%2B", "/", "%2F", "=", "%3D").Replace(vectorHMAC256) + `"`, true},
		// Tampered: another key, another algorithm, another header list, a flipped byte.
		{"Authorization", `Signature keyId="hmac",algorithm="hmac-sha512",` + hdrs + `,signature="` + vectorHMAC256 + `"`, false},
		{"Authorization", `Signature keyId="rsa",algorithm="rsa-sha256",headers="(request-target) date",signature="` + vectorRSA + `"`, false},
		{"Authorization", `Signature keyId="rsa",algorithm="rsa-sha256",` + hdrs + `,signature="` + "M" + vectorRSA[1:] + `"`, false},
		{"Authorization", `Signature keyId="other",algorithm="rsa-sha256",` + hdrs + `,signature="` + vectorRSA + `"`, false},
		{"Authorization", `Signature keyId="hmac",algorithm="hmac-sha256",headers="(request-target) date x-absent",signature="` + vectorHMAC256 + `"`, false},
		{"Authorization", `Signature keyId="hmac",algorithm="hmac-sha256",signature="x",signature="y"`, false},
		{"Authorization", `Bearer abc`, false},
	} {
		res := Verify(vectorRequest(c.header, c.value), c.header, keys)
		if res.Verified != c.ok {
			t.Errorf("%s: %s: verified=%v (%s)", c.header, c.value, res.Verified, res.Reason)
		}
	}
	// Another path or Date breaks it.
	r := vectorRequest("Authorization", `Signature keyId="rsa",algorithm="rsa-sha256",`+hdrs+`,signature="`+vectorRSA+`"`)
	r.RequestURI = "/orders/8?x=1"
	if Verify(r, "Authorization", keys).Verified {
		t.Error("verified with another path")
	}
}

func TestSignAndVerifyRoundTrip(t *testing.T) {
	r := httptest.NewRequest("POST", "/a?b=c", nil)
	r.Header.Set("Date", vectorDate)
	r.Header.Add("X-Multi", "one")
	r.Header.Add("X-Multi", "two")
	names := []string{"(request-target)", "date", "x-multi"}
	s, err := SigningString(r.Method, r.RequestURI, r.Header, names)
	if err != nil || !strings.HasSuffix(s, "\nx-multi: one, two") || !strings.HasPrefix(s, "(request-target): post /a?b=c\n") {
		t.Fatalf("%q %v", s, err)
	}
	for _, alg := range []string{"hmac-sha1", "hmac-sha256", "hmac-sha384", "hmac-sha512"} {
		sig, err := SignHMAC(alg, "k", s)
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Authorization", Params{KeyID: "k1", Algorithm: alg, Headers: names, Signature: sig}.String())
		if res := Verify(r, "Authorization", map[string]Key{"k1": {Secret: "k"}}); !res.Verified {
			t.Errorf("%s: %s", alg, res.Reason)
		}
		if res := Verify(r, "Authorization", map[string]Key{"k1": {Secret: "K"}}); res.Verified {
			t.Errorf("%s verified with another secret", alg)
		}
	}
}
