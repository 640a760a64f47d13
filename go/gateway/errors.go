package gateway

import (
	"net/http"
	"strings"
	"text/template"
)

// The gateway's error messages this gateway answers with (gateway/coprocess.go,
// gateway/reverse_proxy.go, gateway/handler_error.go).
const (
	msgKeyNotAuthorised = "Key not authorised"
	msgMiddlewareError  = "Middleware error"
	msgProxyProblem     = "There was a problem proxying the request"
)

// writeError renders an error the way the gateway's ErrorHandler does with its stock
// templates (gateway/handler_error.go, templates/error.json and error.xml): the template is
// chosen by the request's Content-Type (its media type before any ";", compared exactly:
// application/xml, text/xml and application/soap+xml get error.xml, anything else
// error.json), Content-Type is set to that type, X-Generator: tyk.io is added unless
// hidden, and the message is JSON-escaped (jsonEscapeString) into
//
//	{
//	    "error": "<message>"
//	}
//
// or HTML-escaped into `<?xml version = "1.0" encoding = "UTF-8"?>\n<error><message></error>\n`.
// Headers already set on w (a rejection's return_overrides headers) stay, except
// Content-Type.
func writeError(w http.ResponseWriter, r *http.Request, hideGenerator bool, code int, msg string) {
	contentType := ""
	if r != nil {
		contentType = strings.Split(r.Header.Get("Content-Type"), ";")[0]
	}
	var body string
	switch contentType {
	case "application/soap+xml", "application/xml", "text/xml":
		body = "<?xml version = \"1.0\" encoding = \"UTF-8\"?>\n<error>" + template.HTMLEscapeString(msg) + "</error>\n"
	default:
		contentType = "application/json"
		body = "{\n    \"error\": \"" + jsonEscapeString(msg) + "\"\n}"
	}
	w.Header().Set("Content-Type", contentType)
	if !hideGenerator {
		w.Header().Add("X-Generator", "tyk.io")
	}
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

// jsonEscapeString is the gateway's (gateway/util.go): s as the inside of a JSON string
// literal; only ", \ and control characters are escaped (\n, \r, \t, else \u00XX).
func jsonEscapeString(s string) string {
	const hex = "0123456789abcdef"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xF])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
