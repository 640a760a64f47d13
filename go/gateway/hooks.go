package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"coprocess/go/pb"
)

// validUTF8Header: proto3 strings must be UTF-8, so a header the plugin protocol cannot
// carry faithfully is refused rather than shown to plugins in a lossy form.
func validUTF8Header(h http.Header) bool {
	for k, vs := range h {
		if !utf8.ValidString(k) {
			return false
		}
		for _, v := range vs {
			if !utf8.ValidString(v) {
				return false
			}
		}
	}
	return true
}

// paramsOf is the query's first values, invalid UTF-8 replaced by U+FFFD (url carries the
// exact query, percent-encoded).
func paramsOf(u *url.URL) map[string]string {
	out := map[string]string{}
	for k, v := range u.Query() {
		if len(v) > 0 {
			out[strings.ToValidUTF8(k, "\uFFFD")] = strings.ToValidUTF8(v[0], "\uFFFD")
		}
	}
	return out
}

// firstValues flattens a multi-valued map the way the gateway does: the first value of each key.
func firstValues(m map[string][]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		if len(v) > 0 {
			out[k] = v[0]
		}
	}
	return out
}

// specOf is the spec map every hook gets: OrgID, APIID, bundle_hash and, unless disabled,
// config_data as a JSON string.
func specOf(a *api) map[string]string {
	spec := map[string]string{"OrgID": a.def.OrgID, "APIID": a.def.APIID, "bundle_hash": a.def.CustomMiddlewareBundle}
	if a.configData != "" {
		spec["config_data"] = a.configData
	}
	return spec
}

// miniRequest describes the request as it stands (after earlier hooks' edits). url is the
// path and query going upstream; request_uri is what the client sent.
func miniRequest(out *http.Request, st *reqState) *pb.MiniRequestObject {
	scheme := "http"
	if st.inbound.TLS != nil {
		scheme = "https"
	}
	req := &pb.MiniRequestObject{
		Headers:         firstValues(out.Header),
		Url:             out.URL.RequestURI(),
		Params:          paramsOf(out.URL),
		Method:          out.Method,
		RequestUri:      st.inbound.RequestURI,
		Scheme:          scheme,
		RawBody:         st.body,
		ReturnOverrides: &pb.ReturnOverrides{ResponseCode: -1},
	}
	if utf8.Valid(st.body) {
		req.Body = string(st.body)
	}
	return req
}

func (g *Gateway) requestObject(hook pb.HookType, name string, out *http.Request, st *reqState) *pb.Object {
	obj := &pb.Object{HookType: hook, HookName: name, Request: miniRequest(out, st), Spec: specOf(st.api)}
	if hook == pb.HookType_PostKeyAuth || hook == pb.HookType_Post || hook == pb.HookType_Response {
		obj.Session = st.session
		obj.Metadata = st.metadata
	}
	return obj
}

// failedStatus is what a failed hook answers: 403 for authentication, 500 otherwise.
func failedStatus(hook pb.HookType) (int, string) {
	if hook == pb.HookType_CustomKeyCheck {
		return http.StatusForbidden, "Key not authorised"
	}
	return http.StatusInternalServerError, "There was a problem proxying the request"
}

// requestHook runs one Pre, PostKeyAuth or Post hook; false means the client was answered.
func (g *Gateway) requestHook(w http.ResponseWriter, out *http.Request, st *reqState, hook pb.HookType, name string) bool {
	sent, ans, err := g.dispatch(st, g.requestObject(hook, name, out, st))
	if err != nil {
		g.hookFailed(w, st, hook, name, err)
		return false
	}
	if answered, err := g.applyRequestAnswer(w, out, st, sent, ans); answered || err != nil {
		if err != nil {
			g.hookFailed(w, st, hook, name, err)
		}
		return false
	}
	if hook != pb.HookType_Pre && ans.Session != nil {
		st.session, st.metadata = ans.Session, ans.Metadata
	}
	return true
}

func (g *Gateway) hookFailed(w http.ResponseWriter, st *reqState, hook pb.HookType, name string, err error) {
	g.log.Log("error", fmt.Sprintf("API %s: %s hook %s failed: %v", st.api.def.APIID, hook, name, err))
	code, msg := failedStatus(hook)
	if hook == pb.HookType_CustomKeyCheck {
		g.fireEvent(st, "AuthFailure", "Authentication plugin failed")
	}
	writeError(w, code, msg)
}

