package testredis

import (
	"errors"
	"testing"
)

// ForTest starts a server for one test and stops it when the test ends; the test is skipped
// when redis-server is not installed.
func ForTest(t testing.TB) *Server {
	t.Helper()
	r, err := Start()
	if errors.Is(err, ErrNoServer) {
		t.Skip("SKIP: " + err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}
