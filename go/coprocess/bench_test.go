package coprocess

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"coprocess/go/pb"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// benchConfigData is an API's config_data for StaticTokenAuth with a realistic session template.
const benchConfigData = `{"StaticTokenAuth":{"header":"Authorization","strip_prefix":"Bearer ","tokens":{` +
	`"9f2c1d7e4b6a4f0e8c3d2b1a0f9e8d7c":{"rate":1000,"per":60,"quota_max":100000,"quota_renewal_rate":3600,` +
	`"org_id":"5e9d9544a1dcd60001d0ed20","tags":["gold","eu-west"],"metadata":{"plan":"gold","customer":"acme"},` +
	`"access_rights":{"orders-api":{"api_id":"orders-api","api_name":"Orders","versions":["Default"]}}},` +
	`"0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e":{"rate":10,"per":1,"quota_max":1000}}}}`

// benchObject is a realistic CustomKeyCheck Object of about 1 KB: browser-like headers, a
// bearer token, a query, and the API's spec with config_data.
func benchObject() *pb.Object {
	return &pb.Object{
		HookType: pb.HookType_CustomKeyCheck,
		HookName: "StaticTokenAuth",
		Request: &pb.MiniRequestObject{
			Headers: map[string]string{
				"User-Agent":      "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
				"Accept":          "application/json, text/plain, */*",
				"Accept-Encoding": "gzip, deflate, br",
				"Accept-Language": "en-GB,en;q=0.9",
				"Authorization":   "Bearer 9f2c1d7e4b6a4f0e8c3d2b1a0f9e8d7c",
				"X-Request-Id":    "3f1e2d4c-5b6a-4798-8a9b-0c1d2e3f4a5b",
				"X-Forwarded-For": "203.0.113.17, 198.51.100.4",
				"Content-Type":    "application/json",
			},
			Url:             "/orders/12345/items?include=details&limit=50",
			Params:          map[string]string{"include": "details", "limit": "50"},
			Method:          "GET",
			RequestUri:      "/orders-api/orders/12345/items?include=details&limit=50",
			Scheme:          "https",
			ReturnOverrides: &pb.ReturnOverrides{ResponseCode: -1},
		},
		Spec: map[string]string{"OrgID": "5e9d9544a1dcd60001d0ed20", "APIID": "orders-api", "bundle_hash": "", "config_data": benchConfigData},
	}
}

// goStaticTokenAuth is the same middleware written as a Go native plugin working on the
// same Object: config_data parsed once per distinct value, header looked up
// case-insensitively, prefix stripped, token matched exactly, session template copied.
type goStaticTokenAuth struct {
	configs sync.Map // config_data -> *goTokenConfig
}

type goTokenConfig struct {
	header, prefix string
	tokens         map[string]*pb.SessionState
}

func (m *goStaticTokenAuth) config(configData string) (*goTokenConfig, error) {
	if c, ok := m.configs.Load(configData); ok {
		return c.(*goTokenConfig), nil
	}
	var raw map[string]struct {
		Header      string                     `json:"header"`
		StripPrefix string                     `json:"strip_prefix"`
		Tokens      map[string]json.RawMessage `json:"tokens"`
	}
	if err := json.Unmarshal([]byte(configData), &raw); err != nil {
		return nil, err
	}
	section := raw["StaticTokenAuth"]
	c := &goTokenConfig{header: section.Header, prefix: section.StripPrefix, tokens: map[string]*pb.SessionState{}}
	for tok, tmpl := range section.Tokens {
		s := new(pb.SessionState)
		if err := protojson.Unmarshal(tmpl, s); err != nil {
			return nil, err
		}
		c.tokens[tok] = s
	}
	m.configs.Store(configData, c)
	return c, nil
}

func (m *goStaticTokenAuth) handle(obj *pb.Object) error {
	c, err := m.config(obj.Spec["config_data"])
	if err != nil {
		return err
	}
	value, ok := obj.Request.Headers[c.header]
	if !ok {
		for k, v := range obj.Request.Headers {
			if strings.EqualFold(k, c.header) {
				value, ok = v, true
				break
			}
		}
	}
	if !ok || !strings.HasPrefix(value, c.prefix) {
		return nil
	}
	if tmpl, found := c.tokens[value[len(c.prefix):]]; found {
		obj.Session = proto.Clone(tmpl).(*pb.SessionState)
		if obj.Metadata == nil {
			obj.Metadata = map[string]string{}
		}
		obj.Metadata["token"] = value[len(c.prefix):]
	}
	return nil
}

