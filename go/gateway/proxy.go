package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"coprocess/go/pb"
)

// hopHeaders are the gateway's hop-by-hop headers (reverse_proxy.go), removed from what goes
// upstream and from what comes back.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// requestIPHops is the gateway's: the client's address appended to the X-Forwarded-For the
// request had (all its values joined with ", "); "" when RemoteAddr has no port.
func requestIPHops(r *http.Request) string {
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return ""
	}
	if prior, ok := r.Header["X-Forwarded-For"]; ok {
		ip = strings.Join(prior, ", ") + ", " + ip
	}
	return ip
}

// removeHopHeaders deletes the headers Connection names and the hop-by-hop headers; keepTE
// keeps a TE of exactly "trailers" (requests only, as the gateway does).
func removeHopHeaders(h http.Header, keepTE bool) {
	if c := h.Get("Connection"); c != "" {
		for _, f := range strings.Split(c, ",") {
			if f = strings.TrimSpace(f); f != "" {
				h.Del(f)
			}
		}
	}
	for _, name := range hopHeaders {
		v := h.Get(name)
		if v == "" {
			continue
		}
		if keepTE && name == "Te" && v == "trailers" {
			continue
		}
		h.Del(name)
	}
}

// proxy sends the request upstream after all request hooks and answers the client, as the
// gateway's SuccessHandler and ReverseProxy do: the listen path is stripped from the path
// (strip_listen_path) and the target's path joined in front (singleJoiningSlash), the
// target's query in front of the request's; the outbound request gets Host = the target's
// host unless preserve_host_header, loses its hop-by-hop headers, and has the client's
// address appended to X-Forwarded-For. The request keeps the rewritten URL (the gateway's
// outbound request shares its URL), which is what Response hooks see as request.url; their
// request.headers are the request's, before the hop-by-hop removal and X-Forwarded-For.
func (g *Gateway) proxy(w http.ResponseWriter, st *reqState) {
	r, a := st.r, st.api
	if a.def.Proxy.StripListenPath {
		r.URL.Path = stripListenPath(a.def.Proxy.ListenPath, r.URL.Path)
		if r.URL.RawPath != "" {
			r.URL.RawPath = stripListenPath(a.def.Proxy.ListenPath, r.URL.RawPath)
		}
	}
	u, target := r.URL, a.target
	u.Scheme, u.Host = target.Scheme, target.Host
	u.Path = singleJoiningSlash(target.Path, u.Path, a.def.Proxy.DisableStripSlash)
	if u.RawPath != "" {
		u.RawPath = singleJoiningSlash(target.Path, u.RawPath, a.def.Proxy.DisableStripSlash)
	}
	if target.RawQuery == "" || u.RawQuery == "" {
		u.RawQuery = target.RawQuery + u.RawQuery
	} else {
		u.RawQuery = target.RawQuery + "&" + u.RawQuery
	}
	if u.RawPath == u.Path {
		u.RawPath = ""
	}

	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.Close = false
	if !a.def.Proxy.PreserveHostHeader {
		out.Host = target.Host
	}
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header.Set("User-Agent", "") // no Go default User-Agent (see the differences)
	}
	removeHopHeaders(out.Header, true)
	out.Header.Set("X-Forwarded-For", requestIPHops(r))
	if st.buffered {
		// ObjectPostProcess's Content-Length; a chunked request stays chunked, as there.
		out.ContentLength = int64(len(st.body))
		out.Body, out.GetBody = nil, nil
		if len(st.body) > 0 {
			body := st.body
			out.Body = io.NopCloser(bytes.NewReader(body))
			out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		}
	} else if out.ContentLength == 0 {
		out.Body = nil
	}

	res, err := g.opts.Transport.RoundTrip(out)
	if err != nil {
		g.upstreamError(w, st, err)
		return
	}
	defer res.Body.Close()
	if !g.responseHooks(w, st, res) {
		return
	}
	removeHopHeaders(res.Header, false)
	for k, vv := range res.Header {
		for _, v := range vv {
			w.Header().Add(k, v)
		}
	}
	if len(res.Trailer) > 0 {
		keys := make([]string, 0, len(res.Trailer))
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		w.Header().Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(res.StatusCode)
	copyBody(w, res.Body, res.ContentLength < 0)
	for k, vv := range res.Trailer {
		for _, v := range vv {
			w.Header().Add(k, v)
		}
	}
}

