// Package testredis starts a throwaway redis-server for tests and the demo.
package testredis

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"time"

	"github.com/gomodule/redigo/redis"
)

// ErrNoServer: redis-server is not installed (scripts/setup.sh installs it).
var ErrNoServer = errors.New("redis-server is not installed (Debian package redis-server; scripts/setup.sh installs it)")

// Server is a throwaway redis-server on a free loopback port, without persistence, for
// tests and the demo.
type Server struct {
	Addr string
	cmd  *exec.Cmd
	out  bytes.Buffer
}

// Start starts redis-server on 127.0.0.1 on a free port and waits until it answers
// PING. It returns ErrNoServer when the binary is missing.
func Start() (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNoServer
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		r := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port)}
		r.cmd = exec.Command(bin, "--bind", "127.0.0.1", "--port", fmt.Sprint(port), "--save", "", "--appendonly", "no",
			"--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning", "--dir", os.TempDir())
		r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
		if err := r.cmd.Start(); err != nil {
			return nil, err
		}
		if lastErr = r.waitReady(5 * time.Second); lastErr == nil {
			return r, nil
		}
		r.Stop()
	}
	return nil, lastErr
}

func (r *Server) waitReady(limit time.Duration) error {
	exited := make(chan struct{})
	go func() { r.cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited: %s", r.out.String())
		default:
		}
		if c, err := redis.Dial("tcp", r.Addr, redis.DialConnectTimeout(200*time.Millisecond)); err == nil {
			_, err = c.Do("PING")
			c.Close()
			if err == nil {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("redis-server on %s did not answer within %v", r.Addr, limit)
}

// Stop kills the server it started.
func (r *Server) Stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Kill()
	}
}
