// Command gateway is a small API gateway running the coprocess library: an HTTP reverse
// proxy over the API definitions of a directory, with native plugin hooks, native event
// handlers, a memory or Redis host store, and SIGHUP reload.
//
//	gateway -listen 127.0.0.1:8080 -apps go/demo/apps -config go/demo/coprocess.json [-redis 127.0.0.1:6379]
//
// The store flags (-redis-timeout, -redis-breaker-failures, -redis-breaker-backoff,
// -store-max-calls, -store-error-log-interval) and the metrics (/metrics, -metrics-listen)
// are described in docs/gateway-model.md.
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
	redisTimeout := flag.Duration("redis-timeout", coprocess.DefaultRedisTimeout, "longest one Redis store operation may take, connecting included (one deadline per operation)")
	breakerFailures := flag.Int("redis-breaker-failures", coprocess.DefaultRedisBreakerFailures, "consecutive failed Redis operations that open the store's circuit breaker (negative: no breaker)")
	breakerBackoff := flag.Duration("redis-breaker-backoff", coprocess.DefaultRedisBreakerBackoff, "how long an open circuit fails store operations at once before one probe")
	maxStoreCalls := flag.Int("store-max-calls", coprocess.DefaultMaxStoreCalls, "most store host-function calls in flight at once (each holds an OS thread); more fail at once as unavailable (negative: unbounded)")
	storeLogInterval := flag.Duration("store-error-log-interval", coprocess.DefaultStoreErrorLogInterval, "at most one log line about failed store calls per interval, with the count of the others (negative: log every one)")
	metricsListen := flag.String("metrics-listen", "", `where to serve the Prometheus metrics: "" serves /metrics on -listen (reserved path), an address serves /metrics there only, "none" serves them nowhere`)
	flag.Parse()

	logger := coprocess.StdLogger{L: log.New(os.Stderr, "gateway ", log.LstdFlags|log.Lmicroseconds), Min: *logLevel}
	if *config != "" {
		// Before the first call into the library, which reads the file at first use.
		os.Setenv("COPROCESS_CONFIG", *config)
	}
	var store coprocess.Store = coprocess.NewMemoryStore()
	storeName := "in-memory store"
	if *redisAddr != "" {
		rs := coprocess.NewRedisStoreWithOptions(*redisAddr, coprocess.RedisOptions{Prefix: *redisPrefix, Timeout: *redisTimeout,
			BreakerFailures: *breakerFailures, BreakerBackoff: *breakerBackoff, Logger: logger})
		defer rs.Close()
		o := rs.Options()
		store, storeName = rs, fmt.Sprintf("Redis store at %s (prefix %q, timeout %v, breaker %d failures / %v)", *redisAddr, *redisPrefix, o.Timeout, o.BreakerFailures, o.BreakerBackoff)
	}
	events := coprocess.EventFunc(func(name, payload string) {
		logger.Log("info", fmt.Sprintf("plugin fired event %s: %s", name, payload))
	})
	d, err := coprocess.New(coprocess.Host{Events: events, Logger: logger, Store: store, MaxStoreCalls: *maxStoreCalls, StoreErrorLogInterval: *storeLogInterval})
	if err != nil {
		log.Fatal(err)
	}
	opts := gateway.Options{AppsDir: *apps, Dispatcher: d, Logger: logger, Store: store}
	if *metricsListen == "" {
		opts.MetricsPath = "/metrics"
	}
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
	var metricsSrv *http.Server
	metricsAt := "metrics at http://" + ln.Addr().String() + "/metrics"
	switch *metricsListen {
	case "":
	case "none":
		metricsAt = "no metrics"
	default:
		mln, err := net.Listen("tcp", *metricsListen)
		if err != nil {
			log.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", g.MetricsHandler())
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		metricsAt = "metrics at http://" + mln.Addr().String() + "/metrics"
		go func() {
			if err := metricsSrv.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Fatal(err)
			}
		}()
	}
	logger.Log("info", fmt.Sprintf("listening on http://%s: %d APIs from %s, library %s, %s, at most %d store calls in flight, %s",
		ln.Addr(), len(g.APIs()), *apps, d.ABIVersion(), storeName, *maxStoreCalls, metricsAt))

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
			if metricsSrv != nil {
				_ = metricsSrv.Shutdown(ctx)
			}
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
		return s + ": " + t.Err.Error() + traceSuffix(t)
	}
	r := t.Answer.GetRequest()
	if code := r.GetReturnOverrides().GetResponseCode(); code > 0 {
		return fmt.Sprintf("%s: answer the client %d", s, code) + traceSuffix(t)
	}
	s += fmt.Sprintf(": set_headers %d, delete_headers %d", len(r.GetSetHeaders()), len(r.GetDeleteHeaders()))
	if t.Sent.HookType == pb.HookType_CustomKeyCheck {
		s += fmt.Sprintf(", session %v, token %v", t.Answer.Session != nil, t.Answer.Metadata["token"] != "")
	}
	return s + traceSuffix(t)
}

func traceSuffix(t gateway.HookTrace) string {
	if t.TraceID == "" {
		return ""
	}
	return " trace_id=" + t.TraceID
}
