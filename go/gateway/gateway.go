// Package gateway is a small API gateway that runs the coprocess library for real: an HTTP
// reverse proxy reading API definitions in the gateway's classic JSON shape, calling the
// native plugin hooks of each API (pre, auth_check, post_key_auth, post, response) through
// the coprocess Dispatcher exactly as SPEC section 3 describes, firing events to native
// event handlers, and reloading on demand (cmd/gateway wires Reload to SIGHUP).
package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"coprocess/go/coprocess"
	"coprocess/go/pb"

	"google.golang.org/protobuf/proto"
)

// DefaultMaxBodyBytes is the largest request or response body hooks are given.
const DefaultMaxBodyBytes = 8 << 20

// Options configure a Gateway.
type Options struct {
	// AppsDir holds the API definitions, one *.json file each.
	AppsDir string
	// Dispatcher runs the hooks (coprocess.New).
	Dispatcher *coprocess.Dispatcher
	// Logger receives the gateway's own log lines (nil: stderr).
	Logger coprocess.Logger
	// MaxBodyBytes limits the bodies buffered for hooks (0: DefaultMaxBodyBytes). A larger
	// request is answered 413; a larger upstream response to an API with response hooks, 502.
	MaxBodyBytes int64
	// Transport reaches the upstreams (nil: http.DefaultTransport).
	Transport http.RoundTripper
	// Trace, when set, is called after every hook dispatch with what was sent and answered.
	Trace func(HookTrace)
}

// HookTrace is one hook dispatch.
type HookTrace struct {
	APIID  string
	Sent   *pb.Object
	Answer *pb.Object // nil when Err is set
	Err    error
}

// Gateway is an http.Handler proxying to the APIs of AppsDir.
type Gateway struct {
	opts  Options
	log   coprocess.Logger
	apis  atomic.Pointer[[]*api]
	proxy *httputil.ReverseProxy
}

