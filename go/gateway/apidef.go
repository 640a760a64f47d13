package gateway

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// APIDefinition is the subset of the gateway's classic API definition JSON this gateway
// understands (field names as in the gateway's apidef package). Unknown fields are ignored,
// as the gateway itself ignores fields of features it does not run.
type APIDefinition struct {
	Name       string `json:"name"`
	APIID      string `json:"api_id"`
	OrgID      string `json:"org_id"`
	Active     *bool  `json:"active"`
	UseKeyless bool   `json:"use_keyless"`
	// EnableCoProcessAuth or CustomPluginAuthEnabled turn the auth_check hook on.
	EnableCoProcessAuth     bool `json:"enable_coprocess_auth"`
	CustomPluginAuthEnabled bool `json:"custom_plugin_auth_enabled"`
	// BaseIdentityProvidedBy: the auth_check's session becomes the request's session when
	// this is "custom_auth" or unset.
	BaseIdentityProvidedBy string            `json:"base_identity_provided_by"`
	Proxy                  ProxyConfig       `json:"proxy"`
	CustomMiddleware       MiddlewareSection `json:"custom_middleware"`
	// CustomMiddlewareBundle is sent to plugins as spec["bundle_hash"], its hex MD5.
	CustomMiddlewareBundle string `json:"custom_middleware_bundle"`
	// ConfigData is a JSON object, sent as spec["config_data"] (see configDataOf).
	ConfigData         json.RawMessage `json:"config_data"`
	ConfigDataDisabled bool            `json:"config_data_disabled"`
	EventHandlers      EventHandlers   `json:"event_handlers"`
}

// ProxyConfig is the definition's "proxy" object.
type ProxyConfig struct {
	ListenPath      string `json:"listen_path"`
	StripListenPath bool   `json:"strip_listen_path"`
	// TargetURL may reference environment variables as ${NAME} (expanded at load).
	TargetURL          string `json:"target_url"`
	PreserveHostHeader bool   `json:"preserve_host_header"`
	DisableStripSlash  bool   `json:"disable_strip_slash"`
}

// MiddlewareSection is "custom_middleware".
type MiddlewareSection struct {
	Pre         []MiddlewareDefinition `json:"pre"`
	Post        []MiddlewareDefinition `json:"post"`
	PostKeyAuth []MiddlewareDefinition `json:"post_key_auth"`
	AuthCheck   MiddlewareDefinition   `json:"auth_check"`
	Response    []MiddlewareDefinition `json:"response"`
	Driver      string                 `json:"driver"`
	IDExtractor IDExtractorDefinition  `json:"id_extractor"`
}

// MiddlewareDefinition names one hook. Name is the hook name the library dispatches on
// ("Name" or "Name:instance"); a Disabled hook is skipped; RawBodyOnly leaves `body` out of
// the Object (raw_body only). Path and RequireSession are accepted and ignored, as the
// gateway's plugin drivers ignore them.
type MiddlewareDefinition struct {
	Disabled       bool   `json:"disabled"`
	Name           string `json:"name"`
	Path           string `json:"path"`
	RequireSession bool   `json:"require_session"`
	RawBodyOnly    bool   `json:"raw_body_only"`
}

// IDExtractorDefinition is "custom_middleware.id_extractor" (see idextractor.go).
type IDExtractorDefinition struct {
	Disabled        bool                   `json:"disabled"`
	ExtractFrom     string                 `json:"extract_from"`
	ExtractWith     string                 `json:"extract_with"`
	ExtractorConfig map[string]interface{} `json:"extractor_config"`
}

// EventHandlers is "event_handlers": {"events": {"AuthFailure": [{"handler_name":
// "cp_dynamic_handler", "handler_meta": {"name": "RelayEvent"}}]}}.
type EventHandlers struct {
	Events map[string][]EventHandlerConf `json:"events"`
}

