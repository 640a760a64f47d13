// Command gateway is a small API gateway running the coprocess library: an HTTP reverse
// proxy over the API definitions of a directory, with native plugin hooks, native event
// handlers, a memory or Redis host store, and SIGHUP reload.
//
//	gateway -listen 127.0.0.1:8080 -apps go/demo/apps -config go/demo/coprocess.json [-redis 127.0.0.1:6379]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"coprocess/go/coprocess"
	"coprocess/go/gateway"
	"coprocess/go/pb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on")
	apps := flag.String("apps", "apps", "directory of API definitions (*.json)")
	config := flag.String("config", "", "the library's global configuration file (sets COPROCESS_CONFIG; event handlers are configured there)")
	redisAddr := flag.String("redis", "", "host:port of a Redis for the plugin store (default: in-memory store)")
	redisPrefix := flag.String("redis-prefix", "coprocess:", "prefix of the plugin store's Redis keys")
	logLevel := flag.String("log-level", "info", "debug, info, warning or error")
	trace := flag.Bool("trace", false, "log every hook dispatch")
	flag.Parse()

	logger := coprocess.StdLogger{L: log.New(os.Stderr, "gateway ", log.LstdFlags|log.Lmicroseconds), Min: *logLevel}
	if *config != "" {
		// Before the first call into the library, which reads the file at first use.
		os.Setenv("COPROCESS_CONFIG", *config)
	}
	var store coprocess.Store = coprocess.NewMemoryStore()
	storeName := "in-memory store"
	if *redisAddr != "" {
		rs := coprocess.NewRedisStore(*redisAddr, *redisPrefix)
		defer rs.Close()
		store, storeName = rs, fmt.Sprintf("Redis store at %s (prefix %q)", *redisAddr, *redisPrefix)
	}
	events := coprocess.EventFunc(func(name, payload string) {
		logger.Log("info", fmt.Sprintf("plugin fired event %s: %s", name, payload))
	})
	d, err := coprocess.New(coprocess.Host{Events: events, Logger: logger, Store: store})
	if err != nil {
		log.Fatal(err)
	}
	opts := gateway.Options{AppsDir: *apps, Dispatcher: d, Logger: logger}
	if *trace {
		opts.Trace = func(t gateway.HookTrace) { logger.Log("debug", describe(t)) }
	}
	g, err := gateway.New(opts)
	if err != nil {
		log.Fatalf("loading API definitions from %s: %v", *apps, err)
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	logger.Log("info", fmt.Sprintf("listening on http://%s: %d APIs from %s, library %s, %s", ln.Addr(), len(g.APIs()), *apps, d.ABIVersion(), storeName))

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		for s := range signals {
			if s == syscall.SIGHUP {
				logger.Log("info", "SIGHUP: reloading")
				_ = g.Reload()
				continue
			}
			logger.Log("info", fmt.Sprintf("%v: shutting down", s))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = srv.Shutdown(ctx)
			cancel()
			return
		}
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

func describe(t gateway.HookTrace) string {
	s := fmt.Sprintf("API %s hook %s %s", t.APIID, t.Sent.HookType, t.Sent.HookName)
	if t.Err != nil {
		return s + ": " + t.Err.Error()
	}
	r := t.Answer.GetRequest()
	if code := r.GetReturnOverrides().GetResponseCode(); code > 0 {
		return fmt.Sprintf("%s: answer the client %d", s, code)
	}
	s += fmt.Sprintf(": set_headers %d, delete_headers %d", len(r.GetSetHeaders()), len(r.GetDeleteHeaders()))
	if t.Sent.HookType == pb.HookType_CustomKeyCheck {
		s += fmt.Sprintf(", session %v, token %v", t.Answer.Session != nil, t.Answer.Metadata["token"] != "")
	}
	return s
}