// New loads the API definitions of opts.AppsDir.
func New(opts Options) (*Gateway, error) {
	if opts.Dispatcher == nil {
		return nil, errors.New("gateway: Options.Dispatcher is required")
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	g := &Gateway{opts: opts, log: opts.Logger}
	if g.log == nil {
		g.log = coprocess.StdLogger{}
	}
	apis, err := LoadDir(opts.AppsDir)
	if err != nil {
		return nil, err
	}
	g.apis.Store(&apis)
	g.proxy = &httputil.ReverseProxy{
		Director:       g.direct,
		Transport:      opts.Transport,
		ModifyResponse: g.modifyResponse,
		ErrorHandler:   g.proxyError,
	}
	return g, nil
}

// APIs lists the loaded API ids and their listen paths.
func (g *Gateway) APIs() map[string]string {
	out := map[string]string{}
	for _, a := range *g.apis.Load() {
		out[a.def.APIID] = a.listenPath
	}
	return out
}

// Reload re-reads the API definitions (an invalid set is refused whole and the loaded APIs
// stay) and reloads the library's global configuration (a broken file keeps its last good
// state). Both are attempted; the error reports what failed.
func (g *Gateway) Reload() error {
	var errs []string
	apis, err := LoadDir(g.opts.AppsDir)
	if err != nil {
		errs = append(errs, fmt.Sprintf("API definitions not reloaded (%d APIs kept): %v", len(*g.apis.Load()), err))
	} else {
		g.apis.Store(&apis)
	}
	if err := g.opts.Dispatcher.Reload(); err != nil {
		errs = append(errs, fmt.Sprintf("plugin configuration not reloaded (last good kept): %v", err))
	}
	if len(errs) > 0 {
		err := errors.New(strings.Join(errs, "; "))
		g.log.Log("error", "reload: "+err.Error())
		return err
	}
	g.log.Log("info", fmt.Sprintf("reload: %d APIs loaded, plugin configuration reloaded", len(apis)))
	return nil
}

func (g *Gateway) route(path string) *api {
	for _, a := range *g.apis.Load() {
		if a.match(path) {
			return a
		}
	}
	return nil
}

// reqState travels with a request through its hooks and the proxy.
type reqState struct {
	api      *api
	inbound  *http.Request
	session  *pb.SessionState
	metadata map[string]string
	body     []byte // the request body as it goes upstream (hooks may replace it)
}

type stateKey struct{}

func stateOf(r *http.Request) *reqState { return r.Context().Value(stateKey{}).(*reqState) }

// writeError answers with the gateway's own JSON error body.
func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

var errTooLarge = errors.New("body too large")

func readLimited(r io.Reader, limit int64) ([]byte, error) {
	if r == nil || r == http.NoBody {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, errTooLarge
	}
	return b, nil
}

func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/hello" {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]interface{}{"status": "pass", "apis": len(*g.apis.Load()), "abi": g.opts.Dispatcher.ABIVersion()})
		return
	}
	a := g.route(r.URL.Path)
	if a == nil {
		writeError(w, http.StatusNotFound, "no API listens on this path")
		return
	}
	st := &reqState{api: a, inbound: r}
	out := r.Clone(context.WithValue(r.Context(), stateKey{}, st))
	upstreamURL, err := a.upstreamURL(r.URL)
	if err != nil {
		writeError(w, http.StatusBadRequest, "malformed request path")
		return
	}
	out.URL = upstreamURL
	prepareUpstreamHeaders(out, r)
	if a.hasHooks() {
		body, err := readLimited(r.Body, g.opts.MaxBodyBytes)
		if errors.Is(err, errTooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, "request body too large")
			return
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, "cannot read the request body")
			return
		}
		st.body = body
		setBody(out, body)
		if !validUTF8Header(r.Header) || !utf8.ValidString(r.RequestURI) {
			writeError(w, http.StatusBadRequest, "request header values and the request URI must be valid UTF-8")
			return
		}
	}

	m := a.def.CustomMiddleware
	for _, md := range m.Pre {
		if !g.requestHook(w, out, st, pb.HookType_Pre, md.Name) {
			return
		}
	}
	if !a.def.UseKeyless {
		if !g.authenticate(w, out, st) {
			return
		}
		for _, md := range m.PostKeyAuth {
			if !g.requestHook(w, out, st, pb.HookType_PostKeyAuth, md.Name) {
				return
			}
		}
	}
	for _, md := range m.Post {
		if !g.requestHook(w, out, st, pb.HookType_Post, md.Name) {
			return
		}
	}
	g.proxy.ServeHTTP(w, out)
}

// hopHeaders are the hop-by-hop headers a proxy does not forward (RFC 9110 section 7.6.1).
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// prepareUpstreamHeaders makes out's headers what the upstream will receive before any hook
// sees them, so a hook that signs headers (UpstreamRequestSigning's default list signs them
// all) signs exactly what arrives: hop-by-hop headers (and those Connection names) are
// removed, and X-Forwarded-For gets the client's address appended here rather than by the
// reverse proxy afterwards (clearing RemoteAddr turns the proxy's own append off). An
// Upgrade request keeps its hop-by-hop headers for the proxy's upgrade handling.
func prepareUpstreamHeaders(out, in *http.Request) {
	upgrade := false
	for _, v := range out.Header["Connection"] {
		for _, tok := range strings.Split(v, ",") {
			upgrade = upgrade || strings.EqualFold(strings.TrimSpace(tok), "upgrade")
		}
	}
	if !upgrade {
		for _, v := range out.Header["Connection"] {
			for _, tok := range strings.Split(v, ",") {
				if tok = strings.TrimSpace(tok); tok != "" {
					out.Header.Del(tok)
				}
			}
		}
		for _, h := range hopHeaders {
			out.Header.Del(h)
		}
	}
	if ip, _, err := net.SplitHostPort(in.RemoteAddr); err == nil {
		if prior := out.Header.Values("X-Forwarded-For"); len(prior) > 0 {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		out.Header.Set("X-Forwarded-For", ip)
		out.RemoteAddr = ""
	}
}

func setBody(r *http.Request, body []byte) {
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	if len(body) == 0 {
		r.Body = http.NoBody
	}
	r.TransferEncoding = nil
	r.Header.Del("Content-Length")
}

// upstreamURL is the path and query the upstream receives: the listen path stripped when
// strip_listen_path is set, target_url's path in front. Hooks see it as request.url.
func (a *api) upstreamURL(in *url.URL) (*url.URL, error) {
	p := in.EscapedPath()
	if a.def.Proxy.StripListenPath {
		p = strings.TrimPrefix(p, strings.TrimSuffix(a.listenPath, "/"))
		if !strings.HasPrefix(p, "/") {
			p = "/" + p
		}
	}
	base := a.target.EscapedPath()
	switch {
	case base == "" || base == "/":
	case strings.HasSuffix(base, "/"):
		p = base + strings.TrimPrefix(p, "/")
	default:
		p = base + p
	}
	path, err := url.PathUnescape(p)
	if err != nil {
		return nil, err
	}
	return &url.URL{Path: path, RawPath: p, RawQuery: in.RawQuery}, nil
}

func (g *Gateway) direct(req *http.Request) {
	st := stateOf(req)
	req.URL.Scheme = st.api.target.Scheme
	req.URL.Host = st.api.target.Host
	req.Host = st.api.target.Host
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header.Set("User-Agent", "") // no Go default User-Agent upstream
	}
}

