// Package testredis starts a throwaway redis-server for tests and the demo.
package testredis

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/gomodule/redigo/redis"
)

// ErrNoServer: redis-server is not installed (scripts/setup.sh installs it).
var ErrNoServer = errors.New("redis-server is not installed (Debian package redis-server; scripts/setup.sh installs it)")

// Server is a throwaway redis-server on a free loopback port, without persistence, for
// tests and the demo.
type Server struct {
	Addr   string
	bin    string
	port   int
	cmd    *exec.Cmd
	out    bytes.Buffer
	exited chan struct{}
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
		r := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), bin: bin, port: port}
		if lastErr = r.start(); lastErr == nil {
			return r, nil
		}
		r.Stop()
	}
	return nil, lastErr
}

func (r *Server) start() error {
	r.out.Reset()
	r.cmd = exec.Command(r.bin, "--bind", "127.0.0.1", "--port", fmt.Sprint(r.port), "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning", "--dir", os.TempDir())
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
	if err := r.cmd.Start(); err != nil {
		return err
	}
	r.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) { cmd.Wait(); close(exited) }(r.cmd, r.exited)
	return r.waitReady(5 * time.Second)
}

// Pid is the running server's process id.
func (r *Server) Pid() int { return r.cmd.Process.Pid }

// Pause stops the server with SIGSTOP: connections stay open and nothing answers (a hung
// Redis).
func (r *Server) Pause() error { return r.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (r *Server) Resume() error { return r.cmd.Process.Signal(syscall.SIGCONT) }

// Kill kills the server and waits until it has exited (its port refuses connections).
func (r *Server) Kill() {
	r.cmd.Process.Kill()
	<-r.exited
}

// Restart starts a killed server again on the same port (empty: no persistence) and waits
// until it answers PING. The port can be briefly unavailable, so it retries for a while.
func (r *Server) Restart() error {
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		if err = r.start(); err == nil {
			return nil
		}
		r.Kill()
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

func (r *Server) waitReady(limit time.Duration) error {
	exited := r.exited
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

// Stop kills the server it started (a paused one too).
func (r *Server) Stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Signal(syscall.SIGCONT)
		r.cmd.Process.Kill()
	}
}
