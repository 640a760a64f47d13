// Package gateway is a small API gateway that runs the coprocess library for real: an HTTP
// reverse proxy reading API definitions in the gateway's classic JSON shape, calling the
// native plugin hooks of each API (pre, auth_check, post_key_auth, post, response) through
// the coprocess Dispatcher, firing events to native event handlers, and reloading on demand
// (cmd/gateway wires Reload to SIGHUP).
//
// It is a model of the Tyk gateway's plugin path: it builds each hook's Object, applies each
// answer, renders rejections, runs Response hooks and proxies upstream as the gateway does
// (gateway/coprocess.go, coprocess_id_extractor.go, handler_error.go, reverse_proxy.go).
// docs/gateway-model.md lists what it implements, row by row with the test that pins it,
// and every difference from the gateway with its reason.
package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

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
	// request is answered 413; a larger upstream response to an API with Response hooks, 502.
	MaxBodyBytes int64
	// Transport reaches the upstreams (nil: http.DefaultTransport).
	Transport http.RoundTripper
	// Trace, when set, is called after every hook dispatch with what was sent and answered.
	Trace func(HookTrace)
	// Sessions is the session store of the auth_check hook (nil: a new, empty one).
	Sessions *SessionStore
	// HideGeneratorHeader leaves X-Generator out of error answers (the gateway's
	// hide_generator_header).
	HideGeneratorHeader bool
	// Now is the clock the ID extractor compares id_extractor_deadline with (nil: time.Now).
	Now func() time.Time
	// MetricsPath, when set (cmd/gateway: "/metrics"), is a reserved path on which the
	// gateway serves its metrics and the library's (WriteMetrics) instead of routing it to
	// an API. "" serves them only through MetricsHandler.
	MetricsPath string
	// Store is the host store the Dispatcher was given, for the metrics (breaker state and
	// connections when it implements StoreHealth). nil: no store metrics beyond the calls.
	Store coprocess.Store
}

// HookTrace is one hook dispatch.
type HookTrace struct {
	APIID   string
	TraceID string // the request's W3C trace id ("" without a valid traceparent)
	Sent    *pb.Object
	Answer  *pb.Object // nil when Err is set
	Err     error
}

// Gateway is an http.Handler proxying to the APIs of AppsDir.
type Gateway struct {
	opts     Options
	log      coprocess.Logger
	apis     atomic.Pointer[[]*api]
	sessions *SessionStore
	now      func() time.Time
	metrics  *metrics
	// afterDispatch (tests) edits an answer after the library gave it, as a plugin could
	// have answered: the built-ins do not produce every kind of answer the gateway handles.
	afterDispatch func(ans *pb.Object)
}

// New loads the API definitions of opts.AppsDir.
func New(opts Options) (*Gateway, error) {
	if opts.Dispatcher == nil {
		return nil, errors.New("gateway: Options.Dispatcher is required")
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.Transport == nil {
		opts.Transport = http.DefaultTransport
	}
	g := &Gateway{opts: opts, log: opts.Logger, sessions: opts.Sessions, now: opts.Now, metrics: newMetrics()}
	if g.log == nil {
		g.log = coprocess.StdLogger{}
	}
	if g.sessions == nil {
		g.sessions = NewSessionStore()
	}
	if g.now == nil {
		g.now = time.Now
	}
	apis, err := LoadDir(opts.AppsDir)
	if err != nil {
		return nil, err
	}
	g.apis.Store(&apis)
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

// Sessions is the gateway's session store.
func (g *Gateway) Sessions() *SessionStore { return g.sessions }

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

// reqState is one request through an API's chain: the gateway's *http.Request (st.r, which
// every hook's answer edits in place) and what its context carries.
type reqState struct {
	api       *api
	r         *http.Request
	buffered  bool   // the body is in body (the API has hooks); else r.Body streams upstream
	body      []byte // the request body as it stands (each request hook's raw_body replaces it)
	session   *Session
	authToken string // the session's key (the gateway's ctx AuthToken)
	traceID   string // from the inbound traceparent header ("" when absent or invalid)
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

// writeError answers with the gateway's error template (errors.go).
func (g *Gateway) writeError(w http.ResponseWriter, st *reqState, code int, msg string) {
	var r *http.Request
	if st != nil {
		r = st.r
	}
	writeError(w, r, g.opts.HideGeneratorHeader, code, msg)
}

func (g *Gateway) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if g.opts.MetricsPath != "" && r.URL.Path == g.opts.MetricsPath {
		g.MetricsHandler().ServeHTTP(rw, r)
		return
	}
	if r.URL.Path == "/hello" {
		rw.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(rw).Encode(map[string]interface{}{"status": "pass", "apis": len(*g.apis.Load()), "abi": g.opts.Dispatcher.ABIVersion()})
		return
	}
	w := &statusWriter{ResponseWriter: rw}
	apiID, arrived := "", time.Now()
	defer func() {
		if w.code != 0 {
			g.metrics.request(apiID, w.code, time.Since(arrived))
		}
	}()
	a := g.route(r.URL.Path)
	if a == nil {
		writeError(w, r, g.opts.HideGeneratorHeader, http.StatusNotFound, "no API listens on this path")
		return
	}
	apiID = a.def.APIID
	st := &reqState{api: a, r: r.Clone(r.Context()), traceID: traceID(r.Header.Get("traceparent"))}
	st.r.Body = r.Body
	if a.hasHooks() {
		st.buffered = true
		body, err := readLimited(r.Body, g.opts.MaxBodyBytes)
		if errors.Is(err, errTooLarge) {
			g.writeError(w, st, http.StatusRequestEntityTooLarge, "Request is too large")
			return
		}
		if err != nil {
			g.logReq(st, "error", "API %s: reading the request body: %v", a.def.APIID, err)
			g.writeError(w, st, http.StatusInternalServerError, msgMiddlewareError)
			return
		}
		st.body = body
	}

	m := a.def.CustomMiddleware
	for _, md := range m.Pre {
		if !md.Disabled && !g.requestHook(w, st, pb.HookType_Pre, md) {
			return
		}
	}
	if a.def.coprocessAuth() {
		if !g.authCheck(w, st) {
			return
		}
		for _, md := range m.PostKeyAuth {
			if !md.Disabled && !g.requestHook(w, st, pb.HookType_PostKeyAuth, md) {
				return
			}
		}
	}
	for _, md := range m.Post {
		if !md.Disabled && !g.requestHook(w, st, pb.HookType_Post, md) {
			return
		}
	}
	g.proxy(w, st)
}

// dispatch runs a hook on obj. The answer is obj itself, updated in place by DispatchInto
// (which decodes only the middleware's edits when the library appended them). With tracing
// on, sent is a full copy of what was sent.
func (g *Gateway) dispatch(st *reqState, obj *pb.Object) (ans *pb.Object, err error) {
	var sent *pb.Object
	if g.opts.Trace != nil {
		sent = proto.Clone(obj).(*pb.Object)
	}
	hookType, hookName := obj.HookType.String(), obj.HookName
	err = g.opts.Dispatcher.DispatchInto(obj)
	g.metrics.hook(st.api.def.APIID, hookType, hookName, err != nil)
	if err == nil {
		ans = obj
		if g.afterDispatch != nil {
			g.afterDispatch(ans)
		}
	}
	if g.opts.Trace != nil {
		g.opts.Trace(HookTrace{APIID: st.api.def.APIID, TraceID: st.traceID, Sent: sent, Answer: ans, Err: err})
	}
	return ans, err
}
