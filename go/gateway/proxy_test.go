package gateway

// What the upstream receives after the request hooks (docs/gateway-model.md, "Proxying").

import (
	"strings"
	"testing"

	"coprocess/go/pb"
)

func proxyAPI(id, listenPath string, strip bool, target string) string {
	s := "false"
	if strip {
		s = "true"
	}
	return `{"api_id": "` + id + `", "org_id": "org1", "use_keyless": true,
	  "proxy": {"listen_path": "` + listenPath + `", "strip_listen_path": ` + s + `, "target_url": "` + target + `"},
	  "custom_middleware": {"driver": "native", "post": [{"name": "InjectHeaders"}], "response": [{"name": "InjectHeaders:resp"}]},
	  "config_data": {"InjectHeaders": {}, "InjectHeaders:resp": {}}}`
}

// The listen path is stripped after all hooks (strip_listen_path, the listen path as
// written), the target's path joined in front with singleJoiningSlash, the target's query
// in front of the request's.
func TestProxyPathStripAndJoin(t *testing.T) {
	e := newEnv(t, map[string]string{
		"strip":   proxyAPI("strip", "/strip/", true, "{{UPSTREAM}}/base"),
		"keep":    proxyAPI("keep", "/keep/", false, "{{UPSTREAM}}/base/"),
		"root":    proxyAPI("root", "/root/", true, "{{UPSTREAM}}"),
		"noslash": proxyAPI("noslash", "/noslash", true, "{{UPSTREAM}}/base"),
		"query":   proxyAPI("query", "/query/", true, "{{UPSTREAM}}/base?t=1"),
	})
	cases := []struct{ path, want string }{
		{"/strip/items/7?a=1", "/base/items/7?a=1"},
		{"/strip/", "/base"},
		{"/strip", "/base/strip"}, // "/strip" does not start with the listen path "/strip/"
		{"/strip/a%2Fb/c", "/base/a%2Fb/c"},
		{"/keep/items", "/base/keep/items"},
		{"/root/items", "/items"},
		{"/root/", "/"},
		{"/noslash", "/base"},
		{"/noslash/x", "/base/x"},
		{"/query/x?a=2", "/base/x?t=1&a=2"},
		{"/query/x", "/base/x?t=1"},
	}
	for _, c := range cases {
		r := e.do("GET", c.path, nil, "")
		if r.status != 200 || r.seen.RequestURI != c.want {
			t.Errorf("%s: %d upstream %q, want %q", c.path, r.status, r.seen.RequestURI, c.want)
		}
		_, _, traces := e.rec.take()
		// The Post hook saw the request as the client sent it.
		if post := traceOf(t, traces, pb.HookType_Post).Sent.Request; post.Url != c.path {
			t.Errorf("%s: the Post hook's url %q", c.path, post.Url)
		}
	}
}

// Host becomes the target's host unless preserve_host_header.
func TestProxyHost(t *testing.T) {
	preserve := strings.Replace(proxyAPI("preserve", "/preserve/", true, "{{UPSTREAM}}"), `"strip_listen_path"`, `"preserve_host_header": true, "strip_listen_path"`, 1)
	e := newEnv(t, map[string]string{"strip": proxyAPI("strip", "/strip/", true, "{{UPSTREAM}}"), "preserve": preserve})
	upstreamHost := strings.TrimPrefix(e.upstream.URL, "http://")
	if r := e.do("GET", "/strip/x", nil, ""); r.seen.Host != upstreamHost {
		t.Errorf("Host %q, want the target's %q", r.seen.Host, upstreamHost)
	}
	req := e.request("GET", "/preserve/x", nil, "")
	req.Host = "client.example"
	if r := e.send(req); r.seen.Host != "client.example" {
		t.Errorf("preserve_host_header: Host %q", r.seen.Host)
	}
	_, _, traces := e.rec.take()
	if h := traces[len(traces)-2].Sent.Request.Headers["Host"]; h != "client.example" {
		t.Errorf("the Post hook's Host %q", h)
	}
}

