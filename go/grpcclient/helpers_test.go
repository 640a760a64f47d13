// Package grpcclient tests the coprocess-grpc server binary with Go's gRPC client (the
// client library the gateway's gRPC plugin driver uses), dialling TCP and unix sockets the way
// the gateway does for coprocess_grpc_server "tcp://..." and "unix://...".
//
// Part of the coprocess/go module (grpc-go from Debian's packages, see go/go.mod); run by
// `make grpc-test`, which builds the server and sets COPROCESS_GRPC_BIN to it.
package grpcclient

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"coprocess/go/pb"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// server is one coprocess-grpc process.
type server struct {
	t    testing.TB
	cmd  *exec.Cmd
	tcp  string
	unix string
	// metrics is the --metrics-listen address the serving line names ("" without it).
	metrics string
	mu      sync.Mutex
	lines   []map[string]interface{}
	done    chan struct{}
	err     error
}

// startServer runs the binary with args and waits for its "serving" line.
func startServer(t testing.TB, args ...string) *server {
	t.Helper()
	bin := os.Getenv("COPROCESS_GRPC_BIN")
	if bin == "" {
		t.Fatal("COPROCESS_GRPC_BIN is not set (run through make grpc-test)")
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "COPROCESS_CONFIG=")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, cmd: cmd, done: make(chan struct{})}
	ready := make(chan map[string]interface{}, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line map[string]interface{}
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				// Every stderr line must be one JSON object, except Rust's panic message
				// for a middleware panic (none of these tests panics one).
				line = map[string]interface{}{"unparsed": sc.Text()}
			}
			s.mu.Lock()
			s.lines = append(s.lines, line)
			s.mu.Unlock()
			if line["msg"] == "serving" {
				ready <- line
			}
		}
		s.err = cmd.Wait()
		close(s.done)
	}()
	select {
	case line := <-ready:
		if v, ok := line["tcp"].(string); ok {
			s.tcp = v
		}
		if v, ok := line["unix"].(string); ok {
			s.unix = v
		}
		if v, ok := line["metrics"].(string); ok {
			s.metrics = v
		}
	case <-s.done:
		t.Fatalf("server exited before serving: %v; stderr: %v", s.err, s.logLines())
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("server did not start within 20s")
	}
	t.Cleanup(func() { s.stop() })
	return s
}

// stop sends SIGTERM and waits; it returns the exit error (nil for status 0).
func (s *server) stop() error {
	select {
	case <-s.done:
		return s.err
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		s.t.Error("server ignored SIGTERM for 20s")
	}
	return s.err
}

func (s *server) signal(sig os.Signal) {
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}

func (s *server) logLines() []map[string]interface{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]map[string]interface{}(nil), s.lines...)
}

// waitLog waits until a log line satisfies pred.
func (s *server) waitLog(what string, pred func(map[string]interface{}) bool) map[string]interface{} {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range s.logLines() {
			if pred(l) {
				return l
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("no log line %s; lines: %v", what, s.logLines())
	return nil
}

// dial connects the way the gateway's gRPC driver does: a custom dialer for "tcp" or "unix".
func dial(t testing.TB, network, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	base := []grpc.DialOption{
		grpc.WithBlock(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}),
	}
	if len(opts) == 0 {
		base = append(base, grpc.WithInsecure())
	}
	conn, err := grpc.DialContext(ctx, "passthrough:///"+network, append(base, opts...)...)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func (s *server) conns(t testing.TB) map[string]*grpc.ClientConn {
	return map[string]*grpc.ClientConn{"tcp": dial(t, "tcp", s.tcp), "unix": dial(t, "unix", s.unix)}
}

func dispatch(conn *grpc.ClientConn, in *pb.Object) (*pb.Object, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := new(pb.Object)
	err := conn.Invoke(ctx, "/coprocess.Dispatcher/Dispatch", in, out)
	return out, err
}

func dispatchEvent(conn *grpc.ClientConn, payload string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return conn.Invoke(ctx, "/coprocess.Dispatcher/DispatchEvent", &pb.Event{Payload: payload}, new(pb.EventReply))
}

// rawCodec sends bytes as they are (to send what is not an Object).
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error)      { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error { *(v.(*[]byte)) = data; return nil }
func (rawCodec) Name() string                               { return "proto" }

// dispatchRaw sends raw bytes and returns the status and the coprocess-code trailer.
func dispatchRaw(conn *grpc.ClientConn, raw []byte) (*status.Status, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []byte
	var trailer metadata.MD
	err := conn.Invoke(ctx, "/coprocess.Dispatcher/Dispatch", &raw, &out, grpc.ForceCodec(rawCodec{}), grpc.Trailer(&trailer))
	code := ""
	if v := trailer.Get("coprocess-code"); len(v) > 0 {
		code = v[0]
	}
	return status.Convert(err), code
}

// request builds an Object as the gateway sends it.
func request(hook pb.HookType, name string, headers map[string]string) *pb.Object {
	if headers == nil {
		headers = map[string]string{}
	}
	return &pb.Object{
		HookType: hook,
		HookName: name,
		Request: &pb.MiniRequestObject{
			Headers: headers, Method: "GET", Url: "/v1/items", RequestUri: "/v1/items", Scheme: "http",
			ReturnOverrides: &pb.ReturnOverrides{ResponseCode: -1},
		},
		Spec: map[string]string{"APIID": "api-1", "OrgID": "org-1"},
	}
}

func overrides(o *pb.Object) (int32, string) {
	if o.GetRequest().GetReturnOverrides() == nil {
		return 0, ""
	}
	r := o.Request.ReturnOverrides
	return r.ResponseCode, r.ResponseError
}

func expectCode(t testing.TB, label string, err error, want codes.Code) {
	t.Helper()
	if status.Code(err) != want {
		t.Errorf("%s: got %v, want %v", label, err, want)
	}
}

// writeJSON writes v to path through a rename, so a reload never reads a half-written file.
func writeJSON(t testing.TB, path string, v interface{}) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// serverArgs: TCP on a free loopback port, a unix socket and the middleware file in dir.
func serverArgs(dir string, extra ...string) []string {
	return append([]string{
		"--listen", "127.0.0.1:0",
		"--unix", filepath.Join(dir, "grpc.sock"),
		"--middleware-config", filepath.Join(dir, "coprocess.json"),
	}, extra...)
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

var _ = fmt.Sprintf
