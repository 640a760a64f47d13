package gateway

import (
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"sort"
	"unicode/utf8"

	"coprocess/go/pb"
)

// firstValues is the gateway's ProtoMap: the first value of each key.
func firstValues(m map[string][]string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for k, v := range m {
		if len(v) > 0 {
			out[k] = v[0]
		}
	}
	return out
}

// buildObject is the gateway's BuildObject for one hook: the request as the chain has it
// (headers' first values plus Host, url = the request URL with the listen path still on
// it, params' first values, method, request_uri, scheme, raw_body and, when UTF-8 and not
// raw_body_only, body), the empty edit fields (maps and lists are empty, which encodes as
// absent), return_overrides.response_code -1, the API's spec map, and the request's session
// and its metadata for hooks other than Pre and CustomKeyCheck. res, for Response hooks,
// adds the upstream response.
func (g *Gateway) buildObject(st *reqState, hook pb.HookType, md MiddlewareDefinition, res *http.Response, resBody []byte) *pb.Object {
	r := st.r
	headers := firstValues(r.Header)
	host := r.Host
	if host == "" && r.URL != nil {
		host = r.URL.Host
	}
	if host != "" {
		headers["Host"] = host
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	req := &pb.MiniRequestObject{
		Headers:         headers,
		SetHeaders:      map[string]string{},
		DeleteHeaders:   []string{},
		Url:             r.URL.String(),
		Params:          firstValues(r.URL.Query()),
		AddParams:       map[string]string{},
		ExtendedParams:  map[string]string{},
		DeleteParams:    []string{},
		ReturnOverrides: &pb.ReturnOverrides{ResponseCode: -1},
		Method:          r.Method,
		RequestUri:      r.RequestURI,
		Scheme:          scheme,
		RawBody:         st.body,
	}
	if utf8.Valid(st.body) && !md.RawBodyOnly {
		req.Body = string(st.body)
	}
	spec := make(map[string]string, len(st.api.spec))
	for k, v := range st.api.spec {
		spec[k] = v
	}
	obj := &pb.Object{Request: req, HookName: md.Name, HookType: hook, Spec: spec}
	if hook != pb.HookType_Pre && hook != pb.HookType_CustomKeyCheck && st.session != nil {
		obj.Session = toProto(st.session)
		obj.Metadata = make(map[string]string, len(obj.Session.Metadata))
		for k, v := range obj.Session.Metadata {
			obj.Metadata[k] = v
		}
	}
	if res != nil {
		ro := &pb.ResponseObject{StatusCode: int32(res.StatusCode), RawBody: resBody, Headers: firstValues(res.Header)}
		// The gateway appends multivalue_headers in Go map order (random); sorted by name
		// here, one of those orders.
		keys := make([]string, 0, len(res.Header))
		for k := range res.Header {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ro.MultivalueHeaders = append(ro.MultivalueHeaders, &pb.Header{Key: k, Values: append([]string(nil), res.Header[k]...)})
		}
		if utf8.Valid(resBody) && !md.RawBodyOnly {
			ro.Body = string(resBody)
		}
		obj.Response = ro
	}
	return obj
}

// requestHook runs one Pre, PostKeyAuth or Post hook; false means the client was answered.
func (g *Gateway) requestHook(w http.ResponseWriter, st *reqState, hook pb.HookType, md MiddlewareDefinition) bool {
	ans, err := g.dispatch(st, g.buildObject(st, hook, md, nil, nil))
	if err != nil {
		g.logReq(st, "error", "API %s: %s hook %s: dispatch error: %v", st.api.def.APIID, hook, md.Name, err)
		g.writeError(w, st, http.StatusInternalServerError, msgMiddlewareError)
		return false
	}
	_, ok := g.processAnswer(w, st, hook, md, ans)
	return ok
}

// errNoRequest: an answer without a request object (the gateway would dereference nil).
var errNoRequest = errors.New("the answer has no request object")

// postProcess is the gateway's ObjectPostProcess: the body always becomes the answer's
// raw_body (`body` is not read); delete_headers then set_headers; the query becomes the
// original query minus delete_params plus add_params; url must pass url.ParseRequestURI
// and becomes the request URL; method is taken as returned. When the query of the new URL
// differs from the rebuilt one, the rebuilt one replaces it (so a query changed only inside
// url is lost, and add_params/delete_params re-encode the query sorted by key).
func postProcess(st *reqState, req *pb.MiniRequestObject) error {
	r := st.r
	st.body = req.RawBody
	for _, h := range req.DeleteHeaders {
		r.Header.Del(h)
	}
	for h, v := range req.SetHeaders {
		r.Header.Set(h, v)
	}
	updated := r.URL.Query()
	for _, k := range req.DeleteParams {
		updated.Del(k)
	}
	for k, v := range req.AddParams {
		updated.Set(k, v)
	}
	parsed, err := url.ParseRequestURI(req.Url)
	if err != nil {
		return err
	}
	r.URL = parsed
	r.Method = req.Method
	if !reflect.DeepEqual(r.URL.Query(), updated) {
		r.URL.RawQuery = updated.Encode()
	}
	return nil
}

// processAnswer is what the gateway's ProcessRequest does with a request hook's answer
// (for CustomKeyCheck, up to the session checks). ok false: the client was answered. token
// is session.metadata["token"] after object.metadata is merged into session.metadata.
func (g *Gateway) processAnswer(w http.ResponseWriter, st *reqState, hook pb.HookType, md MiddlewareDefinition, ans *pb.Object) (token string, ok bool) {
	req := ans.Request
	err := errNoRequest
	if req != nil {
		err = postProcess(st, req)
	}
	if err != nil {
		g.logReq(st, "error", "API %s: %s hook %s: failed to post-process the answer: %v", st.api.def.APIID, hook, md.Name, err)
		g.writeError(w, st, http.StatusInternalServerError, msgMiddlewareError)
		return "", false
	}
	if s := ans.Session; s != nil {
		if len(ans.Metadata) > 0 && s.Metadata == nil {
			s.Metadata = map[string]string{}
		}
		for k, v := range ans.Metadata {
			s.Metadata[k] = v
		}
		token = s.Metadata["token"]
	}
	ro := req.ReturnOverrides
	if ro == nil {
		ro = &pb.ReturnOverrides{}
	}
	if ro.ResponseError != "" {
		ro.ResponseBody = ro.ResponseError
	}
	code := int(ro.ResponseCode)
	if code > 0 && (code < 100 || code > 999) {
		// net/http cannot write such a status (the gateway's WriteHeader would panic).
		g.logReq(st, "error", "API %s: %s hook %s: return_overrides.response_code %d is not an HTTP status", st.api.def.APIID, hook, md.Name, code)
		g.writeError(w, st, http.StatusInternalServerError, msgMiddlewareError)
		return "", false
	}
	if code >= 400 && !ro.OverrideError {
		for h, v := range ro.Headers {
			w.Header().Set(h, v)
		}
		g.authFailed(st)
		msg := msgKeyNotAuthorised
		if ro.ResponseBody != "" {
			msg = ro.ResponseBody
		}
		g.writeError(w, st, code, msg)
		return "", false
	}
	if code > 0 {
		for h, v := range ro.Headers {
			w.Header().Set(h, v)
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte(ro.ResponseBody))
		return "", false
	}
	return token, true
}

// authCheck runs the auth_check (CustomKeyCheck) hook as the gateway's ProcessRequest does:
// the ID extractor first (a still-valid stored session skips the plugin), the answer
// applied like any request hook's, then a session with a non-empty token is required (else
// 403 Forbidden and AuthFailure); the session gets the API's OrgID, its key, the quota
// carried over from a stored session of the same key, and becomes the request's session
// (stored) when base_identity_provided_by is custom_auth or unset.
func (g *Gateway) authCheck(w http.ResponseWriter, st *reqState) bool {
	a := st.api
	md := a.def.CustomMiddleware.AuthCheck
	var sessionID string
	if a.extractor != nil {
		id, cached, err := a.extractor.extractAndCheck(st, g.sessions, g.now())
		if err != nil {
			g.writeError(w, st, http.StatusBadRequest, err.Error())
			return false
		}
		if cached != nil {
			g.setSession(st, cached)
			return true
		}
		sessionID = id
	}
	ans, err := g.dispatch(st, g.buildObject(st, pb.HookType_CustomKeyCheck, md, nil, nil))
	if err != nil {
		g.logReq(st, "error", "API %s: CustomKeyCheck hook %s: dispatch error: %v", a.def.APIID, md.Name, err)
		g.writeError(w, st, http.StatusForbidden, msgKeyNotAuthorised)
		return false
	}
	token, ok := g.processAnswer(w, st, pb.HookType_CustomKeyCheck, md, ans)
	if !ok {
		return false
	}
	if a.extractor == nil {
		sessionID = token
	}
	if ans.Session == nil || token == "" {
		g.authFailed(st)
		g.writeError(w, st, http.StatusForbidden, http.StatusText(http.StatusForbidden))
		return false
	}
	s := fromProto(ans.Session)
	for k, v := range ans.Metadata {
		s.MetaData[k] = v
	}
	s.OrgID = a.def.OrgID
	s.KeyID = token
	if err := applyPolicies(s); err != nil {
		g.logReq(st, "error", "API %s: CustomKeyCheck hook %s: the session names policies (%v), and this gateway has none", a.def.APIID, md.Name, s.policyIDs())
		g.authFailed(st)
		g.writeError(w, st, http.StatusForbidden, http.StatusText(http.StatusForbidden))
		return false
	}
	if existing, found := g.sessions.Get(sessionID); found {
		s.QuotaRenews, s.QuotaRemaining = existing.QuotaRenews, existing.QuotaRemaining
	}
	_ = applyPolicies(s) // the gateway applies them twice; the second cannot fail when the first did not
	s.KeyID = sessionID
	switch a.def.BaseIdentityProvidedBy {
	case "custom_auth", "":
		g.setSession(st, s)
	}
	return true
}

// setSession is the gateway's ctxSetSession with an update scheduled: the session becomes
// the request's, keyed by its KeyID, and is stored under that key.
func (g *Gateway) setSession(st *reqState, s *Session) {
	if s.KeyID == "" {
		s.KeyID = st.authToken
	}
	st.session, st.authToken = s, s.KeyID
	if st.authToken != "" {
		g.sessions.Put(st.authToken, s)
	}
}