// authenticate runs the auth_check (CustomKeyCheck) hook: a session plus a non-empty
// metadata["token"] is authenticated, anything else is 403 and an AuthFailure event.
func (g *Gateway) authenticate(w http.ResponseWriter, out *http.Request, st *reqState) bool {
	name := st.api.def.CustomMiddleware.AuthCheck.Name
	sent, ans, err := g.dispatch(st, g.requestObject(pb.HookType_CustomKeyCheck, name, out, st))
	if err != nil {
		g.hookFailed(w, st, pb.HookType_CustomKeyCheck, name, err)
		return false
	}
	answered, err := g.applyRequestAnswer(w, out, st, sent, ans)
	if err != nil {
		g.hookFailed(w, st, pb.HookType_CustomKeyCheck, name, err)
		return false
	}
	if answered {
		if ans.Request.GetReturnOverrides().GetResponseCode() >= 400 {
			g.fireEvent(st, "AuthFailure", "Authentication plugin rejected the request")
		}
		return false
	}
	if ans.Session == nil || ans.Metadata["token"] == "" {
		g.fireEvent(st, "AuthFailure", "Attempted access with an unknown key")
		writeError(w, http.StatusForbidden, "Key not authorised")
		return false
	}
	st.session, st.metadata = ans.Session, ans.Metadata
	return true
}

// validHeader: an RFC 9110 token name and a value without CR, LF or NUL.
func validHeader(name, value string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return !strings.ContainsAny(value, "\r\n\x00")
}

// applyRequestAnswer applies a request hook's answer (SPEC section 3). It answers the
// client when return_overrides asks for it (answered = true); otherwise it applies
// delete_headers, set_headers, url, delete_params, add_params, method and body edits to
// the request going upstream. An answer that cannot be applied is an error.
func (g *Gateway) applyRequestAnswer(w http.ResponseWriter, out *http.Request, st *reqState, sent, ans *pb.Object) (bool, error) {
	req := ans.GetRequest()
	if req == nil {
		return false, nil
	}
	if ro := req.GetReturnOverrides(); ro.GetResponseCode() > 0 {
		return true, writeOverride(w, ro)
	}
	for _, h := range req.DeleteHeaders {
		out.Header.Del(h)
	}
	for h, v := range req.SetHeaders {
		if !validHeader(h, v) {
			return false, fmt.Errorf("the answer sets an invalid header %q", h)
		}
		out.Header.Set(h, v)
	}
	if req.Url != sent.Request.Url || len(req.DeleteParams) > 0 || len(req.AddParams) > 0 {
		u := out.URL
		if req.Url != sent.Request.Url {
			parsed, err := url.ParseRequestURI(req.Url)
			if err != nil || parsed.Host != "" || parsed.Scheme != "" {
				return false, fmt.Errorf("the answer's url is not a path and query")
			}
			u = &url.URL{Path: parsed.Path, RawPath: parsed.RawPath, RawQuery: parsed.RawQuery}
		}
		if len(req.DeleteParams) > 0 || len(req.AddParams) > 0 {
			q := u.Query()
			for _, p := range req.DeleteParams {
				q.Del(p)
			}
			for p, v := range req.AddParams {
				q.Set(p, v)
			}
			u.RawQuery = q.Encode()
		}
		out.URL = u
	}
	if req.Method != "" && req.Method != out.Method {
		if !validHeader(req.Method, "") {
			return false, fmt.Errorf("the answer's method is not a token")
		}
		out.Method = req.Method
	}
	switch {
	case !bytes.Equal(req.RawBody, sent.Request.RawBody):
		st.body = req.RawBody
		setBody(out, st.body)
	case req.Body != sent.Request.Body:
		st.body = []byte(req.Body)
		setBody(out, st.body)
	}
	return false, nil
}