// EventHandlerConf is one handler of an event. The gateway runs native event handlers
// (handler_name "cp_dynamic_handler") by the name in handler_meta.
type EventHandlerConf struct {
	HandlerName string                 `json:"handler_name"`
	HandlerMeta map[string]interface{} `json:"handler_meta"`
}

// DynamicHandler is the handler_name of plugin event handlers.
const DynamicHandler = "cp_dynamic_handler"

// NativeDriver is the custom_middleware.driver value for this library.
const NativeDriver = "native"

// api is a loaded, validated definition.
type api struct {
	def        *APIDefinition
	file       string
	listenPath string // routing prefix: the listen path with a trailing slash
	target     *url.URL
	spec       map[string]string // the Object's spec map, the same for every hook
	extractor  *idExtractor      // nil: no ID extractor
	handlers   map[string][]string
}

// coprocessAuth: the gateway's coprocessAuthEnabled.
func (d *APIDefinition) coprocessAuth() bool {
	return d.EnableCoProcessAuth || d.CustomPluginAuthEnabled
}

func (a *api) hasHooks() bool {
	m := a.def.CustomMiddleware
	return len(m.Pre)+len(m.Post)+len(m.PostKeyAuth)+len(m.Response) > 0 || m.AuthCheck.Name != ""
}

// LoadDir reads every *.json file of dir as one API definition. Inactive definitions
// ("active": false) are skipped. Any invalid definition fails the whole load, so a reload
// never half-applies.
func LoadDir(dir string) ([]*api, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var apis []*api
	ids := map[string]string{}
	paths := map[string]string{}
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		a, err := parseDefinition(text)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Base(f), err)
		}
		if a == nil {
			continue
		}
		a.file = filepath.Base(f)
		if other, dup := ids[a.def.APIID]; dup {
			return nil, fmt.Errorf("%s: api_id %q is already used by %s", a.file, a.def.APIID, other)
		}
		if other, dup := paths[a.listenPath]; dup {
			return nil, fmt.Errorf("%s: listen_path %q is already used by %s", a.file, a.listenPath, other)
		}
		ids[a.def.APIID], paths[a.listenPath] = a.file, a.file
		apis = append(apis, a)
	}
	// Longest listen path first: the most specific API wins.
	sort.SliceStable(apis, func(i, j int) bool { return len(apis[i].listenPath) > len(apis[j].listenPath) })
	return apis, nil
}

func parseDefinition(text []byte) (*api, error) {
	def := new(APIDefinition)
	if err := json.Unmarshal(text, def); err != nil {
		return nil, fmt.Errorf("not a valid API definition: %w", err)
	}
	if def.Active != nil && !*def.Active {
		return nil, nil
	}
	a := &api{def: def, handlers: map[string][]string{}}
	if def.APIID == "" {
		return nil, fmt.Errorf("api_id is required")
	}
	lp := def.Proxy.ListenPath
	if !strings.HasPrefix(lp, "/") {
		return nil, fmt.Errorf("proxy.listen_path must start with /")
	}
	if muxVariable.MatchString(lp) {
		return nil, fmt.Errorf("proxy.listen_path: path variables ({name}) are not supported")
	}
	if !strings.HasSuffix(lp, "/") {
		lp += "/"
	}
	a.listenPath = lp
	target, err := url.Parse(os.ExpandEnv(def.Proxy.TargetURL))
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
		return nil, fmt.Errorf("proxy.target_url must be an absolute http(s) URL")
	}
	a.target = target

	m := def.CustomMiddleware
	if a.hasHooks() && m.Driver != NativeDriver {
		return nil, fmt.Errorf("custom_middleware.driver is %q: this gateway runs only the %q driver", m.Driver, NativeDriver)
	}
	for _, list := range [][]MiddlewareDefinition{m.Pre, m.Post, m.PostKeyAuth, m.Response} {
		for _, md := range list {
			if md.Name == "" {
				return nil, fmt.Errorf("a custom_middleware entry has no name")
			}
		}
	}
	switch {
	case def.UseKeyless && def.coprocessAuth():
		return nil, fmt.Errorf("use_keyless and enable_coprocess_auth (custom_plugin_auth_enabled) are mutually exclusive")
	case def.UseKeyless:
		if m.AuthCheck.Name != "" || len(m.PostKeyAuth) > 0 {
			return nil, fmt.Errorf("a keyless API runs no auth_check or post_key_auth hooks")
		}
	case def.coprocessAuth():
		if m.AuthCheck.Name == "" || m.AuthCheck.Disabled {
			return nil, fmt.Errorf("enable_coprocess_auth needs an enabled custom_middleware.auth_check with a name (this gateway has no other authentication)")
		}
		if a.extractor, err = newIDExtractor(m.IDExtractor, def.OrgID); err != nil {
			return nil, fmt.Errorf("custom_middleware.id_extractor: %w", err)
		}
	default:
		return nil, fmt.Errorf("set use_keyless or enable_coprocess_auth: this gateway has no other authentication")
	}

	configData, err := configDataOf(def)
	if err != nil {
		return nil, err
	}
	a.spec = specOf(def, configData)

	for event, confs := range def.EventHandlers.Events {
		for _, c := range confs {
			if c.HandlerName != DynamicHandler {
				return nil, fmt.Errorf("event %s: handler_name %q is not supported (only %q, native event handlers)", event, c.HandlerName, DynamicHandler)
			}
			name, _ := c.HandlerMeta["name"].(string)
			if name == "" {
				return nil, fmt.Errorf("event %s: handler_meta.name is required", event)
			}
			a.handlers[event] = append(a.handlers[event], name)
		}
	}
	return a, nil
}

