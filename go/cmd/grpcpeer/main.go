// Command grpcpeer is the Go peer of `make bench-compare`: a grpc-go coprocess.Dispatcher
// server running HMACSignatureAuth written in plain Go (coprocess/go/internal/benchhmac), the
// alternative to coprocess-grpc a gateway user writes.
//
//	grpcpeer [-listen 127.0.0.1:0] [-unix PATH] [-max-seconds 900]
//
// When listening it prints one JSON line to stdout, {"tcp": "127.0.0.1:PORT", "unix": PATH,
// "pid": PID}; it stops on SIGTERM or SIGINT, or after -max-seconds.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"coprocess/go/internal/benchhmac"
	"coprocess/go/pb"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// dispatcherServer is the service interface protoc-gen-go-grpc would generate for
// proto/coprocess.proto's Dispatcher; dispatcherDesc is its service description, written out
// here (go/pb holds the messages only).
type dispatcherServer interface {
	Dispatch(context.Context, *pb.Object) (*pb.Object, error)
	DispatchEvent(context.Context, *pb.Event) (*pb.EventReply, error)
}

var dispatcherDesc = grpc.ServiceDesc{
	ServiceName: "coprocess.Dispatcher",
	HandlerType: (*dispatcherServer)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Dispatch", Handler: func(srv interface{}, ctx context.Context, dec func(interface{}) error, _ grpc.UnaryServerInterceptor) (interface{}, error) {
			in := new(pb.Object)
			if err := dec(in); err != nil {
				return nil, err
			}
			return srv.(dispatcherServer).Dispatch(ctx, in)
		}},
		{MethodName: "DispatchEvent", Handler: func(srv interface{}, ctx context.Context, dec func(interface{}) error, _ grpc.UnaryServerInterceptor) (interface{}, error) {
			in := new(pb.Event)
			if err := dec(in); err != nil {
				return nil, err
			}
			return srv.(dispatcherServer).DispatchEvent(ctx, in)
		}},
	},
	Streams:  []grpc.StreamDesc{},
	Metadata: "coprocess.proto",
}

type service struct{ auth *benchhmac.Auth }

func (s *service) Dispatch(_ context.Context, obj *pb.Object) (*pb.Object, error) {
	err := s.auth.Handle(obj)
	var cerr *benchhmac.ConfigError
	switch {
	case err == nil:
		return obj, nil
	case errors.Is(err, benchhmac.ErrNoMiddleware):
		return nil, status.Errorf(codes.NotFound, "no middleware for hook %q", obj.HookName)
	case errors.As(err, &cerr):
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	default:
		return nil, status.Error(codes.Internal, err.Error())
	}
}

func (s *service) DispatchEvent(context.Context, *pb.Event) (*pb.EventReply, error) {
	return &pb.EventReply{}, nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "TCP address to listen on (port 0: a free port)")
	unix := flag.String("unix", "", "also listen on this unix socket path")
	maxSeconds := flag.Float64("max-seconds", 900, "stop after this many seconds")
	flag.Parse()

	srv := grpc.NewServer()
	srv.RegisterService(&dispatcherDesc, &service{auth: benchhmac.New()})
	ready := map[string]interface{}{"pid": os.Getpid()}
	tcp, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	ready["tcp"] = tcp.Addr().String()
	go func() { _ = srv.Serve(tcp) }()
	if *unix != "" {
		_ = os.Remove(*unix)
		u, err := net.Listen("unix", *unix)
		if err != nil {
			log.Fatal(err)
		}
		ready["unix"] = *unix
		go func() { _ = srv.Serve(u) }()
	}
	line, _ := json.Marshal(ready)
	fmt.Println(string(line))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case <-time.After(time.Duration(*maxSeconds * float64(time.Second))):
	}
	srv.Stop()
	if *unix != "" {
		_ = os.Remove(*unix)
	}
}