// writeOverride answers the client from return_overrides: a code >= 400 (override_error
// false) is a rejection with body response_error (or response_body); other codes answer
// directly with response_body (or response_error). Codes outside 200..599 are refused.
func writeOverride(w http.ResponseWriter, ro *pb.ReturnOverrides) error {
	code := int(ro.ResponseCode)
	if code < 200 || code > 599 {
		return fmt.Errorf("the answer's return_overrides.response_code %d is not a status this gateway answers with", code)
	}
	for h, v := range ro.Headers {
		if !validHeader(h, v) {
			return fmt.Errorf("the answer's return_overrides sets an invalid header %q", h)
		}
	}
	body := ro.ResponseBody
	if code >= 400 && !ro.OverrideError || body == "" {
		body = ro.ResponseError
		if body == "" {
			body = ro.ResponseBody
		}
	}
	for h, v := range ro.Headers {
		w.Header().Set(h, v)
	}
	if w.Header().Get("Content-Type") == "" {
		if t := strings.TrimSpace(body); (strings.HasPrefix(t, "{") || strings.HasPrefix(t, "[")) && json.Valid([]byte(t)) {
			w.Header().Set("Content-Type", "application/json")
		} else {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		}
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
	return nil
}

// modifyResponse runs the API's Response hooks on the upstream's answer.
func (g *Gateway) modifyResponse(resp *http.Response) error {
	st := stateOf(resp.Request)
	hooks := st.api.def.CustomMiddleware.Response
	if len(hooks) == 0 {
		return nil
	}
	body, err := readLimited(resp.Body, g.opts.MaxBodyBytes)
	resp.Body.Close()
	if err != nil {
		return &hookError{status: http.StatusBadGateway, public: "upstream response unavailable to response hooks", detail: "reading the upstream response: " + err.Error()}
	}
	if !validUTF8Header(resp.Header) {
		return &hookError{status: http.StatusBadGateway, public: "upstream response unavailable to response hooks", detail: "the upstream response has header values that are not UTF-8"}
	}
	for _, md := range hooks {
		obj := g.requestObject(pb.HookType_Response, md.Name, resp.Request, st)
		obj.Response = responseObject(resp, body)
		sent, ans, err := g.dispatch(st, obj)
		if err != nil {
			return &hookError{status: http.StatusInternalServerError, public: "There was a problem proxying the request", detail: fmt.Sprintf("Response hook %s failed: %v", md.Name, err)}
		}
		if body, err = applyResponseAnswer(resp, sent.Response, ans.GetResponse(), body); err != nil {
			return &hookError{status: http.StatusInternalServerError, public: "There was a problem proxying the request", detail: fmt.Sprintf("Response hook %s: %v", md.Name, err)}
		}
		if ans.Session != nil {
			st.session, st.metadata = ans.Session, ans.Metadata
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.TransferEncoding = nil
	resp.Header.Del("Transfer-Encoding")
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return nil
}

func responseObject(resp *http.Response, body []byte) *pb.ResponseObject {
	r := &pb.ResponseObject{StatusCode: int32(resp.StatusCode), RawBody: body, Headers: firstValues(resp.Header)}
	if utf8.Valid(body) {
		r.Body = string(body)
	}
	keys := make([]string, 0, len(resp.Header))
	for k := range resp.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		r.MultivalueHeaders = append(r.MultivalueHeaders, &pb.Header{Key: k, Values: append([]string(nil), resp.Header[k]...)})
	}
	return r
}

// applyResponseAnswer makes the upstream response what the hook answered: its status, its
// header set (multivalue_headers when it has any, else headers) and its body (raw_body
// when changed, else body when changed).
func applyResponseAnswer(resp *http.Response, sent, ans *pb.ResponseObject, body []byte) ([]byte, error) {
	if ans == nil {
		return body, nil
	}
	if ans.StatusCode != 0 && ans.StatusCode != sent.StatusCode {
		if ans.StatusCode < 200 || ans.StatusCode > 599 {
			return nil, fmt.Errorf("status_code %d is not a status this gateway answers with", ans.StatusCode)
		}
		resp.StatusCode = int(ans.StatusCode)
		resp.Status = fmt.Sprintf("%d %s", ans.StatusCode, http.StatusText(int(ans.StatusCode)))
	}
	h := http.Header{}
	if len(ans.MultivalueHeaders) > 0 {
		for _, mh := range ans.MultivalueHeaders {
			for _, v := range mh.Values {
				if !validHeader(mh.Key, v) {
					return nil, fmt.Errorf("invalid response header %q", mh.Key)
				}
				h.Add(mh.Key, v)
			}
		}
	} else {
		for k, v := range ans.Headers {
			if !validHeader(k, v) {
				return nil, fmt.Errorf("invalid response header %q", k)
			}
			h.Set(k, v)
		}
	}
	resp.Header = h
	switch {
	case !bytes.Equal(ans.RawBody, sent.RawBody):
		body = ans.RawBody
	case ans.Body != sent.Body:
		body = []byte(ans.Body)
	}
	return body, nil
}
