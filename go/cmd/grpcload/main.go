// Command grpcload is the load client of `make bench-compare`'s gRPC rows, written with
// grpc-go, the gateway's gRPC client library: one ClientConn (one HTTP/2 connection, as the
// gateway's gRPC driver keeps one), and at each concurrency that many goroutines calling
// coprocess.Dispatcher/Dispatch on it in a loop with the benchmark Object's bytes.
//
//	grpcload -target 127.0.0.1:PORT|unix:PATH -object FILE -label NAME
//	         [-concurrency 1,16,64] [-calls 20000] [-max-seconds 5] [-warmup-calls 2000]
//	         [-server-pid PID]
//
// The Object's bytes are sent as they are and the answer's bytes taken as they come (a codec
// that does not marshal): the client's own CPU is the same for every server and stays small.
// Before timing, one answer is decoded and must authenticate (a session with hmac_enabled and
// metadata["token"]); every timed answer must be longer than the request (the session and the
// token were added).
//
// Per concurrency: -warmup-calls calls, then the timed phase: -calls calls in all (or fewer
// when -max-seconds pass first), each one timed. Prints one JSON line per concurrency: the
// calls, the median and p99 of the per-call latencies of all goroutines, the throughput (calls
// / wall time), and with -server-pid the server's utime+stime clock ticks
// (/proc/PID/stat) read right before and right after the timed phase, and the client's own
// CPU seconds over it. A call error or a hang (the whole run has a deadline) exits non-zero.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"coprocess/go/pb"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

const method = "/coprocess.Dispatcher/Dispatch"

// rawCodec passes bytes through: the request is the serialised Object already.
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	*(v.(*[]byte)) = data
	return nil
}
func (rawCodec) Name() string { return "proto" }

// serverTicks is utime+stime of process pid in clock ticks (fields 14 and 15 of
// /proc/PID/stat, after the parenthesised command name).
func serverTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return u + st, nil
}

func selfCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

type point struct {
	Peer        string  `json:"peer"`
	Concurrency int     `json:"concurrency"`
	Calls       int     `json:"calls"`
	MedianNs    int64   `json:"median_ns"`
	P99Ns       int64   `json:"p99_ns"`
	Throughput  float64 `json:"throughput"`
	WallS       float64 `json:"wall_s"`
	ServerTicks *int64  `json:"server_ticks,omitempty"`
	ClientCPUS  float64 `json:"client_cpu_s"`
	Bytes       int     `json:"bytes"`
}

func percentile(sorted []int64, p float64) int64 {
	return sorted[int(float64(len(sorted)-1)*p+0.5)]
}

