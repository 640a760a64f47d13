package gateway

import (
	"bytes"
	htmltemplate "html/template"
	"net/http"
	"net/http/httptest"
	"testing"
	texttemplate "text/template"
)

// The gateway's stock templates (templates/error.json, templates/error.xml of the gateway's
// repository), byte for byte.
const (
	stockErrorJSON = "{\n    \"error\": \"{{.Message}}\"\n}"
	stockErrorXML  = "<?xml version = \"1.0\" encoding = \"UTF-8\"?>\n<error>{{.Message}}</error>\n"
)

// apiError is the gateway's APIError, the templates' data.
type apiError struct{ Message htmltemplate.HTML }

// writeError renders exactly what the gateway's ErrorHandler renders with its stock
// templates: error.json through html/template with Message = HTML(jsonEscapeString(msg)),
// error.xml through text/template with Message = HTML(HTMLEscapeString(msg)); headers
// Content-Type and X-Generator.
func TestErrorTemplateByteForByte(t *testing.T) {
	jsonTmpl := htmltemplate.Must(htmltemplate.New("error.json").Parse(stockErrorJSON))
	xmlTmpl := texttemplate.Must(texttemplate.New("error.xml").Parse(stockErrorXML))
	messages := []string{"Key not authorised", "Forbidden", "", `"quoted" \ back`, "line\nbreak\r\ttab\x00\x1f\x7f",
		"<script>alert(1)</script> & 'x'", "ünïcödé ✓", "merchant_signature_invalid: ClientNonce was already used", "{\"error\":\"json\"}"}
	for _, msg := range messages {
		var want bytes.Buffer
		if err := jsonTmpl.Execute(&want, apiError{Message: htmltemplate.HTML(jsonEscapeString(msg))}); err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		writeError(w, httptest.NewRequest("GET", "/", nil), false, 403, msg)
		if w.Body.String() != want.String() || w.Code != 403 || w.Header().Get("Content-Type") != "application/json" || w.Header().Get("X-Generator") != "tyk.io" {
			t.Errorf("JSON %q: got %d %q %v, want %q", msg, w.Code, w.Body.String(), w.Header(), want.String())
		}
		want.Reset()
		if err := xmlTmpl.Execute(&want, apiError{Message: htmltemplate.HTML(htmltemplate.HTMLEscapeString(msg))}); err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest("POST", "/", nil)
		r.Header.Set("Content-Type", "application/xml; charset=utf-8")
		w = httptest.NewRecorder()
		writeError(w, r, false, 400, msg)
		if w.Body.String() != want.String() || w.Header().Get("Content-Type") != "application/xml" {
			t.Errorf("XML %q: got %q %v, want %q", msg, w.Body.String(), w.Header(), want.String())
		}
	}
	// hide_generator_header; headers set before (return_overrides) stay, Content-Type is the
	// template's.
	w := httptest.NewRecorder()
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("X-Why", "because")
	writeError(w, httptest.NewRequest("GET", "/", nil), true, http.StatusTeapot, "x")
	if w.Header().Get("X-Generator") != "" || w.Header().Get("X-Why") != "because" || w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", w.Header())
	}
}