// Hop-by-hop headers (Connection and every header it names, Keep-Alive, Proxy-*, TE unless
// exactly "trailers", Trailer, Transfer-Encoding, Upgrade) are removed; the client's address
// is appended to X-Forwarded-For. Hooks see none of it: they get the inbound headers.
func TestProxyHopByHopAndXForwardedFor(t *testing.T) {
	e := newEnv(t, map[string]string{"strip": proxyAPI("strip", "/strip/", true, "{{UPSTREAM}}")})
	hop := map[string]string{"Connection": "keep-alive, X-Hop", "X-Hop": "dropped", "Keep-Alive": "timeout=5", "Proxy-Authorization": "Basic eA==",
		"Proxy-Connection": "keep-alive", "Upgrade": "websocket", "X-Forwarded-For": "203.0.113.9", "X-End": "kept"}
	r := e.do("GET", "/strip/x", hop, "")
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	for _, h := range []string{"Connection", "X-Hop", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Upgrade"} {
		if v, ok := r.seen.Headers[h]; ok {
			t.Errorf("%s reached the upstream: %v", h, v)
		}
	}
	if xff := r.seen.Headers["X-Forwarded-For"]; len(xff) != 1 || xff[0] != "203.0.113.9, 127.0.0.1" || r.seen.Headers["X-End"][0] != "kept" {
		t.Errorf("X-Forwarded-For %v, headers %v", xff, r.seen.Headers)
	}
	_, _, traces := e.rec.take()
	for _, tr := range traces {
		h := tr.Sent.Request.Headers
		if h["X-Hop"] != "dropped" || h["Connection"] != "keep-alive, X-Hop" || h["Upgrade"] != "websocket" || h["X-Forwarded-For"] != "203.0.113.9" {
			t.Errorf("%s hook saw %v", tr.Sent.HookType, h)
		}
	}
	if r := e.do("GET", "/strip/x", map[string]string{"Te": "trailers"}, ""); r.seen.Headers["X-Forwarded-For"][0] != "127.0.0.1" || r.seen.Headers["Te"][0] != "trailers" {
		t.Errorf("no client X-Forwarded-For, TE trailers: %v", r.seen.Headers)
	}
	if r := e.do("GET", "/strip/x", map[string]string{"Te": "gzip"}, ""); r.seen.Headers["Te"] != nil {
		t.Errorf("TE gzip: %v", r.seen.Headers["Te"])
	}
}

// Response hooks run after the proxying: their request.url is the URL the upstream was sent
// (the gateway's outbound request shares the request's URL, which the proxy rewrote:
// scheme, target host, joined path), their request.headers the inbound ones.
func TestProxyResponseHookSeesUpstreamURL(t *testing.T) {
	e := newEnv(t, map[string]string{"strip": proxyAPI("strip", "/strip/", true, "{{UPSTREAM}}/base?t=1")})
	req := e.request("GET", "/strip/items?a=1", map[string]string{"Connection": "X-Hop", "X-Hop": "1"}, "")
	req.Host = "gw.example"
	if r := e.send(req); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	_, _, traces := e.rec.take()
	resp := traceOf(t, traces, pb.HookType_Response).Sent.Request
	if resp.Url != e.upstream.URL+"/base/items?t=1&a=1" || resp.RequestUri != "/strip/items?a=1" {
		t.Errorf("Response hook url %q request_uri %q", resp.Url, resp.RequestUri)
	}
	if resp.Headers["Host"] != "gw.example" || resp.Headers["X-Hop"] != "1" || resp.Headers["X-Forwarded-For"] != "" {
		t.Errorf("Response hook headers %v", resp.Headers)
	}
}

// A round trip that fails is the gateway's 500 "There was a problem proxying the request"
// (through the error template).
func TestProxyUpstreamDown(t *testing.T) {
	e := newEnv(t, map[string]string{"down": proxyAPI("down", "/down/", true, "http://127.0.0.1:1"),
		"nohost": proxyAPI("nohost", "/nohost/", true, "http://no-such-host.invalid")})
	isError(t, "refused", e.do("GET", "/down/x", nil, ""), 500, msgProxyProblem)
	isError(t, "no such host", e.do("GET", "/nohost/x", nil, ""), 500, "Upstream host lookup failed")
}