func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	var he *hookError
	if errors.As(err, &he) {
		g.log.Log("error", fmt.Sprintf("API %s: %v", stateOf(r).api.def.APIID, he))
		writeError(w, he.status, he.public)
		return
	}
	g.log.Log("error", fmt.Sprintf("API %s: upstream: %v", stateOf(r).api.def.APIID, err))
	writeError(w, http.StatusBadGateway, "upstream unavailable")
}

// hookError is a failed response hook, answered with status and a public message.
type hookError struct {
	status int
	public string
	detail string
}

func (e *hookError) Error() string { return e.detail }

// dispatch runs a hook on obj. The answer is obj itself, updated in place by DispatchInto
// (which decodes only the middleware's edits when the library appended them); the returned
// `sent` keeps the fields the answer is compared with (request url and body, response status
// and body) as they were sent. With tracing on, `sent` is a full copy of what was sent.
func (g *Gateway) dispatch(st *reqState, obj *pb.Object) (sent, ans *pb.Object, err error) {
	if g.opts.Trace != nil {
		sent = proto.Clone(obj).(*pb.Object)
	} else {
		sent = sentFields(obj)
	}
	if err = g.opts.Dispatcher.DispatchInto(obj); err != nil {
		ans = nil
	} else {
		ans = obj
	}
	if g.opts.Trace != nil {
		g.opts.Trace(HookTrace{APIID: st.api.def.APIID, Sent: sent, Answer: ans, Err: err})
	}
	return sent, ans, err
}

// sentFields copies what the answer of a hook is compared with.
func sentFields(obj *pb.Object) *pb.Object {
	s := new(pb.Object)
	if r := obj.Request; r != nil {
		s.Request = &pb.MiniRequestObject{Url: r.Url, Body: r.Body, RawBody: r.RawBody}
	}
	if r := obj.Response; r != nil {
		s.Response = &pb.ResponseObject{StatusCode: r.StatusCode, Body: r.Body, RawBody: r.RawBody}
	}
	return s
}

func origin(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// fireEvent runs the API's native event handlers for an event type (SPEC section 4).
func (g *Gateway) fireEvent(st *reqState, eventType, message string) {
	a := st.api
	for _, handler := range a.handlers[eventType] {
		payload, err := json.Marshal(map[string]interface{}{
			"message": map[string]interface{}{
				"Type":      eventType,
				"Meta":      map[string]string{"Message": message, "Path": st.inbound.URL.Path, "Origin": origin(st.inbound)},
				"TimeStamp": time.Now().UTC().Format(time.RFC3339),
			},
			"handler_name": handler,
			"spec":         map[string]string{"APIID": a.def.APIID, "OrgID": a.def.OrgID, "Name": a.def.Name},
		})
		if err == nil {
			err = g.opts.Dispatcher.DispatchEvent(payload)
		}
		if err != nil {
			g.log.Log("error", fmt.Sprintf("API %s: event %s to handler %s: %v", a.def.APIID, eventType, handler, err))
		}
	}
}