// run makes up to calls calls (or until deadline) from conc goroutines; the latencies of all.
func run(conn *grpc.ClientConn, req []byte, conc, calls int, deadline time.Time, timed bool) ([]int64, time.Duration, error) {
	var left int64 = int64(calls)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	samples := make([][]int64, conc)
	start := time.Now()
	for g := 0; g < conc; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			var mine []int64
			if timed {
				mine = make([]int64, 0, calls/conc+1)
			}
			in := req
			for atomic.AddInt64(&left, -1) >= 0 {
				var out []byte
				t0 := time.Now()
				err := conn.Invoke(context.Background(), method, &in, &out, grpc.ForceCodec(rawCodec{}))
				t1 := time.Now()
				if err == nil && len(out) <= len(req) {
					err = fmt.Errorf("answer of %d bytes for a %d-byte request: not authenticated", len(out), len(req))
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					atomic.StoreInt64(&left, -1<<40)
					return
				}
				if timed {
					mine = append(mine, int64(t1.Sub(t0)))
				}
				if t1.After(deadline) {
					atomic.StoreInt64(&left, -1<<40)
				}
			}
			samples[g] = mine
		}(g)
	}
	wg.Wait()
	wall := time.Since(start)
	if e := firstErr.Load(); e != nil {
		return nil, wall, e.(error)
	}
	var all []int64
	for _, s := range samples {
		all = append(all, s...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	return all, wall, nil
}

func dial(target string) (*grpc.ClientConn, error) {
	network, addr := "tcp", target
	if strings.HasPrefix(target, "unix:") {
		network, addr = "unix", strings.TrimPrefix(target, "unix:")
	} else if h, _, err := net.SplitHostPort(target); err != nil || !(h == "localhost" || net.ParseIP(h).IsLoopback()) {
		return nil, fmt.Errorf("target %q: loopback TCP or unix: only", target)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return grpc.DialContext(ctx, "passthrough:///"+network, grpc.WithInsecure(), grpc.WithBlock(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}))
}

func main() {
	target := flag.String("target", "", "server: 127.0.0.1:PORT or unix:PATH")
	objectPath := flag.String("object", "", "the serialised Object to send")
	label := flag.String("label", "grpc", "peer name in the output")
	concList := flag.String("concurrency", "1,16,64", "concurrent callers, one point each")
	calls := flag.Int("calls", 20000, "timed calls per point (all callers together)")
	maxSeconds := flag.Float64("max-seconds", 5, "a point's timed phase stops after this long")
	warmup := flag.Int("warmup-calls", 2000, "untimed calls before each point")
	pid := flag.Int("server-pid", 0, "read this process's CPU ticks around each point")
	flag.Parse()
	if *target == "" || *objectPath == "" {
		log.Fatal("grpcload: -target and -object are required")
	}
	req, err := os.ReadFile(*objectPath)
	if err != nil {
		log.Fatal(err)
	}
	var concs []int
	for _, c := range strings.Split(*concList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 || n > 1024 {
			log.Fatalf("grpcload: bad -concurrency %q", *concList)
		}
		concs = append(concs, n)
	}
	// The whole run is bounded: warm-ups, timed phases and slack.
	budget := time.Duration(float64(len(concs))*(2**maxSeconds+5)*float64(time.Second)) + 20*time.Second
	time.AfterFunc(budget, func() {
		fmt.Fprintf(os.Stderr, "grpcload: %s: no end after %v, giving up\n", *label, budget)
		os.Exit(3)
	})

	conn, err := dial(*target)
	if err != nil {
		log.Fatalf("grpcload: dial %s: %v", *target, err)
	}
	defer conn.Close()
	var out []byte
	in := req
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err = conn.Invoke(ctx, method, &in, &out, grpc.ForceCodec(rawCodec{}))
	cancel()
	if err != nil {
		log.Fatalf("grpcload: %s: first call: %v", *label, err)
	}
	var ans pb.Object
	if err := proto.Unmarshal(out, &ans); err != nil {
		log.Fatalf("grpcload: %s: answer does not decode: %v", *label, err)
	}
	if !ans.GetSession().GetHmacEnabled() || ans.Metadata["token"] == "" {
		log.Fatalf("grpcload: %s: the benchmark Object did not authenticate (return_overrides %v)", *label, ans.GetRequest().GetReturnOverrides())
	}

	enc := json.NewEncoder(os.Stdout)
	for _, c := range concs {
		if *warmup > 0 {
			if _, _, err := run(conn, req, c, *warmup, time.Now().Add(time.Duration(*maxSeconds*float64(time.Second))), false); err != nil {
				log.Fatalf("grpcload: %s: warm-up at %d: %v", *label, c, err)
			}
		}
		var t0 int64
		if *pid > 0 {
			if t0, err = serverTicks(*pid); err != nil {
				log.Fatal(err)
			}
		}
		c0 := selfCPU()
		samples, wall, err := run(conn, req, c, *calls, time.Now().Add(time.Duration(*maxSeconds*float64(time.Second))), true)
		if err != nil {
			log.Fatalf("grpcload: %s: at concurrency %d: %v", *label, c, err)
		}
		p := point{Peer: *label, Concurrency: c, Calls: len(samples), MedianNs: percentile(samples, 0.5), P99Ns: percentile(samples, 0.99),
			Throughput: float64(len(samples)) / wall.Seconds(), WallS: wall.Seconds(), ClientCPUS: selfCPU() - c0, Bytes: len(req)}
		if *pid > 0 {
			t1, err := serverTicks(*pid)
			if err != nil {
				log.Fatal(err)
			}
			d := t1 - t0
			p.ServerTicks = &d
		}
		if err := enc.Encode(p); err != nil {
			log.Fatal(err)
		}
	}
}