// upstreamError answers a failed round trip with the gateway's messages (reverse_proxy.go).
func (g *Gateway) upstreamError(w http.ResponseWriter, st *reqState, err error) {
	g.logReq(st, "error", "API %s: http: proxy error: %v", st.api.def.APIID, err)
	e := err.Error()
	switch {
	case strings.Contains(e, "timeout awaiting response headers") || strings.Contains(e, "context deadline exceeded"):
		g.writeError(w, st, http.StatusGatewayTimeout, "Upstream service reached hard timeout.")
	case strings.Contains(e, "context canceled"):
		g.writeError(w, st, 499, "Client closed request")
	case strings.Contains(e, "no such host"):
		g.writeError(w, st, http.StatusInternalServerError, "Upstream host lookup failed")
	default:
		g.writeError(w, st, http.StatusInternalServerError, msgProxyProblem)
	}
}

func copyBody(w http.ResponseWriter, body io.Reader, flush bool) {
	if !flush {
		_, _ = io.Copy(w, body)
		return
	}
	f, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if f != nil {
				f.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}

// responseHooks runs the API's Response hooks on the upstream's answer
// (CustomMiddlewareResponseHook.HandleResponse): each gets the request, the session (an
// empty one when the request has none) and the response as the previous hook left it; an
// answer without a response, or a failed dispatch, is 500 Middleware error. The response
// headers are cleared and rebuilt from multivalue_headers, after a `headers` that differs
// from what was sent is synced into them; the body becomes raw_body (Content-Length set to
// its length) and the status is status_code exactly as returned. false: the client was
// answered.
func (g *Gateway) responseHooks(w http.ResponseWriter, st *reqState, res *http.Response) bool {
	var hooks []MiddlewareDefinition
	for _, md := range st.api.def.CustomMiddleware.Response {
		if !md.Disabled {
			hooks = append(hooks, md)
		}
	}
	if len(hooks) == 0 {
		return true
	}
	a := st.api
	body, err := readLimited(res.Body, g.opts.MaxBodyBytes)
	if err != nil {
		g.logReq(st, "error", "API %s: reading the upstream response for the Response hooks: %v", a.def.APIID, err)
		if errors.Is(err, errTooLarge) {
			g.writeError(w, st, http.StatusBadGateway, "Upstream response too large for the response hooks")
		} else {
			g.writeError(w, st, http.StatusInternalServerError, msgProxyProblem)
		}
		return false
	}
	ses := st.session
	if ses == nil {
		ses = &Session{}
	}
	for _, md := range hooks {
		obj := g.buildObject(st, pb.HookType_Response, md, res, body)
		obj.Session = toProto(ses)
		sentHeaders := make(map[string]string, len(obj.Response.Headers))
		for k, v := range obj.Response.Headers {
			sentHeaders[k] = v
		}
		ans, err := g.dispatch(st, obj)
		var ret *pb.ResponseObject
		if err == nil {
			ret = ans.Response
			if ret == nil {
				err = errors.New("no response object returned by the response hook")
			}
		}
		if err == nil && (ret.StatusCode < 100 || ret.StatusCode > 999) {
			// net/http cannot write it (the gateway's WriteHeader would panic).
			err = fmt.Errorf("status_code %d is not an HTTP status", ret.StatusCode)
		}
		if err != nil {
			g.logReq(st, "error", "API %s: Response hook %s: %v", a.def.APIID, md.Name, err)
			g.writeError(w, st, http.StatusInternalServerError, msgMiddlewareError)
			return false
		}
		for k := range res.Header {
			delete(res.Header, k)
		}
		mvh := ret.MultivalueHeaders
		if !mapsEqual(sentHeaders, ret.Headers) {
			mvh = syncHeaders(ret.Headers, mvh)
		}
		for _, h := range mvh {
			for _, v := range h.Values {
				res.Header.Add(h.Key, v)
			}
		}
		body = ret.RawBody
		res.ContentLength = int64(len(body))
		res.Header.Set("Content-Length", strconv.Itoa(len(body)))
		res.StatusCode = int(ret.StatusCode)
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	res.TransferEncoding = nil
	return true
}

// mapsEqual is the gateway's areMapsEqual.
func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// syncHeaders is the gateway's syncHeadersAndMultiValueHeaders: a key of headers that
// multivalue_headers has (same spelling) gets its first value replaced, one it lacks is
// added with that one value, and a multivalue_headers key that headers lacks is dropped.
// (The gateway adds the new keys in Go map order; sorted here.)
func syncHeaders(headers map[string]string, mvh []*pb.Header) []*pb.Header {
	var out []*pb.Header
	keys := make([]string, 0, len(headers))
	for k := range headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		found := false
		for _, h := range mvh {
			if h.Key == k {
				found = true
				if len(h.Values) > 0 {
					h.Values[0] = headers[k]
				}
				break
			}
		}
		if !found {
			out = append(out, &pb.Header{Key: k, Values: []string{headers[k]}})
		}
	}
	for _, h := range mvh {
		if _, ok := headers[h.Key]; ok {
			out = append(out, h)
		}
	}
	return out
}