// configDataOf renders config_data as the gateway does: its APIDefinition holds config_data
// as a map[string]interface{} (so anything but a JSON object fails the definition), and
// BuildObject sends json.Marshal of it (keys sorted, numbers as float64, <, > and &
// escaped as \u003c, \u003e, \u0026), omitted when the map is empty or
// config_data_disabled is set ("" here).
func configDataOf(def *APIDefinition) (string, error) {
	raw := bytes.TrimSpace(def.ConfigData)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", nil
	}
	var m map[string]interface{}
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", fmt.Errorf("config_data must be a JSON object")
	}
	if def.ConfigDataDisabled || len(m) == 0 {
		return "", nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("config_data: %w", err)
	}
	return string(b), nil
}

// specOf is the Object's spec map: OrgID, APIID, bundle_hash (the hex MD5 of
// custom_middleware_bundle, the MD5 of "" when there is none) and config_data when present.
func specOf(def *APIDefinition, configData string) map[string]string {
	sum := md5.Sum([]byte(def.CustomMiddlewareBundle))
	spec := map[string]string{"OrgID": def.OrgID, "APIID": def.APIID, "bundle_hash": hex.EncodeToString(sum[:])}
	if configData != "" {
		spec["config_data"] = configData
	}
	return spec
}

// match reports whether the request path belongs to the API.
func (a *api) match(path string) bool {
	return strings.HasPrefix(path, a.listenPath) || path == strings.TrimSuffix(a.listenPath, "/")
}

// stripListenPath is the gateway's StripListenPath for a listen path without mux
// variables: the listen path as written in the definition removed from the front, and a
// leading slash ensured.
func stripListenPath(listenPath, p string) string {
	p = strings.TrimPrefix(p, listenPath)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return p
}

// singleJoiningSlash is the gateway's (reverse_proxy.go): the target's path and the request
// path joined with exactly one slash.
func singleJoiningSlash(targetPath, subPath string, disableStripSlash bool) string {
	if disableStripSlash && (len(subPath) == 0 || subPath == "/") {
		return targetPath
	}
	targetPath = strings.TrimRight(targetPath, "/")
	subPath = strings.TrimLeft(subPath, "/")
	if len(subPath) > 0 {
		return targetPath + "/" + subPath
	}
	return targetPath
}

var muxVariable = regexp.MustCompile(`\{[^}]*\}`)
