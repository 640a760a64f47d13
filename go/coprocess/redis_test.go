package coprocess

import (
	"errors"
	"testing"
	"time"

	"coprocess/go/internal/testredis"

	"github.com/gomodule/redigo/redis"
)

func startRedis(t *testing.T) *testredis.Server {
	t.Helper()
	r, err := testredis.Start()
	if errors.Is(err, testredis.ErrNoServer) {
		t.Skip("SKIP: " + err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

func TestRedisStore(t *testing.T) {
	r := startRedis(t)
	s := NewRedisStore(r.Addr, "gw1:")
	defer s.Close()
	raw, err := redis.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()

	if err := s.Set("k", "v ünïcode", 0); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := s.Get("k"); err != nil || !ok || v != "v ünïcode" {
		t.Fatalf("Get = %q %v %v", v, ok, err)
	}
	// The key lives under the prefix, and only there.
	if v, err := redis.String(raw.Do("GET", "gw1:k")); err != nil || v != "v ünïcode" {
		t.Fatalf("raw GET gw1:k = %q %v", v, err)
	}
	if n, _ := redis.Int(raw.Do("EXISTS", "k")); n != 0 {
		t.Error("key written without its prefix")
	}
	if ttl, _ := redis.Int(raw.Do("PTTL", "gw1:k")); ttl != -1 {
		t.Errorf("ttl 0 set an expiry: PTTL %d", ttl)
	}
	if _, ok, err := s.Get("absent"); ok || err != nil {
		t.Errorf("absent: %v %v", ok, err)
	}
	// Another prefix is another namespace.
	other := NewRedisStore(r.Addr, "gw2:")
	defer other.Close()
	if _, ok, _ := other.Get("k"); ok {
		t.Error("prefixes do not separate keys")
	}

	// TTL honoured: set as the key's expiry, gone afterwards.
	if err := s.Set("short", "v", 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if ttl, _ := redis.Int(raw.Do("PTTL", "gw1:short")); ttl <= 0 || ttl > 300 {
		t.Errorf("PTTL %d, want 1..300", ttl)
	}
	time.Sleep(400 * time.Millisecond)
	if _, ok, _ := s.Get("short"); ok {
		t.Error("key outlived its TTL")
	}
}

// Two gateway instances sharing one Redis share the host store: what one stores through
// TykStoreData the other reads through TykGetData, with the TTL in seconds honoured.
func TestRedisStoreThroughTheHostFunctions(t *testing.T) {
	r := startRedis(t)
	node1 := NewRedisStore(r.Addr, "coprocess:")
	node2 := NewRedisStore(r.Addr, "coprocess:")
	defer node1.Close()
	defer node2.Close()
	rec := &recorder{}
	if _, err := New(Host{Store: node1, Logger: rec}); err != nil {
		t.Fatal(err)
	}
	if err := CallHostStore("nonce-1", "seen", 1); err != nil {
		t.Fatal(err)
	}
	if err := CallHostStore("secret-key-1", "s3cr3t", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Host{Store: node2, Logger: rec}); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := CallHostGet("nonce-1"); err != nil || !ok || v != "seen" {
		t.Fatalf("node2 reads %q %v %v", v, ok, err)
	}
	if v, ok, _ := CallHostGet("secret-key-1"); !ok || v != "s3cr3t" {
		t.Fatalf("node2 reads %q %v", v, ok)
	}
	raw, err := redis.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if ttl, _ := redis.Int(raw.Do("PTTL", "coprocess:nonce-1")); ttl <= 0 || ttl > 1000 {
		t.Errorf("PTTL %d, want 1..1000 for ttl=1s", ttl)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, ok, _ := CallHostGet("nonce-1"); ok {
		t.Error("nonce outlived its 1 s TTL")
	}
	if _, logs := rec.snapshot(); len(logs) != 0 {
		t.Errorf("unexpected logs %q", logs)
	}

	// Redis going away: reads are absent and the failure is logged, never a crash.
	r.Stop()
	time.Sleep(50 * time.Millisecond)
	if _, ok, err := CallHostGet("secret-key-1"); ok || err != nil {
		t.Errorf("with Redis down: ok=%v err=%v", ok, err)
	}
	if _, logs := rec.snapshot(); len(logs) == 0 || logs[0][0] != "error" {
		t.Errorf("Redis failure not logged: %q", logs)
	}
}