// The benchmarks' Object is the ~1 KB they claim, and both implementations agree on it.
func TestBenchmarkObjectAndBaselineAgree(t *testing.T) {
	obj := benchObject()
	if n := proto.Size(obj); n < 900 || n > 1200 {
		t.Fatalf("benchmark Object is %d bytes, want about 1 KB", n)
	}
	d, _ := newDispatcher(t, nil)
	viaLib, err := d.Dispatch(obj)
	if err != nil {
		t.Fatal(err)
	}
	native := proto.Clone(obj).(*pb.Object)
	if err := new(goStaticTokenAuth).handle(native); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(viaLib, native) {
		t.Fatalf("library and Go baseline differ:\n%v\n%v", viaLib, native)
	}
	if viaLib.Session.GetQuotaMax() != 100000 || viaLib.Session.Metadata["plan"] != "gold" || viaLib.Metadata["token"] == "" {
		t.Fatalf("session %v", viaLib.Session)
	}
}

// benchHook measures one authenticating hook five ways on Objects from newObject (each call
// returns a fresh copy; every answer must carry a session), as sub-benchmarks:
//   - cgo-roundtrip: what the gateway pays with Dispatch: Go marshal, cgo Dispatch (the
//     library reads the Object, runs the middleware, answers), Go unmarshal of the answer;
//   - cgo-into: the same through DispatchInto: Go marshal, cgo Dispatch, and only the
//     appended edits unmarshalled and merged into the Object;
//   - library-only: the cgo Dispatch of pre-marshalled bytes (the library's share);
//   - marshal-unmarshal: the Go protobuf work alone, no call;
//   - go-native: native, the same middleware logic in Go on the Object (no serialisation).
//
// Run with -cpu 1,2 for 1 and 2 parallel goroutines (b.RunParallel uses GOMAXPROCS).
func benchHook(b *testing.B, newObject func() *pb.Object, native func(*pb.Object) error) {
	d, _ := newDispatcher(b, nil)
	// each runs body on this goroutine's own Object, once per iteration.
	each := func(name string, body func(obj *pb.Object) error) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb_ *testing.PB) {
				obj := newObject()
				for pb_.Next() {
					if err := body(obj); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
	hasSession := func(o *pb.Object) error {
		if o.Session == nil {
			return errors.New("no session in the answer")
		}
		return nil
	}
	each("cgo-roundtrip", func(obj *pb.Object) error {
		in, err := proto.Marshal(obj)
		if err != nil {
			return err
		}
		answer, err := d.DispatchRaw(in)
		if err != nil {
			return err
		}
		out := new(pb.Object)
		if err := proto.Unmarshal(answer, out); err != nil {
			return err
		}
		return hasSession(out)
	})
	each("cgo-into", func(obj *pb.Object) error {
		obj.Session, obj.Metadata = nil, nil // the gateway builds a fresh Object per request
		if err := d.DispatchInto(obj); err != nil {
			return err
		}
		return hasSession(obj)
	})
	in, err := proto.Marshal(newObject())
	if err != nil {
		b.Fatal(err)
	}
	each("library-only", func(*pb.Object) error {
		_, err := d.DispatchRaw(in)
		return err
	})
	each("marshal-unmarshal", func(obj *pb.Object) error {
		in, err := proto.Marshal(obj)
		if err != nil {
			return err
		}
		return proto.Unmarshal(in, new(pb.Object))
	})
	each("go-native", func(obj *pb.Object) error {
		obj.Session, obj.Metadata = nil, nil
		if err := native(obj); err != nil {
			return err
		}
		return hasSession(obj)
	})
}

// BenchmarkStaticTokenAuth: StaticTokenAuth on benchObject, the five ways of benchHook.
func BenchmarkStaticTokenAuth(b *testing.B) {
	benchHook(b, benchObject, new(goStaticTokenAuth).handle)
}
